"""Checkpoint URLs fetched into the torch hub cache, complete or not at all.

mmengine's http(s) loader (``load_from_http``, used by ``load_from``, the inferencers
and ``init_cfg``) downloads with torch.hub into ``<torch hub dir>/checkpoints/<file
name>`` and reads that file whenever it exists. A download cut short is stored there
all the same, and every later run then fails on it. :func:`fetch_checkpoint` puts a
file at exactly that path only when it is complete: streamed into a temporary file in
the same folder, checked against the server's ``Content-Length`` and, when the file
name carries one (``name-<sha256 prefix>.pth``, as torch hub names files), against its
hash, then renamed into place. mmengine's own loader then finds it and downloads
nothing.
"""
import hashlib
import http.client
import os
import os.path as osp
import re
import tempfile
import urllib.error
import urllib.request
from typing import Optional, Tuple
from urllib.parse import urlparse

import torch
from mmengine.logging import print_log

from ..utils.errors import CheckpointError

#: A SHA-256 prefix in a file name (``resnet50-0676ba61.pth``), at least 8 digits so
#: names such as ``lsnet-b.pth`` do not count.
HASH_IN_NAME = re.compile(r'-([a-f0-9]{8,64})\.')
#: Seconds a connection may stay silent before the download counts as failed.
TIMEOUT_S = 60
_CHUNK = 1 << 20


def cached_checkpoint_path(url: str) -> str:
    """Where mmengine's http loader (torch.hub) keeps the download of ``url``.

    Args:
        url (str): An ``http(s)://`` URL.

    Returns:
        str: ``<torch.hub.get_dir()>/checkpoints/<last part of the URL path>``
        (``$TORCH_HOME/hub/checkpoints/...``).
    """
    return osp.join(torch.hub.get_dir(), 'checkpoints', osp.basename(urlparse(url).path))


def _how_to_fix(path: str, setting: Optional[str]) -> str:
    """The two ways around a download that cannot be made."""
    if not setting:
        use_local = 'or give the path of a local copy instead of the URL'
    elif setting.startswith('-'):  # a command-line flag
        use_local = f'or give {setting} the path of a local copy instead of the URL'
    else:  # a config setting
        use_local = f'or point {setting} at a local copy (--cfg-options {setting}=PATH)'
    return (f'Download the file where there is network access and put it at {path!r} '
            f'(where the loader looks for it), {use_local}.')


def _stream(response, out) -> Tuple[int, str]:
    """Copy a response into ``out``; returns the bytes written and their SHA-256."""
    digest, size, done = hashlib.sha256(), 0, False
    while not done:
        try:
            chunk = response.read(_CHUNK)
        except http.client.IncompleteRead as e:  # the server closed the connection early
            chunk, done = e.partial, True
        done = done or not chunk
        out.write(chunk)
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


def _check_complete(url: str, path: str, setting: Optional[str], size: int,
                    expected: Optional[str], digest: str) -> None:
    """Raise unless a download has the announced size and the hash its name carries."""
    if expected is not None and size != int(expected):
        raise CheckpointError(
            f'checkpoint {url!r}: the download was cut short ({size} of {expected} bytes '
            f'received); nothing was stored at {path!r}. Run again to retry. '
            + _how_to_fix(path, setting))
    wanted = HASH_IN_NAME.search(osp.basename(path))
    if wanted and not digest.startswith(wanted.group(1)):
        raise CheckpointError(
            f'checkpoint {url!r}: the downloaded file has SHA-256 {digest}, but its name '
            f'says {wanted.group(1)}...: the server holds another file than the one named; '
            f'nothing was stored at {path!r}. ' + _how_to_fix(path, setting))


def download_checkpoint(url: str, path: str, setting: Optional[str] = None) -> None:
    """Download ``url`` to ``path``, which then holds the complete file or is untouched.

    Args:
        url (str): An ``http(s)://`` URL.
        path (str): The destination (its folder is created).
        setting (str, optional): The config setting that names the URL (e.g.
            ``'model.backbone.init_cfg.checkpoint'``), for the fix in the error message.

    Raises:
        CheckpointError: The server cannot be reached or refuses the file, the transfer
            is cut short, or the content differs from the hash in the file name. The
            message names the URL, ``path`` and the fixes; no partial file is left.
    """
    folder = osp.dirname(path) or '.'
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f'.{osp.basename(path)}.', suffix='.partial')
    print_log(f'Downloading {url} to {path}', logger='current')
    request = urllib.request.Request(url, headers={'User-Agent': 'lsnet_mm'})
    try:
        with os.fdopen(fd, 'wb') as out, \
                urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            expected = response.headers.get('Content-Length')
            size, digest = _stream(response, out)
        _check_complete(url, path, setting, size, expected, digest)
        os.replace(tmp, path)
    except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
        # an HTTPError says its status ("HTTP Error 404: Not Found"), a URLError its reason
        reason = e if isinstance(e, urllib.error.HTTPError) else getattr(e, 'reason', e)
        raise CheckpointError(
            f'checkpoint {url!r} could not be downloaded ({reason}) and is not in the '
            f'cache at {path!r}. ' + _how_to_fix(path, setting)) from e
    finally:
        if osp.exists(tmp):
            os.remove(tmp)


def fetch_checkpoint(url: str, setting: Optional[str] = None) -> str:
    """The local copy of a checkpoint URL in the torch hub cache, downloaded if needed.

    The tools call this before a run for every checkpoint URL of the config, so that a
    missing network or a cut transfer stops the run at once with a clear message,
    and mmengine's own loader later reads the cached file.

    Args:
        url (str): An ``http(s)://`` URL.
        setting (str, optional): The config setting that names the URL, for the fix in
            the error message.

    Returns:
        str: :func:`cached_checkpoint_path` of ``url``, which holds a complete download.

    Raises:
        CheckpointError: See :func:`download_checkpoint`.
    """
    path = cached_checkpoint_path(url)
    if not osp.isfile(path):
        download_checkpoint(url, path, setting)
    return path
