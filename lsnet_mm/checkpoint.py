"""Every checkpoint the project reads goes through this module.

Reading is built on mmengine's :class:`~mmengine.runner.CheckpointLoader`, so any
path mmengine accepts works: local files, ``http(s)://`` URLs (downloaded once to
the torch hub cache, ``$TORCH_HOME/hub/checkpoints``), ``s3://``, ``open-mmlab://``
and the other registered prefixes. Whatever the source, the file is unpickled
with ``weights_only=True``: pickled code is never executed. What mmengine's own
checkpoints legitimately hold (message-hub history buffers with numpy arrays,
argparse namespaces of released training runs, config dicts) is allow-listed class
by class in :func:`allow_checkpoint_globals`, which ``import lsnet_mm`` calls, so
mmengine's ``load_from``, ``--resume`` and the inferencers work on torch >= 2.6.

The module also holds the conversions of released files:

* :func:`imagenet_to_backbone` - the authors' ImageNet checkpoints: classifier and
  attention index buffers dropped, 4x4 attention-bias tables resized to the 14x14
  grid used downstream;
* :func:`upgrade_state_dict` / :func:`convert_released_checkpoint` - the released
  mmdet 2.28 detectors and mmseg 0.30 segmentors for mmdet 3 / mmseg 1;

and the checks of a checkpoint against a model (:func:`check_state_dict_fits`), of its
values (:func:`check_state_dict_finite`: no NaN or inf) and of a work dir before
resuming (:func:`find_resume_checkpoint`).
"""
import argparse
import contextlib
import contextvars
import glob
import math
import os
import os.path as osp
import pickle
import re
import urllib.error
import warnings
from collections import OrderedDict
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from torch import nn

