"""Which implementation of small-kernel aggregation runs, decided once per process.

The Triton kernels serve CUDA tensors when Triton imports (and CPU tensors when
``TRITON_INTERPRET=1`` runs Triton's interpreter, as CI does); ``LSNET_SKA_TORCH=1``
keeps ``backend='auto'`` on the PyTorch path. The import and both environment
variables are read once, at the first call that needs them.

With ``backend='auto'`` a Triton *compile or launch* error (see
:func:`is_triton_build_error`) in the forward or the backward makes the PyTorch path
serve the rest of the process: one :class:`SKAFallbackWarning` is issued and the
reason is kept as text (no exception object, so no traceback holding tensors).
Out-of-memory and CUDA errors always propagate; ``backend='triton'`` never falls back.
"""
import functools
import os
import traceback
import warnings
from typing import Callable, NamedTuple, Optional, Tuple, TypeVar

import torch

T = TypeVar('T')
# torch.OutOfMemoryError is torch >= 2.5; torch.cuda.OutOfMemoryError is the same class.
_OOM = getattr(torch, 'OutOfMemoryError', torch.cuda.OutOfMemoryError)

#: Longest reason text kept (Triton's compile errors quote kernel source).
MAX_REASON_CHARS = 4000


class SKAFallbackWarning(UserWarning):
    """The Triton SKA kernels failed to build or launch; the PyTorch path serves now."""


class _Settings(NamedTuple):
    torch_only: bool  # LSNET_SKA_TORCH=1
    interpret: bool  # TRITON_INTERPRET=1: Triton's interpreter runs on CPU tensors


class _State:
    fallback_reason: Optional[str] = None
    warned: bool = False


_STATE = _State()


@functools.lru_cache(maxsize=None)
def settings() -> _Settings:
    """The environment switches, read once per process.

    Returns:
        _Settings: ``(torch_only, interpret)``: ``LSNET_SKA_TORCH=1`` and
        ``TRITON_INTERPRET=1``.
    """
    return _Settings(os.environ.get('LSNET_SKA_TORCH') == '1',
                     os.environ.get('TRITON_INTERPRET') == '1')


@functools.lru_cache(maxsize=None)
def triton_import_error() -> Optional[str]:
    """Import the kernels (and Triton) once; CPU-only calls never get here.

    Returns:
        str | None: Why Triton or the kernel module does not import; None when it does.
    """
    try:
        from . import ska_triton  # noqa: F401  (imports triton)
    except Exception as e:  # missing or broken Triton: the PyTorch path serves
        return f'{type(e).__name__}: {e}'
    return None


def _reset_dispatch_state() -> None:
    """Forget the settings read and any fallback (for tests only)."""
    settings.cache_clear()
    triton_import_error.cache_clear()
    _STATE.fallback_reason = None
    _STATE.warned = False


def triton_available() -> bool:
    """Tell whether ``backend='auto'`` may use the Triton kernels.

    Returns:
        bool: True when Triton imports, no Triton build error made this process fall
        back, and the environment does not set ``LSNET_SKA_TORCH=1``.
    """
    return (not settings().torch_only and _STATE.fallback_reason is None
            and triton_import_error() is None)


def fallback_reason() -> Optional[str]:
    """Why this process fell back from Triton to the PyTorch path, if it did.

    Returns:
        str | None: The stage (forward / backward) and the error's type and message.
    """
    return _STATE.fallback_reason


def use_triton(x: torch.Tensor, backend: str) -> bool:
    """Decide the implementation for one call.

    Args:
        x (torch.Tensor): The features of the call.
        backend (str): 'auto', 'torch' or 'triton'.

    Returns:
        bool: True for the Triton kernels.

    Raises:
        RuntimeError: ``backend='triton'`` while Triton does not import.
    """
    if backend == 'torch':
        return False
    if backend == 'triton':
        error = triton_import_error()
        if error is not None:
            raise RuntimeError(f"ska(backend='triton'): Triton cannot be used: {error}")
        return True
    s = settings()
    if s.torch_only or _STATE.fallback_reason is not None:
        return False
    if not (x.is_cuda or (x.device.type == 'cpu' and s.interpret)):
        return False  # (CPU: the kernel module is not imported)
    return triton_import_error() is None


