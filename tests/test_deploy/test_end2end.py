"""End-to-end export (tools/deployment/export_onnx.py, lsnet_mm.deploy.onnx_end2end): the
detector and segmentor files (NMS, RoIAlign, dynamic shapes) give the PyTorch model's own
predictions in onnxruntime and, where installed, OpenVINO; mmseg is not patched; a model
the exporter refuses is one error line."""
import glob
import os

import mmcv
import numpy as np
import pytest
import torch

from lsnet_mm.apis import launch
from lsnet_mm.checkpoint import load_state_dict
from lsnet_mm.deploy import OnnxModel, check_end2end, export_end2end
from lsnet_mm.deploy.onnx_check import (
    compare_detections,
    compare_detections_iou,
    image_tensor,
    torch_predictions,
)
from lsnet_mm.deploy.onnx_runtime import run_onnx
from lsnet_mm.utils.errors import CheckpointError, ExportError
from lsnet_mm.utils.optional import is_installed
from product_helpers import MASK, RETINA, SEG, random_checkpoint, tiny_coco, tool

pytestmark = pytest.mark.usefixtures('one_thread')
pytest.importorskip('onnxruntime')
onnx = pytest.importorskip('onnx')
RUNTIMES = ['onnxruntime'] + (['openvino'] if is_installed('openvino') else [])
export_tool = tool('deployment/export_onnx')


def _ops(path):
    return [n.op_type for n in onnx.load(path).graph.node]


def test_detection_comparison_catches_differences():
    ref = dict(bboxes=np.array([[0, 0, 10, 10], [20, 20, 40, 40]], np.float32),
               scores=np.array([0.9, 0.6], np.float32), labels=np.array([0, 1]))
    assert compare_detections(ref, ref, score_thr=0.05)['ok']
    shifted = dict(ref, bboxes=ref['bboxes'] + np.array([[0, 0, 0, 0], [1, 0, 0, 0]]))
    assert not compare_detections(ref, shifted, score_thr=0.05)['ok']
    relabelled = dict(ref, labels=np.array([0, 2]))
    res = compare_detections(ref, relabelled, score_thr=0.05)
    assert not res['ok'] and res['matched'] == 1
    # a detection missing at the score threshold is a boundary effect, not an error
    edge = dict(bboxes=ref['bboxes'], scores=np.array([0.9, 0.0502], np.float32),
                labels=ref['labels'])
    assert compare_detections(edge, {k: v[:1] for k, v in edge.items()}, 0.05)['ok']
    # the IoU agreement of approximate (INT8) detections: box 1 shifted by 5 of 20 px
    # (IoU 15/25), then relabelled: found, not found; below min_score: not compared
    moved = dict(ref, bboxes=ref['bboxes'] + np.array([[0, 0, 0, 0], [5, 0, 5, 0]]))
    res = compare_detections_iou(ref, moved, min_score=0.5)
    assert res == dict(num_ref=2, found=1.0, label_agreement=1.0,
                       mean_iou=pytest.approx((1 + 0.6) / 2), max_score_diff=0.0)
    res = compare_detections_iou(ref, dict(moved, labels=np.array([0, 2])), min_score=0.5)
    assert res['found'] == 0.5 and res['label_agreement'] == 0.5
    assert compare_detections_iou(ref, relabelled, min_score=0.7)['found'] == 1.0


@pytest.fixture(scope='module')
def coco_image(tmp_path_factory):
    root = tiny_coco(str(tmp_path_factory.mktemp('coco')), num_train=1, num_val=1, size=128)
    return sorted(glob.glob(os.path.join(root, 'val', '*')))[0]


def _checkpoint(tmp_path, config):
    # PyTorch's default initialisation (not the heads' init_weights, whose near-equal
    # scores all sit below the threshold): varied scores, boxes and labels
    return random_checkpoint(config, str(tmp_path / 'model.pth'), init_weights=False)


