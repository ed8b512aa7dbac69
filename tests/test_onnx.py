"""ONNX export: backbones and tensor-mode networks reproduce PyTorch; end-to-end detector
and segmentor files (NMS, RoIAlign, dynamic shapes) give the PyTorch model's own
predictions in onnxruntime and, where installed, OpenVINO."""
import os
import sys

import numpy as np
import pytest
import torch

from lsnet_mm import LSNet
from lsnet_mm.apis.onnx_export import (
    TensorModeWrapper,
    check_onnx,
    export_backbone,
    export_onnx,
    run_onnxruntime,
)
from lsnet_mm.utils.optional import is_installed
from product_helpers import MASK, RETINA, SEG, random_checkpoint, tiny_coco, tool
from test_deploy import randomize

pytestmark = pytest.mark.usefixtures('one_thread')  # see conftest: 2-core CI machine
ort = pytest.importorskip('onnxruntime')
onnx = pytest.importorskip('onnx')
HAS_OPENVINO = is_installed('openvino')
export_tool = tool('deployment/export_onnx')


def _ops(path):
    return [n.op_type for n in onnx.load(path).graph.node]


@pytest.mark.parametrize('deploy', [False, True], ids=['eager', 'deploy'])
def test_backbone_onnx_matches_torch(tmp_path, deploy):
    model = randomize(LSNet('t')).eval()
    if deploy:
        model.switch_to_deploy()
    path = str(tmp_path / 'lsnet_t.onnx')
    shape = (2, 3, 96, 160)  # stage-4 map 2x3: the resized attention bias is exercised
    names = export_backbone(model, path, shape)
    assert names == ['stage0', 'stage1', 'stage2', 'stage3']
    assert [o.name for o in onnx.load(path).graph.output] == names
    ops = set(_ops(path))
    assert not ops & {'ATen', 'PythonOp'}  # standard ops only (the LS aggregation included)
    # the export formulation of the LS aggregation: one pad and slices multiplied out of
    # place, not the eager path's in-place slice updates (ScatterND: slow in onnxruntime)
    assert 'ScatterND' not in ops and 'Pad' in ops
    if deploy:
        assert 'BatchNormalization' not in ops
    x = torch.randn(*shape)  # a new input, not the traced one
    diffs = check_onnx(model, path, x)
    assert len(diffs) == 4
    for abs_diff, rel_diff in diffs:
        assert abs_diff < 1e-4 and rel_diff < 1e-4
    if deploy:  # OnnxModule (the benchmark's ONNX entries) in each installed runtime
        from lsnet_mm.apis.onnx_runtime import OnnxModule
        with torch.no_grad():
            ref = model(x)
        for rt in _runtimes():
            m = OnnxModule(model, path, rt, threads=1)
            assert sum(p.numel() for p in m.parameters()) == sum(
                p.numel() for p in model.parameters())
            for r, g in zip(ref, m(x)):
                torch.testing.assert_close(g, r, atol=1e-4, rtol=1e-4)


def test_ska_export_formulation_matches_reference():
    from lsnet_mm.ops import ska_reference
    ska_module = sys.modules['lsnet_mm.ops.ska']
    for b, c, h, w, g in [(1, 8, 5, 7, 1), (2, 24, 9, 11, 3), (1, 32, 1, 1, 4)]:
        x, k = torch.randn(b, c, h, w), torch.randn(b, g, 9, h, w)
        torch.testing.assert_close(ska_module.ska_forward_export(x, k), ska_reference(x, k))


def test_retinanet_network_onnx(tmp_path):
    model = export_tool.build_model(RETINA)
    randomize(model.backbone)
    model.backbone.switch_to_deploy()
    path = str(tmp_path / 'retinanet.onnx')
    x = torch.randn(1, 3, 128, 128)
    names = export_onnx(TensorModeWrapper(model), x, path)
    assert len(names) == 10  # 5 levels x (classification, box regression)
    diffs = check_onnx(TensorModeWrapper(model), path, torch.randn(1, 3, 128, 128))
    assert max(rel for _, rel in diffs) < 1e-4


