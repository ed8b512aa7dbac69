"""INT8 quantization (lsnet_mm.deploy.quantize, tools/deployment/quantize.py): which nodes
stay in float, calibration through the test pipeline, INT8 files that load and run in
OpenVINO and onnxruntime and agree with the float model, and the tool's evaluation of
both on the val set."""
import json
import os.path as osp
import re

import numpy as np
import pytest
import torch

from lsnet_mm.apis import build_model_from_cfg, launch
from lsnet_mm.deploy import (
    OnnxModel,
    calibration_inputs,
    export_end2end,
    float_node_names,
    prepare_for_export,
    quantize_onnx,
)
from lsnet_mm.deploy.onnx_check import compare_detections_iou, compare_label_maps
from lsnet_mm.models.layers import LSConv
from lsnet_mm.utils.errors import ConfigError
from product_helpers import tool

pytestmark = pytest.mark.usefixtures('one_thread')
pytest.importorskip('onnxruntime')
onnx = pytest.importorskip('onnx')

#: tolerances of the INT8 files against the float ones on these barely trained models
#: (stated in docs/deployment.md): of the float detections scoring >= 0.3, the fraction
#: found at IoU >= 0.5 with the same label, of those overlapped at IoU >= 0.5 the fraction
#: with the same label, the mean best IoU; the fraction of equal label-map pixels (the
#: logits of a 2-iteration segmentor are close: OpenVINO, which runs onnxruntime's QDQ
#: file with its own INT8 kernels, flips more of them; measured 0.97 / 0.87-0.89)
MIN_FOUND, MIN_LABEL_AGREEMENT, MIN_MEAN_IOU = 0.8, 0.9, 0.7
MIN_PIXEL_AGREEMENT = dict(onnxruntime=0.95, openvino=0.8)


def _export(trained, tmp_path):
    """The trained model's float end-to-end file (dynamic) and 4 calibration inputs from
    its train split."""
    cfg = trained['cfg']
    model = prepare_for_export(build_model_from_cfg(cfg)[0], trained['checkpoint'], True)
    inputs = calibration_inputs(cfg, cfg, split='train', num=4)
    path = str(tmp_path / 'float.onnx')
    export_end2end(model, path, torch.from_numpy(inputs[0]), dynamic=True)
    return model, cfg, path, inputs


def _predict(model, x):
    """An end-to-end file's predictions for one graph input, as onnx_predictions gives them."""
    out = model(x)
    if 'seg' in out:
        return dict(seg=out['seg'][0, 0])
    dets = out['dets'][0]
    return dict(bboxes=dets[:, :4], scores=dets[:, 4], labels=out['labels'][0])


@pytest.fixture(scope='module')
def detector_export(trained_detector, tmp_path_factory):
    return _export(trained_detector, tmp_path_factory.mktemp('detector'))


def test_float_nodes_of_a_detector_export(detector_export):
    """The groups kept in float: the small-kernel aggregation is 9 products and 8 sums per
    LS convolution, the post-processing holds NMS and TopK, the network outputs are the
    head's last convolutions and no other convolution is kept."""
    model, cfg, path, inputs = detector_export
    assert len(inputs) == 4 and all(x.shape[:2] == (1, 3) and x.dtype == np.float32
                                    for x in inputs)
    assert inputs[0].shape[2:] == (96, 96) and 0 <= inputs[0].min() and inputs[0].max() <= 255
    groups = float_node_names(path)
    graph = {n.name: n.op_type for n in onnx.load(path).graph.node}
    num_lsconv = sum(isinstance(m, LSConv) for m in model.modules())
    ska = [graph[n] for n in groups['small-kernel aggregation']]
    assert num_lsconv > 0 and ska.count('Mul') == 9 * num_lsconv
    assert ska.count('Add') == 8 * num_lsconv and len(ska) == 17 * num_lsconv
    post = {graph[n] for n in groups['pre- and post-processing']}
    assert {'NonMaxSuppression', 'TopK', 'Sigmoid'} <= post
    kept = {n for g, names in groups.items() if g != 'network outputs' for n in names}
    assert not any(graph[n] in ('Conv', 'MatMul') for n in kept)
    # what the post-processing reads (float in onnxruntime's QDQ files): the 5 levels'
    # class and box convolutions of the RetinaNet head
    outputs = groups['network outputs']
    assert [graph[n] for n in outputs] == ['Conv'] * 10
    scopes = [re.sub(r'_\d+$', '', n.split('/')[-2]) for n in outputs]  # (repeated calls)
    assert sorted(scopes) == ['retina_cls'] * 5 + ['retina_reg'] * 5
    assert len(groups['softmax']) == sum(op == 'Softmax' for op in graph.values()) > 0
    assert {graph[n] for n in groups['constant expressions']} >= {'Gather'}  # bias tables


