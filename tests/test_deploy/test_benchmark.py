"""tools/analysis_tools/benchmark.py runs and reports sane numbers (tiny sizes): PyTorch
modes side by side, mmdet's own configs, the whole test_step, and ONNX runtimes, float and
INT8, alternating with them."""
import json
import os

import pytest
import torch

from lsnet_mm import LSNet
from lsnet_mm.apis import launch
from lsnet_mm.utils.errors import ConfigError, ExportError
from product_helpers import ROOT, tool

pytestmark = pytest.mark.usefixtures('one_thread')
CONFIG = os.path.join(ROOT, 'configs', 'retinanet_lsnet_t.py')


@pytest.fixture(scope='module')
def benchmark():
    return tool('analysis_tools/benchmark')


def _check_entry(r, runtime=False):
    lat = r['latency_ms']
    assert 0 < lat['min'] <= lat['p10'] <= lat['median'] <= lat['p90']
    assert lat['mean'] > 0 and r['images_per_s'] > 0
    assert r['peak_mem_mib'] > 0 or runtime  # (a runtime's memory: not PyTorch's)
    assert r['params'] > 0 and r['params_m'] == pytest.approx(r['params'] / 1e6)
    assert all(t > 0 for t in r['times_ms'])
    assert r['cpu_time_ms']['median'] >= 0 and len(r['cpu_times_ms']) == len(r['times_ms'])


@pytest.mark.skipif(not os.path.exists(CONFIG), reason='detection configs not present')
def test_backbone_deploy_vs_eager_json(benchmark, tmp_path):
    out = tmp_path / 'bench.json'
    argv = [CONFIG, '--backbone-only', '--shape', '64', '64', '--warmup', '1', '--iters', '3',
            '--deploy', '--compare', CONFIG, '--out', str(out)]
    res = benchmark.main(argv)
    data = json.loads(out.read_text())
    assert data['shape'] == [64, 64] and data['iters'] == 3 and data['batch'] == 1
    assert data['command'].startswith('python tools/analysis_tools/benchmark.py ')
    dep, eager = data['results']
    assert dep['deploy'] and not eager['deploy']
    assert dep['backbone'] == eager['backbone'] == 'LSNet'
    for r in data['results']:
        _check_entry(r)
        assert len(r['times_ms']) == 3
        assert r['gmacs'] > 0
    # parameters are those of the measured module: the LSNet-T backbone, eager and fused
    assert eager['params'] == sum(p.numel() for p in LSNet('t').parameters())
    assert dep['params'] == sum(p.numel() for p in LSNet('t').switch_to_deploy().parameters())
    assert dep['params'] < eager['params']  # BN affine parameters folded away
    assert dep['gmacs'] == pytest.approx(eager['gmacs'], rel=0.05)
    assert data['ratio']['latency_other_over_this'] == pytest.approx(
        eager['latency_ms']['median'] / dep['latency_ms']['median'])
    assert res['results'][0]['name'] == dep['name']
    assert 'ratio:' in benchmark.format_table(data)


@pytest.mark.skipif(not os.path.exists(CONFIG), reason='detection configs not present')
def test_whole_detector_against_mmdet_config(benchmark, tmp_path):
    """Tensor-mode network of our config and of an ``mmdet::`` package config."""
    out = tmp_path / 'det.json'
    benchmark.main([CONFIG, '--shape', '64', '64', '--warmup', '0', '--iters', '1',
                    '--no-flops', '--compare', 'mmdet::retinanet/retinanet_r18_fpn_1x_coco.py',
                    '--out', str(out)])
    data = json.loads(out.read_text())
    ours, r18 = data['results']
    assert ours['backbone'] == 'LSNet' and r18['backbone'] == 'ResNet'
    assert not ours['backbone_only'] and ours['gmacs'] is None
    for r in data['results']:
        _check_entry(r)
    # whole RetinaNet: more than the backbone's parameters
    assert ours['params'] > sum(p.numel() for p in LSNet('t').parameters())


def test_bad_config_name_is_explained(benchmark, capsys):
    with pytest.raises(ConfigError, match='mmdet::retinanet'):
        benchmark.main(['mmdet::no/such_config.py', '--iters', '1'])
    with pytest.raises(SystemExit) as exit_info:
        launch.run_tool(lambda: benchmark.main(['mmdet::no/such_config.py', '--iters', '1']))
    assert exit_info.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: cannot load config 'mmdet::no/such_config.py'")