# ------------------------------------------------------------------ ONNX operators
def test_batched_nms_exports_as_onnx_nms(tmp_path):
    """Class-aware NMS in onnxruntime keeps the boxes mmcv's batched_nms keeps, in order."""
    from mmcv.ops import batched_nms as mmcv_batched_nms

    from lsnet_mm.apis.onnx_ops import batched_nms

    class Net(torch.nn.Module):
        def forward(self, boxes, scores, labels):
            return batched_nms(boxes, scores, labels, 0.5)

    g = torch.Generator().manual_seed(0)
    xy = torch.rand(300, 2, generator=g) * 100
    boxes = torch.cat([xy, xy + torch.rand(300, 2, generator=g) * 30 + 1], 1)
    scores = torch.rand(300, generator=g)
    labels = torch.randint(0, 3, (300,), generator=g)
    path = str(tmp_path / 'nms.onnx')
    torch.onnx.export(Net(), (boxes, scores, labels), path, dynamo=False, opset_version=17,
                      input_names=['b', 's', 'l'])
    assert 'NonMaxSuppression' in _ops(path)
    sess = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    keep = sess.run(None, dict(b=boxes.numpy(), s=scores.numpy(), l=labels.numpy()))[0]
    _, ref = mmcv_batched_nms(boxes, scores, labels, dict(type='nms', iou_threshold=0.5))
    assert 20 < len(ref) < 300  # the test suppresses some boxes and keeps others
    np.testing.assert_array_equal(keep, ref.numpy())


def test_roi_align_exports_with_half_pixel_mode(tmp_path):
    """ONNX RoiAlign (opset 16+) gives mmcv's aligned RoIAlign (mmcv's own symbolic
    shifts the boxes by half a pixel a second time at these opsets)."""
    from mmcv.ops import roi_align as mmcv_roi_align

    from lsnet_mm.apis.onnx_ops import roi_align

    class Net(torch.nn.Module):
        def forward(self, feats, rois):
            return roi_align(feats, rois, (7, 7), 0.25, 0)

    feats = torch.randn(1, 8, 20, 24)
    xy = torch.rand(6, 2) * 60
    rois = torch.cat([torch.zeros(6, 1), xy, xy + torch.rand(6, 2) * 30 + 2], 1)
    path = str(tmp_path / 'roi.onnx')
    torch.onnx.export(Net(), (feats, rois), path, dynamo=False, opset_version=17,
                      input_names=['f', 'r'])
    sess = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    got = torch.from_numpy(sess.run(None, dict(f=feats.numpy(), r=rois.numpy()))[0])
    torch.testing.assert_close(got, mmcv_roi_align(feats, rois, (7, 7), 0.25, 0, 'avg', True),
                               atol=1e-5, rtol=1e-4)


# ------------------------------------------------------------------ end to end
def test_detection_comparison_catches_differences():
    from lsnet_mm.apis.onnx_check import compare_detections
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


@pytest.fixture(scope='module')
def coco_image(tmp_path_factory):
    import glob
    root = tiny_coco(str(tmp_path_factory.mktemp('coco')), num_train=1, num_val=1, size=128)
    return sorted(glob.glob(os.path.join(root, 'val', '*')))[0]


def _checkpoint(tmp_path, config):
    # PyTorch's default initialisation (not the heads' init_weights, whose near-equal
    # scores all sit below the threshold): varied scores, boxes and labels
    return random_checkpoint(config, str(tmp_path / 'model.pth'), init_weights=False)


def _runtimes():
    return ['onnxruntime'] + (['openvino'] if HAS_OPENVINO else [])