def test_detector_int8_openvino_agrees_with_float(detector_export, tmp_path):
    """NNCF (the main path): an OpenVINO IR with INT8 convolutions whose detections are the
    float model's within the stated tolerance."""
    _, cfg, path, inputs = detector_export
    out = str(tmp_path / 'int8' / 'retinanet.xml')
    info = quantize_onnx(path, out, inputs)
    assert info['backend'] == 'openvino' and info['num_calibration'] == 4
    assert osp.isfile(out) and osp.isfile(out[:-4] + '.bin')
    import openvino as ov
    types = [op.get_type_name() for op in ov.Core().read_model(out).get_ordered_ops()]
    assert types.count('FakeQuantize') > 20  # INT8 activations before the convolutions
    float_model, int8_model = OnnxModel(path, 'openvino'), OnnxModel(out, 'openvino')
    images = calibration_inputs(cfg, cfg, split='val')
    assert len(images) == 2
    for img in images:
        ref, got = _predict(float_model, img), _predict(int8_model, img)
        res = compare_detections_iou(ref, got, min_score=0.3)
        assert res['num_ref'] > 0, 'nothing to compare: the float model detects nothing'
        assert res['found'] >= MIN_FOUND and res['label_agreement'] >= MIN_LABEL_AGREEMENT, res
        assert res['mean_iou'] >= MIN_MEAN_IOU, res


def test_segmentor_int8_onnxruntime_runs_in_both_runtimes(trained_segmentor, tmp_path):
    """onnxruntime QDQ: an ONNX file with INT8 convolutions that runs in onnxruntime and
    OpenVINO and gives the float model's label maps within the stated tolerance."""
    _, cfg, path, inputs = _export(trained_segmentor, tmp_path)
    out = str(tmp_path / 'fpn_int8.onnx')
    info = quantize_onnx(path, out, inputs)
    assert info['backend'] == 'onnxruntime'
    ops = [n.op_type for n in onnx.load(out).graph.node]
    assert ops.count('QuantizeLinear') > 20 and ops.count('DequantizeLinear') > 20
    images = calibration_inputs(cfg, cfg, split='val')
    assert len(images) == 2
    for rt in ('onnxruntime', 'openvino'):
        float_model, int8_model = OnnxModel(path, rt), OnnxModel(out, rt)
        for img in images:
            ref = _predict(float_model, img)['seg']
            res = compare_label_maps(ref, _predict(int8_model, img)['seg'],
                                     MIN_PIXEL_AGREEMENT[rt])
            assert len(np.unique(ref)) > 1 and res['ok'], (rt, res)


def test_bad_output_extension_is_one_error_line(capsys, tmp_path):
    quantize = tool('deployment/quantize')
    with pytest.raises(SystemExit) as exit_info:
        launch.run_tool(lambda: quantize.main(['cfg.py', 'ckpt.pth', '--out',
                                               str(tmp_path / 'model.bin')]))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f'error: --out {tmp_path / "model.bin"}: name an OpenVINO .xml file (NNCF '
                   f'quantization, the main path) or a .onnx file (onnxruntime QDQ '
                   f'quantization)']
    with pytest.raises(ConfigError, match='calibration folder .* not found'):
        calibration_inputs(None, str(tmp_path / 'no_such_folder'))


@pytest.mark.slow
def test_quantize_tool_evaluates_int8_beside_float(trained_segmentor, tmp_path, capsys):
    """The tool: calibration images from a folder, export, INT8, and the val metrics of
    the float and the INT8 file from the config's own evaluator, with their difference."""
    t = trained_segmentor
    train_images = osp.join(t['cfg'].train_dataloader.dataset.data_root, 'images',
                            'training')
    out, work = str(tmp_path / 'fpn_int8.onnx'), str(tmp_path / 'work')
    res = tool('deployment/quantize').main([
        t['config'], t['checkpoint'], '--out', out, '--calib', train_images, '--num', '2',
        '--work-dir', work, '--threads', '1', '--cfg-options', *t['opts']])
    assert res['num_calibration'] == 2 and res['float_path'] == str(tmp_path / 'fpn_int8'
                                                                       '_float.onnx')
    assert set(res['metrics']) == {'float', 'int8'}
    for kind in ('float', 'int8'):
        assert {'mIoU', 'mAcc', 'aAcc'} <= set(res['metrics'][kind])
    rows = {r['metric']: r for r in res['comparison']}
    assert rows['mIoU']['diff'] == pytest.approx(res['metrics']['int8']['mIoU']
                                                 - res['metrics']['float']['mIoU'])
    saved = json.load(open(osp.join(work, 'quantize.json')))
    assert saved['comparison'] == res['comparison'] and saved['path'] == out
    printed = capsys.readouterr().out
    assert 'calibration: 2 images through the test pipeline' in printed
    assert f"| mIoU | {rows['mIoU']['float']:.4f} | {rows['mIoU']['int8']:.4f} |" in printed
    assert all(res['kept_float'][g] > 0 for g in ('pre- and post-processing',
                                                  'small-kernel aggregation'))