#: Side of the attention-bias grid the downstream models use (the released ImageNet
#: models use 4x4 at 224 px input).
BIAS_RESOLUTION = 14


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message names the file, why and the fix."""


# --------------------------------------------------------------------------- reading

def _numpy_globals() -> list:
    out = [np.ndarray, np.dtype]
    for mod in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        try:
            m = __import__(mod, fromlist=['_reconstruct', 'scalar'])
        except ImportError:  # pragma: no cover - depends on the numpy version
            continue
        out += [m._reconstruct, m.scalar]
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
        f'Unsupported global: checkpoint asks for getattr('
        f'{getattr(obj, "__name__", type(obj).__name__)}, {name!r}), which the weights-only '
        f'allow-list does not permit')


def allow_checkpoint_globals() -> None:
    """Allow-list, for weights-only loading, the classes mmengine checkpoints hold.

    Adds to :func:`torch.serialization.add_safe_globals`: ``argparse.Namespace``,
    ``OrderedDict``, numpy arrays, scalars and dtypes, mmengine's ``HistoryBuffer`` (and
    ``getattr`` restricted to its statistics methods) and ``ConfigDict``.
    """
    from mmengine.config import ConfigDict
    from mmengine.logging import HistoryBuffer
    allowed = [argparse.Namespace, OrderedDict, *_numpy_globals(), HistoryBuffer, ConfigDict,
               (_checkpoint_getattr, 'builtins.getattr')]
    torch.serialization.add_safe_globals(allowed)


@contextlib.contextmanager
def _weights_only_loading():
    """Force ``torch.load(weights_only=True)`` in mmengine's loaders.

    They call ``torch.load`` without the argument.
    """
    saved = {k: os.environ.get(k) for k in ('TORCH_FORCE_WEIGHTS_ONLY_LOAD',
                                            'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD')}
    os.environ['TORCH_FORCE_WEIGHTS_ONLY_LOAD'] = '1'
    os.environ.pop('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', None)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


#: What torch's weights-only unpickler says when a real pickle asks for a Python object
#: it does not allow: a global (``module.name`` of Python identifiers; builtins without
#: the module, e.g. ``GLOBAL exec``) that is not listed or whose module (os, posix,
#: subprocess...) is blocked, or a call / a new object of a class or function outside
#: the allow-list. Random bytes also reach these checks (``GLOBAL .`` from two newlines,
#: "unrecognized function 5" from a number on the stack), so the name must be made of
#: identifiers and the object a class or function; anything else is a file the
#: unpickler cannot parse, i.e. not a PyTorch checkpoint.
_REFUSED_OBJECT = re.compile(
    r'GLOBAL [A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*(?:\s|$)'
    r'|(?:unrecognized function|allowlisted.*but got) '
    r'<(?:class|function|built-in function|built-in method|bound method|method) ')


def _unpickling_reason(error: Exception) -> str:
    """The unpickler's own reason for a failed weights-only load.

    torch wraps it (``raise ... from None``, the original kept as ``__context__``) in
    advice to retry with ``weights_only=False``, which is wrong for a damaged or
    untrusted file; this returns the original first line, e.g. "Unsupported operand 95"
    or "Trying to load unsupported GLOBAL posix.system whose module posix is blocked."
    """
    raw = error.__context__ if isinstance(error.__context__, pickle.UnpicklingError) else error
    text = str(raw)
    m = re.search(r'WeightsUnpickler error:\s*(\S.*)', text, re.S)
    if m:  # no original attached: the part of torch's message after its advice
        text = m.group(1)
    text = text.strip()
    if not text:
        return type(error).__name__
    return text.splitlines()[0].split(' Please use `torch.serialization')[0]


_WHAT = contextvars.ContextVar('lsnet_mm_checkpoint_what', default='checkpoint')


def _read(load: Callable, filename: str, map_location) -> dict:
    """``load(filename, map_location)`` weights-only, its failures as CheckpointError."""
    what = _WHAT.get()
    allow_checkpoint_globals()
    try:
        with _weights_only_loading(), warnings.catch_warnings():
            # random bytes read as a pickle of "protocol 235": not worth a warning, the
            # error below says what the file is
            warnings.filterwarnings('ignore', message='Detected pickle protocol')
            ckpt = load(filename, map_location)
    except CheckpointError:
        raise
    except pickle.UnpicklingError as e:
        reason = _unpickling_reason(e)
        if _REFUSED_OBJECT.search(reason):
            raise CheckpointError(
                f'{what} {filename!r} holds Python objects outside the weights-only '
                f'allow-list and was not loaded, since loading it could run code from the '
                f'file. If you trust it, re-save its state dict only: {reason}') from e
        raise CheckpointError(
            f'{what} {filename!r} is not a PyTorch checkpoint (truncated, corrupted or '
            f'another format): {reason}') from e
    except urllib.error.URLError as e:  # an OSError, but no verdict on the file's content
        raise CheckpointError(
            f'{what} {filename!r} could not be downloaded: {e}. Check the URL and the network '
            f'connection, or download the file yourself and give its local path.') from e
    except Exception as e:
        # the unpickler and the zip reader fail in many ways on a damaged or foreign file
        # (EOFError, IndexError "pop from empty list", KeyError, struct.error, a zip
        # without data.pkl, UnicodeDecodeError, MemoryError...)
        first = str(e).splitlines()[0] if str(e) else ''
        raise CheckpointError(
            f'{what} {filename!r} is not a PyTorch checkpoint (truncated, corrupted or '
            f'another format): {type(e).__name__}: {first}') from e
    if not isinstance(ckpt, dict):
        raise CheckpointError(f'{what} {filename!r} holds a {type(ckpt).__name__}, not a dict '
                              f'of tensors or a checkpoint dict')
    return ckpt


def _checked_local(filename: str, map_location=None) -> dict:
    """Mmengine's local-file loader with a clear error for a missing file."""
    from mmengine.runner.checkpoint import load_from_local
    if not osp.isfile(osp.expanduser(filename)):
        raise CheckpointError(
            f'{_WHAT.get()} not found: {filename!r} (cwd {os.getcwd()!r}). Download it '
            f'(README, "Pretrained weights"; docs/detection.md for the released detectors) '
            f'and put it there, or point the config at its real path.')
    return _read(load_from_local, filename, map_location)


