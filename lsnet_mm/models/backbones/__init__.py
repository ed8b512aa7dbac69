"""Backbones: :class:`LSNet`."""
from .lsnet import LSNet

__all__ = ['LSNet']
