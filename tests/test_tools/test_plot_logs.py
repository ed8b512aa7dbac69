"""tools/analysis_tools/plot_logs.py on the work dir of a real (short) training run (a
Semantic FPN LSNet-T demo run of 4 iterations validating at iterations 2 and 4), and the
overlay of the LSNet authors' published logs (excerpts in tests/data/authors_logs)."""
import json
import os
import os.path as osp
import shutil

import cv2
import numpy as np
import pytest

from lsnet_mm.utils.errors import ConfigError
from product_helpers import ROOT, SEG, seg_opts, tiny_ade, tool

plot_logs, train_tool = tool('analysis_tools/plot_logs'), tool('train')
LINES = [(180, 119, 31), (14, 127, 255)]  # matplotlib's first two line colours, BGR
AUTHORS = osp.join(ROOT, 'tests', 'data', 'authors_logs')
SEG_LOG = osp.join(AUTHORS, 'lsnet_t_semfpn_12k.log.json')  # mmseg 0.30, 40k iterations
DET_LOG = osp.join(AUTHORS, 'lsnet_s_retinanet_epochs_1-2.log.json')  # mmdet 2.28, 12 epochs


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


def json_lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def authors_rows(path, mode):
    return [r for r in json_lines(path) if r.get('mode') == mode]


def drawn(curves_json, figure):
    """{label: line} of one picture, as curves.json recorded it."""
    with open(curves_json) as f:
        return {line['label']: line for line in json.load(f)[figure]}


def assert_plot(path, min_line_pixels=200):
    img = cv2.imread(path)
    assert img is not None and img.shape[0] > 300 and img.shape[1] > 500
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 50  # text, axes, lines
    line = sum((np.abs(img.astype(int) - c).sum(axis=2) < 40).sum() for c in LINES)
    assert line >= min_line_pixels, f'{path}: {line} pixels of the first curves'


def test_plots_of_a_training_run(run, tmp_path):
    rows = json_lines(scalars(run))
    logged_lr = [r['lr'] for r in rows if 'loss' in r]
    res = plot_logs.main([run, '--out', str(tmp_path)])
    files, c = res['files'], res['curves']
    assert sorted(files) == ['curves', 'loss', 'lr', 'metrics']
    for name in ('loss', 'lr', 'metrics'):
        assert files[name] == str(tmp_path / f'{name}.png')
        assert_plot(files[name], min_line_pixels=50 if name == 'metrics' else 200)
    assert c['iterations'] == [1, 2, 3, 4] and c['accumulative_counts'] == 1
    assert {'loss', 'decode.loss_ce'} <= set(c['loss'])
    assert c['lr']['lr'] == ([1, 2, 3, 4], logged_lr)
    assert {'mIoU', 'mAcc', 'aAcc'} <= set(c['metrics'])
    assert c['metrics']['mIoU'][0] == [2, 4] and c['metric_x'] == 'iteration'
    assert c['metrics']['aAcc'][1] == [r['aAcc'] for r in rows if 'aAcc' in r]
    # what the pictures show, read back from the figures
    loss = drawn(files['curves'], 'loss')
    assert loss['loss']['x'] == [1, 2, 3, 4] and loss['loss']['source'] == 'run'
    assert loss['loss']['y'] == [r['loss'] for r in rows if 'loss' in r]
    assert drawn(files['curves'], 'metrics')['mIoU']['y'] == [r['mIoU'] for r in rows
                                                              if 'mIoU' in r]


def test_default_output_folder(run):
    res = plot_logs.main([run])
    assert osp.dirname(res['files']['loss']) == osp.join(run, 'plots')


def test_authors_segmentation_log_drawn_beside_the_run(run, tmp_path):
    """The mmseg 0.x log's loss, lr and mIoU on the run's axes (global iterations, mIoU in
    percent as mmseg 1.x logs it), dashed, in the colour of the run's curve."""
    res = plot_logs.main([run, '--out', str(tmp_path), '--reference', SEG_LOG])
    train, val = authors_rows(SEG_LOG, 'train'), authors_rows(SEG_LOG, 'val')
    assert len(train) == 240 and len(val) == 3
    loss = drawn(res['files']['curves'], 'loss')
    ref = loss['decode.loss_ce (reference)']
    assert ref['source'] == 'reference' and ref['linestyle'] == '--'
    assert ref['x'] == [r['iter'] for r in train] == list(range(50, 12001, 50))
    assert ref['y'] == [r['decode.loss_ce'] for r in train]
    assert ref['color'] == loss['decode.loss_ce']['color']
    assert loss['decode.loss_ce']['x'] == [1, 2, 3, 4]  # the run's own curve unchanged
    lr = drawn(res['files']['curves'], 'lr')['lr (reference)']
    assert (lr['x'], lr['y']) == ([r['iter'] for r in train], [r['lr'] for r in train])
    metrics = drawn(res['files']['curves'], 'metrics')
    # validation after iterations 4000, 8000 and 12000 (the train rows before each)
    assert metrics['mIoU (reference)']['x'] == [4000, 8000, 12000]
    assert metrics['mIoU (reference)']['y'] == [r['mIoU'] * 100 for r in val]
    assert metrics['mIoU (reference)']['color'] == metrics['mIoU']['color']
    assert metrics['aAcc (reference)']['y'] == [r['aAcc'] * 100 for r in val]
    assert not [k for k in metrics if k.startswith(('IoU.', 'Acc.'))]  # per-class: not drawn
    assert_plot(res['files']['loss'], min_line_pixels=100)  # 4 run points beside 12k


