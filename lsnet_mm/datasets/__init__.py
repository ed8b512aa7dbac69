"""Data: checked image loading, ``AlignResize``, the checked ADE20K dataset (with mmseg).

The generated demo data sets are in :mod:`lsnet_mm.datasets.demo`.
"""
from ..utils.optional import is_installed
from .transforms import AlignResize, CheckedLoadImageFromFile, ImageDecodeError, align_resize_shape

__all__ = ['AlignResize', 'align_resize_shape', 'CheckedLoadImageFromFile', 'ImageDecodeError']

if is_installed('mmseg'):
    from .ade20k import CheckedADE20KDataset, SegLabelError  # noqa: F401
    __all__ += ['CheckedADE20KDataset', 'SegLabelError']
