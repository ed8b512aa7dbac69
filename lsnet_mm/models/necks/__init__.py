"""Necks: :class:`LSNetFPN` (needs mmdet or mmseg)."""
from .lsnet_fpn import LSNetFPN

__all__ = ['LSNetFPN']