def _triton_error_types() -> Tuple[type, ...]:
    """Triton's own exception classes for build and launch failures (those that exist)."""
    found = []
    for module, names in (('triton.errors', ('TritonError',)),
                          ('triton.compiler.errors', ('CompilationError',)),
                          ('triton.runtime.errors', ('OutOfResources', 'PTXASError',
                                                     'InterpreterError')),
                          ('triton.runtime.autotuner', ('OutOfResources', 'AutotunerError'))):
        try:
            mod = __import__(module, fromlist=list(names))
        except ImportError:
            continue
        found += [getattr(mod, n) for n in names if isinstance(getattr(mod, n, None), type)]
    return tuple(dict.fromkeys(found))


def _raised_by_triton_compiler(e: BaseException) -> bool:
    """Tell whether an error's innermost Python frame is in a Triton ``compiler`` module.

    Triton's MLIR passes fail with a plain RuntimeError ('PassManager::run failed').
    """
    frames = traceback.extract_tb(e.__traceback__)
    if not frames:
        return False
    path = frames[-1].filename.replace('\\', '/')
    return '/triton/' in path and ('/compiler/' in path or path.endswith('/compiler.py'))


def is_triton_build_error(e: BaseException) -> bool:
    """Tell whether an error means "Triton could not build or launch the kernel".

    True for Triton's compile and launch exceptions (``CompilationError``,
    ``OutOfResources``, ``PTXASError``, any other ``TritonError``) and for a plain
    ``RuntimeError`` raised inside Triton's compiler. False for out-of-memory, CUDA
    errors (``torch.AcceleratorError``, "CUDA error" / "Triton Error [CUDA]" messages)
    and everything else, which must propagate.

    Args:
        e (BaseException): The error raised by a kernel launch.

    Returns:
        bool: Whether falling back to the PyTorch path is right.
    """
    if isinstance(e, _OOM):
        return False
    accelerator_error = getattr(torch, 'AcceleratorError', None)
    if accelerator_error is not None and isinstance(e, accelerator_error):
        return False
    if isinstance(e, _triton_error_types()):
        return True
    if type(e) is RuntimeError:
        text = str(e)
        if 'CUDA' in text or 'out of memory' in text:
            return False
        return _raised_by_triton_compiler(e)
    return False


def _describe(e: BaseException) -> str:
    text = f'{type(e).__module__}.{type(e).__qualname__}: {e}'
    return text if len(text) <= MAX_REASON_CHARS else text[:MAX_REASON_CHARS] + ' [...]'


def record_fallback(stage: str, reason: str) -> None:
    """Make ``backend='auto'`` use the PyTorch path from now on; warn the first time.

    Args:
        stage (str): Where Triton failed ('forward' or 'backward').
        reason (str): The error as text.
    """
    first = _STATE.fallback_reason is None
    if first:
        _STATE.fallback_reason = f'{stage}: {reason}'
    if not _STATE.warned:
        _STATE.warned = True
        warnings.warn(f'lsnet_mm: the Triton SKA kernel failed to build or launch in the '
                      f'{stage} ({reason[:500]}); using the PyTorch path from now on',
                      SKAFallbackWarning, stacklevel=3)


def run_with_fallback(stage: str, triton_fn: Callable[[], T],
                      torch_fn: Callable[[], T]) -> T:
    """Run ``triton_fn``; on a Triton build error record it and run ``torch_fn``.

    The PyTorch path runs after the ``except`` block has ended, so the failed call's
    traceback (and the tensors its frames hold) is freed first.

    Args:
        stage (str): 'forward' or 'backward', for the warning.
        triton_fn (Callable): The Triton launch.
        torch_fn (Callable): The PyTorch path computing the same.

    Returns:
        The result of whichever ran.
    """
    try:
        return triton_fn()
    except Exception as e:
        if not is_triton_build_error(e):
            raise
        reason = _describe(e)
    record_fallback(stage, reason)
    return torch_fn()
