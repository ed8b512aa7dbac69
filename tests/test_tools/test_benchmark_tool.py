"""tools/analysis_tools/benchmark{,_ska}.py run and report sane numbers (tiny sizes)."""
import json
import os

import pytest
import torch

from lsnet_mm import LSNet
from product_helpers import ROOT, tool

CONFIG = os.path.join(ROOT, 'configs', 'retinanet_lsnet_t.py')


@pytest.fixture(scope='module')
def benchmark():
    return tool('analysis_tools/benchmark')


def _check_entry(r):
    lat = r['latency_ms']
    assert 0 < lat['min'] <= lat['p10'] <= lat['median'] <= lat['p90']
    assert lat['mean'] > 0 and r['images_per_s'] > 0
    assert r['peak_mem_mib'] > 0
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


def test_bad_config_name_is_explained(benchmark):
    with pytest.raises(SystemExit, match='mmdet::retinanet'):
        benchmark.main(['mmdet::no/such_config.py', '--iters', '1'])


def test_ska_benchmark_runs(tmp_path, monkeypatch):
    ska_tool = tool('analysis_tools/benchmark_ska')
    monkeypatch.setattr(ska_tool, 'SHAPES', [('tiny', 1, 16, 12, 10)])
    out = tmp_path / 'out' / 'ska.json'  # the folder is created
    rows = ska_tool.main(['--warmup', '0', '--iters', '1', '--out', str(out)])
    assert {(r['what'], r['impl']) for r in rows} == {
        ('op', 'ours'), ('op', 'unfold'), ('lsconv', 'ours'), ('lsconv', 'unfold')}
    for r in rows:
        assert r['peak_mib'] > 0 and r['time_ms_median'] > 0
    op = {r['impl']: r for r in rows if r['what'] == 'op'}
    # the unfold version keeps a 9x copy of the input for backward
    assert op['unfold']['after_forward_mib'] > 3 * op['ours']['after_forward_mib']
    data = json.loads(out.read_text())
    assert data['rows'] == rows
    assert data['command'] == ('python tools/analysis_tools/benchmark_ska.py --warmup 0 '
                               f'--iters 1 --out {out}')
    table = ska_tool.format_table(rows)
    assert table.count('\n') == len(rows) + 1 and '| tiny (1, 16, 12, 10) | SKA op |' in table


def test_unfold_reference_matches_op():
    from lsnet_mm.ops import ska_reference
    x, w = torch.randn(2, 16, 5, 7), torch.randn(2, 4, 9, 5, 7)
    unfold = tool('analysis_tools/benchmark_ska').ska_unfold
    torch.testing.assert_close(unfold(x, w), ska_reference(x, w))


def test_build_model_from_cfg_reads_no_pretrained_file(tmp_path):
    """Every Pretrained init_cfg / pretrained= is dropped, at any depth, in a copy."""
    from mmengine.config import Config

    from lsnet_mm.apis import build_model_from_cfg, drop_pretrained
    cfg = dict(a=dict(init_cfg=dict(type='Pretrained', checkpoint='x.pth'), k=1),
               b=[dict(init_cfg=[dict(type='Normal'), dict(type='Pretrained', checkpoint='y')]),
                  dict(pretrained='z.pth', init_cfg=dict(type='Kaiming'))])
    assert drop_pretrained(cfg) is cfg
    assert cfg == dict(a=dict(init_cfg=None, k=1),
                       b=[dict(init_cfg=None), dict(pretrained=None,
                                                   init_cfg=dict(type='Kaiming'))])
    missing = str(tmp_path / 'no_such_file.pth')
    config = Config(dict(default_scope='mmdet', model=dict(
        type='LSNet', arch='t', init_cfg=dict(type='Pretrained', checkpoint=missing))))
    model, scope = build_model_from_cfg(config)
    model.init_weights()  # would fail reading the missing file
    assert scope == 'mmdet' and type(model) is LSNet and not model.training
    assert config.model.init_cfg.checkpoint == missing  # the caller's config is unchanged


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
