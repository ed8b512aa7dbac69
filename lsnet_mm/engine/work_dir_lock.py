"""One training run per work dir.

Two ``tools/train.py`` runs on one work dir overwrite each other's checkpoints and
``last_checkpoint``, and a resume then mixes them. :func:`acquire_work_dir_lock` takes
an exclusive ``fcntl.flock`` lock on ``WORK_DIR/.train.lock`` for the run's main
process and writes the run's PID, host, start time and command line into the file; a
second run on the same work dir stops with a
:class:`~lsnet_mm.utils.errors.WorkDirLockedError` naming the first.

The kernel releases the lock when its process ends, however it ends: the lock of a
killed run is simply taken over by the next one (the file still holds the killed
run's details, and the take-over is logged). A lock released normally leaves the file
empty. On file systems without ``flock`` support the run goes on with a warning.
"""
import fcntl
import json
import logging
import os
import os.path as osp
import shlex
import socket
import sys
import time
from typing import Optional

from mmengine.dist import broadcast_object_list, is_main_process
from mmengine.logging import print_log
from mmengine.utils import mkdir_or_exist

from ..utils.errors import WorkDirLockedError

#: The lock file's name inside the work dir.
LOCK_NAME = '.train.lock'


class WorkDirLock:
    """A work dir lock held by this process (see :func:`acquire_work_dir_lock`).

    A context manager; :meth:`release` (or leaving the ``with`` block) frees it.

    Args:
        path (str): The lock file.
        fd (int, optional): Its descriptor, locked; None where this process holds no
            lock (the other processes of a distributed run, or no ``flock`` support).
    """

    def __init__(self, path: str, fd: Optional[int] = None):
        self.path = path
        self._fd = fd

    def release(self) -> None:
        """Empty the lock file and unlock it; a second call does nothing."""
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)  # empty: released normally, not left by a killed run
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> 'WorkDirLock':
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _read_holder(fd: int) -> Optional[dict]:
    """The details a holder wrote into the lock file (None if empty or unreadable)."""
    raw = os.pread(fd, 1 << 16, 0)
    try:
        holder = json.loads(raw.decode())
    except ValueError:  # empty, or cut short
        return None
    return holder if isinstance(holder, dict) else None


def _describe(holder: Optional[dict]) -> str:
    if holder is None:
        return 'a process that has not written its details yet'
    return (f'pid {holder.get("pid")} on host {holder.get("host")!r}, started '
            f'{holder.get("started")}, command: {holder.get("command")}')


def _lock(work_dir: str) -> WorkDirLock:
    """Take the lock in this process (the main one of the run)."""
    mkdir_or_exist(work_dir)
    path = osp.join(work_dir, LOCK_NAME)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_holder(fd)
        os.close(fd)
        raise WorkDirLockedError(
            f'work dir {work_dir!r} is in use by another training run: {_describe(holder)} '
            f'(lock file {path}). Two runs on one work dir overwrite each other\'s checkpoints '
            f'and mix their logs: wait until that run ends (or stop it), or give this run '
            f'another --work-dir.') from None
    except OSError as e:  # e.g. ENOLCK / EOPNOTSUPP on some network file systems
        os.close(fd)
        print_log(f'could not lock the work dir ({path}: {e}); a second run on {work_dir!r} '
                  f'would not be detected.', logger='current', level=logging.WARNING)
        return WorkDirLock(path)
    stale = _read_holder(fd)
    if stale is not None:
        print_log(f'work dir {work_dir!r}: took over the lock of a run that ended without '
                  f'releasing it (killed?): {_describe(stale)}.', logger='current',
                  level=logging.WARNING)
    me = dict(pid=os.getpid(), host=socket.gethostname(),
              started=time.strftime('%Y-%m-%d %H:%M:%S %Z'),
              command=shlex.join([sys.executable, *sys.argv]))
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(me).encode(), 0)
    return WorkDirLock(path, fd)


def acquire_work_dir_lock(work_dir: str) -> WorkDirLock:
    """Make sure no other training run uses ``work_dir``, and keep it so.

    Call it in every process of the run once ``mmengine.dist`` is initialised (e.g.
    right after ``Runner.from_cfg``): the main process takes the lock and its verdict
    reaches every process, so that all of them stop when the work dir is in use.

    Args:
        work_dir (str): The run's work dir (created if missing).

    Returns:
        WorkDirLock: The held lock (a context manager); release it when the run ends.
        The kernel releases it if the process dies first.

    Raises:
        WorkDirLockedError: Another run holds the lock; names its PID, host, start
            time and command line.
    """
    lock, verdict = WorkDirLock(osp.join(work_dir, LOCK_NAME)), [None]
    if is_main_process():
        try:
            lock = _lock(work_dir)
        except WorkDirLockedError as e:
            verdict[0] = str(e)
    broadcast_object_list(verdict)  # nothing to do in a single process
    if verdict[0] is not None:
        raise WorkDirLockedError(verdict[0])
    return lock
