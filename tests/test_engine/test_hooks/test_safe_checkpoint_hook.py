"""SafeCheckpointHook on toy runners: the safe backend for local out_dirs only; a save
interrupted at any moment (between mmengine's removal and the write, SIGKILL while
writing, disk full) keeps the previous checkpoint and a last_checkpoint naming it;
max_keep_ckpts and the best checkpoint still honoured after the new save; non-finite
weights never written."""
import os
import os.path as osp
import signal
import subprocess
import sys

import pytest
import torch
from engine_toys import (
    Poison,
    ToyModel,
    checkpoint_names,
    last_checkpoint,
    temp_files,
    toy_runner,
)
from mmengine.hooks import Hook

from lsnet_mm.engine.fileio import SafeCheckpointBackend
from lsnet_mm.engine.hooks import SafeCheckpointHook
from lsnet_mm.engine.resume import find_resume_checkpoint
from lsnet_mm.utils.errors import NonFiniteLossError

HERE = osp.dirname(osp.dirname(osp.abspath(__file__)))
pytestmark = pytest.mark.usefixtures('one_thread')


def finite(path):
    sd = torch.load(path, map_location='cpu')['state_dict']
    return all(torch.isfinite(v).all() for v in sd.values() if v.is_floating_point())


def checkpoint_hook(runner):
    (hook,) = [h for h in runner.hooks if isinstance(h, SafeCheckpointHook)]
    return hook


def run_child(mode, work_dir):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    return subprocess.run([sys.executable, osp.join(HERE, 'toy_child.py'), mode, str(work_dir)],
                          cwd=HERE, env=env, capture_output=True, text=True, timeout=300)


class Interrupt(Hook):
    """Raise KeyboardInterrupt in the save of the checkpoint ``which`` of epoch ``epoch``
    ('last': the epoch's checkpoint, 'best': the best one, saved without optimizer):
    after mmengine asked to remove the outdated one, before anything is written."""

    priority = 'LOWEST'  # the last before_save_checkpoint

    def __init__(self, epoch, which='last'):
        self.epoch, self.which = epoch, which

    def before_save_checkpoint(self, runner, checkpoint):
        best = 'optimizer' not in checkpoint
        if checkpoint['meta']['epoch'] == self.epoch and best == (self.which == 'best'):
            raise KeyboardInterrupt


def test_safe_backend_for_local_out_dirs_only(tmp_path):
    assert SafeCheckpointHook(interval=1).backend_args == dict(backend='lsnet_mm.safe_checkpoint')
    assert SafeCheckpointHook(out_dir=str(tmp_path)).backend_args == dict(
        backend='lsnet_mm.safe_checkpoint')
    assert SafeCheckpointHook(out_dir='s3://bucket/runs').backend_args is None  # mmengine's
    assert SafeCheckpointHook(backend_args=dict(backend='local')).backend_args == dict(
        backend='local')  # the user's choice stays


def test_interrupt_between_removal_and_write_keeps_previous(tmp_path):
    runner = toy_runner(tmp_path, [Interrupt(epoch=2)], checkpoint=dict(max_keep_ckpts=1))
    with pytest.raises(KeyboardInterrupt):
        runner.train()
    assert type(checkpoint_hook(runner).file_backend) is SafeCheckpointBackend
    # mmengine's own hook would have deleted epoch_1.pth already
    assert checkpoint_names(tmp_path) == ['epoch_1.pth'] and not temp_files(tmp_path)
    assert last_checkpoint(tmp_path) == str(tmp_path / 'epoch_1.pth')
    # without an interruption max_keep_ckpts=1 holds, the old one removed after the save
    runner = toy_runner(tmp_path / 'b', checkpoint=dict(max_keep_ckpts=1))
    runner.train()
    assert checkpoint_names(tmp_path / 'b') == ['epoch_3.pth']
    assert last_checkpoint(tmp_path / 'b') == str(tmp_path / 'b' / 'epoch_3.pth')


