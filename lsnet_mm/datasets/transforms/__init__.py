"""Transforms registered in mmengine's TRANSFORMS registry (they need mmcv)."""
from .align_resize import AlignResize, align_resize_shape
from .loading import CheckedLoadImageFromFile

__all__ = ['AlignResize', 'align_resize_shape', 'CheckedLoadImageFromFile']
