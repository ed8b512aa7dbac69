"""Operators: small-kernel aggregation (:func:`ska`, PyTorch or fused Triton).

:func:`ska_reference` is a direct loop, the ground truth for tests.
"""
from .ska import SKAFallbackWarning, fallback_reason, ska, triton_available
from .ska_reference import ska_reference

__all__ = ['ska', 'ska_reference', 'triton_available', 'fallback_reason',
           'SKAFallbackWarning']
