"""tools/demo.py, the README's main job: one real tiny end-to-end run (data generation,
tools/train.py, tools/test.py as subprocesses), the progress read from the logs that run
wrote, the summary and its thresholds, a failing step."""
import glob
import io
import json
import os.path as osp
import subprocess
import sys

import pytest

from product_helpers import ROOT, det_opts, tool

demo = tool('demo')

# iteration lines as mmengine 0.10 writes them, copied from the log of a real
# iteration-based run (tools/demo.py --models fpn with max_iters=4)
ITER_LINES = [
    '11/22 03:23:20 - mmengine - INFO - Iter(train) [1/4]  lr: 1.0000e-04  eta: 0:00:02  '
    'time: 0.7574  data_time: 0.0202  grad_norm: 43.6687  loss: 1.7896',
    '11/22 03:23:21 - mmengine - INFO - Iter(train) [4/4]  lr: 1.0000e-06  eta: 0:00:00  '
    'time: 0.4522  data_time: 0.0140  grad_norm: 132.2772  loss: 1.7981',
    '11/22 03:23:22 - mmengine - INFO - Iter(val) [1/2]    eta: 0:00:00  time: 0.1131  '
    'data_time: 0.0046',
    '11/22 03:23:38 - mmengine - INFO - Iter(test) [2/2]    aAcc: 17.0900  mIoU: 3.5600  '
    'mAcc: 11.3200  data_time: 0.0130  time: 0.2260',
]


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    """tools/demo.py --models retinanet on 4 + 2 generated images, 2 epochs of 2
    iterations at 96 px, stdout a pipe (not a TTY), default --min-ap."""
    tmp = tmp_path_factory.mktemp('demo')
    root, work = str(tmp / 'coco'), str(tmp / 'work')
    opts = det_opts(root, max_epochs=2) + ['model.test_cfg.score_thr=0.0']
    proc = subprocess.run(
        [sys.executable, osp.join(ROOT, 'tools', 'demo.py'), '--models', 'retinanet',
         '--work-dir', work, '--coco-root', root, '--coco-args', '--num-train 4 --num-val 2',
         '--cfg-options', *opts],
        capture_output=True, text=True, timeout=600)
    with open(osp.join(work, 'demo_results.json')) as f:
        results = json.load(f)
    return dict(proc=proc, root=root, work=work, results=results,
                wd=osp.join(work, 'retinanet'))


def test_end_to_end_results_logs_and_short_output(run):
    proc, res = run['proc'], run['results']
    # the tiny detector cannot reach box AP 0.3: the run says so and exits non-zero
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert 'retinanet: bbox_mAP' in proc.stderr and '--min-ap 0.3' in proc.stderr
    r = res['models']['retinanet']
    assert r['config'] == 'configs/demo/retinanet_lsnet_t_demo.py'
    assert osp.isfile(r['checkpoint']) and r['checkpoint'].endswith('epoch_2.pth')
    assert 0.0 <= r['metrics']['bbox_mAP'] <= 1.0 and 'bbox_mAP_50' in r['metrics']
    assert r['threshold'] == dict(metric='bbox_mAP', min=0.3,
                                  passed=r['metrics']['bbox_mAP'] >= 0.3)
    assert r['train_s'] > 0 and r['test_s'] > 0
    assert res['data']['coco_shapes']['root'] == run['root']
    assert len(glob.glob(osp.join(run['root'], 'train', '*.png'))) == 4  # --coco-args
    with open(osp.join(run['wd'], 'test', 'metrics.json')) as f:
        assert json.load(f)['coco/bbox_mAP'] == r['metrics']['bbox_mAP']
    # the full output is in the logs, whose paths are printed
    train_log, test_log = r['logs']['train'], r['logs']['test']
    with open(train_log) as f:
        assert 'Epoch(train)' in f.read()
    with open(test_log) as f:
        assert 'metrics: {' in f.read()
    assert train_log in proc.stdout and test_log in proc.stdout
    # ... and the terminal gets a few lines: progress, summary
    lines = proc.stdout.splitlines()
    assert len(lines) <= 15, proc.stdout
    assert 'Epoch(train)' not in proc.stdout and 'mmengine' not in proc.stdout
    progress = [ln for ln in lines if ln.startswith('retinanet  train [')]
    assert [ln.split(']')[1].split()[0] for ln in progress] == ['1/4', '2/4', '3/4']
    row = next(ln for ln in lines if ln.startswith('retinanet ') and 'LOW' in ln)
    assert f'bbox_mAP {r["metrics"]["bbox_mAP"]:.3f}' in row


def test_progress_from_the_logs_of_the_run(run):
    with open(run['results']['models']['retinanet']['logs']['train']) as f:
        ours = [demo.parse_progress(line) for line in f]
    # the log mmengine writes itself in the timestamped folder reads the same
    (own_log,) = glob.glob(osp.join(run['wd'], '2*', '2*.log'))
    with open(own_log) as f:
        mmengine_own = [demo.parse_progress(line) for line in f]
    for parsed in (ours, mmengine_own):
        train = [p for p in parsed if p and p.mode == 'train']
        assert [(p.epoch, p.iter, p.total) for p in train] == [(1, 1, 2), (1, 2, 2),
                                                               (2, 1, 2), (2, 2, 2)]
        assert all(p.eta and p.eta.startswith('0:00:') for p in train)
        assert [demo.overall(p, max_epochs=2) for p in train] == [(1, 4), (2, 4), (3, 4),
                                                                  (4, 4)]
        assert demo.overall(train[1]) == (2, 2)  # epochs unknown: the epoch's progress
    with open(run['results']['models']['retinanet']['logs']['test']) as f:
        test = [p for p in map(demo.parse_progress, f) if p]
    assert test and all(p.mode == 'test' and p.epoch is None and p.iter <= p.total
                        for p in test)


