"""tools/train.py end to end (slow), on Semantic FPN-LSNet-T demo runs: a run
interrupted while it saves a checkpoint (max_keep_ckpts=1) - a second run on its work
dir meanwhile stops naming it, then, after a SIGKILL, ``--resume`` continues from the
previous checkpoint; a diverging run stops with one error line, leaving only finite
checkpoints."""
import json
import os
import os.path as osp
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
from engine_toys import checkpoint_names, last_checkpoint, temp_files

from lsnet_mm.apis import launch
from lsnet_mm.utils.errors import WorkDirLockedError
from product_helpers import ROOT, SEG, seg_opts, tiny_ade, tool

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures('one_thread')]

# tools/train.py that stops while writing its iteration-2 checkpoint (in the fsync of the
# temporary file, before the rename), writes the marker file and waits to be killed
CHILD = r'''
import importlib.util, os, sys, time
root, marker = sys.argv[1:3]
import torch
torch.set_num_threads(1)
fsync = os.fsync

def fsync_then_wait(fd):
    if '.tmp-iter_2.pth' in os.readlink(f'/proc/self/fd/{fd}'):
        open(marker, 'w').close()
        time.sleep(600)
    fsync(fd)

os.fsync = fsync_then_wait
spec = importlib.util.spec_from_file_location('train_tool', os.path.join(root, 'tools', 'train.py'))
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
mod.main(sys.argv[3:])
'''


def logged_iterations(work_dir):
    """The trained iterations of each run in ``work_dir``, oldest run first."""
    runs = []
    for d in sorted(os.listdir(work_dir)):
        f = osp.join(work_dir, d, 'vis_data', 'scalars.json')
        if osp.isfile(f):
            with open(f) as fh:
                runs.append([r['iter'] for r in map(json.loads, fh) if 'loss' in r])
    return runs


def test_interrupted_save_then_concurrent_run_then_resume(tmp_path):
    ade = tiny_ade(str(tmp_path / 'ade'))
    wd = str(tmp_path / 'run')
    opts = seg_opts(ade, max_iters=2) + ['default_hooks.checkpoint.interval=1',
                                         'default_hooks.checkpoint.max_keep_ckpts=1']
    script, marker = tmp_path / 'child.py', str(tmp_path / 'marker')
    script.write_text(CHILD)
    env = dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1')
    with open(tmp_path / 'child.log', 'w') as log:
        child = subprocess.Popen([sys.executable, str(script), ROOT, marker, SEG,
                                  '--work-dir', wd, '--cfg-options', *opts],
                                 cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        t0 = time.time()
        while not osp.exists(marker):
            assert child.poll() is None, (tmp_path / 'child.log').read_text()[-4000:]
            assert time.time() - t0 < 400, 'the child did not reach the save in 400 s'
            time.sleep(0.2)
        # half way through writing iter_2.pth: iter_1.pth is intact and named
        assert checkpoint_names(wd) == ['iter_1.pth']
        assert temp_files(wd) == [f'.tmp-iter_2.pth.{child.pid}']
        assert last_checkpoint(wd) == osp.join(wd, 'iter_1.pth')
        assert torch.load(osp.join(wd, 'iter_1.pth'))['meta']['iter'] == 1
        # a second run on the same work dir stops, naming the running one
        with pytest.raises(WorkDirLockedError, match=f'in use by another training run: pid '
                                                     f'{child.pid} on host'):
            tool('train').main([SEG, '--work-dir', wd, '--cfg-options', *opts])
    finally:
        child.send_signal(signal.SIGKILL)
        assert child.wait(60) == -signal.SIGKILL
    assert checkpoint_names(wd) == ['iter_1.pth']
    tool('train').main([SEG, '--work-dir', wd, '--resume', '--cfg-options', *opts])
    assert logged_iterations(wd)[-1] == [2]  # continued after iteration 1
    assert checkpoint_names(wd) == ['iter_2.pth']  # max_keep_ckpts=1, after the save
    assert torch.load(osp.join(wd, 'iter_2.pth'))['meta']['iter'] == 2
    assert last_checkpoint(wd) == osp.join(wd, 'iter_2.pth')
    assert not temp_files(wd)  # the killed run's temporary file removed


def test_diverging_run_stops_and_keeps_only_finite_checkpoints(tmp_path, capsys):
    # lr 1e6 (the case: loss NaN from iteration 2, logged as INFO, every
    # checkpoint NaN, then evaluated with exit 0); a checkpoint every iteration
    ade = tiny_ade(str(tmp_path / 'ade'), num_train=8)
    wd = str(tmp_path / 'run')
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        launch.run_tool(lambda: tool('train').main([
            SEG, '--work-dir', wd, '--cfg-options', *seg_opts(ade, max_iters=6),
            'optim_wrapper.optimizer.lr=1e6', 'default_hooks.checkpoint.interval=1',
            'default_hooks.checkpoint.max_keep_ckpts=10']))
    err = capsys.readouterr().err
    assert e.value.code == 2
    line = err.strip().splitlines()[-1]
    assert line.startswith('error: training diverged'), err[-3000:]
    assert 'Traceback' not in err
    stopped = int(re.search(r'iteration (\d+)', line).group(1))
    assert 1 <= stopped < 6  # stopped early, at the iteration named
    assert 'learning rate' in line and 'lr now ' in line and 'data' in line
    saved = checkpoint_names(wd)
    for name in saved:  # every checkpoint on disk is finite and from before the divergence
        sd = torch.load(osp.join(wd, name))['state_dict']
        assert all(torch.isfinite(v).all() for v in sd.values() if v.is_floating_point()), name
        assert int(re.findall(r'\d+', name)[0]) < stopped, (saved, stopped)
    assert not temp_files(wd)
    if saved:
        assert last_checkpoint(wd) == osp.join(wd, saved[-1]) and last_checkpoint(wd) in line
    else:
        assert not osp.exists(osp.join(wd, 'last_checkpoint'))
