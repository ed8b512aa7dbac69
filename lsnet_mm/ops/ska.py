"""Small-kernel aggregation (SKA), the parameter-free half of the LS convolution.

Each output pixel is a 3x3 neighbourhood of the input weighted by a kernel
predicted for that pixel. Channel ``c`` uses weight group ``c % G`` (``G`` =
``w.shape[1]``); the released LSNet weights depend on that mapping.

Three implementations share one entry point, :func:`ska`:

* a PyTorch path with a hand-written backward that loops over the nine taps,
  so it never materialises the 9x copy of the input that ``unfold`` would and
  saves only ``x`` and ``w`` for backward;
* a fused Triton kernel (``ska_triton``) for CUDA tensors, used automatically
  when Triton imports; it is never required;
* for exporters (tracing, ONNX export): :func:`ska_forward_export`, one zero pad and
  nine slices multiplied and summed out of place, which onnxruntime and OpenVINO run
  fast (the in-place tap loop traces to many slice updates that run slower than
  PyTorch).
"""
import os
import warnings
from typing import Optional, Tuple

import torch
import torch.nn.functional as F


def _check(x: torch.Tensor, w: torch.Tensor) -> None:
    if x.dim() != 4 or w.dim() != 5:
        raise ValueError(f'ska expects x of shape (B, C, H, W) and w of shape '
                         f'(B, G, 9, H, W); got {tuple(x.shape)} and {tuple(w.shape)}')
    b, c, h, wd = x.shape
    if (w.shape[0], w.shape[2], w.shape[3], w.shape[4]) != (b, 9, h, wd) or c % w.shape[1]:
        raise ValueError(f'ska: weights {tuple(w.shape)} do not fit input {tuple(x.shape)}: '
                         f'expected (B, G, 9, H, W) with C divisible by G')


