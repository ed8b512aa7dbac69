from .lsnet import LSNet

__all__ = ['LSNet']
