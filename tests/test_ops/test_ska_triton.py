"""The Triton SKA kernels: in Triton's interpreter on CPU (a subprocess running
interpreter_checks.py, so that TRITON_INTERPRET=1 is set before triton is imported),
the autotuning configs, and on a CUDA GPU where one is present (backend='triton'
against backend='torch', never 'auto', so a silent fallback cannot pass)."""
import json
import os
import subprocess
import sys

import pytest
import torch
from interpreter_checks import CHECKS

from lsnet_mm.ops import ska, ska_dispatch, ska_reference

triton = pytest.importorskip('triton')
HERE = os.path.dirname(os.path.abspath(__file__))
NAMES = list(CHECKS)
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')


@pytest.fixture(scope='module')
def interpreted():
    """{check name: 'ok' or its traceback} from one interpreter run of every check."""
    env = dict(os.environ, TRITON_INTERPRET='1')
    env.pop('LSNET_SKA_TORCH', None)
    r = subprocess.run([sys.executable, os.path.join(HERE, 'interpreter_checks.py')],
                       env=env, capture_output=True, text=True, timeout=600)
    lines = r.stdout.strip().splitlines()
    assert r.returncode == 0 and lines, r.stdout + r.stderr
    return json.loads(lines[-1])


@pytest.mark.parametrize('name', NAMES)
def test_interpreted_kernels(interpreted, name):
    assert name in interpreted, sorted(interpreted)
    assert interpreted[name] == 'ok', interpreted[name]


def test_interpreter_ran_every_check(interpreted):
    assert set(interpreted) == set(NAMES)


# ----------------------------------------------------------------- autotuning configs
def test_configs_fit_channels_and_plane():
    """On a GPU each call tunes BLOCK and num_warps among tiles whose rows fit C / G."""
    from lsnet_mm.ops import ska_triton
    if ska_triton.INTERPRET:
        pytest.skip('this process runs the interpreter')
    configs = ska_triton._configs()
    for cpg, rows in ((1, 1), (2, 2), (3, 4), (8, 8), (24, 8)):
        for hw in (1, 100, 16800):
            kept = ska_triton._prune(configs, {'CPG': cpg, 'HW': hw})
            assert kept and all(c.kwargs['R'] == rows for c in kept)
            assert len({(c.kwargs['BLOCK'], c.num_warps) for c in kept}) == len(kept)
            tiles = {(c.kwargs['BLOCK'] * c.kwargs['R'], c.num_warps) for c in kept}
            assert tiles <= set(ska_triton.TILES)
            # 2-4 elements per thread (larger tiles spilled registers when compiled)
            assert all(2 <= t // (32 * w) <= 4 for t, w in tiles)
            if hw >= 4096:  # large planes: every tile size is tried
                assert len(kept) == 3
            assert min(c.kwargs['BLOCK'] for c in kept) <= max(64, hw) or len(kept) == 1
    # the grid is one-dimensional: B * G * pixel blocks on axis 0
    grid = ska_triton._grid(8, 16, 100 * 168)({'BLOCK': 256})
    assert grid == (8 * 16 * 66,)


# ------------------------------------------------------------------------- CUDA GPU
def _cuda_case(shape, xd=torch.float32, wd=None, device='cuda'):
    b, c, h, w, g = shape
    gen = torch.Generator(device='cpu').manual_seed(0)
    x = torch.randn(b, c, h, w, generator=gen).to(device, xd).requires_grad_()
    k = torch.randn(b, g, 9, h, w, generator=gen).to(device, wd or xd).requires_grad_()
    go = torch.randn(b, c, h, w, generator=gen).to(device, xd)
    return x, k, go


def _both(x, k, go):
    res = {}
    for backend in ('triton', 'torch'):
        out = ska(x, k, backend=backend)
        res[backend] = (out, *torch.autograd.grad(out, (x, k), go))
    return res  # (not compared with 'auto': a silent fallback would compare torch with itself)


@cuda
@pytest.mark.parametrize('shape', [(1, 8, 1, 1, 1), (2, 64, 33, 47, 8), (1, 24, 17, 19, 3),
                                   (2, 128, 100, 168, 16), (1, 256, 25, 42, 32),
                                   (1, 64, 7, 300, 64)])
@pytest.mark.parametrize('dtypes', [(torch.float32, None), (torch.float16, None),
                                    (torch.bfloat16, None), (torch.bfloat16, torch.float32),
                                    (torch.float16, torch.float32)])
def test_cuda_triton_matches_reference(shape, dtypes):
    # largest error relative to the largest reference value: accumulation in float32 and
    # the rounding of the result (the inputs are the same rounded values)
    tol = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}
    xd, wd = dtypes
    x, k, go = _cuda_case(shape, xd, wd)
    res = _both(x, k, go)
    assert [t.dtype for t in res['triton']] == [xd, xd, wd or xd]
    # against the float64 loop: Triton accumulates in float32, the PyTorch path in
    # the inputs' dtype, so both are compared with the reference, not with each other
    x64, k64 = x.detach().double().requires_grad_(), k.detach().double().requires_grad_()
    ref = ska_reference(x64, k64)
    want = (ref, *torch.autograd.grad(ref, (x64, k64), go.double()))
    for name, got, w in zip(('out', 'grad_x', 'grad_w'), res['triton'], want):
        scale = w.abs().max().item() + 1e-6
        err = (got.double() - w).abs().max().item() / scale
        assert err < tol[got.dtype], (name, err)
    # the PyTorch path on the same inputs (it accumulates in the inputs' dtype)
    for got, other in zip(res['triton'], res['torch']):
        err = (got.double() - other.double()).abs().max().item()
        assert err <= 8 * tol[got.dtype] * (other.double().abs().max().item() + 1e-6)
    assert ska_dispatch.fallback_reason() is None