def test_previous_best_removed_only_after_the_new_best(tmp_path):
    def run(work_dir, hooks=()):
        runner = toy_runner(work_dir, hooks, val=True, checkpoint=dict(
            save_best='mae', rule='less', max_keep_ckpts=1),
            optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)))
        return runner
    run(tmp_path / 'full').train()  # every epoch a better mae
    assert checkpoint_names(tmp_path / 'full') == ['best_mae_epoch_3.pth', 'epoch_3.pth']
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / 'cut', [Interrupt(epoch=2, which='best')]).train()
    assert checkpoint_names(tmp_path / 'cut') == ['best_mae_epoch_1.pth', 'epoch_2.pth']
    assert torch.load(tmp_path / 'cut' / 'best_mae_epoch_1.pth')['meta']['epoch'] == 1


def test_sigkill_while_writing_keeps_previous_then_resume_cleans_up(tmp_path):
    r = run_child('kill_in_put', tmp_path)
    assert r.returncode == -signal.SIGKILL, r.stderr[-3000:]
    # killed half way through saving epoch 2 (max_keep_ckpts=1): epoch 1 intact
    assert checkpoint_names(tmp_path) == ['epoch_1.pth']
    (tmp,) = temp_files(tmp_path)
    assert tmp.startswith('.tmp-epoch_2.pth.')
    assert last_checkpoint(tmp_path) == str(tmp_path / 'epoch_1.pth')
    assert find_resume_checkpoint(str(tmp_path)) == str(tmp_path / 'epoch_1.pth')
    assert torch.load(tmp_path / 'epoch_1.pth')['meta']['epoch'] == 1
    runner = toy_runner(tmp_path, checkpoint=dict(max_keep_ckpts=1), resume=True,
                        load_from=str(tmp_path / 'epoch_1.pth'),
                        model=dict(type=ToyModel, ballast=1 << 18))
    runner.train()
    assert runner.epoch == 3 and checkpoint_names(tmp_path) == ['epoch_3.pth']
    assert not temp_files(tmp_path)  # removed when the resumed run started
    assert last_checkpoint(tmp_path) == str(tmp_path / 'epoch_3.pth')


def test_disk_full_names_the_files_and_keeps_previous(tmp_path):
    r = run_child('efbig', tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    (line,) = [x for x in r.stdout.splitlines() if x.startswith('CheckpointSaveError: ')]
    ckpt, good = str(tmp_path / 'epoch_2.pth'), str(tmp_path / 'epoch_1.pth')
    assert line.startswith(
        f"CheckpointSaveError: could not write the checkpoint '{ckpt}': File too large (EFBIG); "
        f"the incomplete temporary file '.tmp-epoch_2.pth."), line
    assert (f"was removed and '{ckpt}' was not changed. Free space on the disk of "
            f"'{tmp_path}' (or raise the disk quota / file-size limit). The last complete "
            f"checkpoint, '{good}', is intact") in line
    assert f'tools/train.py CONFIG --work-dir {tmp_path} --resume.' in line
    assert checkpoint_names(tmp_path) == ['epoch_1.pth'] and not temp_files(tmp_path)
    assert last_checkpoint(tmp_path) == good
    assert torch.load(good)['meta']['epoch'] == 1


def test_never_writes_non_finite_weights(tmp_path):
    # no FiniteLossHook: a weight turns inf in the last iteration of epoch 2
    runner = toy_runner(tmp_path, [Poison(at=4, where='weights')])
    with pytest.raises(NonFiniteLossError) as e:
        runner.train()
    msg = str(e.value)
    assert msg.startswith('training diverged: not saving the checkpoint of epoch 2 since the '
                          'model holds non-finite weights (NaN or inf) in 1 tensor: '
                          'linear.weight (1 of 2 values). The last checkpoint, '
                          f'{tmp_path}/epoch_1.pth, was saved before'), msg
    assert checkpoint_names(tmp_path) == ['epoch_1.pth'] and finite(tmp_path / 'epoch_1.pth')
    assert last_checkpoint(tmp_path) == str(tmp_path / 'epoch_1.pth')
