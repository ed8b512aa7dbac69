"""Runner helpers: :class:`CPUFallbackDDP` (SyncBN in CPU-only multi-process runs)."""
from .sync_bn import CPUFallbackDDP, revert_sync_bn_inplace

__all__ = ['CPUFallbackDDP', 'revert_sync_bn_inplace']
