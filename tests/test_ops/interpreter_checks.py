"""Checks of the Triton SKA kernels in Triton's interpreter, run as a script.

``TRITON_INTERPRET=1 python tests/test_ops/interpreter_checks.py [NAME ...]`` runs the
checks and prints one JSON line ``{check name: "ok" or the traceback}``;
test_ska_triton.py runs it in a subprocess (the variable must be set before triton is
imported) and asserts on each entry. Importing this module imports no Triton (the
tests read ``CHECKS`` for the names). The reference is the direct loop in float64.
"""
import json
import os
import sys
import traceback

import torch

from lsnet_mm.ops import ska, ska_dispatch, ska_reference

# (B, C, H, W, G): 1x1, G = 1, odd sizes, several pixel blocks (BLOCK is 64 when
# interpreted), one channel per group, a width of 1, C / G not a power of 2, and
# C / G = 35 > 16 rows (three channel tiles, the last one masked)
SHAPES = [(1, 8, 1, 1, 1), (1, 8, 5, 7, 1), (2, 16, 6, 4, 2), (1, 24, 17, 19, 3),
          (1, 4, 9, 11, 4), (2, 64, 3, 5, 8), (1, 8, 7, 1, 2), (1, 30, 4, 5, 3),
          (1, 70, 2, 3, 2)]
# (x dtype, w dtype, atol, rtol) against the float64 loop on the same rounded inputs
DTYPES = [(torch.float32, torch.float32, 1e-5, 1e-5), (torch.float16, torch.float16, 1e-2, 2e-3),
          (torch.bfloat16, torch.bfloat16, 8e-2, 1e-2), (torch.bfloat16, torch.float32, 8e-2, 1e-2),
          (torch.float16, torch.float32, 1e-2, 2e-3)]
CHECKS = {}


def check(fn):
    CHECKS[fn.__name__] = fn
    return fn


def _inputs(b, c, h, w, g, xd=torch.float64, wd=None):
    x = torch.randn(b, c, h, w, dtype=torch.float64).to(xd).requires_grad_()
    k = torch.randn(b, g, 9, h, w, dtype=torch.float64).to(wd or xd).requires_grad_()
    return x, k


def _reference(x, k, go):
    """Output and both gradients of the float64 loop (on the same input values)."""
    x64 = x.detach().double().requires_grad_()
    k64 = k.detach().double().requires_grad_()
    out = ska_reference(x64, k64)
    return (out, *torch.autograd.grad(out, (x64, k64), go.double()))


def _compare(got, want, atol, rtol):
    for name, a, b in zip(('out', 'grad_x', 'grad_w'), got, want):
        torch.testing.assert_close(a.double(), b, atol=atol, rtol=rtol,
                                   msg=lambda m, name=name: f'{name}: {m}')


def _triton_result(x, k, go):
    out = ska(x, k, backend='triton')
    return (out, *torch.autograd.grad(out, (x, k), go))


@check
def auto_picks_triton_on_cpu():
    from lsnet_mm.ops import ska_triton
    calls = []
    fwd, bwd = ska_triton.forward, ska_triton.backward
    ska_triton.forward = lambda *a: calls.append('forward') or fwd(*a)
    ska_triton.backward = lambda *a: calls.append('backward') or bwd(*a)
    try:
        x, k = _inputs(1, 8, 3, 4, 2, torch.float32)
        ska(x, k).sum().backward()
    finally:
        ska_triton.forward, ska_triton.backward = fwd, bwd
    assert calls == ['forward', 'backward'], calls


def _shape_check(shape):
    def run():
        x, k = _inputs(*shape)
        go = torch.randn(*shape[:4], dtype=torch.float64)
        _compare(_triton_result(x, k, go), _reference(x, k, go), 1e-12, 1e-12)
    return run


for _shape in SHAPES:
    CHECKS['float64_' + 'x'.join(map(str, _shape))] = _shape_check(_shape)


def _dtype_check(xd, wd, atol, rtol):
    def run():
        for shape in ((2, 16, 6, 7, 2), (1, 24, 9, 11, 3)):
            x, k = _inputs(*shape, xd=xd, wd=wd)
            go = torch.randn(*shape[:4]).to(xd)
            got = _triton_result(x, k, go)
            assert [t.dtype for t in got] == [xd, xd, wd], [t.dtype for t in got]
            _compare(got, _reference(x, k, go), atol, rtol)
    return run


