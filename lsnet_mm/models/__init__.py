"""LSNet models: the backbone, its layers and (with mmdet or mmseg) the LSNetFPN neck.

:mod:`lsnet_mm.models.necks` is imported by ``lsnet_mm`` only when mmdet or mmseg is
installed; the backbone and layers need torch and mmengine alone.
"""
from .backbones import LSNet
from .layers import LSConv
from .utils import switch_model_to_deploy

__all__ = ['LSConv', 'LSNet', 'switch_model_to_deploy']
