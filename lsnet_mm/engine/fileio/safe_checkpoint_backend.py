"""``SafeCheckpointBackend``: a local file backend under which no finished checkpoint is lost.

mmengine's ``CheckpointHook`` saves through a file backend (``runner.save_checkpoint``
-> ``mmengine.runner.save_checkpoint`` -> ``get_file_backend(path, backend_args).put``)
and removes the checkpoints past ``max_keep_ckpts`` (and the previous best one) with
the hook's own backend, *before* it writes the new one. mmengine's ``LocalBackend``
writes in place. A run killed, or out of disk space, while saving would lose the old
checkpoint and leave a truncated new one under its final name.

This backend (registered as ``'lsnet_mm.safe_checkpoint'``; ``SafeCheckpointHook``
selects it for local ``out_dir`` s):

* ``put`` writes a hidden temporary file in the target folder (``.tmp-NAME.PID``),
  flushes it to disk and renames it to its final name (``os.replace``: atomic), so a
  file under a checkpoint's name is always complete. A failed write (no space left,
  quota or file-size limit, read-only disk) removes the temporary file and raises
  :class:`~lsnet_mm.utils.errors.CheckpointSaveError` naming the file and the cause.
* ``remove`` and ``rmtree`` only note the path;
  :meth:`SafeCheckpointBackend.remove_deferred` removes the noted paths once the
  caller's new checkpoint is complete, skipping any written again since.
"""
import errno
import glob
import os
import os.path as osp
import shutil
from pathlib import Path
from typing import List, Optional, Tuple, Union

from mmengine.fileio import LocalBackend, register_backend
from mmengine.utils import mkdir_or_exist

from ...utils.errors import CheckpointSaveError

#: The name to select it with: ``backend_args=dict(backend=SAFE_CHECKPOINT_BACKEND)``.
SAFE_CHECKPOINT_BACKEND = 'lsnet_mm.safe_checkpoint'
#: Start of the names of the temporary files ``put`` writes.
TMP_PREFIX = '.tmp-'
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)

Identity = Optional[Tuple[int, int, int]]


def _identity(path: str) -> Identity:
    """(device, inode, mtime) of ``path``: changes when the file is written again."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino, st.st_mtime_ns


def _fsync_dir(folder: str) -> None:
    """Make a rename inside ``folder`` durable (where directories can be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory descriptors
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - file systems that refuse fsync on folders
        pass
    finally:
        os.close(fd)


def _save_error(path: str, tmp: str, error: OSError) -> CheckpointSaveError:
    """The error of a failed ``put``: the file, the cause and what to do."""
    folder = osp.dirname(path) or '.'
    code = errno.errorcode.get(error.errno, 'OSError') if error.errno else 'OSError'
    if error.errno in _NO_SPACE:
        fix = (f'Free space on the disk of {folder!r} (or raise the disk quota / '
               f'file-size limit)')
    else:
        fix = f'Make {folder!r} writable'
    return CheckpointSaveError(
        f'could not write the checkpoint {path!r}: {error.strerror or error} ({code}); the '
        f'incomplete temporary file {osp.basename(tmp)!r} was removed and {path!r} was not '
        f'changed. {fix}.')


@register_backend(SAFE_CHECKPOINT_BACKEND)
class SafeCheckpointBackend(LocalBackend):
    """``LocalBackend`` that writes atomically and defers removals (module docstring).

    ``get_file_backend`` makes a new instance per call: the removals one instance
    noted are done by that instance's :meth:`remove_deferred` (``SafeCheckpointHook``
    calls it on its own ``file_backend`` once a save is complete).
    """

    def __init__(self):
        super().__init__()
        self._deferred: List[Tuple[str, Identity]] = []

    def put(self, obj: bytes, filepath: Union[str, Path]) -> None:
        """Write ``obj`` to ``filepath`` through a temporary file, atomically.

        Args:
            obj (bytes): The data (a serialised checkpoint).
            filepath (str | Path): Where it goes; the folder is created if missing.

        Raises:
            CheckpointSaveError: The data could not be written (e.g. no space left);
                the temporary file is removed and ``filepath`` is unchanged.
        """
        path = os.fspath(filepath)
        folder = osp.dirname(path) or '.'
        mkdir_or_exist(folder)
        tmp = osp.join(folder, f'{TMP_PREFIX}{osp.basename(path)}.{os.getpid()}')
        try:
            with open(tmp, 'wb') as f:
                f.write(obj)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException as e:
            if osp.lexists(tmp):
                os.remove(tmp)
            if isinstance(e, OSError):
                raise _save_error(path, tmp, e) from e
            raise
        _fsync_dir(folder)

    def remove(self, filepath: Union[str, Path]) -> None:
        """Note ``filepath`` for :meth:`remove_deferred` (nothing is removed yet).

        Args:
            filepath (str | Path): A checkpoint file.
        """
        path = os.fspath(filepath)
        self._deferred.append((path, _identity(path)))

    def rmtree(self, dir_path: Union[str, Path]) -> None:
        """Note ``dir_path`` (a checkpoint folder) for :meth:`remove_deferred`.

        Args:
            dir_path (str | Path): A checkpoint folder (e.g. saved by DeepSpeed).
        """
        self.remove(dir_path)

    def remove_deferred(self) -> List[str]:
        """Remove what :meth:`remove` and :meth:`rmtree` noted since the last call.

        A path written again after it was noted (e.g. a checkpoint saved anew under
        the same name) is kept.

        Returns:
            list[str]: The paths removed.
        """
        removed = []
        for path, identity in self._deferred:
            if identity is None or _identity(path) != identity:
                continue
            if osp.isdir(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
            removed.append(path)
        self._deferred.clear()
        return removed

    def discard_deferred(self) -> None:
        """Forget the noted removals (a save failed: the old checkpoints stay)."""
        self._deferred.clear()

    @staticmethod
    def remove_temp_files(folder: str) -> List[str]:
        """Remove the temporary files an interrupted ``put`` left in ``folder``.

        Call it only while no other process saves into ``folder`` (one run per work
        dir: :func:`lsnet_mm.engine.work_dir_lock.acquire_work_dir_lock`).

        Args:
            folder (str): A checkpoint folder.

        Returns:
            list[str]: The files removed.
        """
        leftovers = glob.glob(osp.join(glob.escape(folder), f'{TMP_PREFIX}*'))
        for path in leftovers:
            os.remove(path)
        return leftovers
