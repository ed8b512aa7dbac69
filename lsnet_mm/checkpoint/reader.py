"""Reading checkpoints weights-only, with errors that name the file and the fix.

:func:`load_checkpoint` is the project's one explicit reader (the LSNet backbone's
``init_cfg``, the tools' checks, the converter): local files and ``http(s)://`` URLs
(through :func:`~lsnet_mm.checkpoint.fetch_checkpoint` and the torch hub cache) are
unpickled with ``torch.load(weights_only=True)``; other prefixes registered with
mmengine's ``CheckpointLoader`` (``s3://``, ``open-mmlab://``, ...) are read by it.
Pickled code is never executed. A failure is one :class:`CheckpointError` that tells a
missing file, a damaged one and one holding objects outside the allow-list apart
(:func:`~lsnet_mm.checkpoint.file_inspection.inspect_checkpoint_file`).

Nothing here changes how mmengine reads files: its runner, hooks and inferencers keep
their own loaders, which are weights-only through torch's default and the allow-list.
"""
import os
import os.path as osp
import pickle
import shlex
import warnings
from collections import OrderedDict
from typing import List, Optional

import torch

from ..utils.errors import CheckpointError
from .download import cached_checkpoint_path, download_checkpoint, fetch_checkpoint
from .file_inspection import FileContent, inspect_checkpoint_file


def _file_backend(filename: str):
    """The mmengine file backend for ``filename``; None for a prefix without one."""
    from mmengine.fileio import get_file_backend
    try:
        return get_file_backend(filename)
    except (KeyError, ImportError):  # e.g. open-mmlab://, or s3:// without petrel_client
        return None


def is_local_path(filename) -> bool:
    """Whether ``filename`` names a local file (no ``scheme://`` prefix).

    Args:
        filename (str | os.PathLike): A path or URL.

    Returns:
        bool: True when mmengine's file backend for it is the local one.
    """
    from mmengine.fileio import LocalBackend
    return isinstance(_file_backend(os.fspath(filename)), LocalBackend)


def is_url(filename) -> bool:
    """Whether ``filename`` (str or path) is an ``http(s)://`` URL, by mmengine's backend."""
    from mmengine.fileio import HTTPBackend
    return isinstance(_file_backend(os.fspath(filename)), HTTPBackend)


def _torch_load(path: str, map_location):
    with warnings.catch_warnings():
        # random bytes read as a pickle of "protocol 235": not worth a warning, the
        # error says what the file is
        warnings.filterwarnings('ignore', message='Detected pickle protocol')
        return torch.load(path, map_location=map_location, weights_only=True)


def _refused(content: FileContent, error: Exception) -> List[str]:
    """What of a file the weights-only unpickler refused; empty for a damaged file."""
    if content.refused or content.problem or not isinstance(error, pickle.UnpicklingError):
        return content.refused
    # a complete pickle of allowed objects that the unpickler still refused: a call
    # outside the allow-list (e.g. a getattr other than mmengine's)
    return ['allowed objects used in calls the allow-list does not permit']


def _unreadable(what: str, name: str, content: FileContent, error: Exception,
                note: str = '') -> CheckpointError:
    """The error for a file ``torch.load`` failed on, by what the file is."""
    refused = _refused(content, error)
    if refused:
        return CheckpointError(
            f'{what} {name!r} holds Python objects outside the weights-only allow-list '
            f'({", ".join(refused[:5])}) and was not loaded, since loading it could '
            f'run code from the file. If you trust it, re-save its state dict only.{note}')
    first_line = str(error).splitlines()[0] if str(error) else ''
    reason = content.problem or f'{type(error).__name__}: {first_line}'
    return CheckpointError(f'{what} {name!r} is not a PyTorch checkpoint (truncated, corrupted '
                           f'or another format): {reason}.{note}')


def _as_dict(ckpt, what: str, name: str) -> dict:
    if not isinstance(ckpt, dict):
        raise CheckpointError(f'{what} {name!r} holds a {type(ckpt).__name__}, not a dict '
                              f'of tensors or a checkpoint dict')
    return ckpt


