"""The weights-only allow-list: the Python objects mmengine checkpoints legitimately hold.

torch >= 2.6 unpickles with ``weights_only=True`` by default, which refuses every
global outside torch's own list. mmengine's training checkpoints also hold message-hub
history buffers (with numpy arrays and scalars), ``argparse`` namespaces of released
training runs and config dicts; :func:`allow_checkpoint_globals` adds exactly these,
through torch's public :func:`torch.serialization.add_safe_globals`. ``import lsnet_mm``
calls it, so mmengine's own ``load_from``, ``--resume`` and the inferencers read such
files weights-only without any change to mmengine or torch.
"""
import argparse
import pickle
from collections import OrderedDict

import numpy as np
import torch

#: The statistics methods of mmengine's ``HistoryBuffer`` that its pickles name.
HISTORY_BUFFER_STATISTICS = ('min', 'max', 'current', 'mean')


def _numpy_globals() -> list:
    """The numpy functions and classes that pickled arrays, scalars and dtypes name."""
    out = [np.ndarray, np.dtype]
    for name in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        try:
            module = __import__(name, fromlist=['_reconstruct', 'scalar'])
        except ImportError:  # pragma: no cover - depends on the numpy version
            continue
        out += [module._reconstruct, module.scalar]
    # dtype classes (numpy.dtypes.Float64DType, ...) appear in pickles of numpy >= 1.25
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        out += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith('DType')]
    return out


def history_buffer_getattr(obj, name, *default):
    """``getattr`` as far as mmengine checkpoints need it, and no further.

    The message hub's ``HistoryBuffer`` pickles its statistics methods, which protocol 2
    (torch.save's) writes as ``getattr(HistoryBuffer, 'min')`` etc. Only these lookups
    are allowed; any other ``getattr`` in a file is refused.

    Args:
        obj (Any): The object of the lookup.
        name (str): The attribute.
        *default: A default value (never allowed).

    Returns:
        Callable: The statistics method.

    Raises:
        pickle.UnpicklingError: Any other lookup.
    """
    from mmengine.logging import HistoryBuffer
    if obj is HistoryBuffer and name in HISTORY_BUFFER_STATISTICS and not default:
        return getattr(obj, name)
    raise pickle.UnpicklingError(
        f'checkpoint asks for getattr({getattr(obj, "__name__", type(obj).__name__)}, '
        f'{name!r}), which the weights-only allow-list does not permit')


def allow_checkpoint_globals() -> None:
    """Allow-list, for weights-only loading, the classes mmengine checkpoints hold.

    Adds to :func:`torch.serialization.add_safe_globals`: ``argparse.Namespace``,
    ``OrderedDict``, numpy arrays, scalars and dtypes, mmengine's ``HistoryBuffer`` (and
    ``getattr`` restricted to its statistics methods) and ``ConfigDict``.
    """
    from mmengine.config import ConfigDict
    from mmengine.logging import HistoryBuffer
    torch.serialization.add_safe_globals([
        argparse.Namespace, OrderedDict, *_numpy_globals(), HistoryBuffer, ConfigDict,
        (history_buffer_getattr, 'builtins.getattr')])