def test_authors_epoch_based_log_counts_global_iterations(tmp_path):
    """mmdet 2 counts iterations per epoch: epoch 2, iteration 50 is drawn at N + 50. A
    run that accumulated 8 iterations per step is drawn per optimizer step, its metrics
    per epoch beside the log's, renamed as mmdet 3 logs them."""
    vis = tmp_path / 'wd' / '20250101_000000' / 'vis_data'
    vis.mkdir(parents=True)
    run_rows = [dict(lr=1e-5, loss=2.0, loss_cls=1.2, loss_bbox=0.8, epoch=1, iter=400),
                dict(lr=2e-5, loss=1.8, loss_cls=1.1, loss_bbox=0.7, epoch=1, iter=800),
                {'coco/bbox_mAP': 0.2, 'coco/bbox_mAP_50': -1.0, 'step': 1}]
    (vis / 'scalars.json').write_text(''.join(json.dumps(r) + '\n' for r in run_rows))
    (vis / 'config.py').write_text("optim_wrapper = dict(type='OptimWrapper', "
                                   "accumulative_counts=8)\n")
    train, val = authors_rows(DET_LOG, 'train'), authors_rows(DET_LOG, 'val')
    res = plot_logs.main([str(tmp_path / 'wd'), '--out', str(tmp_path / 'p'),
                          '--reference', DET_LOG, '--reference-epoch-iters', '7330'])
    assert res['reference']['epoch_iters'] == 7330
    assert res['reference']['skipped_lines'] == 0  # the env/config header is passed over
    loss = drawn(res['files']['curves'], 'loss')
    assert loss['loss']['x'] == [50.0, 100.0]  # iterations 400, 800 / 8
    want = [(r['epoch'] - 1) * 7330 + r['iter'] for r in train]
    assert loss['loss_cls (reference)']['x'] == want and want[146] == 7330 + 50
    assert loss['loss_cls (reference)']['y'] == [r['loss_cls'] for r in train]
    metrics = drawn(res['files']['curves'], 'metrics')
    assert metrics['coco/bbox_mAP (reference)']['x'] == [1, 2]
    assert metrics['coco/bbox_mAP (reference)']['y'] == [r['bbox_mAP'] for r in val]
    assert metrics['coco/bbox_mAP']['x'] == [1]
    # the run's COCO -1 (no value) is not drawn, the log's value is
    assert 'coco/bbox_mAP_50' not in metrics and 'coco/bbox_mAP_50 (reference)' in metrics
    assert not [k for k in metrics if 'copypaste' in k]
    # default epoch length: the largest iteration logged in an epoch
    ref = plot_logs.collect_reference(DET_LOG)
    assert ref['epoch_iters'] == max(r['iter'] for r in train) == 7300
    assert ref['metrics_by_iteration']['coco/bbox_mAP'][0] == [7300, 14600]  # epoch ends


def test_resumed_sessions_are_merged_and_torn_lines_skipped(run, tmp_path):
    """Two sessions (a resume repeats iterations 3-4 with other values) and a last line
    cut by a kill: the later session wins, the torn line is skipped."""
    wd = tmp_path / 'wd'
    shutil.copytree(run, wd)
    first = scalars(str(wd))
    rows = json_lines(first)
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


def test_no_logs_is_a_clear_error(tmp_path, run):
    with pytest.raises(ConfigError, match='no vis_data/scalars.json'):
        plot_logs.main([str(tmp_path)])
    with pytest.raises(ConfigError, match='not found'):
        plot_logs.main([str(tmp_path / 'missing')])
    with pytest.raises(ConfigError, match=r"--reference '.*missing.json': no such file; give a "
                                          r'json log of mmdet 2 / mmseg 0.x'):
        plot_logs.main([run, '--reference', str(tmp_path / 'missing.json')])
    with pytest.raises(ConfigError, match='holds no training rows'):
        plot_logs.main([run, '--reference', scalars(run)])  # mmengine's format, not mmdet 2's
