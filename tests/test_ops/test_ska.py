"""Small-kernel aggregation through the registered op on CPU (the PyTorch path):
values against the direct loop, gradients, dtypes, strides and what backward keeps."""
import re

import pytest
import torch

from lsnet_mm.ops import ska, ska_reference
from lsnet_mm.ops.ska import ska_backward_torch, ska_forward_export

SHAPES = [(1, 8, 5, 7, 1), (2, 16, 6, 4, 2), (2, 24, 9, 11, 3), (1, 32, 1, 1, 4),
          (1, 8, 1, 9, 8)]


def _inputs(b, c, h, w, g, dtype=torch.float32, grad=True):
    x = torch.randn(b, c, h, w, dtype=dtype, requires_grad=grad)
    k = torch.randn(b, g, 9, h, w, dtype=dtype, requires_grad=grad)
    return x, k


@pytest.mark.parametrize('b,c,h,w,g', SHAPES)
def test_torch_path_matches_loop(b, c, h, w, g):
    x, k = _inputs(b, c, h, w, g, torch.float64, grad=False)
    torch.testing.assert_close(ska(x, k, backend='torch'), ska_reference(x, k), rtol=0,
                               atol=1e-12)
    x, k = x.float(), k.float()
    torch.testing.assert_close(ska(x, k), ska_reference(x, k))  # auto on CPU: PyTorch path


def test_channel_uses_group_c_mod_g():
    # Each group's kernel is a constant centre tap equal to its index + 1: channel c must
    # come out scaled by (c % G) + 1, not by (c // (C / G)) + 1.
    c, g = 16, 4
    x = torch.ones(1, c, 3, 3)
    k = torch.zeros(1, g, 9, 3, 3)
    for gi in range(g):
        k[0, gi, 4] = gi + 1
    out = ska(x, k, backend='torch')
    assert [int(out[0, ch, 1, 1]) for ch in range(c)] == [ch % g + 1 for ch in range(c)]


def test_tap_order_and_zero_padding():
    # Tap t = 3u + v reads x[i + u - 1, j + v - 1]: a one-hot kernel on tap 0 (up-left)
    # moves the image down-right by one pixel and fills the first row and column with 0.
    x = torch.arange(1., 13.).view(1, 1, 3, 4).expand(1, 8, 3, 4).contiguous()
    k = torch.zeros(1, 1, 9, 3, 4)
    k[:, :, 0] = 1
    out = ska(x, k)
    assert out[0, 0].tolist() == [[0, 0, 0, 0], [0, 1, 2, 3], [0, 5, 6, 7]]


def test_gradcheck_torch_path():
    x, k = _inputs(2, 8, 4, 5, 2, torch.float64)
    assert torch.autograd.gradcheck(lambda a, b: ska(a, b, backend='torch'), (x, k))


def test_backward_matches_autograd_of_loop():
    x, k = _inputs(2, 16, 5, 6, 2)
    go = torch.randn(2, 16, 5, 6)
    gx_ref, gk_ref = torch.autograd.grad(ska_reference(x, k), (x, k), go)
    gx, gk = ska_backward_torch(go, x.detach(), k.detach())
    torch.testing.assert_close(gx, gx_ref)
    torch.testing.assert_close(gk, gk_ref)
    gx, gk = torch.autograd.grad(ska(x, k), (x, k), go)  # through the registered op
    torch.testing.assert_close(gx, gx_ref)
    torch.testing.assert_close(gk, gk_ref)


def test_grad_of_one_input_only():
    x, k = _inputs(1, 16, 5, 6, 2)
    go = torch.randn(1, 16, 5, 6)
    gx_ref, gk_ref = torch.autograd.grad(ska_reference(x, k), (x, k), go)
    (gx,) = torch.autograd.grad(ska(x, k.detach()), x, go)
    (gk,) = torch.autograd.grad(ska(x.detach(), k), k, go)
    torch.testing.assert_close(gx, gx_ref)
    torch.testing.assert_close(gk, gk_ref)


