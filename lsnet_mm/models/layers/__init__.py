from .attention import Attention
from .block import FFN, LSNetBlock, RepVGGDW, Residual, SqueezeExcite
from .conv_bn import ConvBN
from .ls_conv import LargeKernelPerception, LSConv

__all__ = ['Attention', 'ConvBN', 'FFN', 'LargeKernelPerception', 'LSConv', 'LSNetBlock',
           'RepVGGDW', 'Residual', 'SqueezeExcite']
