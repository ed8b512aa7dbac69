from .backbones import LSNet
from .layers import LSConv
from .necks import LSNetFPN

__all__ = ['LSConv', 'LSNet', 'LSNetFPN']