def _grouped(t: torch.Tensor, groups: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C // G, G, H, W), so channel r * G + g sits at [:, r, g]."""
    b, c, h, w = t.shape
    return t.view(b, c // groups, groups, h, w)


def _tap_slices(t, h, w):
    """Rows/cols of tap t: the output ones that read inside the image, and those they read.

    Zero padding means the rest contribute nothing, so no padded copy is made.
    """
    du, dv = t // 3 - 1, t % 3 - 1
    out = (slice(max(0, -du), h - max(0, du)), slice(max(0, -dv), w - max(0, dv)))
    src = (slice(max(0, du), h - max(0, -du)), slice(max(0, dv), w - max(0, -dv)))
    return out, src


def _aggregate_taps(a: torch.Tensor, wg: torch.Tensor, transpose: bool) -> torch.Tensor:
    """Sum of the nine shifted copies of grouped ``a`` weighted by the grouped kernels.

    ``transpose=False`` is the forward (tap t of pixel p reads ``a[p + offset(t)]``);
    ``transpose=True`` sends each product back to the pixel the tap read (the gradient
    with respect to the input).
    """
    h, w = a.shape[-2:]
    # The centre tap covers every pixel, so it starts the sum (no zero fill); the
    # product is in the promoted dtype (float32 kernels with reduced-precision inputs).
    out = a * wg[:, :, :, 4]
    for t in range(9):
        if t == 4:
            continue
        (oi, oj), (si, sj) = _tap_slices(t, h, w)
        if transpose:
            out[..., si, sj].addcmul_(a[..., oi, oj], wg[:, :, :, t, oi, oj])
        else:
            out[..., oi, oj].addcmul_(a[..., si, sj], wg[:, :, :, t, oi, oj])
    return out


def ska_forward_torch(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Small-kernel aggregation with PyTorch ops (no autograd bookkeeping of its own).

    Args:
        x (torch.Tensor): (B, C, H, W) features.
        w (torch.Tensor): (B, G, 9, H, W) per-pixel kernels, G dividing C.

    Returns:
        torch.Tensor: (B, C, H, W) aggregated features, in ``x``'s dtype.
    """
    b, c, h, wd = x.shape
    # w[:, None]: (B, 1, G, 9, H, W) broadcasts over the C // G channels of a group
    out = _aggregate_taps(_grouped(x, w.shape[1]), w[:, None], transpose=False)
    return out.view(b, c, h, wd).to(x.dtype)


def ska_forward_export(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Small-kernel aggregation as a graph of standard ops, for exporters.

    ``x`` is zero-padded by one pixel once; tap t reads the (H, W) window at offset
    (t // 3, t % 3) of it. The slices use constant starts and ends relative to the
    padded size, so the graph holds for any input size (dynamic-shape export).

    Args:
        x (torch.Tensor): (B, C, H, W) features.
        w (torch.Tensor): (B, G, 9, H, W) per-pixel kernels, G dividing C.

    Returns:
        torch.Tensor: (B, C, H, W) aggregated features, in ``x``'s dtype.
    """
    b, c = x.shape[:2]
    groups = w.shape[1]
    xp = F.pad(x, (1, 1, 1, 1))
    # channel r * G + g at [:, r, g], as _grouped; H and W left to the reshape (-1)
    xp = xp.reshape(b, c // groups, groups, xp.shape[2], -1)
    wt = w.unsqueeze(1).unbind(3)  # nine (B, 1, G, H, W), broadcast over C // G
    out = None
    for t in range(9):
        i, j = t // 3, t % 3
        tap = xp[..., i:i - 2 if i < 2 else None, j:j - 2 if j < 2 else None] * wt[t]
        out = tap if out is None else out + tap
    return out.reshape(x.shape).to(x.dtype)


def ska_backward_torch(grad_out: torch.Tensor, x: torch.Tensor, w: torch.Tensor,
                       need_x: bool = True, need_w: bool = True
                       ) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    """Gradients of small-kernel aggregation with respect to its input and kernels.

    Args:
        grad_out (torch.Tensor): (B, C, H, W) gradient of the output (contiguous).
        x (torch.Tensor): (B, C, H, W) features of the forward.
        w (torch.Tensor): (B, G, 9, H, W) kernels of the forward.
        need_x (bool): Compute the gradient of ``x``. Defaults to True.
        need_w (bool): Compute the gradient of ``w``. Defaults to True.

    Returns:
        tuple[torch.Tensor | None, torch.Tensor | None]: The gradients of ``x`` and
        ``w`` (None where not needed).
    """
    b, c, h, wd = x.shape
    groups = w.shape[1]
    go = _grouped(grad_out, groups)
    grad_x = grad_w = None
    if need_x:
        # Tap t of pixel p read x[p + offset(t)]: send its gradient back there.
        gx = _aggregate_taps(go, w[:, None], transpose=True)
        grad_x = gx.view(b, c, h, wd).to(x.dtype)
    if need_w:
        xg = _grouped(x, groups)
        grad_w = torch.zeros_like(w)
        for t in range(9):
            (oi, oj), (si, sj) = _tap_slices(t, h, wd)
            grad_w[:, :, t, oi, oj] = (go[..., oi, oj] * xg[..., si, sj]).sum(1, dtype=w.dtype)
    return grad_x, grad_w


class _SKATorch(torch.autograd.Function):

    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return ska_forward_torch(x, w)

    @staticmethod
    def backward(ctx, grad_out):
        x, w = ctx.saved_tensors
        return ska_backward_torch(grad_out.contiguous(), x, w, *ctx.needs_input_grad)


_TRITON_FAILED = []


def triton_available() -> bool:
    """Tell whether the fused kernel can run.

    Returns:
        bool: True when Triton imports and has not failed before, unless the environment
        sets ``LSNET_SKA_TORCH=1``.
    """
    if os.environ.get('LSNET_SKA_TORCH') == '1' or _TRITON_FAILED:
        return False
    try:
        from . import ska_triton  # noqa: F401
    except Exception:  # Triton missing or broken: the PyTorch path serves.
        return False
    return True


def _use_triton(x: torch.Tensor) -> bool:
    if x.is_cuda:
        return triton_available()
    # Triton's interpreter runs the same kernels on CPU tensors (used by the tests).
    return os.environ.get('TRITON_INTERPRET') == '1' and triton_available()


def ska(x: torch.Tensor, w: torch.Tensor, backend: str = 'auto') -> torch.Tensor:
    """Aggregate each pixel's 3x3 neighbourhood of ``x`` with per-pixel kernels ``w``.

    Args:
        x (torch.Tensor): (B, C, H, W) features.
        w (torch.Tensor): (B, G, 9, H, W) kernels, G dividing C; channel c uses group
            c % G.
        backend (str): 'auto' (Triton on CUDA when importable, else PyTorch), 'torch'
            or 'triton'. Defaults to 'auto'.

    Returns:
        torch.Tensor: (B, C, H, W) aggregated features, in ``x``'s dtype.

    Raises:
        ValueError: The shapes do not fit or the backend is unknown.
    """
    _check(x, w)
    if backend not in ('auto', 'torch', 'triton'):
        raise ValueError(f"ska backend must be 'auto', 'torch' or 'triton', got {backend!r}")
    if backend != 'triton' and (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()):
        # exporters (also on GPU): plain out-of-place ops, fast in ONNX runtimes
        return ska_forward_export(x, w)
    if backend == 'auto':
        if _use_triton(x):
            from .ska_triton import ska_triton
            try:
                return ska_triton(x, w)
            except Exception as e:  # e.g. a GPU Triton cannot compile for: keep working
                _TRITON_FAILED.append(e)
                warnings.warn(f'lsnet_mm: Triton SKA kernel failed ({e!r}); using the PyTorch '
                              f'path from now on')
        backend = 'torch'
    if backend == 'triton':
        from .ska_triton import ska_triton
        return ska_triton(x, w)
    return _SKATorch.apply(x, w)