def test_two_stage_network_export_says_use_predict(benchmark, tmp_path):
    """mmdet 3.3 cannot export a two-stage detector's tensor-mode forward (its RPN
    post-processing imports mmdet 2's mmdet.core): an ExportError naming --predict,
    before any file is written."""
    mask = os.path.join(ROOT, 'configs', 'mask_rcnn_lsnet_t.py')
    with pytest.raises(ExportError, match='two-stage detector.*add --predict'):
        benchmark.main([mask, '--shape', '64', '64', '--runtime', 'onnxruntime', '--iters', '1',
                        '--warmup', '0', '--no-flops', '--onnx-dir', str(tmp_path / 'onnx')])
    assert not (tmp_path / 'onnx' / 'model.onnx').exists()


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(CONFIG), reason='detection configs not present')
def test_int8_runtimes_time_quantized_files(benchmark, tmp_path):
    """-int8 runtimes: the export quantized (here onnxruntime QDQ) and timed beside the
    float export and PyTorch, run by run."""
    pytest.importorskip('onnxruntime')
    onnx = pytest.importorskip('onnx')
    out = tmp_path / 'int8.json'
    benchmark.main([CONFIG, '--backbone-only', '--shape', '64', '64', '--modes', 'deploy',
                    '--warmup', '0', '--iters', '2', '--no-flops', '--threads', '1',
                    '--runtime', 'openvino', 'onnxruntime-int8', '--calib-inputs', '2',
                    '--onnx-dir', str(tmp_path / 'onnx'), '--out', str(out)])
    data = json.loads(out.read_text())
    names = [r['name'] for r in data['results']]
    assert names == ['retinanet_lsnet_t backbone [deploy]' + s for s in (
        '', ' [openvino]', ' [onnxruntime-int8]')]
    for r in data['results']:
        _check_entry(r, runtime='runtime' in r)
        assert len(r['times_ms']) == 2
    ov_float, ort_int8 = data['results'][1:]
    assert ov_float['model_file'] == str(tmp_path / 'onnx' / 'model.onnx')  # kept there
    assert ov_float['runtime'] == 'openvino'
    assert ort_int8['runtime'] == 'onnxruntime-int8'
    assert ort_int8['model_file'].endswith('model_int8.onnx')
    ops = [n.op_type for n in onnx.load(ort_int8['model_file']).graph.node]
    assert ops.count('QuantizeLinear') > 10 and 'QuantizeLinear' not in [
        n.op_type for n in onnx.load(ov_float['model_file']).graph.node]
    assert [r['other'] for r in data['ratios']] == names[1:]
    assert ' [onnxruntime-int8] |' in benchmark.format_table(data)
    # openvino-int8 quantizes with NNCF to OpenVINO IR (tested in test_quantize.py)
    assert benchmark.INT8_FILES == {'openvino-int8': 'model_int8.xml',
                                    'onnxruntime-int8': 'model_int8.onnx'}


@pytest.mark.skipif(not os.path.exists(CONFIG), reason='detection configs not present')
def test_predict_mode_includes_post_processing(benchmark, tmp_path):
    """--predict: model.test_step (preprocessing, forward, box decoding and NMS)."""
    out = tmp_path / 'predict.json'
    benchmark.main([CONFIG, '--predict', '--shape', '64', '96', '--modes', 'deploy',
                    '--warmup', '0', '--iters', '2', '--no-flops', '--out', str(out),
                    '--cfg-options', 'model.test_cfg.score_thr=0.0'])
    data = json.loads(out.read_text())
    assert data['predict'] and data['modes'] == ['deploy']
    assert data['cfg_options'] == {'model.test_cfg.score_thr': 0.0}
    (r,) = data['results']
    _check_entry(r)
    assert r['deploy'] and r['name'].endswith('[deploy]') and r['mode'] == 'deploy'
    assert r['predict'] and r['gmacs'] is None and not r['compiled']
    assert 'whole model (test_step' in benchmark.format_table(data)
    # what one timed run returns: detections in the input's pixels, the config's cap
    args = benchmark.parse_args([CONFIG, '--predict', '--shape', '64', '96', '--cfg-options',
                                 'model.test_cfg.score_thr=0.0'])
    module, info = benchmark.prepare(CONFIG, args, 'deploy', args.cfg_options)
    with torch.no_grad():
        (sample,) = module(torch.rand(1, 3, 64, 96) * 255)
    boxes = sample.pred_instances.bboxes
    assert info['deploy'] and 0 < len(boxes) <= 100  # RetinaNet's max_per_img
    assert boxes[:, 0::2].min() >= 0 and boxes[:, 0::2].max() <= 96
    assert boxes[:, 1::2].min() >= 0 and boxes[:, 1::2].max() <= 64

