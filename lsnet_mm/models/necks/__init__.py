from .lsnet_fpn import LSNetFPN

__all__ = ['LSNetFPN']
