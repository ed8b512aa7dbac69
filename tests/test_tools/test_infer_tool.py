"""tools/infer.py, the CLI over DetInferencer / MMSegInferencer, end to end: a Mask R-CNN
and a Semantic FPN (paper LSNet-T configs with a small test-time size, random weights),
the files the inferencers write, --deploy, --no-save-vis / --no-save-pred and the
error paths (exit status 2 with ``error: ...``)."""
import glob
import json
import os.path as osp

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch

from lsnet_mm.apis import launch
from product_helpers import ROOT, random_checkpoint, tiny_ade, tiny_coco, tool

infer = tool('infer')
pytestmark = pytest.mark.usefixtures('one_thread')

DET_CONFIG = f"""_base_ = '{ROOT}/configs/mask_rcnn_lsnet_t.py'
test_dataloader = dict(dataset=dict(pipeline=[
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='PackDetInputs', meta_keys=('img_path', 'ori_shape', 'img_shape',
                                          'scale_factor')),
]))
model = dict(test_cfg=dict(rpn=dict(nms_pre=300, max_per_img=100),
                           rcnn=dict(score_thr=0.0, max_per_img=10)))
"""
SEG_CONFIG = f"""_base_ = '{ROOT}/configs/fpn_lsnet_t_ade20k.py'
test_dataloader = dict(dataset=dict(pipeline=[
    dict(type='LoadImageFromFile'),
    dict(type='lsnet_mm.AlignResize', scale=(128, 96), size_divisor=32),
    dict(type='PackSegInputs'),
]))
"""


def _setup(tmp_path_factory, name, text):
    d = tmp_path_factory.mktemp(name)
    config = str(d / f'{name}.py')
    with open(config, 'w') as f:
        f.write(text)
    # PyTorch's default initialisation: predictions that differ from box to box
    return config, random_checkpoint(config, str(d / 'weights.pth'), init_weights=False)


@pytest.fixture(scope='module')
def det(tmp_path_factory):
    """(config, checkpoint, folder of three 96x96 images)."""
    root = tiny_coco(str(tmp_path_factory.mktemp('shapes')), num_train=1, num_val=3)
    return (*_setup(tmp_path_factory, 'det', DET_CONFIG), osp.join(root, 'val'))


@pytest.fixture(scope='module')
def seg(tmp_path_factory):
    """(config, checkpoint, folder of two 64x48 images)."""
    root = tiny_ade(str(tmp_path_factory.mktemp('ade')), num_train=1, num_val=2)
    return (*_setup(tmp_path_factory, 'seg', SEG_CONFIG),
            osp.join(root, 'images', 'validation'))


def run_cli(*argv):
    """tools/infer.py in this process; returns its results dict."""
    return infer.main([str(a) for a in argv])[1]


def read_json(path):
    with open(path) as f:
        return json.load(f)


def assert_drawn(vis_path, img_path, drawn=True):
    vis, src = cv2.imread(vis_path), cv2.imread(img_path)
    assert vis is not None and vis.shape == src.shape  # the input picture's size
    # share of pixels that changed (matplotlib's rendering alone changes a few percent)
    changed = (np.abs(vis.astype(int) - src).max(axis=2) > 30).mean()
    assert changed > 0.2 if drawn else changed < 0.1


def test_detector_writes_what_det_inferencer_writes(det, tmp_path):
    from mmdet.apis import DetInferencer
    config, weights, folder = det
    images = sorted(glob.glob(osp.join(folder, '*.png')))
    out = tmp_path / 'out'
    # a folder, a glob and a file of the folder again: three distinct images
    run_cli(folder, osp.join(folder, '00000[01].png'), images[0], config,
            '--weights', weights, '--out-dir', out, '--pred-score-thr', 0)
    assert sorted(p.name for p in (out / 'vis').iterdir()) == [osp.basename(p) for p in images]
    assert sorted(p.name for p in (out / 'preds').iterdir()) == \
        [osp.basename(p)[:-4] + '.json' for p in images]
    # the same predictions as DetInferencer run here on the config and weights
    ref = DetInferencer(config, weights, device='cpu', show_progress=False)(images)
    for img, want in zip(images, ref['predictions']):
        pred = read_json(out / 'preds' / (osp.basename(img)[:-4] + '.json'))
        assert set(pred) == {'labels', 'scores', 'bboxes', 'masks'}
        np.testing.assert_allclose(pred['scores'], want['scores'], atol=1e-6)
        np.testing.assert_allclose(pred['bboxes'], want['bboxes'], atol=1e-3)
        assert pred['labels'] == want['labels'] and len(pred['labels']) == 10
        assert len(set(pred['labels'])) > 1 and max(pred['labels']) < 80
        h, w = cv2.imread(img).shape[:2]
        for x1, y1, x2, y2 in pred['bboxes']:
            assert -1e-3 <= x1 <= x2 <= w + 1e-3 and -1e-3 <= y1 <= y2 <= h + 1e-3
        assert [mask_util.decode(m).shape for m in pred['masks']] == [(h, w)] * 10
        assert_drawn(str(out / 'vis' / osp.basename(img)), img)