def _checked_http(filename: str, map_location=None) -> dict:
    """Mmengine's http(s) loader (download to the torch hub cache), checked."""
    from mmengine.runner.checkpoint import load_from_http
    return _read(load_from_http, filename, map_location)


# mmengine logs the loader's name after its first 10 characters ("load_from_")
_checked_local.__name__ = 'load_from_local'
_checked_http.__name__ = 'load_from_http'


def register_checkpoint_loaders() -> None:
    """Make mmengine's ``CheckpointLoader`` read local files and URLs through this module.

    Every read in the process then is weights-only and fails with a
    :class:`CheckpointError` that names the file and the problem: the runner's
    ``load_from`` and ``resume``, ``init_cfg=dict(type='Pretrained')``, the inferencers.
    What is read, and how it is loaded into a model, stays mmengine's. ``import lsnet_mm``
    calls this.
    """
    from mmengine.runner import CheckpointLoader
    CheckpointLoader.register_scheme('', _checked_local, force=True)
    CheckpointLoader.register_scheme(('http://', 'https://'), _checked_http, force=True)


def is_local_path(filename: str) -> bool:
    """Whether mmengine's CheckpointLoader reads ``filename`` as a local file.

    Args:
        filename (str): A path or URL.

    Returns:
        bool: True for a plain local path.
    """
    from mmengine.runner import CheckpointLoader
    from mmengine.runner.checkpoint import load_from_local
    return CheckpointLoader._get_checkpoint_loader(str(filename)) in (load_from_local,
                                                                       _checked_local)


def load_checkpoint(filename, map_location='cpu', what: str = 'checkpoint') -> dict:
    """Read a checkpoint from any path mmengine supports, weights-only.

    Args:
        filename (str | os.PathLike): A local path, an ``http(s)://`` URL (cached in
            the torch hub cache) or any prefix registered with mmengine's
            ``CheckpointLoader``.
        map_location (str | torch.device): Where to put the tensors. Defaults to 'cpu'.
        what (str): How error messages call the file, e.g. 'LSNet pretrained checkpoint'.

    Returns:
        dict: The checkpoint as saved.

    Raises:
        CheckpointError: The file is missing (or cannot be downloaded), truncated, not a
            PyTorch checkpoint, holds no dict, or asks for Python objects outside the
            allow-list.
    """
    from mmengine.runner import CheckpointLoader
    filename = os.fspath(filename)
    token = _WHAT.set(what)
    try:
        if is_local_path(filename):
            return _checked_local(filename, map_location)
        return _read(lambda f, m: CheckpointLoader.load_checkpoint(f, m, logger='current'),
                     filename, map_location)
    finally:
        _WHAT.reset(token)


def extract_state_dict(ckpt: dict,
                       filename: str = 'checkpoint') -> 'OrderedDict[str, torch.Tensor]':
    """The weights of a checkpoint dict.

    Args:
        ckpt (dict): A loaded checkpoint.
        filename (str): Its name, for the error message.

    Returns:
        OrderedDict: The tensors under "model", "state_dict", "model_ema" or at the top
        level, with any DataParallel ``module.`` prefix removed.
    """
    for key in ('model', 'state_dict', 'model_ema'):
        if isinstance(ckpt.get(key), dict):
            sd = ckpt[key]
            break
    else:
        sd = ckpt
    if not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f'{filename!r} has no state dict of tensors under "model", '
                              f'"state_dict" or at the top level (keys: {list(ckpt)[:8]})')
    return OrderedDict((k[7:] if k.startswith('module.') else k, v) for k, v in sd.items())


def load_state_dict(filename, what: str = 'checkpoint') -> 'OrderedDict[str, torch.Tensor]':
    """:func:`load_checkpoint` followed by :func:`extract_state_dict`, on the CPU."""
    return extract_state_dict(load_checkpoint(filename, 'cpu', what), str(filename))


# --------------------------------------------------------------------------- conversion

def resize_attention_biases(table: torch.Tensor, resolution: int) -> torch.Tensor:
    """Resize an attention-bias table to another grid.

    Args:
        table (torch.Tensor): ``(num_heads, r * r)`` biases of an r x r grid.
        resolution (int): The side of the new grid.

    Returns:
        torch.Tensor: ``(num_heads, resolution ** 2)``, bicubically interpolated.
    """
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


