"""A training run killed with SIGKILL resumes with ``tools/train.py --resume`` from its
last checkpoint, with the schedule and optimizer state of an uninterrupted run; a
kill while a checkpoint is being written does not lose the previous one.

The runs are RetinaNet-LSNet-T demo runs on 4 generated 96 px images (2 iterations
per epoch, 2 epochs), deterministic (fixed seed, no random flip, no workers) so that
the resumed run can be compared with an uninterrupted one number for number. The
schedule changes across the kill: linear warm-up until iteration 3 and a x0.1 step
from epoch 2 on, so a resume that restarted the schedule would log other rates.
"""
import json
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import pytest
import torch

from product_helpers import RETINA, ROOT, det_opts, tiny_coco, tool

train_tool = tool('train')

# the child: tools/train.py with one extra behaviour, chosen by argv[2]
#   pause        - before iteration 4 (mid epoch 2, after epoch_1.pth): write the marker
#                  file and wait to be killed from outside
#   kill_in_save - SIGKILL itself half way through writing the second checkpoint file
CHILD = r'''
import importlib.util, os, signal, sys, time
root, mode, marker = sys.argv[1:4]
import torch
torch.set_num_threads(int(os.environ.get('LSNET_TEST_THREADS', '2')))
spec = importlib.util.spec_from_file_location('train_tool', os.path.join(root, 'tools', 'train.py'))
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

if mode == 'pause':
    @HOOKS.register_module()
    class PauseForKill(Hook):
        def before_train_iter(self, runner, batch_idx, data_batch=None):
            if runner.iter == 3:
                open(marker, 'w').close()
                time.sleep(600)

    build_cfg = mod.build_cfg

    def build_cfg_with_pause(args):
        cfg = build_cfg(args)
        cfg.custom_hooks = list(cfg.get('custom_hooks') or []) + [dict(type='PauseForKill')]
        return cfg

    mod.build_cfg = build_cfg_with_pause
elif mode == 'kill_in_save':
    from mmengine.fileio.backends import LocalBackend
    put, saves = LocalBackend.put, []

    def put_then_die(self, obj, filepath):
        if str(filepath).endswith('.pth'):
            saves.append(filepath)
            if len(saves) == 2:
                with open(filepath, 'wb') as f:
                    f.write(obj[:len(obj) // 2])
                open(marker, 'w').close()
                os.kill(os.getpid(), signal.SIGKILL)
        return put(self, obj, filepath)

    LocalBackend.put = put_then_die
mod.main(sys.argv[4:])
'''


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    return tiny_coco(str(tmp_path_factory.mktemp('shapes')))


def schedule_opts(data, max_epochs=2):
    return det_opts(data, max_epochs=max_epochs) + [
        'randomness.seed=0', 'train_dataloader.dataset.pipeline.3.prob=0.0',
        'param_scheduler.0.end=3', 'param_scheduler.1.milestones=[1]']


