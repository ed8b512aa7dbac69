"""Data: checked loading, ``AlignResize``, checked ADE20K (mmseg), the dataset check.

:func:`check_datasets` is the check that tools/train.py and tools/test.py run before
the first iteration and before evaluation.

The generated demo data sets are in :mod:`lsnet_mm.datasets.demo`.
"""
from ..utils.optional import is_installed
from .dataset_check import check_datasets, read_image_header
from .transforms import AlignResize, CheckedLoadImageFromFile, ImageDecodeError, align_resize_shape

__all__ = ['AlignResize', 'align_resize_shape', 'CheckedLoadImageFromFile', 'ImageDecodeError',
           'check_datasets', 'read_image_header']

if is_installed('mmseg'):
    from .ade20k import CheckedADE20KDataset, SegLabelError  # noqa: F401
    __all__ += ['CheckedADE20KDataset', 'SegLabelError']