def imagenet_to_backbone(sd: Dict[str, torch.Tensor],
                         resolution: int = BIAS_RESOLUTION) -> 'OrderedDict[str, torch.Tensor]':
    """Convert released ImageNet weights to a backbone state dict.

    Args:
        sd (dict): The released classifier's state dict.
        resolution (int): Side of the attention-bias grid of the backbone.

    Returns:
        OrderedDict: Without the classifier (``head``, ``head_dist``) and the index
        buffers (the model builds its own), bias tables resized to ``resolution``.
    """
    out = OrderedDict()
    for k, v in sd.items():
        if k.startswith(('head.', 'head_dist.', 'dist_head.')) or k.endswith('attention_bias_idxs'):
            continue
        if k.endswith('attention_biases'):
            v = resize_attention_biases(v, resolution)
        out[k] = v
    return out


def read_backbone_weights(filename,
                          prefix: Optional[str] = None) -> 'OrderedDict[str, torch.Tensor]':
    """Backbone weights from a released ImageNet file or a downstream checkpoint.

    Args:
        filename (str): Any path :func:`load_checkpoint` reads.
        prefix (str, optional): Keep only keys under this prefix, with it removed.
            Defaults to ``'backbone.'`` when the file holds such keys (a detector or
            segmentor), else no prefix (an ImageNet classifier).

    Returns:
        OrderedDict: A state dict in the backbone's own names (see
        :func:`imagenet_to_backbone`).
    """
    sd = load_state_dict(filename, what='LSNet pretrained checkpoint')
    if prefix is None and any(k.startswith('backbone.') for k in sd):
        prefix = 'backbone.'
    if prefix:
        sd = OrderedDict((k[len(prefix):], v) for k, v in sd.items() if k.startswith(prefix))
    return imagenet_to_backbone(sd, BIAS_RESOLUTION)


#: (pattern, replacement) applied in order to the keys of released mmdet 2.28 / mmseg
#: 0.30 files. The modules of these configs kept their parameter names from mmdet 2.28
#: to 3.x and from mmseg 0.30 to 1.x (RetinaHead, RPNHead, Shared2FCBBoxHead,
#: FCNMaskHead, FPN, FPNHead), so it is empty; it is the one place to add renames.
LEGACY_RENAMES: List[Tuple[str, str]] = []


def upgrade_state_dict(sd: Dict[str, torch.Tensor],
                       keep: Optional[Sequence[str]] = None) -> 'OrderedDict[str, torch.Tensor]':
    """Normalise a released mmdet 2.28 / mmseg 0.30 state dict for mmdet 3 / mmseg 1.

    Args:
        sd (dict): The checkpoint's state dict (``module.`` prefixes removed).
        keep (Sequence[str], optional): Top-level modules to keep, e.g.
            ``('backbone', 'neck')`` to drop the heads.

    Returns:
        OrderedDict: Without EMA copies, renamed by :data:`LEGACY_RENAMES`, LSNet
        attention tables at the 14x14 grid (index buffers of another size dropped).
    """
    out = OrderedDict()
    for k, v in sd.items():
        if k.startswith('ema_') or '.ema_' in k:  # EMA copies made by mmdet 2's EMAHook
            continue
        for pat, rep in LEGACY_RENAMES:
            k = re.sub(pat, rep, k)
        if keep and k.split('.', 1)[0] not in keep:
            continue
        if k.startswith('backbone.') and k.endswith('attention_biases'):
            v = resize_attention_biases(v, BIAS_RESOLUTION)
        if k.startswith('backbone.') and k.endswith('attention_bias_idxs') and \
                tuple(v.shape) != (BIAS_RESOLUTION ** 2,) * 2:
            continue  # the model builds its own index table for the 14x14 grid
        out[k] = v
    if not out:
        raise CheckpointError('nothing left after conversion' +
                              (f' (kept only {list(keep)})' if keep else ''))
    return out