def run_child(tmp_path, mode, wd, opts):
    script = tmp_path / 'child.py'
    script.write_text(CHILD)
    marker = str(tmp_path / f'{mode}.marker')
    log = open(tmp_path / f'{mode}.log', 'w')
    env = dict(os.environ, PYTHONUNBUFFERED='1', LSNET_TEST_THREADS=str(torch.get_num_threads()))
    env.pop('PYTHONPATH', None)  # lsnet_mm is installed (editable) in the environment
    proc = subprocess.Popen([sys.executable, str(script), ROOT, mode, marker, RETINA,
                             '--work-dir', wd, '--cfg-options', *opts],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    t0 = time.time()
    while not osp.exists(marker):
        if proc.poll() is not None and not osp.exists(marker):
            log.close()
            pytest.fail(f'child ended (rc {proc.returncode}) before the kill point:\n'
                        + (tmp_path / f'{mode}.log').read_text()[-4000:])
        if time.time() - t0 > 400:
            proc.kill()
            pytest.fail('child did not reach the kill point in 400 s')
        time.sleep(0.1)
    return proc, log


def logged(wd):
    """{run folder: {iteration: lr}} of a work dir, oldest run first."""
    out = {}
    for d in sorted(os.listdir(wd)):
        f = osp.join(wd, d, 'vis_data', 'scalars.json')
        if osp.isfile(f):
            rows = [json.loads(line) for line in open(f) if line.strip()]
            out[d] = {r['iter']: r['lr'] for r in rows if 'loss' in r}
    return out


def load(path):
    return torch.load(path, map_location='cpu')  # weights-only (torch default)


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(data, tmp_path):
    opts = schedule_opts(data)
    wd = str(tmp_path / 'run')
    proc, log = run_child(tmp_path, 'pause', wd, opts)
    # paused before iteration 4: iteration 3 (the first of epoch 2) is done, not saved
    assert proc.poll() is None
    with open(osp.join(wd, 'last_checkpoint')) as f:
        assert f.read().strip() == osp.join(wd, 'epoch_1.pth')
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(60) == -signal.SIGKILL
    log.close()
    killed = logged(wd)
    assert list(list(killed.values())[0]) == [1, 2, 3]  # killed mid epoch 2
    assert not osp.exists(osp.join(wd, 'epoch_2.pth'))

    train_tool.main([RETINA, '--work-dir', wd, '--resume', '--cfg-options', *opts])
    resumed = list(logged(wd).values())[-1]
    assert list(resumed) == [3, 4]  # continued after the checkpoint's iteration 2

    ref_wd = str(tmp_path / 'uninterrupted')
    train_tool.main([RETINA, '--work-dir', ref_wd, '--cfg-options', *schedule_opts(data)])
    ref = list(logged(ref_wd).values())[0]
    assert list(ref) == [1, 2, 3, 4]
    # the schedule is not flat here: warm-up through iteration 3, x0.1 from epoch 2
    assert ref[1] < ref[2] and ref[3] == pytest.approx(ref[2] * 0.1 / 0.505, rel=1e-6)
    for it in (3, 4):
        assert resumed[it] == pytest.approx(ref[it], rel=1e-9), it

    a, b = load(osp.join(wd, 'epoch_2.pth')), load(osp.join(ref_wd, 'epoch_2.pth'))
    assert a['meta']['iter'] == b['meta']['iter'] == 4
    sa, sb = a['optimizer']['state'], b['optimizer']['state']
    assert {int(s['step']) for s in sa.values()} == {4}  # AdamW step counts continued
    for k in sb:
        for name in ('exp_avg', 'exp_avg_sq'):
            torch.testing.assert_close(sa[k][name], sb[k][name], rtol=1e-3, atol=1e-7)
    for ga, gb in zip(a['optimizer']['param_groups'], b['optimizer']['param_groups']):
        assert ga['lr'] == pytest.approx(gb['lr'], rel=1e-9)
    for k, v in b['state_dict'].items():
        torch.testing.assert_close(a['state_dict'][k], v, rtol=1e-3, atol=1e-5)


def test_kill_while_saving_keeps_last_good_checkpoint(data, tmp_path):
    # max_keep_ckpts=1 (the demo configs' setting): mmengine's own hook deletes
    # epoch_1.pth before writing epoch_2.pth
    opts = schedule_opts(data, max_epochs=2)
    wd = str(tmp_path / 'run')
    proc, log = run_child(tmp_path, 'kill_in_save', wd, opts)
    assert proc.wait(60) == -signal.SIGKILL
    log.close()
    good = osp.join(wd, 'epoch_1.pth')
    with open(osp.join(wd, 'last_checkpoint')) as f:
        assert f.read().strip() == good
    assert load(good)['meta']['iter'] == 2  # complete and readable
    assert not osp.exists(osp.join(wd, 'epoch_2.pth'))  # no half-written file under the name
    train_tool.main([RETINA, '--work-dir', wd, '--resume', '--cfg-options', *opts])
    assert list(list(logged(wd).values())[-1]) == [3, 4]
    assert load(osp.join(wd, 'epoch_2.pth'))['meta']['iter'] == 4
    assert not osp.exists(good)  # max_keep_ckpts=1 still honoured, after the save
    assert not [f for f in os.listdir(wd) if f.startswith('.tmp-')]  # leftovers cleaned


def test_resume_skips_unreadable_last_checkpoint(data, tmp_path):
    """last_checkpoint naming a truncated file: resume from the newest one that loads,
    with a warning; all unreadable: an error, not a silent restart from scratch."""
    from lsnet_mm.checkpoint import CheckpointError, find_resume_checkpoint
    wd = str(tmp_path)
    good = osp.join(wd, 'epoch_1.pth')
    torch.save(dict(state_dict={'w': torch.zeros(2)}, meta=dict(epoch=1, iter=2)), good)
    bad = osp.join(wd, 'epoch_2.pth')
    with open(good, 'rb') as f:
        content = f.read()
    with open(bad, 'wb') as f:
        f.write(content[:len(content) // 2])
    with open(osp.join(wd, 'last_checkpoint'), 'w') as f:
        f.write(bad)
    assert find_resume_checkpoint(wd) == good
    with open(osp.join(wd, 'last_checkpoint'), 'w') as f:
        f.write('')  # a kill while mmengine rewrote it
    assert find_resume_checkpoint(wd) == good
    os.remove(good)
    with pytest.raises(CheckpointError, match='epoch_2.pth'):
        find_resume_checkpoint(wd)
    assert find_resume_checkpoint(str(tmp_path / 'fresh')) is None  # nothing yet: start
