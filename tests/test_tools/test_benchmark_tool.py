"""tools/analysis_tools/benchmark_ska.py (the SKA memory benchmark: another engineer's
tool) and lsnet_mm.apis.build_model_from_cfg; tools/analysis_tools/benchmark.py is tested in
tests/test_deploy/test_benchmark.py."""
import json

import torch

from lsnet_mm import LSNet
from product_helpers import tool


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