def convert_released_checkpoint(src, dst, keep: Optional[Sequence[str]] = None
                                ) -> 'OrderedDict[str, torch.Tensor]':
    """Convert a released detector or segmentor file into an mmengine checkpoint.

    Args:
        src (str): The released file (any path :func:`load_checkpoint` reads).
        dst (str): Where to write ``dict(state_dict=..., meta=...)``.
        keep (Sequence[str], optional): See :func:`upgrade_state_dict`.

    Returns:
        OrderedDict: The converted state dict. ``meta.dataset_meta.classes`` is kept
        from the file's ``CLASSES`` (and ``PALETTE``) when all modules are kept.
    """
    ckpt = load_checkpoint(src, what='released checkpoint')
    sd = extract_state_dict(ckpt, str(src))
    if not any(k.startswith(('backbone.', 'neck.')) for k in sd):
        raise CheckpointError(
            f'{src!r} is not a detector or segmentor checkpoint (no "backbone." keys; first '
            f'keys: {list(sd)[:4]}). For an ImageNet checkpoint use --imagenet.')
    out = upgrade_state_dict(sd, keep)
    meta = ckpt.get('meta') if isinstance(ckpt.get('meta'), dict) else {}
    meta = {k: v for k, v in meta.items()
            if k in ('CLASSES', 'PALETTE', 'mmdet_version', 'mmseg_version', 'epoch', 'iter')}
    if 'CLASSES' in meta and keep is None:
        meta['dataset_meta'] = dict(classes=tuple(meta['CLASSES']))
        if meta.get('PALETTE') is not None:
            meta['dataset_meta']['palette'] = [tuple(c) for c in meta['PALETTE']]
    meta['converted_from'] = str(src)
    torch.save(dict(state_dict=out, meta=meta), dst)
    return out


# --------------------------------------------------------------------------- checks

def non_finite_tensors(tensors: Iterable[Tuple[str, torch.Tensor]]) -> List[Tuple[str, int, int]]:
    """The floating-point tensors that hold NaN or infinite values.

    Args:
        tensors (Iterable[tuple[str, torch.Tensor]]): ``(name, tensor)`` pairs, e.g. a
            state dict's ``items()`` or a model's ``named_parameters()``.

    Returns:
        list[tuple[str, int, int]]: ``(name, non-finite values, all values)`` for each
        tensor with a NaN or an infinity (in the order given, per device); empty when
        all are finite.
    """
    by_device = {}  # one host sync per device, not per tensor (GPU runs)
    for name, t in tensors:
        if torch.is_tensor(t) and (t.is_floating_point() or t.is_complex()):
            by_device.setdefault(t.device, []).append((name, t.detach()))
    bad = set()
    for items in by_device.values():
        finite = torch.stack([torch.isfinite(t).all() for _, t in items]).tolist()
        bad.update(name for (name, _), ok in zip(items, finite) if not ok)
    out = []
    for items in by_device.values():
        for name, t in items:
            if name in bad:
                out.append((name, int(t.numel() - torch.isfinite(t).sum()), t.numel()))
    return out


def describe_non_finite(found: List[Tuple[str, int, int]], limit: int = 3) -> str:
    """``found`` of :func:`non_finite_tensors` as text: the first tensors and a count.

    Args:
        found (list[tuple[str, int, int]]): ``(name, non-finite, all)`` triples.
        limit (int): How many tensors to name. Defaults to 3.

    Returns:
        str: e.g. "2 tensors: backbone.x.weight (5 of 64 values), neck.y.bias (1 of 8)".
    """
    named = ', '.join(f'{n} ({bad} of {total} values)' for n, bad, total in found[:limit])
    more = f', and {len(found) - limit} more' if len(found) > limit else ''
    return f'{len(found)} tensor{"s" if len(found) != 1 else ""}: {named}{more}'