def test_retinanet_end2end_dynamic(tmp_path, coco_image):
    """tools/deployment/export_onnx.py: image in, NMS-ed detections out, at two sizes and
    in each installed runtime the same boxes, scores and labels as the PyTorch model."""
    ckpt = _checkpoint(tmp_path, RETINA)
    out = str(tmp_path / 'retinanet.onnx')
    res = export_tool.main([RETINA, ckpt, '--out', out, '--image', coco_image, '--shape',
                            '128', '160', '--dynamic', '--deploy', '--runtime', *RUNTIMES,
                            '--cfg-options', 'model.test_cfg.score_thr=0.2'])
    assert res['names'] == ['dets', 'labels']
    assert 'NonMaxSuppression' in _ops(out) and 'TopK' in _ops(out)
    checks = res['checks']
    assert sorted({(c['runtime'], tuple(c['shape'])) for c in checks}) == sorted(
        (rt, s) for rt in RUNTIMES for s in [(128, 160), (96, 120)])
    for c in checks:
        assert c['ok'] and c['num_torch'] > 3 and c['matched'] == c['num_torch'] == c['num_onnx']
        assert c['max_box_diff'] < 0.05 and c['max_score_diff'] < 1e-4

    # independently of the tool's matching: the arrays themselves, best score first
    img = mmcv.imresize(mmcv.imread(coco_image), (144, 112))  # a third size
    ref = torch_predictions(res['model'], img)  # the exported (loaded, deployed) model
    dets, labels = run_onnx(out, image_tensor(img))
    assert dets.shape == (1, len(ref['scores']), 5) and labels.dtype == torch.int64
    assert len(ref['scores']) > 3 and (np.diff(ref['scores']) <= 0).all()
    np.testing.assert_allclose(dets[0, :, 4].numpy(), ref['scores'], atol=1e-5)
    np.testing.assert_allclose(dets[0, :, :4].numpy(), ref['bboxes'], atol=0.05)
    np.testing.assert_array_equal(labels[0].numpy(), ref['labels'])


def test_mask_rcnn_end2end(tmp_path, coco_image):
    ckpt = _checkpoint(tmp_path, MASK)
    out = str(tmp_path / 'mask_rcnn.onnx')
    res = export_tool.main([MASK, ckpt, '--out', out, '--image', coco_image, '--shape', '128',
                            '128', '--runtime', 'onnxruntime', '--cfg-options',
                            'model.test_cfg.rcnn.score_thr=0.02',
                            'model.test_cfg.rcnn.max_per_img=20'])
    assert res['names'] == ['dets', 'labels', 'masks']
    assert {'RoiAlign', 'NonMaxSuppression'} <= set(_ops(out))
    (c,) = res['checks']
    assert c['ok'] and c['num_torch'] > 3 and c['matched'] == c['num_torch'] == c['num_onnx']
    assert c['min_mask_iou'] > 0.95


def test_segmentor_end2end_dynamic_without_patching_mmseg(tmp_path, monkeypatch):
    """Image in, label map out: the PyTorch model's own label map, at two sizes (FPNHead's
    upsampling follows the input) and in each runtime. The export never calls (nor
    replaces) mmseg's Upsample.forward: it runs the scale heads' layers itself."""
    from mmseg.models.utils import Upsample
    model = export_tool.build_model(SEG)
    model.load_state_dict(load_state_dict(_checkpoint(tmp_path, SEG)), strict=False)
    img = export_tool.read_image(None, (96, 128))  # the tool's generated street scene
    out = str(tmp_path / 'fpn.onnx')
    original = Upsample.forward

    def forbidden(self, x):
        raise AssertionError('the export called mmseg Upsample.forward')
    with monkeypatch.context() as m:
        m.setattr(Upsample, 'forward', forbidden)
        assert export_end2end(model, out, image_tensor(img), dynamic=True) == ['seg']
        assert Upsample.forward is forbidden  # nothing replaced it during the export
    assert Upsample.forward is original
    assert 'ArgMax' in _ops(out)
    ref = torch_predictions(model, img)['seg']
    (seg,) = run_onnx(out, image_tensor(img))
    assert seg.shape == (1, 1, 96, 128) and len(np.unique(ref)) > 1
    np.testing.assert_array_equal(seg[0, 0].numpy(), ref)
    other = export_tool.read_image(None, (72, 104))  # another size: 9x13 at stride 8
    for rt in RUNTIMES:
        sess = OnnxModel(out, rt)
        for im in (img, other):
            res = check_end2end(model, sess, im)
            assert res['ok'] and res['agreement'] == 1.0, (rt, im.shape, res)


