"""Small-kernel aggregation written with PyTorch ops: the CPU path and the exporters' graph.

* :func:`ska_forward_torch` / :func:`ska_backward_torch`: a loop over the nine taps
  with in-place multiply-adds into shifted slices, so the 9x copy of the input that
  ``unfold`` would make never exists, and backward needs only ``x`` and ``w``.
* :func:`ska_forward_export`: one zero pad and nine slices multiplied and summed out
  of place, which exporters (tracing, ONNX) turn into a graph that onnxruntime and
  OpenVINO run fast (the in-place tap loop traces to many slow slice updates).

Channel ``c`` uses weight group ``c % G`` (``G = w.shape[1]``) everywhere.
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F


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
        x (torch.Tensor): (B, C, H, W) contiguous features.
        w (torch.Tensor): (B, G, 9, H, W) contiguous per-pixel kernels, G dividing C.

    Returns:
        torch.Tensor: (B, C, H, W) aggregated features, contiguous, in ``x``'s dtype.
    """
    b, c, h, wd = x.shape
    # w[:, None]: (B, 1, G, 9, H, W) broadcasts over the C // G channels of a group
    out = _aggregate_taps(_grouped(x, w.shape[1]), w[:, None], transpose=False)
    return out.view(b, c, h, wd).to(x.dtype)


def ska_backward_torch(grad_out: torch.Tensor, x: torch.Tensor, w: torch.Tensor,
                       need_x: bool = True, need_w: bool = True
                       ) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    """Gradients of small-kernel aggregation with respect to its input and kernels.

    Args:
        grad_out (torch.Tensor): (B, C, H, W) contiguous gradient of the output.
        x (torch.Tensor): (B, C, H, W) contiguous features of the forward.
        w (torch.Tensor): (B, G, 9, H, W) contiguous kernels of the forward.
        need_x (bool): Compute the gradient of ``x``. Defaults to True.
        need_w (bool): Compute the gradient of ``w``. Defaults to True.

    Returns:
        tuple[torch.Tensor | None, torch.Tensor | None]: The gradients of ``x`` (in its
        dtype) and ``w`` (in its dtype), None where not needed.
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
        grad_w = torch.zeros_like(w, memory_format=torch.contiguous_format)
        for t in range(9):
            (oi, oj), (si, sj) = _tap_slices(t, h, wd)
            grad_w[:, :, t, oi, oj] = (go[..., oi, oj] * xg[..., si, sj]).sum(1, dtype=w.dtype)
    return grad_x, grad_w


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