for _xd, _wd, _atol, _rtol in DTYPES:
    CHECKS[f'dtype_{str(_xd)[6:]}_{str(_wd)[6:]}'] = _dtype_check(_xd, _wd, _atol, _rtol)


@check
def non_contiguous_inputs_and_grads():
    x0, k0 = _inputs(2, 16, 6, 7, 2)
    go = torch.randn(2, 16, 6, 7, dtype=torch.float64)
    want = _reference(x0, k0, go)
    # channels-last x and output gradient, kernels as a permuted view
    x = x0.detach().to(memory_format=torch.channels_last).requires_grad_()
    k = k0.detach().permute(0, 1, 2, 4, 3).contiguous().permute(0, 1, 2, 4, 3).requires_grad_()
    assert not x.is_contiguous() and not k.is_contiguous()
    out = ska(x, k, backend='triton')
    got = (out, *torch.autograd.grad(out, (x, k), go.to(memory_format=torch.channels_last)))
    _compare(got, want, 1e-12, 1e-12)
    # a slice of a larger tensor
    big = torch.randn(2, 32, 8, 9, dtype=torch.float64)
    xs = big[:, ::2, 1:-1, 1:-1].requires_grad_()
    got = _triton_result(xs, k0, go)
    _compare(got, _reference(xs, k0, go), 1e-12, 1e-12)
    # expanded gradient (out.sum().backward())
    x1, k1 = x0.detach().clone().requires_grad_(), k0.detach().clone().requires_grad_()
    ska(x1, k1, backend='triton').sum().backward()
    ones = _reference(x0, k0, torch.ones_like(go))
    _compare((ones[0], x1.grad, k1.grad), ones, 1e-12, 1e-12)


@check
def grad_of_one_input_only():
    x, k = _inputs(1, 16, 5, 6, 2)
    go = torch.randn(1, 16, 5, 6, dtype=torch.float64)
    _, gx_ref, gk_ref = _reference(x, k, go)
    (gx,) = torch.autograd.grad(ska(x, k.detach(), backend='triton'), x, go)
    (gk,) = torch.autograd.grad(ska(x.detach(), k, backend='triton'), k, go)
    torch.testing.assert_close(gx, gx_ref, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(gk, gk_ref, atol=1e-12, rtol=1e-12)


@check
def gradcheck_float64():
    def op(a, b):
        return ska(a, b, backend='triton')

    assert torch.autograd.gradcheck(op, _inputs(1, 2, 2, 3, 1))  # every Jacobian entry
    assert torch.autograd.gradcheck(op, _inputs(1, 6, 4, 5, 3), fast_mode=True)


@check
def repeated_backward_bitwise_identical():
    x, k = _inputs(2, 16, 9, 10, 2, torch.float32)
    go = torch.randn(2, 16, 9, 10)
    first, second = _triton_result(x, k, go), _triton_result(x, k, go)
    assert all(torch.equal(a, b) for a, b in zip(first, second))


@check
def compile_fullgraph_with_triton_path():
    x, k = _inputs(1, 8, 4, 5, 2, torch.float32)
    f = torch.compile(lambda a, b: ska(a, b, backend='triton').square().sum(),
                      backend='aot_eager', fullgraph=True)
    got = torch.autograd.grad(f(x, k), (x, k))
    want = torch.autograd.grad(ska(x, k, backend='torch').square().sum(), (x, k))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


@check
def no_fallback_happened():
    assert ska_dispatch.fallback_reason() is None, ska_dispatch.fallback_reason()


def main(names):
    assert os.environ.get('TRITON_INTERPRET') == '1', 'run with TRITON_INTERPRET=1'
    torch.manual_seed(0)
    results = {}
    for name, fn in CHECKS.items():
        if names and name not in names:
            continue
        try:
            fn()
            results[name] = 'ok'
        except Exception:
            results[name] = traceback.format_exc()
    print(json.dumps(results))


if __name__ == '__main__':
    main(sys.argv[1:])
