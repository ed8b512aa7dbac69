"""Dispatch of the SKA op: Triton or PyTorch, decided once; fallback only for Triton
build/launch errors (forward and backward), with one warning and the reason as text;
out-of-memory and CUDA errors propagate; backend='triton' never falls back.

The Triton launchers are replaced by stand-ins (the PyTorch path, or a function that
raises), so no kernel runs; ``TRITON_INTERPRET=1`` makes CPU tensors take the Triton
branch of ``backend='auto'``, as on CUDA.
"""
import gc
import os
import warnings
import weakref

import pytest
import torch

from lsnet_mm.ops import SKAFallbackWarning, ska, ska_dispatch, triton_available
from lsnet_mm.ops.ska_torch import ska_backward_torch, ska_forward_torch

triton = pytest.importorskip('triton')


@pytest.fixture
def kernels(monkeypatch):
    """ska_triton with launchers that record their calls and run the PyTorch path."""
    # imported before TRITON_INTERPRET is set: triton.jit reads it when decorating
    from lsnet_mm.ops import ska_triton
    monkeypatch.setenv('TRITON_INTERPRET', '1')
    monkeypatch.delenv('LSNET_SKA_TORCH', raising=False)
    ska_dispatch._reset_dispatch_state()
    calls = []

    def forward(x, w):
        calls.append('forward')
        return ska_forward_torch(x, w)

    def backward(go, x, w, need_x=True, need_w=True):
        calls.append('backward')
        return ska_backward_torch(go, x, w, need_x, need_w)

    monkeypatch.setattr(ska_triton, 'forward', forward)
    monkeypatch.setattr(ska_triton, 'backward', backward)
    ska_triton.calls = calls
    yield ska_triton
    del ska_triton.calls
    ska_dispatch._reset_dispatch_state()


def _compile_error():
    import ast

    from triton.compiler.errors import CompilationError
    return CompilationError('x = tl.load(p)', ast.parse('x = 1').body[0], 'forced failure')


def _out_of_resources():
    from triton.runtime.errors import OutOfResources
    return OutOfResources(232448, 101376, 'shared memory')


def _inputs(grad=True):
    x = torch.randn(2, 16, 5, 6, requires_grad=grad)
    w = torch.randn(2, 2, 9, 5, 6, requires_grad=grad)
    return x, w


def _torch_result(x, w, go):
    out = ska(x, w, backend='torch')
    return (out, *torch.autograd.grad(out, (x, w), go))


def _fallback_warnings(record):
    return [r for r in record if issubclass(r.category, SKAFallbackWarning)]


def _steps_match_torch(x, w, go, want, steps):
    """Run ``steps`` forward+backward passes of ``ska(x, w)``, each equal to ``want``;
    returns the SKA fallback warnings they raised."""
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter('always')
        for _ in range(steps):
            out = ska(x, w)
            got = (out, *torch.autograd.grad(out, (x, w), go))
            for a, b in zip(got, want):
                torch.testing.assert_close(a, b)
    return _fallback_warnings(record)


def test_auto_uses_triton_launchers(kernels):
    x, w = _inputs()
    out = ska(x, w)
    out.backward(torch.randn_like(out))
    assert kernels.calls == ['forward', 'backward']
    assert triton_available() and ska_dispatch.fallback_reason() is None
    ska(x, w, backend='torch').sum().backward()
    assert kernels.calls == ['forward', 'backward']  # 'torch' never asks Triton


def test_forward_compile_error_falls_back_once(kernels, monkeypatch):
    x, w = _inputs()
    go = torch.randn(2, 16, 5, 6)
    want = _torch_result(x, w, go)
    held = []

    def failing_forward(x, w):
        kernels.calls.append('forward')
        scratch = torch.empty(1000)  # a tensor of the failed call's frame
        e = _compile_error()
        held.extend([weakref.ref(scratch), weakref.ref(e)])
        raise e

    monkeypatch.setattr(kernels, 'forward', failing_forward)
    fallbacks = _steps_match_torch(x, w, go, want, steps=3)
    assert len(fallbacks) == 1
    message = str(fallbacks[0].message)
    assert 'forward' in message and 'forced failure' in message
    assert kernels.calls == ['forward']  # later calls and every backward: PyTorch path
    reason = ska_dispatch.fallback_reason()
    assert isinstance(reason, str) and reason.startswith('forward: ')
    assert 'CompilationError' in reason and 'forced failure' in reason
    assert not triton_available()
    gc.collect()
    assert all(r() is None for r in held)  # neither the exception nor its frames are kept


def test_backward_launch_error_falls_back_once(kernels, monkeypatch):
    x, w = _inputs()
    go = torch.randn(2, 16, 5, 6)
    want = _torch_result(x, w, go)

    def failing_backward(go, x, w, need_x=True, need_w=True):
        kernels.calls.append('backward')
        raise _out_of_resources()

    monkeypatch.setattr(kernels, 'backward', failing_backward)
    assert len(_steps_match_torch(x, w, go, want, steps=2)) == 1
    assert kernels.calls == ['forward', 'backward']  # the second step: PyTorch only
    reason = ska_dispatch.fallback_reason()
    assert reason.startswith('backward: ') and 'OutOfResources' in reason
    assert 'shared memory' in reason


