"""Helpers of the tools: pre-flight checks, launching, optional dependencies."""
from .optional import is_installed

__all__ = ['is_installed']
