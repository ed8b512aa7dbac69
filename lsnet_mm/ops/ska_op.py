"""Small-kernel aggregation as a registered PyTorch operator, ``torch.ops.lsnet_mm.ska``.

``lsnet_mm::ska(x, w, backend)`` and its gradient ``lsnet_mm::ska_backward`` are
``torch.library`` custom ops with fake (meta) implementations and a registered
autograd formula, so ``torch.compile(fullgraph=True)`` and ``torch.export`` see one
opaque op each, never the kernels or the dispatch logic behind them. Their real
implementation picks the Triton kernels or the PyTorch path per call (see
:mod:`lsnet_mm.ops.ska_dispatch`; ``backend`` is 'auto', 'torch' or 'triton').

Outputs are contiguous: the input (channels-last, sliced) and the output gradient
(expanded, channels-last) are made contiguous first, where they are not.
"""
from typing import Tuple

import torch

from . import ska_dispatch
from .ska_torch import ska_backward_torch, ska_forward_torch


def _triton():
    from . import ska_triton
    return ska_triton


@torch.library.custom_op('lsnet_mm::ska', mutates_args=())
def ska_op(x: torch.Tensor, w: torch.Tensor, backend: str) -> torch.Tensor:
    """Small-kernel aggregation (no shape checks: :func:`lsnet_mm.ops.ska` does them).

    Args:
        x (torch.Tensor): (B, C, H, W) features.
        w (torch.Tensor): (B, G, 9, H, W) per-pixel kernels, G dividing C.
        backend (str): 'auto', 'torch' or 'triton'.

    Returns:
        torch.Tensor: (B, C, H, W) contiguous aggregated features, in ``x``'s dtype.
    """
    x, w = x.contiguous(), w.contiguous()
    if not ska_dispatch.use_triton(x, backend):
        return ska_forward_torch(x, w)
    if backend == 'triton':
        return _triton().forward(x, w)
    return ska_dispatch.run_with_fallback('forward', lambda: _triton().forward(x, w),
                                          lambda: ska_forward_torch(x, w))


@ska_op.register_fake
def _ska_fake(x, w, backend):
    torch._check(x.dim() == 4 and w.dim() == 5 and w.shape[2] == 9)
    return x.new_empty(x.shape)


@torch.library.custom_op('lsnet_mm::ska_backward', mutates_args=())
def ska_backward_op(grad_out: torch.Tensor, x: torch.Tensor, w: torch.Tensor, backend: str,
                    need_x: bool, need_w: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    """Gradients of :func:`ska_op` with respect to ``x`` and ``w``.

    Args:
        grad_out (torch.Tensor): (B, C, H, W) output gradient (any strides).
        x (torch.Tensor): (B, C, H, W) features of the forward.
        w (torch.Tensor): (B, G, 9, H, W) kernels of the forward.
        backend (str): 'auto', 'torch' or 'triton', as in the forward.
        need_x (bool): Compute the gradient of ``x``.
        need_w (bool): Compute the gradient of ``w``.

    Returns:
        tuple[torch.Tensor, torch.Tensor]: ``(grad_x, grad_w)`` in the dtypes of ``x``
        and ``w``; an empty tensor in place of one not needed.
    """
    grad_out, x, w = grad_out.contiguous(), x.contiguous(), w.contiguous()

    def torch_path():
        return ska_backward_torch(grad_out, x, w, need_x, need_w)

    if not ska_dispatch.use_triton(x, backend):
        gx, gw = torch_path()
    elif backend == 'triton':
        gx, gw = _triton().backward(grad_out, x, w, need_x, need_w)
    else:
        gx, gw = ska_dispatch.run_with_fallback(
            'backward', lambda: _triton().backward(grad_out, x, w, need_x, need_w), torch_path)
    return (gx if need_x else x.new_empty(0)), (gw if need_w else w.new_empty(0))


@ska_backward_op.register_fake
def _ska_backward_fake(grad_out, x, w, backend, need_x, need_w):
    gx = x.new_empty(x.shape if need_x else (0,))
    gw = w.new_empty(w.shape if need_w else (0,))
    return gx, gw


def _setup_context(ctx, inputs, output):
    x, w, backend = inputs
    ctx.save_for_backward(x, w)
    ctx.backend = backend


def _backward(ctx, grad_out):
    x, w = ctx.saved_tensors
    need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
    gx, gw = torch.ops.lsnet_mm.ska_backward(grad_out, x, w, ctx.backend, need_x, need_w)
    return (gx if need_x else None), (gw if need_w else None), None


ska_op.register_autograd(_backward, setup_context=_setup_context)
