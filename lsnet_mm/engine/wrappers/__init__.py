"""Model wrappers ``import lsnet_mm`` registers in mmengine's MODEL_WRAPPERS registry."""
from .cpu_fallback_ddp import CPUFallbackDDP, revert_sync_bn_inplace

__all__ = ['CPUFallbackDDP', 'revert_sync_bn_inplace']
