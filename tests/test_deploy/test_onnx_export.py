"""ONNX export of backbones and tensor-mode networks (lsnet_mm.deploy.onnx_export) and the
standard ONNX operators the end-to-end graphs use (lsnet_mm.deploy.onnx_ops): outputs of
PyTorch in onnxruntime and, where installed, OpenVINO."""
import numpy as np
import pytest
import torch

from lsnet_mm import LSNet
from lsnet_mm.deploy.onnx_export import TensorModeWrapper, check_onnx, export_backbone, export_onnx
from lsnet_mm.deploy.onnx_runtime import OnnxModule
from lsnet_mm.utils.optional import is_installed
from product_helpers import RETINA, tool

pytestmark = pytest.mark.usefixtures('one_thread')
ort = pytest.importorskip('onnxruntime')
onnx = pytest.importorskip('onnx')
RUNTIMES = ['onnxruntime'] + (['openvino'] if is_installed('openvino') else [])


def _ops(path):
    return [n.op_type for n in onnx.load(path).graph.node]


@pytest.mark.parametrize('deploy', [False, True], ids=['eager', 'deploy'])
def test_backbone_onnx_matches_torch(tmp_path, deploy, data_statistics):
    model = data_statistics(LSNet('t'))
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
        with torch.no_grad():
            ref = model(x)
        for rt in RUNTIMES:
            m = OnnxModule(model, path, rt, threads=1)
            assert sum(p.numel() for p in m.parameters()) == sum(
                p.numel() for p in model.parameters())
            for r, g in zip(ref, m(x)):
                torch.testing.assert_close(g, r, atol=1e-4, rtol=1e-4)


def test_retinanet_network_onnx(tmp_path, data_statistics):
    model = tool('deployment/export_onnx').build_model(RETINA)
    data_statistics(model.backbone)
    model.backbone.switch_to_deploy()
    path = str(tmp_path / 'retinanet.onnx')
    x = torch.randn(1, 3, 128, 128)
    names = export_onnx(TensorModeWrapper(model), x, path)
    assert len(names) == 10  # 5 levels x (classification, box regression)
    diffs = check_onnx(TensorModeWrapper(model), path, torch.randn(1, 3, 128, 128))
    assert max(rel for _, rel in diffs) < 1e-4


def test_batched_nms_exports_as_onnx_nms(tmp_path):
    """Class-aware NMS in onnxruntime keeps the boxes mmcv's batched_nms keeps, in order."""
    from mmcv.ops import batched_nms as mmcv_batched_nms

    from lsnet_mm.deploy.onnx_ops import batched_nms

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

    from lsnet_mm.deploy.onnx_ops import roi_align

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
