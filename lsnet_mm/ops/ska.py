"""Small-kernel aggregation (SKA), the parameter-free half of the LS convolution.

Each output pixel is a 3x3 neighbourhood of the input weighted by a kernel
predicted for that pixel. Channel ``c`` uses weight group ``c % G`` (``G`` =
``w.shape[1]``); the released LSNet weights depend on that mapping.

:func:`ska` is the entry point. It checks shapes and calls the registered operator
``torch.ops.lsnet_mm.ska`` (:mod:`lsnet_mm.ops.ska_op`: one opaque op for
``torch.compile`` and ``torch.export``, with its own backward op), whose
implementations are

* the PyTorch path (:mod:`lsnet_mm.ops.ska_torch`): nine shifted multiply-adds, no
  9x copy of the input, only ``x`` and ``w`` saved for backward;
* the fused Triton kernels (:mod:`lsnet_mm.ops.ska_triton`) for CUDA tensors, chosen
  automatically when Triton imports (never required; see
  :mod:`lsnet_mm.ops.ska_dispatch` for the rules and the fallback).

Exporters (tracing, ONNX export) get :func:`ska_forward_export` instead: one zero pad
and nine slices multiplied and summed out of place, which onnxruntime and OpenVINO run
fast.
"""
import torch

from . import ska_op  # noqa: F401  (registers torch.ops.lsnet_mm.ska)
from .ska_dispatch import SKAFallbackWarning, fallback_reason, triton_available
from .ska_torch import ska_backward_torch, ska_forward_export, ska_forward_torch

__all__ = ['ska', 'ska_forward_export', 'ska_forward_torch', 'ska_backward_torch',
           'triton_available', 'fallback_reason', 'SKAFallbackWarning']

BACKENDS = ('auto', 'torch', 'triton')


def _check(x: torch.Tensor, w: torch.Tensor) -> None:
    if x.dim() != 4 or w.dim() != 5:
        raise ValueError(f'ska expects x of shape (B, C, H, W) and w of shape '
                         f'(B, G, 9, H, W); got {tuple(x.shape)} and {tuple(w.shape)}')
    b, c, h, wd = x.shape
    if (w.shape[0], w.shape[2], w.shape[3], w.shape[4]) != (b, 9, h, wd) or c % w.shape[1]:
        raise ValueError(f'ska: weights {tuple(w.shape)} do not fit input {tuple(x.shape)}: '
                         f'expected (B, G, 9, H, W) with C divisible by G')
    if x.device != w.device:
        raise ValueError(f'ska: x is on {x.device} and w on {w.device}')


def ska(x: torch.Tensor, w: torch.Tensor, backend: str = 'auto') -> torch.Tensor:
    """Aggregate each pixel's 3x3 neighbourhood of ``x`` with per-pixel kernels ``w``.

    Args:
        x (torch.Tensor): (B, C, H, W) features.
        w (torch.Tensor): (B, G, 9, H, W) kernels, G dividing C; channel c uses group
            c % G.
        backend (str): 'auto' (Triton on CUDA when importable, falling back to PyTorch
            on a Triton build error; PyTorch elsewhere), 'torch' or 'triton' (never
            falls back). Defaults to 'auto'.

    Returns:
        torch.Tensor: (B, C, H, W) aggregated features, contiguous, in ``x``'s dtype.

    Raises:
        ValueError: The shapes or devices do not fit or the backend is unknown.
    """
    _check(x, w)
    if backend not in BACKENDS:
        raise ValueError(f"ska backend must be 'auto', 'torch' or 'triton', got {backend!r}")
    if backend != 'triton' and (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()):
        # exporters (also on GPU): plain out-of-place ops, fast in ONNX runtimes
        return ska_forward_export(x, w)
    return torch.ops.lsnet_mm.ska(x, w, backend)
