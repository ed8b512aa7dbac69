"""Detection helpers: the checked image loader, the synthetic COCO demo data set and
the conversion of released mmdet 2.x checkpoints.

``import lsnet_mm.detection`` registers ``CheckedLoadImageFromFile`` (the detection
configs list it in ``custom_imports``; tools/train.py and tools/test.py import it).
"""
from .convert import convert_mmdet2_checkpoint, mmdet2_to_mmdet3
from .demo_data import DEMO_CLASSES, ensure_demo_coco, make_demo_coco
from .transforms import CheckedLoadImageFromFile, ImageDecodeError

__all__ = ['CheckedLoadImageFromFile', 'ImageDecodeError', 'DEMO_CLASSES', 'make_demo_coco',
           'ensure_demo_coco', 'mmdet2_to_mmdet3', 'convert_mmdet2_checkpoint']