def test_retinanet_end2end_dynamic(tmp_path, coco_image):
    """tools/deployment/export_onnx.py: image in, NMS-ed detections out, at two sizes and
    in each installed runtime the same boxes, scores and labels as the PyTorch model."""
    ckpt = _checkpoint(tmp_path, RETINA)
    out = str(tmp_path / 'retinanet.onnx')
    res = export_tool.main([RETINA, ckpt, '--out', out, '--image', coco_image, '--shape',
                            '128', '160', '--dynamic', '--deploy', '--runtime', *_runtimes(),
                            '--cfg-options', 'model.test_cfg.score_thr=0.2'])
    assert res['names'] == ['dets', 'labels']
    assert 'NonMaxSuppression' in _ops(out) and 'TopK' in _ops(out)
    checks = res['checks']
    assert sorted({(c['runtime'], tuple(c['shape'])) for c in checks}) == sorted(
        (rt, s) for rt in _runtimes() for s in [(128, 160), (96, 120)])
    for c in checks:
        assert c['ok'] and c['num_torch'] > 3 and c['matched'] == c['num_torch'] == c['num_onnx']
        assert c['max_box_diff'] < 0.05 and c['max_score_diff'] < 1e-4

    # independently of the tool's matching: the arrays themselves, best score first
    import mmcv

    from lsnet_mm.apis.onnx_check import image_tensor, torch_predictions
    img = mmcv.imresize(mmcv.imread(coco_image), (144, 112))  # a third size
    ref = torch_predictions(res['model'], img)  # the exported (loaded, deployed) model
    dets, labels = run_onnxruntime(out, image_tensor(img))
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


def test_segmentor_end2end_dynamic(tmp_path):
    """Image in, label map out: the PyTorch model's own label map, at two sizes (FPNHead's
    upsampling follows the input) and in each runtime."""
    from lsnet_mm.apis import OnnxModel, check_end2end, export_end2end
    from lsnet_mm.apis.onnx_check import image_tensor, torch_predictions
    from lsnet_mm.checkpoint import load_state_dict
    model = export_tool.build_model(SEG)
    model.load_state_dict(load_state_dict(_checkpoint(tmp_path, SEG)), strict=False)
    img = export_tool.read_image(None, (96, 128))  # the tool's generated street scene
    out = str(tmp_path / 'fpn.onnx')
    assert export_end2end(model, out, image_tensor(img), dynamic=True) == ['seg']
    assert 'ArgMax' in _ops(out)
    ref = torch_predictions(model, img)['seg']
    (seg,) = run_onnxruntime(out, image_tensor(img))
    assert seg.shape == (1, 1, 96, 128) and len(np.unique(ref)) > 1
    np.testing.assert_array_equal(seg[0, 0].numpy(), ref)
    other = export_tool.read_image(None, (72, 104))  # another size: 9x13 at stride 8
    for rt in _runtimes():
        sess = OnnxModel(out, rt)
        for im in (img, other):
            res = check_end2end(model, sess, im)
            assert res['ok'] and res['agreement'] == 1.0, (rt, im.shape, res)


def test_end2end_needs_checkpoint(tmp_path, capsys):
    with pytest.raises(SystemExit):
        export_tool.main([RETINA, '--out', str(tmp_path / 'x.onnx')])
    assert 'CHECKPOINT is required' in capsys.readouterr().err


def test_export_tool_backbone_checkpoint_deploy_dynamic(tmp_path):
    """--backbone-only: the graph computes the checkpoint's weights, at any input size."""
    from lsnet_mm.checkpoint import CheckpointError
    model = export_tool.build_model(RETINA)
    randomize(model.backbone, seed=3)
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
        for r, g in zip(ref, run_onnxruntime(out, x)):  # differs by O(1) if weights differ
            torch.testing.assert_close(g, r, atol=1e-4, rtol=1e-4)
    assert 'BatchNormalization' not in _ops(out)

    sd = model.state_dict()
    sd.pop(next(k for k in sd if k.startswith('neck.')))
    torch.save(dict(state_dict=sd), ckpt)
    with pytest.raises(CheckpointError, match='does not fit'):
        export_tool.main([RETINA, ckpt, '--backbone-only', '--shape', '64', '64', '--out', out])
