"""tools/plot_logs.py on the work dir of a real (short) training run: a Semantic FPN
LSNet-T demo run of 4 iterations validating at iterations 2 and 4."""
import json
import os
import os.path as osp
import shutil

import cv2
import numpy as np
import pytest

from product_helpers import SEG, seg_opts, tiny_ade, tool

plot_logs, train_tool = tool('analysis_tools/plot_logs'), tool('train')
LINES = [(180, 119, 31), (14, 127, 255)]  # matplotlib's first two line colours, BGR


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    root = tiny_ade(str(tmp_path_factory.mktemp('ade')), num_train=4, num_val=1)
    wd = str(tmp_path_factory.mktemp('run'))
    train_tool.main([SEG, '--work-dir', wd, '--cfg-options',
                     *seg_opts(root, max_iters=4, val=True), 'train_cfg.val_interval=2'])
    return wd


def scalars(wd):
    (d,) = [d for d in os.listdir(wd) if osp.isdir(osp.join(wd, d, 'vis_data'))]
    return osp.join(wd, d, 'vis_data', 'scalars.json')


def assert_plot(path, min_line_pixels=200):
    img = cv2.imread(path)
    assert img is not None and img.shape[0] > 300 and img.shape[1] > 500
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 50  # text, axes, lines
    line = sum((np.abs(img.astype(int) - c).sum(axis=2) < 40).sum() for c in LINES)
    assert line >= min_line_pixels, f'{path}: {line} pixels of the first curves'


def test_plots_of_a_training_run(run, tmp_path):
    with open(scalars(run)) as f:
        rows = [json.loads(line) for line in f]
    logged_lr = [r['lr'] for r in rows if 'loss' in r]
    res = plot_logs.main([run, '--out', str(tmp_path)])
    files, c = res['files'], res['curves']
    assert sorted(files) == ['loss', 'lr', 'metrics']
    for name in ('loss', 'lr', 'metrics'):
        assert files[name] == str(tmp_path / f'{name}.png')
        assert_plot(files[name], min_line_pixels=50 if name == 'metrics' else 200)
    assert c['iterations'] == [1, 2, 3, 4]
    assert {'loss', 'decode.loss_ce'} <= set(c['loss'])
    assert c['lr']['lr'] == ([1, 2, 3, 4], logged_lr)
    assert {'mIoU', 'mAcc', 'aAcc'} <= set(c['metrics'])
    assert c['metrics']['mIoU'][0] == [2, 4] and c['metric_x'] == 'iteration'
    assert c['metrics']['aAcc'][1] == [r['aAcc'] for r in rows if 'aAcc' in r]


def test_default_output_folder(run):
    res = plot_logs.main([run])
    assert osp.dirname(res['files']['loss']) == osp.join(run, 'plots')


def test_resumed_sessions_are_merged_and_torn_lines_skipped(run, tmp_path):
    """Two sessions (a resume repeats iterations 3-4 with other values) and a last line
    cut by a kill: the later session wins, the torn line is skipped."""
    wd = tmp_path / 'wd'
    shutil.copytree(run, wd)
    first = scalars(str(wd))
    with open(first) as f:
        rows = [json.loads(line) for line in f]
    with open(first, 'a') as f:
        f.write('{"lr": 0.001, "loss": 0.5, "it')  # killed while writing
    later = wd / '29991231_235959' / 'vis_data'
    later.mkdir(parents=True)
    with open(later / 'scalars.json', 'w') as f:
        for r in rows:
            if r.get('iter') in (3, 4):
                f.write(json.dumps(dict(r, loss=100.0 + r['iter'])) + '\n')
    res = plot_logs.main([str(wd), '--out', str(tmp_path / 'plots')])
    c = res['curves']
    assert c['skipped_lines'] == 1
    xs, ys = c['loss']['loss']
    assert xs == [1, 2, 3, 4] and ys[2:] == [103.0, 104.0] and ys[:2] == [
        r['loss'] for r in rows if r.get('iter') in (1, 2)]


def test_no_logs_is_a_clear_error(tmp_path):
    with pytest.raises(plot_logs.LogError, match='no vis_data/scalars.json'):
        plot_logs.main([str(tmp_path)])
    with pytest.raises(plot_logs.LogError, match='not found'):
        plot_logs.main([str(tmp_path / 'missing')])