@cuda
def test_cuda_non_contiguous_and_repeatable():
    x, k, go = _cuda_case((2, 64, 30, 41, 8))
    ref = _both(x, k, go)['torch']
    xc = x.detach().to(memory_format=torch.channels_last).requires_grad_()
    out = ska(xc, k, backend='triton')
    got = (out, *torch.autograd.grad(out, (xc, k), go.to(memory_format=torch.channels_last)))
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    again = (out, *torch.autograd.grad(ska(xc, k, backend='triton'), (xc, k),
                                       go.to(memory_format=torch.channels_last)))
    assert all(torch.equal(a, b) for a, b in zip(got[1:], again[1:]))


@cuda
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason='needs two CUDA GPUs')
def test_cuda_second_device_under_its_guard():
    torch.cuda.set_device(0)
    x, k, go = _cuda_case((2, 32, 20, 30, 4), device='cuda:1')
    res = _both(x, k, go)
    assert res['triton'][0].device == torch.device('cuda:1')
    assert torch.cuda.current_device() == 0
    for a, b in zip(res['triton'], res['torch']):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


@cuda
def test_cuda_compile_fullgraph():
    from lsnet_mm.models.layers import LSConv
    m = LSConv(32).cuda()
    x = torch.randn(2, 32, 40, 56, device='cuda', requires_grad=True)
    eager = m(x)
    (gx_eager,) = torch.autograd.grad(eager.square().sum(), x)
    compiled = torch.compile(m, fullgraph=True)(x)
    (gx,) = torch.autograd.grad(compiled.square().sum(), x)
    torch.testing.assert_close(compiled, eager, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(gx, gx_eager, atol=1e-3, rtol=1e-3)


@cuda
@pytest.mark.skipif(not torch.cuda.is_available()
                    or torch.cuda.get_device_properties(0).total_memory < 60 * 2 ** 30,
                    reason='needs a GPU with 60 GiB')
def test_cuda_more_than_2_31_elements_bf16():
    """64-bit offsets: the last rows of the last image (offsets past 2^31) are right."""
    b, c, h, w, g = 2, 256, 2048, 2100, 32
    assert b * c * h * w > 2 ** 31 and b * g * 9 * h * w > 2 ** 31
    x = torch.randn(b, c, h, w, device='cuda', dtype=torch.bfloat16, requires_grad=True)
    k = torch.randn(b, g, 9, h, w, device='cuda', dtype=torch.bfloat16, requires_grad=True)
    out = ska(x, k, backend='triton')
    go = torch.randn_like(out)
    gx, gk = torch.autograd.grad(out, (x, k), go)
    # rows h-4.. of the last image are exact in a window of rows starting one earlier
    xs = x[-1:, :, h - 5:].detach().double().requires_grad_()
    ks = k[-1:, :, :, h - 5:].detach().double().requires_grad_()
    ref = ska_reference(xs, ks)
    gx_ref, gk_ref = torch.autograd.grad(ref, (xs, ks), go[-1:, :, h - 5:].double())
    for got, want in ((out[-1:, :, h - 4:], ref[:, :, 1:]), (gx[-1:, :, h - 4:], gx_ref[:, :, 1:]),
                      (gk[-1:, :, :, h - 4:], gk_ref[:, :, :, 1:])):
        err = (got.double() - want).abs().max().item() / want.abs().max().item()
        assert err < 1.6e-2, err  # bfloat16 rounding of the results
