"""Safe checkpoint reading and the conversion of released LSNet ImageNet weights.

Checkpoints are always read with ``torch.load(weights_only=True)``: pickled code in
a file is never executed. What mmengine's own checkpoints legitimately hold
(message-hub history buffers with numpy arrays, argparse namespaces of released
training runs) is allow-listed class by class in :func:`allow_checkpoint_globals`.
"""
import argparse
import math
import os
import pickle
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be used, with the reason and the fix in the message."""


def _numpy_globals():
    out = [np.ndarray, np.dtype]
    try:  # numpy >= 1.25 keeps reconstruct under numpy.core.multiarray (numpy._core in 2.x)
        from numpy.core.multiarray import _reconstruct, scalar
        out += [_reconstruct, scalar]
    except ImportError:  # pragma: no cover
        pass
    try:
        from numpy._core.multiarray import _reconstruct as _r2, scalar as _s2
        out += [_r2, _s2]
    except ImportError:  # pragma: no cover
        pass
    # dtype classes (numpy.dtypes.Float64DType, ...) appear in pickles of numpy >= 1.25
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        out += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith('DType')]
    return out


_HISTORY_BUFFER_STATISTICS = ('min', 'max', 'current', 'mean')


def _checkpoint_getattr(obj, name, *default):
    """``getattr`` as far as mmengine checkpoints need it, and no further.

    The message hub's ``HistoryBuffer`` pickles its statistics methods, which protocol 2
    (torch.save's) writes as ``getattr(HistoryBuffer, 'min')`` etc. Only these lookups
    are allowed; any other ``getattr`` in a file is refused.
    """
    from mmengine.logging import HistoryBuffer
    if obj is HistoryBuffer and name in _HISTORY_BUFFER_STATISTICS and not default:
        return getattr(obj, name)
    raise pickle.UnpicklingError(
        f'checkpoint asks for getattr({getattr(obj, "__name__", type(obj).__name__)}, '
        f'{name!r}), which the weights-only allow-list does not permit')


def allow_checkpoint_globals() -> None:
    """Allow-list (for weights-only loading) the classes that mmengine checkpoints hold."""
    allowed = [argparse.Namespace, OrderedDict, *_numpy_globals(),
               (_checkpoint_getattr, 'builtins.getattr')]
    try:
        from mmengine.logging import HistoryBuffer
        allowed.append(HistoryBuffer)
    except ImportError:  # pragma: no cover - mmengine is a dependency
        pass
    try:
        from mmengine.config import ConfigDict
        allowed.append(ConfigDict)
    except ImportError:  # pragma: no cover
        pass
    torch.serialization.add_safe_globals(allowed)


def load_checkpoint_file(path, map_location='cpu', what='checkpoint'):
    """Read a checkpoint with weights-only loading, raising :class:`CheckpointError` for
    a missing, truncated or non-checkpoint file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f'{what} not found: {path!r}. Download it (see README, "Pretrained weights") '
            f'and put it there, or point the config at its real path.')
    allow_checkpoint_globals()
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if 'Weights only load failed' in str(e):
            raise CheckpointError(
                f'{what} {path!r} holds Python objects outside the weights-only allow-list '
                f'and was not loaded, since loading it could run code from the file. If you '
                f'trust it, re-save its state dict only: {e}') from e
        raise CheckpointError(f'{what} {path!r} is not a readable PyTorch checkpoint '
                              f'(corrupted or not a checkpoint): {e}') from e
    except Exception as e:  # the unpickler fails in many ways on a damaged or foreign file
        raise CheckpointError(f'{what} {path!r} is not a readable PyTorch checkpoint '
                              f'(truncated, corrupted or another format): {e}') from e
    if not isinstance(ckpt, dict):
        raise CheckpointError(f'{what} {path!r} holds a {type(ckpt).__name__}, not a dict '
                              f'of tensors or a checkpoint dict')
    return ckpt


def extract_state_dict(ckpt: dict, path='checkpoint') -> 'OrderedDict[str, torch.Tensor]':
    """The weights of a checkpoint: under "model", "state_dict" or at the top level,
    with any DataParallel "module." prefix removed."""
    for key in ('model', 'state_dict', 'model_ema'):
        if isinstance(ckpt.get(key), dict):
            sd = ckpt[key]
            break
    else:
        sd = ckpt
    if not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f'{path!r} has no state dict of tensors under "model", '
                              f'"state_dict" or at the top level (keys: {list(ckpt)[:8]})')
    return OrderedDict((k[7:] if k.startswith('module.') else k, v) for k, v in sd.items())


def resize_attention_biases(table: torch.Tensor, resolution: int) -> torch.Tensor:
    """(nh, r*r) bias table -> (nh, resolution**2) by bicubic interpolation of its grid."""
    nh, n = table.shape
    r = math.isqrt(n)
    if r * r != n:
        raise CheckpointError(f'attention bias table of shape {tuple(table.shape)} is not square')
    if r == resolution:
        return table
    grid = table.reshape(1, nh, r, r).float()
    grid = F.interpolate(grid, size=(resolution, resolution), mode='bicubic',
                         align_corners=False)
    return grid.reshape(nh, resolution * resolution).to(table.dtype)


def imagenet_to_backbone(sd, resolution=14):
    """Released ImageNet weights -> backbone state dict: classifier and index buffers
    dropped (the model builds its own), bias tables resized to the detection grid."""
    out = OrderedDict()
    for k, v in sd.items():
        if k.startswith(('head.', 'head_dist.', 'dist_head.')) or k.endswith('attention_bias_idxs'):
            continue
        if k.endswith('attention_biases'):
            v = resize_attention_biases(v, resolution)
        out[k] = v
    return out