def _read_local(path: str, map_location, what: str) -> dict:
    if not osp.isfile(osp.expanduser(path)):
        raise CheckpointError(
            f'{what} not found: {path!r} (cwd {os.getcwd()!r}). Check the path; the released '
            f'LSNet checkpoints and their URLs are listed in docs/model_zoo.md.')
    path = osp.expanduser(path)
    try:
        ckpt = _torch_load(path, map_location)
    except Exception as e:  # a damaged or foreign file fails in many ways
        raise _unreadable(what, path, inspect_checkpoint_file(path), e) from e
    return _as_dict(ckpt, what, path)


def _read_url(url: str, map_location, what: str, setting: Optional[str]) -> dict:
    path = cached_checkpoint_path(url)
    had_copy = osp.isfile(path)
    fetch_checkpoint(url, setting)
    name = f'{url} (cached at {path})'
    try:
        ckpt = _torch_load(path, map_location)
    except Exception as e:
        content = inspect_checkpoint_file(path)
        if not had_copy:  # what was just downloaded and does not load is not kept
            os.remove(path)
            raise _unreadable(what, name, content, e, ' The download was not kept.') from e
        error = _unreadable(what, name, content, e,
                            f' Remove the cached copy with: rm {shlex.quote(path)}')
        if _refused(content, e):
            raise error from e
        try:  # a damaged copy left by an earlier download: fetched once more
            download_checkpoint(url, path, setting)
        except CheckpointError as again:
            raise CheckpointError(f'{error} (downloading it again failed: {again})') from again
        return _read_local(path, map_location, what)
    return _as_dict(ckpt, what, name)


def load_checkpoint(filename, map_location='cpu', what: str = 'checkpoint',
                    setting: Optional[str] = None) -> dict:
    """Read a checkpoint weights-only from a local path, a URL or any mmengine prefix.

    Args:
        filename (str | os.PathLike): A local path, an ``http(s)://`` URL (downloaded
            once into the torch hub cache, as mmengine does) or any prefix registered
            with mmengine's ``CheckpointLoader``.
        map_location (str | torch.device): Where to put the tensors. Defaults to 'cpu'.
        what (str): How error messages call the file, e.g. 'LSNet pretrained
            checkpoint'. Defaults to 'checkpoint'.
        setting (str, optional): The config setting that names ``filename`` (e.g.
            ``'load_from'``), for the fix when a URL cannot be downloaded.

    Returns:
        dict: The checkpoint as saved.

    Raises:
        CheckpointError: The file is missing (or cannot be downloaded completely), not a
            PyTorch checkpoint, holds no dict, or asks for Python objects outside the
            allow-list. A cached download that does not load is downloaded once more;
            the message names the cache file and how to remove it.
    """
    filename = os.fspath(filename)
    if is_local_path(filename):
        return _read_local(filename, map_location, what)
    if is_url(filename):
        return _read_url(filename, map_location, what, setting)
    from mmengine.runner import CheckpointLoader
    try:
        ckpt = CheckpointLoader.load_checkpoint(filename, map_location, logger='current')
    except Exception as e:  # the backends raise their own types
        reason = ('weights-only loading refused it (objects outside the allow-list, or a '
                  'damaged file)' if isinstance(e, pickle.UnpicklingError) else
                  f'{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ""}')
        raise CheckpointError(f'{what} {filename!r} could not be read: {reason}') from e
    return _as_dict(ckpt, what, filename)


def extract_state_dict(ckpt: dict,
                       filename: str = 'checkpoint') -> 'OrderedDict[str, torch.Tensor]':
    """The weights of a checkpoint dict.

    Args:
        ckpt (dict): A loaded checkpoint.
        filename (str): Its name, for the error message.

    Returns:
        OrderedDict: The tensors under "model", "state_dict", "model_ema" or at the top
        level, with any DataParallel ``module.`` prefix removed.

    Raises:
        CheckpointError: There is no dict of tensors in any of these places.
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


def load_state_dict(filename, what: str = 'checkpoint',
                    setting: Optional[str] = None) -> 'OrderedDict[str, torch.Tensor]':
    """:func:`load_checkpoint` on the CPU followed by :func:`extract_state_dict`.

    Args:
        filename (str | os.PathLike): See :func:`load_checkpoint`.
        what (str): How error messages call the file. Defaults to 'checkpoint'.
        setting (str, optional): See :func:`load_checkpoint`.

    Returns:
        OrderedDict: The state dict, ``module.`` prefixes removed.
    """
    return extract_state_dict(load_checkpoint(filename, 'cpu', what, setting), str(filename))
