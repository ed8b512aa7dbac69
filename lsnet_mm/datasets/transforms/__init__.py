from .align_resize import AlignResize, align_resize_shape

__all__ = ['AlignResize', 'align_resize_shape']
