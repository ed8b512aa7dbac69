"""Segmentation data: the checked ADE20K dataset, the test-time ``AlignResize`` and the
generated ADE20K-layout demo data (:mod:`lsnet_mm.datasets.demo_ade`)."""
from .ade import CheckedADE20KDataset, SegLabelError
from .demo_ade import DEMO_ADE_IDS, DEMO_CLASSES
from .transforms import AlignResize, align_resize_shape

__all__ = ['AlignResize', 'align_resize_shape', 'CheckedADE20KDataset', 'SegLabelError',
           'DEMO_CLASSES', 'DEMO_ADE_IDS']
