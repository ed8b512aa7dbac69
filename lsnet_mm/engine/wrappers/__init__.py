"""Model wrappers registered in the ``lsnet_mm`` scope (``lsnet_mm.CPUFallbackDDP``)."""
from .cpu_fallback_ddp import CPUFallbackDDP

__all__ = ['CPUFallbackDDP']