def test_progress_of_iteration_based_loops():
    parsed = [demo.parse_progress(line) for line in ITER_LINES]
    assert parsed[0] == demo.Progress('train', None, 1, 4, '0:00:02')
    assert parsed[1] == demo.Progress('train', None, 4, 4, '0:00:00')
    assert parsed[2] == demo.Progress('val', None, 1, 2, '0:00:00')
    assert parsed[3] == demo.Progress('test', None, 2, 2, None)
    assert demo.overall(parsed[0], max_epochs=None) == (1, 4)
    assert demo.parse_progress('11/22 03:23:20 - mmengine - INFO - Checkpoints will be '
                               'saved to /tmp/x.') is None
    # mmengine pads the numbers to the width of the totals
    assert demo.parse_progress('Epoch(train)  [ 9][ 10/270]  eta: 1 day, 2:03:04') == \
        demo.Progress('train', 9, 10, 270, '1 day, 2:03:04')


def test_progress_line_without_tty_prints_quarters(capsys):
    line = demo.ProgressLine('fpn', 'train', stream=sys.stdout)
    for i in range(1, 301):
        line.update('train', i, 300, eta='0:00:01')
    line.update('val', 1, 16)
    line.close('done in 5 s')
    out = capsys.readouterr().out.splitlines()
    assert [ln.split(']')[1].split()[0] for ln in out[:-1]] == ['75/300', '150/300',
                                                                 '225/300']
    assert out[-1].startswith('fpn        train done in 5 s')


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_line_on_a_tty_redraws_one_line():
    term = _Terminal()
    line = demo.ProgressLine('retinanet', 'train', stream=term)
    line.update('train', 160, 320, eta='0:02:09')
    line.update('val', 10, 10)
    line.close('done in 139 s')
    out = term.getvalue()
    assert out.count('\n') == 1 and out.endswith('\n')  # a single line on the screen
    frames = out.rstrip('\n').split('\r')[1:]
    assert frames[0].strip() == 'retinanet  train starting'
    assert '[############------------] 160/320  50%' in frames[1] and 'eta 0:02:09' in frames[1]
    assert '(val) [########################] 10/10 100%' in frames[2]
    assert frames[3].rstrip() == 'retinanet  train done in 139 s'
    # each frame blanks what is left of the longer one before it
    assert all(len(b) >= len(a.rstrip()) for a, b in zip(frames, frames[1:]))


def _result(metrics):
    return dict(metrics=metrics, train_s=10.0, test_s=2.0,
                logs=dict(train='work_dirs/demo/x/train.log'))


def test_summary_checks_each_model_against_its_threshold():
    thresholds = {'bbox_mAP': 0.3, 'mIoU': 40.0}
    results = dict(retinanet=_result({'bbox_mAP': 0.72, 'bbox_mAP_50': 0.99}),
                   mask_rcnn=_result({'bbox_mAP': 0.25, 'bbox_mAP_50': 0.6,
                                      'segm_mAP': 0.3}),
                   fpn=_result({'mIoU': 76.54, 'mAcc': 88.7, 'aAcc': 91.17}))
    lines, errors = demo.summary(results, thresholds)
    assert len(lines) == 4 and lines[0].split()[0] == 'model'
    assert 'ok' in lines[1] and 'bbox_mAP 0.720  bbox_mAP_50 0.990' in lines[1]
    assert 'LOW' in lines[2] and 'segm_mAP 0.300' in lines[2]
    assert 'ok' in lines[3] and 'mIoU 76.54  mAcc 88.70  aAcc 91.17' in lines[3]
    assert errors == ['mask_rcnn: bbox_mAP 0.25 is below --min-ap 0.3: the model did not '
                      'learn (see work_dirs/demo/x/train.log)']
    assert results['mask_rcnn']['threshold'] == dict(metric='bbox_mAP', min=0.3,
                                                     passed=False)

    # segmentation below its mIoU threshold; metrics missing (mmdet gives none when no
    # box passes the score threshold) count as failing; a 0 threshold accepts anything
    results = dict(fpn=_result({'mIoU': 8.3, 'mAcc': 16.7, 'aAcc': 20.0}),
                   retinanet=_result({}))
    lines, errors = demo.summary(results, thresholds)
    assert [e.split(':')[0] for e in errors] == ['fpn', 'retinanet']
    assert '--min-miou 40.0' in errors[0] and 'bbox_mAP missing' in errors[1]
    assert 'bbox_mAP -  bbox_mAP_50 -' in lines[2]
    assert demo.summary(results, {'bbox_mAP': 0, 'mIoU': 0})[1] == []


def test_failed_step_prints_its_log_tail_and_path(tmp_path, capsys):
    work = tmp_path / 'work'
    rc = demo.main(['--models', 'retinanet', '--work-dir', str(work), '--coco-root',
                    str(tmp_path / 'coco'), '--coco-args=--no-such-flag'])
    assert rc == 1
    err = capsys.readouterr().err
    log = str(work / 'data_coco_shapes.log')
    assert 'error: data coco_shapes failed (exit code 2)' in err
    assert 'unrecognized arguments: --no-such-flag' in err  # the log's tail
    assert f'full log: {log}' in err
    with open(log) as f:
        assert 'unrecognized arguments' in f.read()
    assert not (work / 'retinanet').exists()  # nothing trained after the failure
    with open(work / 'demo_results.json') as f:
        assert json.load(f)['models'] == {}
