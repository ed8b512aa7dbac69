"""Fused Triton kernels for small-kernel aggregation (forward and backward).

One program computes a block of pixels of one (batch, channel) plane, reading the
nine shifted inputs and the per-pixel kernels straight from memory: nothing of
size 9 x input is ever written. Accumulation is in float32 (float64 for float64
inputs). With ``TRITON_INTERPRET=1`` the same kernels run on CPU tensors, which is
how CI checks them without a GPU.
"""
from typing import Optional, Tuple

import torch
import triton
import triton.language as tl

BLOCK = 256


@triton.jit
def _ska_taps_kernel(src_ptr, w_ptr, out_ptr, C, G, H, W, TRANSPOSE: tl.constexpr,
                     BLOCK: tl.constexpr, ACC: tl.constexpr):
    # One block of pixels p of one (batch, channel) plane.
    # TRANSPOSE=False (forward): out[p] = sum_t x[p + offset(t)] * w[t, p].
    # TRANSPOSE=True (grad of x): pixel p was read by tap t of pixel p - offset(t), so
    # out[p] = sum_t grad_out[p - offset(t)] * w[t, p - offset(t)].
    pid_bc = tl.program_id(0)
    pid_p = tl.program_id(1)
    b = pid_bc // C
    g = (pid_bc % C) % G
    hw = H * W
    offs = pid_p * BLOCK + tl.arange(0, BLOCK)
    inside = offs < hw
    i = offs // W
    j = offs % W
    src_base = src_ptr + pid_bc.to(tl.int64) * hw
    w_base = w_ptr + (b * G + g).to(tl.int64) * 9 * hw
    acc = tl.zeros([BLOCK], dtype=ACC)
    for t in tl.static_range(9):
        if TRANSPOSE:
            ii = i - (t // 3 - 1)
            jj = j - (t % 3 - 1)
        else:
            ii = i + (t // 3 - 1)
            jj = j + (t % 3 - 1)
        m = inside & (ii >= 0) & (ii < H) & (jj >= 0) & (jj < W)
        src = ii * W + jj
        sv = tl.load(src_base + src, mask=m, other=0.0).to(ACC)
        if TRANSPOSE:
            wv = tl.load(w_base + t * hw + src, mask=m, other=0.0).to(ACC)
        else:
            wv = tl.load(w_base + t * hw + offs, mask=inside, other=0.0).to(ACC)
        acc += sv * wv
    tl.store(out_ptr + pid_bc.to(tl.int64) * hw + offs, acc.to(out_ptr.dtype.element_ty),
             mask=inside)


@triton.jit
def _ska_bwd_w_kernel(go_ptr, x_ptr, gw_ptr, C, G, H, W, BLOCK: tl.constexpr,
                    ACC: tl.constexpr):
    # grad_w[b, g, t, p] = sum over channels c = r*G + g of go[b, c, p] * x[b, c, p + offset(t)]
    pid_bgt = tl.program_id(0)
    pid_p = tl.program_id(1)
    t = pid_bgt % 9
    bg = pid_bgt // 9
    b = bg // G
    g = bg % G
    hw = H * W
    offs = pid_p * BLOCK + tl.arange(0, BLOCK)
    inside = offs < hw
    i = offs // W
    j = offs % W
    ii = i + (t // 3 - 1)
    jj = j + (t % 3 - 1)
    m = inside & (ii >= 0) & (ii < H) & (jj >= 0) & (jj < W)
    acc = tl.zeros([BLOCK], dtype=ACC)
    for r in range(0, C // G):
        plane = (b * C + r * G + g).to(tl.int64) * hw
        gv = tl.load(go_ptr + plane + offs, mask=inside, other=0.0).to(ACC)
        xv = tl.load(x_ptr + plane + ii * W + jj, mask=m, other=0.0).to(ACC)
        acc += gv * xv
    tl.store(gw_ptr + pid_bgt.to(tl.int64) * hw + offs, acc.to(gw_ptr.dtype.element_ty),
             mask=inside)


def _grid(planes, hw):
    return (planes, triton.cdiv(hw, BLOCK))


def _acc(t):
    """float32 accumulation, float64 for float64 inputs (gradcheck)."""
    return tl.float64 if t.dtype == torch.float64 else tl.float32


def ska_triton_forward(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Small-kernel aggregation with the fused kernel.

    Args:
        x (torch.Tensor): (B, C, H, W) contiguous features.
        w (torch.Tensor): (B, G, 9, H, W) contiguous per-pixel kernels, G dividing C.

    Returns:
        torch.Tensor: (B, C, H, W) aggregated features.
    """
    b, c, h, wd = x.shape
    out = torch.empty_like(x)
    _ska_taps_kernel[_grid(b * c, h * wd)](x, w, out, c, w.shape[1], h, wd, TRANSPOSE=False,
                                           BLOCK=BLOCK, ACC=_acc(x))
    return out


def ska_triton_backward(grad_out: torch.Tensor, x: torch.Tensor, w: torch.Tensor,
                        need_x: bool = True, need_w: bool = True
                        ) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    """Gradients of the fused aggregation: one kernel launch for each gradient wanted.

    Args:
        grad_out (torch.Tensor): Contiguous (B, C, H, W) output gradient.
        x (torch.Tensor): Contiguous (B, C, H, W) input saved by the forward.
        w (torch.Tensor): Contiguous (B, G, 9, H, W) kernels saved by the forward.
        need_x (bool): Launch the input-gradient kernel. Defaults to True.
        need_w (bool): Launch the kernel-gradient kernel. Defaults to True.

    Returns:
        tuple: ``(grad_x, grad_w)``, each a tensor shaped like its input, or None when
        not wanted.
    """
    b, c, h, wd = x.shape
    groups = w.shape[1]
    grad_x = grad_w = None
    if need_x:
        grad_x = torch.empty_like(x)
        _ska_taps_kernel[_grid(b * c, h * wd)](grad_out, w, grad_x, c, groups, h, wd,
                                               TRANSPOSE=True, BLOCK=BLOCK, ACC=_acc(x))
    if need_w:
        grad_w = torch.empty_like(w)
        _ska_bwd_w_kernel[_grid(b * groups * 9, h * wd)](grad_out, x, grad_w, c, groups, h, wd,
                                                          BLOCK=BLOCK, ACC=_acc(x))
    return grad_x, grad_w


class _SKATriton(torch.autograd.Function):

    @staticmethod
    def forward(ctx, x, w):
        x, w = x.contiguous(), w.contiguous()
        ctx.save_for_backward(x, w)
        return ska_triton_forward(x, w)

    @staticmethod
    def backward(ctx, grad_out):
        x, w = ctx.saved_tensors
        return ska_triton_backward(grad_out.contiguous(), x, w, *ctx.needs_input_grad[:2])


def ska_triton(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Small-kernel aggregation by the fused kernels, differentiable.

    Args:
        x (torch.Tensor): (B, C, H, W) features (CUDA, or CPU under
            ``TRITON_INTERPRET=1``).
        w (torch.Tensor): (B, G, 9, H, W) per-pixel kernels, G dividing C.

    Returns:
        torch.Tensor: (B, C, H, W) aggregated features.
    """
    return _SKATriton.apply(x, w)
