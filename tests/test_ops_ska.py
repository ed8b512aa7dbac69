"""Small-kernel aggregation: PyTorch path and Triton kernel against the direct tap loop."""
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from lsnet_mm.ops import ska, ska_reference
from lsnet_mm.ops.ska import ska_backward_torch

SHAPES = [(1, 8, 5, 7, 1), (2, 16, 6, 4, 2), (2, 24, 9, 11, 3), (1, 32, 1, 1, 4)]


@pytest.mark.parametrize('b,c,h,w,g', SHAPES)
def test_torch_path_matches_loop(b, c, h, w, g):
    x = torch.randn(b, c, h, w)
    k = torch.randn(b, g, 9, h, w)
    torch.testing.assert_close(ska(x, k, backend='torch'), ska_reference(x, k))


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


def test_gradcheck_torch_path():
    x = torch.randn(2, 8, 4, 5, dtype=torch.double, requires_grad=True)
    k = torch.randn(2, 2, 9, 4, 5, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: ska(a, b, backend='torch'), (x, k))


def test_backward_matches_autograd_of_loop():
    x = torch.randn(2, 16, 5, 6, requires_grad=True)
    k = torch.randn(2, 2, 9, 5, 6, requires_grad=True)
    go = torch.randn(2, 16, 5, 6)
    gx_ref, gk_ref = torch.autograd.grad(ska_reference(x, k), (x, k), go)
    gx, gk = ska_backward_torch(go, x.detach(), k.detach())
    torch.testing.assert_close(gx, gx_ref)
    torch.testing.assert_close(gk, gk_ref)


def test_saves_no_nine_fold_copy():
    """The op keeps only x and w for backward (unfold would keep 9x the input)."""
    x = torch.randn(2, 64, 32, 32, requires_grad=True)
    k = torch.randn(2, 8, 9, 32, 32, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t,
                                                  lambda t: t):
        out = ska(x, k, backend='torch')
    assert sum(saved) <= x.numel() + k.numel()
    out.sum().backward()
    assert x.grad.shape == x.shape and k.grad.shape == k.shape


def test_mixed_precision_inputs():
    # Under autocast the kernels come from GroupNorm in float32 while x is reduced precision.
    x = torch.randn(1, 16, 6, 6).bfloat16().requires_grad_()
    k = torch.randn(1, 2, 9, 6, 6, requires_grad=True)
    out = ska(x, k, backend='torch')
    assert out.dtype == torch.bfloat16
    ref = ska_reference(x.float(), k)
    torch.testing.assert_close(out.float(), ref, atol=5e-2, rtol=2e-2)
    out.float().sum().backward()
    assert x.grad.dtype == torch.bfloat16 and k.grad.dtype == torch.float32


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match='do not fit'):
        ska(torch.randn(1, 12, 4, 4), torch.randn(1, 8, 9, 4, 4))
    with pytest.raises(ValueError, match='backend'):
        ska(torch.randn(1, 8, 4, 4), torch.randn(1, 1, 9, 4, 4), backend='cuda')


TRITON_CHECK = textwrap.dedent('''
    import torch
    from lsnet_mm.ops import ska, ska_reference
    from lsnet_mm.ops.ska import _use_triton
    torch.manual_seed(0)
    assert _use_triton(torch.zeros(1)), "auto backend should pick Triton under TRITON_INTERPRET=1"
    for b, c, h, w, g in [(1, 8, 5, 7, 1), (2, 16, 6, 4, 2), (1, 24, 17, 19, 3)]:
        x = torch.randn(b, c, h, w, requires_grad=True)
        k = torch.randn(b, g, 9, h, w, requires_grad=True)
        out = ska(x, k, backend='triton')
        ref = ska_reference(x, k)
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
        go = torch.randn_like(out)
        gx, gk = torch.autograd.grad(out, (x, k), go)
        gx_ref, gk_ref = torch.autograd.grad(ref, (x, k), go)
        torch.testing.assert_close(gx, gx_ref, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(gk, gk_ref, atol=1e-5, rtol=1e-5)
    x = torch.randn(1, 4, 3, 4, dtype=torch.double, requires_grad=True)
    k = torch.randn(1, 2, 9, 3, 4, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: ska(a, b, backend='triton'), (x, k),
                                    fast_mode=True)
    print('TRITON_OK')
''')


def test_triton_kernel_in_interpreter():
    pytest.importorskip('triton')
    env = dict(os.environ, TRITON_INTERPRET='1')
    env.pop('LSNET_SKA_TORCH', None)
    r = subprocess.run([sys.executable, '-c', TRITON_CHECK], env=env, capture_output=True,
                       text=True, timeout=600)
    assert 'TRITON_OK' in r.stdout, r.stdout + r.stderr


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
def test_triton_kernel_on_cuda():
    x = torch.randn(2, 64, 33, 47, device='cuda', requires_grad=True)
    k = torch.randn(2, 8, 9, 33, 47, device='cuda', requires_grad=True)
    out = ska(x, k)  # auto: Triton on CUDA
    ref = ska(x, k, backend='torch')
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
    go = torch.randn_like(out)
    g1 = torch.autograd.grad(out, (x, k), go)
    g2 = torch.autograd.grad(ref, (x, k), go)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-4)
