"""Data: checked loading, ``AlignResize``, checked ADE20K (mmseg), the dataset check.

:func:`~lsnet_mm.datasets.verify.verify_datasets` is the check that tools/train.py,
tools/test.py and tools/misc/verify_dataset.py run before the first iteration and
before evaluation.

The generated demo data sets are in :mod:`lsnet_mm.datasets.demo`.
"""
from ..utils.optional import is_installed
from .transforms import AlignResize, CheckedLoadImageFromFile, align_resize_shape
from .verify import check_num_classes, verify_datasets

__all__ = ['AlignResize', 'align_resize_shape', 'CheckedLoadImageFromFile',
           'check_num_classes', 'verify_datasets']

if is_installed('mmseg'):
    from .ade20k import CheckedADE20KDataset  # noqa: F401
    __all__ += ['CheckedADE20KDataset']