def check_state_dict_finite(sd: Dict[str, torch.Tensor], filename: str = 'checkpoint',
                            what: str = 'checkpoint') -> None:
    """Raise unless every floating-point tensor of ``sd`` is finite.

    Args:
        sd (dict): A state dict.
        filename (str): The checkpoint's name, for the message.
        what (str): How the message calls it ('checkpoint', 'resume checkpoint', ...).

    Raises:
        CheckpointError: Names the tensors holding NaN or infinite values.
    """
    found = non_finite_tensors(sd.items())
    if found:
        raise CheckpointError(
            f'{what} {filename!r} holds non-finite weights (NaN or inf) in '
            f'{describe_non_finite(found)}; it was saved by a training run that diverged '
            f'and its predictions would be meaningless. Use a checkpoint from before the '
            f'divergence (see docs/robustness.md, "Training and checkpoints").')


_CLS_KEY = re.compile(
    r'(retina_cls|conv_cls|fc_cls|conv_logits|conv_seg|atss_cls|gfl_cls)\.(weight|bias)$')


def _num_classes_of(model: nn.Module, key: str) -> Tuple[Optional[str], Optional[int]]:
    """The innermost module above parameter ``key`` that has ``num_classes``."""
    parts = key.split('.')[:-1]
    for n in range(len(parts), 0, -1):
        name = '.'.join(parts[:n])
        try:
            mod = model.get_submodule(name)
        except AttributeError:
            continue
        if isinstance(getattr(mod, 'num_classes', None), int):
            return name, mod.num_classes
    return None, None


