"""A toy training run that is interrupted while saving its second checkpoint (epoch 2),
in a process of its own: ``python toy_child.py MODE WORK_DIR``.

* ``efbig``: after epoch 1 is saved, the file-size limit (RLIMIT_FSIZE) is set to half a
  checkpoint, so the epoch-2 save fails with EFBIG (Python ignores SIGXFSZ); prints
  the CheckpointSaveError's message and exits 0.
* ``kill_in_put``: SIGKILLs itself while the epoch-2 checkpoint is being written (at the
  temporary file's fsync, before its rename).
"""
import os
import resource
import signal
import sys

from engine_toys import ToyModel, toy_runner
from mmengine.hooks import Hook

from lsnet_mm.utils.errors import CheckpointSaveError

mode, work_dir = sys.argv[1:3]


class InterruptAfterEpoch1(Hook):
    priority = 'LOWEST'  # after SafeCheckpointHook saved epoch_1.pth

    def after_train_epoch(self, runner):
        if runner.epoch != 0:
            return
        if mode == 'efbig':
            size = os.path.getsize(os.path.join(work_dir, 'epoch_1.pth'))
            resource.setrlimit(resource.RLIMIT_FSIZE,
                               (size // 2, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
        else:
            fsync = os.fsync

            def fsync_then_die(fd):
                if '.tmp-epoch_2.pth' in os.readlink(f'/proc/self/fd/{fd}'):
                    os.kill(os.getpid(), signal.SIGKILL)
                fsync(fd)

            os.fsync = fsync_then_die


runner = toy_runner(work_dir, [InterruptAfterEpoch1()], checkpoint=dict(max_keep_ckpts=1),
                    model=dict(type=ToyModel, ballast=1 << 18))  # checkpoints of about 1 MB
try:
    runner.train()
except CheckpointSaveError as e:
    print(f'CheckpointSaveError: {e}')