def test_non_contiguous_inputs_and_grads():
    x0, k = _inputs(2, 16, 6, 7, 2, torch.float64)
    ref = ska_reference(x0, k)
    go = torch.randn_like(ref)
    want = torch.autograd.grad(ref, (x0, k), go)
    # channels-last input and output gradient
    x_cl = x0.detach().to(memory_format=torch.channels_last).requires_grad_()
    out = ska(x_cl, k)
    assert out.is_contiguous()
    torch.testing.assert_close(out, ref)
    got = torch.autograd.grad(out, (x_cl, k), go.to(memory_format=torch.channels_last))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)
    # a slice of a larger tensor (every other channel, an inner window)
    big = torch.randn(2, 32, 8, 9, dtype=torch.float64)
    xs = big[:, ::2, 1:-1, 1:-1]
    assert not xs.is_contiguous()
    torch.testing.assert_close(ska(xs, k.detach()), ska_reference(xs.contiguous(), k.detach()))
    # expanded gradient: out.sum().backward()
    x1 = x0.detach().clone().requires_grad_()
    k1 = k.detach().clone().requires_grad_()
    ska(x1, k1).sum().backward()
    ones = torch.ones_like(ref)
    gx_ref, gk_ref = torch.autograd.grad(ska_reference(x0, k), (x0, k), ones)
    torch.testing.assert_close(x1.grad, gx_ref)
    torch.testing.assert_close(k1.grad, gk_ref)


def test_saves_no_nine_fold_copy():
    """The op keeps only x and w for backward (unfold would keep 9x the input)."""
    x, k = _inputs(2, 64, 32, 32, 8)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t,
                                                  lambda t: t):
        out = ska(x, k, backend='torch')
    assert 0 < sum(saved) <= x.numel() + k.numel()
    out.sum().backward()
    assert x.grad.shape == x.shape and k.grad.shape == k.shape


def test_mixed_precision_inputs():
    # Under autocast the kernels come from GroupNorm in float32 while x is reduced precision.
    x = torch.randn(1, 16, 6, 6).bfloat16().requires_grad_()
    k = torch.randn(1, 2, 9, 6, 6, requires_grad=True)
    out = ska(x, k, backend='torch')
    assert out.dtype == torch.bfloat16
    ref = ska_reference(x.double(), k.double())
    torch.testing.assert_close(out.double(), ref, atol=5e-2, rtol=2e-2)
    out.float().sum().backward()
    assert x.grad.dtype == torch.bfloat16 and k.grad.dtype == torch.float32


def test_export_formulation_matches_loop():
    x, k = _inputs(2, 24, 9, 11, 3, grad=False)
    torch.testing.assert_close(ska_forward_export(x, k), ska_reference(x, k))


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match='do not fit'):
        ska(torch.randn(1, 12, 4, 4), torch.randn(1, 8, 9, 4, 4))
    with pytest.raises(ValueError, match='do not fit'):
        ska(torch.randn(1, 8, 4, 4), torch.randn(1, 1, 9, 4, 5))
    with pytest.raises(ValueError, match=r'\(B, C, H, W\)'):
        ska(torch.randn(8, 4, 4), torch.randn(1, 1, 9, 4, 4))
    with pytest.raises(ValueError, match='backend'):
        ska(torch.randn(1, 8, 4, 4), torch.randn(1, 1, 9, 4, 4), backend='cuda')


def test_onnx_tracing_uses_export_formulation():
    """Under torch.jit.trace (the ONNX exporter's tracer) the op is not in the graph."""
    x, k = _inputs(1, 8, 4, 5, 2, grad=False)
    traced = torch.jit.trace(lambda a, b: ska(a, b), (x, k))
    ops = set(re.findall(r'(aten::\w+|lsnet_mm::\w+)', str(traced.graph)))
    assert 'lsnet_mm::ska' not in ops and {'aten::pad', 'aten::slice'} <= ops
    assert 'aten::addcmul_' not in ops  # the eager tap loop's in-place updates
    torch.testing.assert_close(traced(x, k), ska_reference(x, k))
