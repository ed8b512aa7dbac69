"""LSNet's layers (named as in the released weights) and their deploy-time forms.

Deploy-time conversion: :mod:`lsnet_mm.models.layers.reparam`.
"""
from .attention import Attention
from .block import FFN, LSNetBlock, RepVGGDW, Residual, SqueezeExcite
from .conv_bn import ConvBN
from .ls_conv import LargeKernelPerception, LSConv

__all__ = ['Attention', 'ConvBN', 'FFN', 'LargeKernelPerception', 'LSConv', 'LSNetBlock',
           'RepVGGDW', 'Residual', 'SqueezeExcite']