@pytest.mark.parametrize('stage', ['forward', 'backward'])
@pytest.mark.parametrize('error', ['oom', 'cuda', 'accelerator', 'value'])
def test_other_errors_propagate(kernels, monkeypatch, stage, error):
    make = {'oom': lambda: torch.cuda.OutOfMemoryError('CUDA out of memory. Tried to '
                                                       'allocate 20.00 GiB'),
            'cuda': lambda: RuntimeError('CUDA error: an illegal memory access was '
                                         'encountered'),
            'accelerator': lambda: torch.AcceleratorError('CUDA error: misaligned address'),
            'value': lambda: ValueError('a bug')}
    if error == 'accelerator' and not hasattr(torch, 'AcceleratorError'):
        pytest.skip('torch.AcceleratorError is torch >= 2.8')
    exc = make[error]()

    def failing(*args, **kwargs):
        raise exc

    monkeypatch.setattr(kernels, stage, failing)
    x, w = _inputs()
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter('always')
        with pytest.raises(type(exc)) as info:
            ska(x, w).sum().backward()
    assert info.value is exc
    assert not _fallback_warnings(record)
    assert ska_dispatch.fallback_reason() is None and triton_available()


@pytest.mark.parametrize('stage', ['forward', 'backward'])
def test_backend_triton_never_falls_back(kernels, monkeypatch, stage):
    def failing(*args, **kwargs):
        raise _compile_error()

    monkeypatch.setattr(kernels, stage, failing)
    x, w = _inputs()
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter('always')
        with pytest.raises(triton.compiler.errors.CompilationError, match='forced failure'):
            ska(x, w, backend='triton').sum().backward()
    assert not _fallback_warnings(record)
    assert ska_dispatch.fallback_reason() is None


def test_settings_read_once(kernels, monkeypatch):
    x, w = _inputs(grad=False)
    ska(x, w)
    assert kernels.calls == ['forward']
    monkeypatch.setenv('LSNET_SKA_TORCH', '1')  # too late: already decided
    ska(x, w)
    assert kernels.calls == ['forward'] * 2
    for _ in range(5):
        triton_available()
    assert ska_dispatch.settings.cache_info().misses == 1  # the environment: read once
    assert ska_dispatch.triton_import_error.cache_info().misses == 1  # import: tried once
    ska_dispatch._reset_dispatch_state()  # (tests only) read again: the switch holds now
    ska(x, w)
    assert kernels.calls == ['forward'] * 2 and not triton_available()
    ska(x, w, backend='triton')  # an explicit backend='triton' is not switched off
    assert kernels.calls == ['forward'] * 3


def test_without_interpreter_cpu_stays_on_pytorch(kernels, monkeypatch):
    monkeypatch.delenv('TRITON_INTERPRET')
    ska_dispatch._reset_dispatch_state()
    x, w = _inputs(grad=False)
    ska(x, w)
    assert kernels.calls == []
    # the kernels are not even imported (torch's own dispatch may import triton)
    assert ska_dispatch.triton_import_error.cache_info().misses == 0
    assert triton_available()



def test_triton_missing(monkeypatch):
    monkeypatch.setattr(ska_dispatch, 'settings', lambda: ska_dispatch._Settings(False, True))
    monkeypatch.setattr(ska_dispatch, 'triton_import_error', lambda: 'ImportError: no triton')
    x, w = _inputs(grad=False)
    assert not triton_available()
    torch.testing.assert_close(ska(x, w), ska_forward_torch(x, w))
    with pytest.raises(RuntimeError, match='Triton cannot be used: ImportError: no triton'):
        ska(x, w, backend='triton')


def test_error_classification():
    from triton.runtime.errors import PTXASError
    is_build = ska_dispatch.is_triton_build_error
    assert is_build(_compile_error()) and is_build(_out_of_resources())
    assert is_build(PTXASError('ptxas fatal: too many registers'))
    assert not is_build(torch.cuda.OutOfMemoryError('CUDA out of memory'))
    assert not is_build(RuntimeError('CUDA error: device-side assert triggered'))
    assert not is_build(RuntimeError('Triton Error [CUDA]: an illegal memory access'))
    assert not is_build(TypeError('bad argument'))
    # a plain RuntimeError raised inside Triton's compiler (an MLIR pass failing) counts;
    # the same error raised anywhere else does not
    for path, want in ((os.path.join('site-packages', 'triton', 'backends', 'nvidia',
                                     'compiler.py'), True),
                       (os.path.join('site-packages', 'triton', 'runtime', 'jit.py'), False),
                       (os.path.join('somewhere', 'else.py'), False)):
        namespace = {}
        exec(compile('def run():\n    raise RuntimeError("PassManager::run failed")\n',
                     os.path.sep + path, 'exec'), namespace)
        try:
            namespace['run']()
        except RuntimeError as e:
            assert is_build(e) is want, path
