"""LSNet's layers (named as in the released weights), each with its deploy step.

Every layer takes ``deploy=True`` to build its inference form and has
``switch_to_deploy()`` to convert to it in place; :func:`reparameterize` converts a whole
tree (:mod:`lsnet_mm.models.layers.reparam`).
"""
from .attention import Attention
from .block import FFN, LSNetBlock, RepVGGDW, Residual, SqueezeExcite
from .conv_bn import ConvBN, bn_scale_shift, fuse_conv_bn
from .ls_conv import LargeKernelPerception, LSConv
from .reparam import reparameterize

__all__ = ['Attention', 'ConvBN', 'FFN', 'LargeKernelPerception', 'LSConv', 'LSNetBlock',
           'RepVGGDW', 'Residual', 'SqueezeExcite', 'bn_scale_shift', 'fuse_conv_bn',
           'reparameterize']