def _implied_classes(model_n: int, ckpt_n: int, cfg_n: Optional[int]) -> Optional[int]:
    """Classes a classifier with ``ckpt_n`` outputs implies.

    The model's ``model_n`` outputs stand for ``cfg_n`` classes (sigmoid heads k*C,
    softmax heads C+1).
    """
    if cfg_n and model_n % cfg_n == 0 and ckpt_n % (model_n // cfg_n) == 0:
        return ckpt_n // (model_n // cfg_n)
    if cfg_n and model_n == cfg_n + 1:
        return ckpt_n - 1
    return None


def compare_state_dict(model: nn.Module, sd: Dict[str, torch.Tensor]) -> dict:
    """How a state dict differs from a model's.

    Args:
        model (nn.Module): The model (a wrapper's ``module`` is used).
        sd (dict): The state dict to load.

    Returns:
        dict: ``missing``, ``unexpected`` and ``shape`` (keys of mismatched shape) lists;
        ``heads``: for each classifier of mismatched shape, a description naming the
        head, its ``num_classes`` and the number of classes the checkpoint implies.
        LSNet's ``attention_bias_idxs`` index buffers may be absent: the model builds them.
    """
    model = getattr(model, 'module', model)
    own = model.state_dict()
    missing = [k for k in own if k not in sd and not k.endswith('attention_bias_idxs')]
    unexpected = [k for k in sd if k not in own]
    shape = [k for k in sd if k in own and tuple(sd[k].shape) != tuple(own[k].shape)]
    heads = []
    for k in shape:
        if not _CLS_KEY.search(k):
            continue
        head, n = _num_classes_of(model, k)
        implied = _implied_classes(own[k].shape[0], sd[k].shape[0], n)
        heads.append(f'{k} {tuple(sd[k].shape)} in the checkpoint vs {tuple(own[k].shape)} '
                     f'in the model' + (f' ({head}.num_classes={n}' if head else '')
                     + (f', the checkpoint implies num_classes={implied})' if implied
                        else (')' if head else '')))
    return dict(missing=missing, unexpected=unexpected, shape=shape, heads=heads,
                own_shapes={k: tuple(own[k].shape) for k in shape})


def check_state_dict_fits(model: nn.Module, sd: Dict[str, torch.Tensor],
                          filename: str = 'checkpoint', what: str = 'checkpoint') -> None:
    """Raise unless ``sd`` loads into ``model`` with nothing missing, extra or mis-shaped.

    Args:
        model (nn.Module): The model.
        sd (dict): The state dict.
        filename (str): The checkpoint's name, for the message.
        what (str): How the message calls it ('checkpoint', 'resume checkpoint', ...).

    Raises:
        CheckpointError: Names a classifier trained for another number of classes as such
            (with the head's ``num_classes``), else lists the keys that differ.
    """
    diff = compare_state_dict(model, sd)
    if not (diff['missing'] or diff['unexpected'] or diff['shape']):
        return
    if diff['heads']:
        raise CheckpointError(
            f'{what} {filename!r} was trained for a different number of classes than the '
            f'model: ' + '; '.join(diff['heads']) + '. Use the config that matches the '
            'checkpoint or set num_classes accordingly; to fine-tune on other classes, '
            'start a training run with load_from=CHECKPOINT (the heads are then skipped).')
    lines = []
    if diff['shape']:
        lines.append('shape mismatch: ' + '; '.join(
            f'{k} {tuple(sd[k].shape)} vs model {diff["own_shapes"][k]}'
            for k in diff['shape'][:5]))
    if diff['missing']:
        lines.append(f'missing in the checkpoint ({len(diff["missing"])}): {diff["missing"][:5]}')
    if diff['unexpected']:
        lines.append(f'unexpected in the checkpoint ({len(diff["unexpected"])}): '
                     f'{diff["unexpected"][:5]}')
    raise CheckpointError(
        f'{what} {filename!r} does not fit the model of this config: ' + '; '.join(lines)
        + '. Released mmdet 2.x / mmseg 0.x checkpoints can be converted with '
          'tools/model_converters/convert_checkpoint.py; otherwise use the config the '
          'checkpoint was trained with.')


_STEP = re.compile(r'^(epoch|iter)_(\d+)\.pth$')


def _numbered_checkpoints(work_dir: str) -> List[str]:
    """epoch_N.pth / iter_N.pth in ``work_dir``, newest (highest N) first."""
    found = []
    for path in glob.glob(osp.join(work_dir, '*.pth')):
        m = _STEP.match(osp.basename(path))
        if m:
            found.append((int(m.group(2)), osp.getmtime(path), path))
    return [p for _, _, p in sorted(found, reverse=True)]


def find_resume_checkpoint(work_dir: str, logger: str = 'current') -> Optional[str]:
    """The checkpoint ``tools/train.py --resume`` (no path) resumes from.

    Args:
        work_dir (str): The run's work dir.
        logger (str): Where to log checkpoints that were skipped.

    Returns:
        str | None: The file ``last_checkpoint`` names if it loads, else the newest
        ``epoch_*.pth`` / ``iter_*.pth`` that loads ("loads": a readable mmengine
        training checkpoint whose weights are finite); None if the work dir holds none.

    Raises:
        CheckpointError: The work dir holds checkpoints but none of them loads.
    """
    candidates, why = [], []
    pointer = osp.join(work_dir, 'last_checkpoint')
    named = None
    if osp.isfile(pointer):
        with open(pointer) as f:
            named = f.read().strip() or None
        if named is None:
            why.append(f'{pointer} is empty')
        else:
            candidates.append(named)
    for path in _numbered_checkpoints(work_dir):
        if named is None or osp.abspath(path) != osp.abspath(named):
            candidates.append(path)
    for path in candidates:
        if not osp.isfile(path):
            why.append(f'{path} does not exist')
            continue
        try:
            ckpt = load_checkpoint(path)
        except CheckpointError as e:
            why.append(str(e))
            continue
        if not isinstance(ckpt.get('state_dict'), dict) or 'meta' not in ckpt:
            why.append(f'{path} is not an mmengine training checkpoint (no state_dict/meta)')
            continue
        found = non_finite_tensors(ckpt['state_dict'].items())
        if found:  # saved by a diverged run (not by SafeCheckpointHook, which refuses)
            why.append(f'{path} holds non-finite weights ({describe_non_finite(found)})')
            continue
        if why:
            print_log(f'--resume: resuming from {path}; skipped: ' + '; '.join(why),
                      logger=logger, level=30)
        return path
    if why:
        raise CheckpointError(
            f'--resume: no usable checkpoint in {work_dir!r}: ' + '; '.join(why) +
            '. Resume from a given file with --resume PATH, or start over in a new --work-dir.')
    return None
