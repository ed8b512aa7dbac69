"""tools/infer.py on generated images: a Mask R-CNN detector (boxes, class names, RLE
masks) and a Semantic FPN segmentor (label maps), both LSNet-T demo models at their
initial weights (what is checked is the tool, not what the model learnt)."""
import glob
import json
import os
import os.path as osp

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest

from product_helpers import (DET_INFER_OPTS, MASK, SEG, SEG_INFER_OPTS, det_checkpoint,
                             seg_checkpoint, tiny_ade, tiny_coco, tool)

infer = tool('infer')
DET_CLASSES = ('circle', 'square', 'triangle')
SEG_CLASSES = ('wall', 'sky', 'tree', 'road', 'grass', 'person')


@pytest.fixture(scope='module')
def coco_images(tmp_path_factory):
    root = tiny_coco(str(tmp_path_factory.mktemp('shapes')), num_train=1, num_val=3)
    return osp.join(root, 'val')


@pytest.fixture(scope='module')
def ade_images(tmp_path_factory):
    root = tiny_ade(str(tmp_path_factory.mktemp('ade')), num_train=1, num_val=2)
    return osp.join(root, 'images', 'validation')


def assert_drawn(vis_path, img_path):
    vis, src = cv2.imread(vis_path), cv2.imread(img_path)
    assert vis is not None and vis.shape == src.shape  # same picture size
    diff = np.abs(vis.astype(np.int16) - src.astype(np.int16))
    assert (diff.max(axis=2) > 30).mean() > 0.02, 'nothing visible was drawn'


def test_detector_json_masks_and_pictures(coco_images, tmp_path, capsys):
    out = str(tmp_path / 'out')
    # a folder, a glob and a file given twice: three distinct images
    idx = infer.main([MASK, det_checkpoint(), osp.join(coco_images, '000000.png'),
                      osp.join(coco_images, '00000[12].png'), coco_images,
                      '--out', out, '--score-thr', '0.2', '--cfg-options', *DET_INFER_OPTS])
    assert '3/3' in capsys.readouterr().out  # the progress bar went through
    with open(osp.join(out, 'index.json')) as f:
        index = json.load(f)
    assert index['task'] == 'detection' and index['classes'] == list(DET_CLASSES)
    assert [osp.basename(e['image']) for e in index['images']] == \
        ['000000.png', '000001.png', '000002.png']
    assert index == json.loads(json.dumps(idx))
    for e in index['images']:
        with open(e['prediction']) as f:
            pred = json.load(f)
        h, w = cv2.imread(e['image']).shape[:2]
        n = len(pred['scores'])
        assert n > 0 and pred['bbox_format'] == 'xyxy' and (pred['width'], pred['height']) == (w, h)
        assert len(pred['bboxes']) == len(pred['labels']) == len(pred['masks']) == n
        assert all(s >= 0.2 for s in pred['scores'])
        assert pred['class_names'] == [DET_CLASSES[i] for i in pred['labels']]
        for x1, y1, x2, y2 in pred['bboxes']:
            assert 0 <= x1 <= x2 <= w and 0 <= y1 <= y2 <= h
        for rle in pred['masks']:
            assert isinstance(rle['counts'], str) and rle['size'] == [h, w]
            assert mask_util.decode(rle).shape == (h, w)
        assert sum(int(mask_util.decode(r).sum()) for r in pred['masks']) > 0
        assert_drawn(e['visualization'], e['image'])


def test_score_threshold_filters_json(coco_images, tmp_path):
    img = osp.join(coco_images, '000000.png')
    low = infer.main([MASK, det_checkpoint(), img, '--out', str(tmp_path / 'a'), '--no-vis',
                      '--score-thr', '0', '--cfg-options', *DET_INFER_OPTS])
    with open(low['images'][0]['prediction']) as f:
        scores = json.load(f)['scores']
    thr = float(np.median(scores))
    high = infer.main([MASK, det_checkpoint(), img, '--out', str(tmp_path / 'b'), '--no-vis',
                       '--score-thr', str(thr), '--cfg-options', *DET_INFER_OPTS])
    with open(high['images'][0]['prediction']) as f:
        kept = json.load(f)['scores']
    assert kept == [s for s in scores if s >= thr] and 0 < len(kept) < len(scores)
    assert not osp.exists(tmp_path / 'a' / 'vis')


def test_deploy_gives_the_same_predictions(coco_images, tmp_path):
    img = osp.join(coco_images, '000001.png')
    res = []
    for flag in ([], ['--deploy']):
        idx = infer.main([MASK, det_checkpoint(), img, '--out', str(tmp_path / str(len(res))),
                          '--no-vis', '--score-thr', '0', '--cfg-options', *DET_INFER_OPTS,
                          *flag])
        with open(idx['images'][0]['prediction']) as f:
            res.append(json.load(f))
    assert idx['deploy'] is True
    np.testing.assert_allclose(res[1]['scores'], res[0]['scores'], atol=2e-4)
    np.testing.assert_allclose(res[1]['bboxes'], res[0]['bboxes'], atol=0.05)


def test_segmentor_label_maps_and_overlays(ade_images, tmp_path):
    out = str(tmp_path / 'out')
    idx = infer.main([SEG, seg_checkpoint(), osp.join(ade_images, '*.jpg'), '--out', out,
                      '--cfg-options', *SEG_INFER_OPTS])
    assert idx['task'] == 'segmentation' and len(idx['images']) == 2
    for e in idx['images']:
        h, w = cv2.imread(e['image']).shape[:2]
        label = cv2.imread(e['prediction'], cv2.IMREAD_UNCHANGED)
        assert e['prediction'].endswith('.png') and label.dtype == np.uint8
        assert label.shape == (h, w)  # the image's size, not the network's
        assert label.max() < len(SEG_CLASSES)
        with open(e['prediction'][:-4] + '.json') as f:
            summary = json.load(f)
        assert summary['classes'] == list(SEG_CLASSES)
        assert sum(summary['class_pixels'].values()) == h * w
        ids, counts = np.unique(label, return_counts=True)
        assert summary['class_pixels'] == {SEG_CLASSES[i]: int(c) for i, c in zip(ids, counts)}
        assert_drawn(e['visualization'], e['image'])
    assert sorted(glob.glob(osp.join(out, 'vis', '*.png'))) == \
        sorted(e['visualization'] for e in idx['images'])


def test_same_file_names_in_two_folders_do_not_overwrite(coco_images, tmp_path):
    other = tmp_path / 'other'
    other.mkdir()
    src = osp.join(coco_images, '000000.png')
    with open(src, 'rb') as f, open(other / '000000.png', 'wb') as g:
        g.write(f.read())
    idx = infer.main([MASK, det_checkpoint(), src, str(other / '000000.png'), '--no-vis',
                      '--out', str(tmp_path / 'out'), '--cfg-options', *DET_INFER_OPTS])
    preds = [e['prediction'] for e in idx['images']]
    assert len(set(preds)) == 2 and all(osp.isfile(p) for p in preds)
    assert sorted(os.listdir(tmp_path / 'out' / 'preds')) == ['000000.json', '000000_1.json']