def test_end2end_needs_checkpoint(tmp_path, capsys):
    with pytest.raises(SystemExit):
        export_tool.main([RETINA, '--out', str(tmp_path / 'x.onnx')])
    assert 'CHECKPOINT is required' in capsys.readouterr().err


@pytest.mark.parametrize('config,option,message', [
    (RETINA, 'model.test_cfg.nms.type=soft_nms',
     "error: end-to-end ONNX export supports plain NMS only, but the model's test_cfg has "
     "nms={'type': 'soft_nms', 'iou_threshold': 0.5}: set nms=dict(type='nms', "
     "iou_threshold=...) in model.test_cfg (e.g. with --cfg-options) to export it"),
    (SEG, 'model.test_cfg.mode=slide',
     "error: end-to-end ONNX export supports model.test_cfg.mode='whole', got 'slide': "
     "export with --cfg-options model.test_cfg.mode=whole"),
], ids=['soft-nms', 'slide'])
def test_refused_model_is_one_error_line(tmp_path, capsys, config, option, message):
    ckpt = random_checkpoint(config, str(tmp_path / 'model.pth'))
    argv = [config, ckpt, '--out', str(tmp_path / 'x.onnx'), '--shape', '64', '64',
            '--cfg-options', option]
    with pytest.raises(ExportError):
        export_tool.main(argv)
    with pytest.raises(SystemExit) as exit_info:
        launch.run_tool(lambda: export_tool.main(argv))
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == message
    model = export_tool.build_model(RETINA)
    with pytest.raises(ExportError, match='needs ONNX opset >= 16 .* got --opset 13'):
        export_end2end(model, str(tmp_path / 'y.onnx'), torch.zeros(1, 3, 64, 64), opset=13)


def test_export_tool_backbone_checkpoint_deploy_dynamic(tmp_path, data_statistics):
    """--backbone-only: the graph computes the checkpoint's weights, at any input size."""
    model = export_tool.build_model(RETINA)
    data_statistics(model.backbone)
    ckpt = str(tmp_path / 'retinanet.pth')
    torch.save(dict(state_dict=model.state_dict()), ckpt)
    out = str(tmp_path / 'onnx' / 'backbone.onnx')
    res = export_tool.main([RETINA, ckpt, '--backbone-only', '--deploy', '--shape', '64', '96',
                            '--dynamic', '--out', out, '--runtime', 'onnxruntime'])
    assert len(res['checks']['onnxruntime']) == len(model.backbone.out_indices)
    model.backbone.switch_to_deploy()
    for shape in [(1, 3, 64, 96), (1, 3, 160, 96)]:  # dynamic: one file, two sizes (the
        x = torch.randn(*shape)                      # attention bias resize in the graph)
        with torch.no_grad():
            ref = model.backbone(x)
        for r, g in zip(ref, run_onnx(out, x)):  # differs by O(1) if weights differ
            torch.testing.assert_close(g, r, atol=1e-4, rtol=1e-4)
    assert 'BatchNormalization' not in _ops(out)

    sd = model.state_dict()
    sd.pop(next(k for k in sd if k.startswith('neck.')))
    torch.save(dict(state_dict=sd), ckpt)
    with pytest.raises(CheckpointError, match='does not fit'):
        export_tool.main([RETINA, ckpt, '--backbone-only', '--shape', '64', '64', '--out', out])