def test_detector_flags(det, tmp_path):
    config, weights, folder = det
    img = osp.join(folder, '000001.png')
    base = [img, config, '--weights', weights, '--pred-score-thr', 0]
    run_cli(*base, '--out-dir', tmp_path / 'a')
    want = read_json(tmp_path / 'a' / 'preds' / '000001.json')
    # --deploy: LSNet re-parameterised, the same predictions
    inferencer, _ = infer.main([str(a) for a in base] + [
        '--out-dir', str(tmp_path / 'b'), '--no-save-vis', '--deploy'])
    assert inferencer.model.backbone.deploy
    got = read_json(tmp_path / 'b' / 'preds' / '000001.json')
    assert got['labels'] == want['labels']
    np.testing.assert_allclose(got['scores'], want['scores'], atol=1e-4)
    np.testing.assert_allclose(got['bboxes'], want['bboxes'], atol=0.05)
    assert not (tmp_path / 'b' / 'vis').exists()  # --no-save-vis
    # --pred-score-thr above every score: nothing drawn; --no-save-pred: no JSON
    run_cli(img, config, '--weights', weights, '--out-dir', tmp_path / 'c', '--no-save-pred',
            '--pred-score-thr', 1.01)
    assert_drawn(str(tmp_path / 'c' / 'vis' / '000001.png'), img, drawn=False)
    assert not (tmp_path / 'c' / 'preds').exists()


def test_segmentor_writes_what_mmseg_inferencer_writes(seg, tmp_path):
    from mmseg.apis import MMSegInferencer
    config, weights, folder = seg
    images = sorted(glob.glob(osp.join(folder, '*.jpg')))
    out = tmp_path / 'out'
    run_cli(osp.join(folder, '*.jpg'), config, '--weights', weights, '--out-dir', out)
    ref = MMSegInferencer(config, weights, device='cpu')(images)['predictions']
    preds = sorted(glob.glob(str(out / 'pred' / '*')))
    assert [osp.basename(p) for p in preds] == ['00000000_pred.png', '00000001_pred.png']
    for img, pred, want in zip(images, preds, ref):
        label = cv2.imread(pred, cv2.IMREAD_UNCHANGED)
        assert label.shape == cv2.imread(img).shape[:2]  # the image's size
        assert np.array_equal(label, want) and len(np.unique(label)) > 1
        assert_drawn(str(out / 'vis' / osp.basename(img)), img)
    # each folder on its own
    run_cli(images[0], config, '--weights', weights, '--out-dir', tmp_path / 'v',
            '--no-save-pred')
    assert [p.name for p in (tmp_path / 'v').iterdir()] == ['vis']
    run_cli(images[0], config, '--weights', weights, '--out-dir', tmp_path / 'p',
            '--no-save-vis')
    assert [p.name for p in (tmp_path / 'p').iterdir()] == ['pred']
    label = cv2.imread(str(tmp_path / 'p' / 'pred' / '00000000_pred.png'), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(label, ref[0])


def assert_cli_error(capsys, argv, *words):
    with pytest.raises(SystemExit) as e:
        launch.run_tool(lambda: infer.main([str(a) for a in argv]))
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # (see test_bad_inputs.cli_error)
    assert err.startswith('error: ') and all(w in err for w in words), err
    return err


def test_missing_weights_and_config(det, tmp_path, capsys):
    # (bad inputs, damaged images and weights: tests/test_tools/test_bad_inputs.py)
    config, weights, folder = det
    img = osp.join(folder, '000000.png')
    missing = tmp_path / 'nope.pth'
    assert_cli_error(capsys, [img, config, '--weights', missing], '--weights: checkpoint not found',
                     str(missing))
    assert_cli_error(capsys, [img, tmp_path / 'missing.py', '--weights', weights],
                     'missing.py')


@pytest.mark.skipif(torch.cuda.is_available(), reason='needs a machine without a GPU')
def test_cuda_without_gpu(det, capsys):
    config, weights, folder = det
    assert_cli_error(capsys, [folder, config, '--weights', weights, '--device', 'cuda'],
                     '--device cuda', 'no CUDA GPU', '--device cpu')


class _Evil:
    """Unpickling this runs code: it creates the marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f'open({self.marker!r}, "w").write("pwned")',))


def test_weights_with_pickled_code_are_refused(det, tmp_path, capsys):
    config, weights, folder = det
    marker = tmp_path / 'PWNED'
    ckpt = torch.load(weights, map_location='cpu')
    ckpt['meta']['note'] = _Evil(str(marker))
    evil = tmp_path / 'evil.pth'
    torch.save(ckpt, evil)
    assert_cli_error(capsys, [folder, config, '--weights', evil, '--out-dir', tmp_path / 'o'],
                     str(evil), 'allow-list')
    assert not marker.exists() and not (tmp_path / 'o').exists()
