"""One run per work dir: two holders of acquire_work_dir_lock in two processes -> the
second gets a WorkDirLockedError naming the first's PID, host, start time and command;
after the first is killed the lock is taken over (logged); in a distributed run the
main process's verdict stops every process."""
import json
import multiprocessing
import os
import shlex
import signal
import socket
import sys

import pytest
from engine_toys import logged_warnings

from lsnet_mm.engine.work_dir_lock import LOCK_NAME, acquire_work_dir_lock
from lsnet_mm.utils.errors import WorkDirLockedError

FORK = multiprocessing.get_context('fork')  # the children need no imports of their own


def _try_lock(work_dir, queue, hold=False):
    """A child's attempt: puts 'locked' (then holds until killed) or the error message."""
    try:
        lock = acquire_work_dir_lock(work_dir)
    except WorkDirLockedError as e:
        queue.put(str(e))
        return
    queue.put('locked')
    if hold:
        signal.pause()
    lock.release()


def attempt(work_dir, hold=False):
    queue = FORK.Queue()
    child = FORK.Process(target=_try_lock, args=(str(work_dir), queue, hold))
    child.start()
    return child, queue.get(timeout=60)


def holder_message(work_dir, pid):
    return (f"work dir '{work_dir}' is in use by another training run: pid {pid} on host "
            f"'{socket.gethostname()}', started ")


def test_second_run_is_refused_with_the_first_ones_details(tmp_path):
    with acquire_work_dir_lock(str(tmp_path)) as lock:
        assert lock.path == str(tmp_path / LOCK_NAME)
        child, msg = attempt(tmp_path)
        child.join(60)
        assert msg.startswith(holder_message(tmp_path, os.getpid())), msg
        assert f', command: {shlex.join([sys.executable, *sys.argv])} (lock file ' \
               f'{tmp_path / LOCK_NAME}). Two runs on one work dir overwrite' in msg, msg
        assert msg.endswith('give this run another --work-dir.')
        # the same process, a second time (e.g. tools/train.py's main called twice)
        with pytest.raises(WorkDirLockedError, match=f'pid {os.getpid()} '):
            acquire_work_dir_lock(str(tmp_path))
    assert (tmp_path / LOCK_NAME).read_text() == ''  # released normally: an empty file
    child, msg = attempt(tmp_path)
    child.join(60)
    assert msg == 'locked'


def test_lock_of_a_killed_run_is_taken_over(tmp_path):
    child, msg = attempt(tmp_path, hold=True)
    assert msg == 'locked'
    with pytest.raises(WorkDirLockedError) as e:
        acquire_work_dir_lock(str(tmp_path))
    assert str(e.value).startswith(holder_message(tmp_path, child.pid)), str(e.value)
    os.kill(child.pid, signal.SIGKILL)
    child.join(60)
    with logged_warnings() as warnings:
        lock = acquire_work_dir_lock(str(tmp_path))
    assert json.loads((tmp_path / LOCK_NAME).read_text())['pid'] == os.getpid()
    lock.release()
    (warning,) = warnings
    assert warning.startswith(f"work dir '{tmp_path}': took over the lock of a run that ended "
                              f'without releasing it (killed?): pid {child.pid} on host'), warning


def _rank(rank, work_dir, pg, queue):
    import torch.distributed as dist
    dist.init_process_group('gloo', init_method=f'file://{pg}', rank=rank, world_size=2)
    try:
        acquire_work_dir_lock(work_dir)
        queue.put((rank, 'locked'))
    except WorkDirLockedError as e:
        queue.put((rank, str(e)))
    finally:
        dist.destroy_process_group()


def test_every_process_of_a_distributed_run_stops(tmp_path):
    wd = tmp_path / 'wd'
    queue = FORK.Queue()
    with acquire_work_dir_lock(str(wd)):
        ranks = [FORK.Process(target=_rank, args=(r, str(wd), str(tmp_path / 'pg'), queue))
                 for r in (0, 1)]
        for p in ranks:
            p.start()
        verdicts = dict(queue.get(timeout=120) for _ in ranks)
        for p in ranks:
            p.join(60)
    assert sorted(verdicts) == [0, 1]
    assert verdicts[0] == verdicts[1]  # rank 1 never looked at the file: rank 0's verdict
    assert verdicts[1].startswith(holder_message(wd, os.getpid())), verdicts[1]
