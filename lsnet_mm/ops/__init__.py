from .ska import ska, triton_available
from .ska_reference import ska_reference

__all__ = ['ska', 'ska_reference', 'triton_available']
