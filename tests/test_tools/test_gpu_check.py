"""tools/analysis_tools/gpu_check.py: the --smoke run (every section, tiny shapes, CPU,
Triton interpreter) in a subprocess with mmcv, mmdet and mmseg blocked, asserting on
its JSON; and, in-process, a failing section being recorded while the run goes on."""
import json
import os
import subprocess
import sys
import time

import pytest

from product_helpers import ROOT, tool

SCRIPT = os.path.join(ROOT, 'tools', 'analysis_tools', 'gpu_check.py')
SECTIONS = ['env', 'op_correctness', 'op_timing', 'backbone_parity', 'train_step', 'deploy',
            'train_step_compiled', 'deploy_compiled']
# the script must run where only torch, triton and mmengine are installed
BLOCKED = ("import runpy, sys\n"
           "sys.modules['mmcv'] = sys.modules['mmdet'] = sys.modules['mmseg'] = None\n"
           "sys.argv = [{script!r}] + {argv!r}\n"
           "runpy.run_path({script!r}, run_name='__main__')\n")


@pytest.fixture(scope='module')
def smoke(tmp_path_factory):
    pytest.importorskip('triton')
    out = tmp_path_factory.mktemp('gpu_smoke')
    env = {k: v for k, v in os.environ.items() if k not in ('TRITON_INTERPRET', 'LSNET_SKA_TORCH')}
    code = BLOCKED.format(script=SCRIPT, argv=['--smoke', '--out-dir', str(out)])
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True,
                       timeout=900, cwd=ROOT)
    wall = time.perf_counter() - t0
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    with open(out / 'gpu_check.json') as f:
        data = json.load(f)
    return data, (out / 'gpu_check.md').read_text(), wall, r.stdout


@pytest.mark.slow
def test_smoke_sections_all_ran(smoke):
    data, report, wall, stdout = smoke
    assert data['smoke'] and data['device'] == 'cpu' and data['exit_status'] == 0
    assert list(data['sections']) == SECTIONS
    for name, sec in data['sections'].items():
        assert sec['status'] == 'ok' and sec['error'] is None, (name, sec['error'])
        assert sec['skipped'] == [], (name, sec['skipped'])
        assert 0 < sec['elapsed_s'] <= sec['budget_s']
        assert all(c['passed'] for c in sec['checks'])
        assert f'gpu_check: {name}: ok' in stdout
    assert data['failed_checks'] == [] and data['errored_sections'] == []
    assert sum(s['elapsed_s'] for s in data['sections'].values()) <= data['total_s'] < wall
    assert report.startswith('# GPU check') and '| op_correctness | ok |' in report


@pytest.mark.slow
def test_smoke_env_needs_no_openmmlab(smoke):
    env = smoke[0]['sections']['env']['data']
    assert env['openmmlab_imported'] == []  # installed here, blocked in the subprocess
    assert set(env['versions']) == {'python', 'torch', 'cuda', 'triton', 'mmengine', 'lsnet_mm'}
    assert env['ska_dispatch'] == dict(triton_import_error=None, interpret=True,
                                       torch_only=False)
    copy = env['copy']
    assert copy['bytes'] == 2 * 2 ** 18 * 4 and copy['gbps'] > 0
    assert copy['gbps'] == pytest.approx(copy['bytes'] / 1e9 / (copy['ms'] * 1e-3))


@pytest.mark.slow
def test_smoke_op_correctness(smoke):
    sec = smoke[0]['sections']['op_correctness']
    names = [c['name'] for c in sec['checks']]
    assert "backend='auto' runs the Triton kernel" in names
    assert {'> 2^31 elements (bf16)', 'gradcheck float64',
            'no fallback to the PyTorch path'} <= set(names)
    cases = sec['data']['cases']
    assert {c['variant'] for c in cases} == {
        'contiguous', 'channels_last_x', 'sliced_x', 'expanded_grad', 'channels_last_grad',
        'grad_x_only', 'grad_w_only', 'repeat_bitwise'}
    assert {c['dtype'] for c in cases} == {'fp32', 'fp16', 'bf16', 'bf16x_fp32w',
                                           'fp16x_fp32w'}
    assert [1, 8, 1, 1, 1] in [c['shape'] for c in cases]
    for c in cases:
        assert c['passed']
        assert set(c['errors']) >= {'out'} and all(
            0 <= e < 0.02 for e in c['errors'].values() if not isinstance(e, bool))
        if c['variant'] == 'grad_x_only':
            assert 'grad_w' not in c['errors']
        if c['variant'] == 'repeat_bitwise':
            assert c['errors']['bitwise_repeat'] is True
    fp32 = [e for c in cases if c['dtype'] == 'fp32' for e in c['errors'].values()
            if not isinstance(e, bool)]
    assert max(fp32) < 1e-5  # float32 accumulation against the float64 loop
    assert sec['data']['more_than_2_31']['passed']


@pytest.mark.slow
def test_smoke_op_timing_bytes_and_bandwidth(smoke):
    data = smoke[0]
    rows = data['sections']['op_timing']['data']['rows']
    copy_gbps = data['sections']['env']['data']['copy']['gbps']
    assert {(r['impl'], r['dtype']) for r in rows} == {
        (i, d) for i in ('triton', 'torch', 'unfold') for d in ('fp32', 'bf16x_fp32w')}
    for r in rows:
        b, c, h, w = r['input']
        xb = b * c * h * w * (4 if r['dtype'] == 'fp32' else 2)
        wb = b * r['groups'] * 9 * h * w * 4
        assert r['fwd']['min_bytes'] == 2 * xb + wb  # read x, w; write out
        assert r['fwd_bwd']['min_bytes'] == 2 * xb + wb + 3 * xb + 2 * wb
        for mode in ('fwd', 'fwd_bwd'):
            m = r[mode]
            assert m['ms'] > 0
            assert m['gbps'] == pytest.approx(m['min_bytes'] / 1e9 / (m['ms'] / 1e3))
            assert m['pct_copy'] == pytest.approx(100 * m['gbps'] / copy_gbps)
            assert m['peak_mib'] is None  # CPU: no CUDA memory figure


@pytest.mark.slow
def test_smoke_backbones_training_deploy(smoke):
    s = smoke[0]['sections']
    parity = s['backbone_parity']['data']['rows']
    assert [r['precision'] for r in parity] == ['fp32', 'bf16', 'fp16']
    for r in parity:
        assert r['output_rel_err'] <= r['tolerance'] and r['grad_rel_err'] <= r['tolerance']
        assert r['params_with_grad'] > 10
    assert parity[0]['output_rel_err'] < 1e-5
    train = s['train_step']['data']['rows']
    assert {(r['path'], r['precision']) for r in train} == {
        (p, q) for p in ('triton', 'torch', 'unfold') for q in ('fp32', 'bf16')}
    assert all(r['ms'] > 0 for r in train)
    (compiled,) = s['train_step_compiled']['data']['rows']
    assert compiled['graphs'] >= 1 and compiled['first_step_s'] > 0
    assert compiled['compiled']['ms'] > 0 and compiled['path'] == 'triton'
    for key in ('deploy', 'deploy_compiled'):
        rows = s[key]['data']['rows']
        assert {r['measure'] for r in rows} == {'throughput', 'latency'}
        for r in rows:
            assert r['images_per_s'] == pytest.approx(r['input'][0] / (r['ms'] / 1e3))
            assert r['compiled'] == (key == 'deploy_compiled')
    goals = smoke[0]['goals']
    assert len(goals) == 4 and all(g['met'] is None and g['note'] for g in goals)


# ------------------------------------------------------------------- in-process
@pytest.fixture(scope='module')
def gpu_check():
    return tool('analysis_tools/gpu_check')


def test_failing_section_is_recorded_and_the_run_goes_on(gpu_check, tmp_path, monkeypatch):
    calls = []

    def broken(chk, sec):
        calls.append('env')
        raise RuntimeError('section exploded')

    def failing_check(chk, sec):
        calls.append('op_timing')
        sec.data['x'] = 1
        sec.check('a check that fails', False, detail='why')
        sec.check('a check that passes', True)

    def fine(chk, sec):
        calls.append('deploy')
        sec.can_start('an item that does not fit', 1e9)

    monkeypatch.setattr(gpu_check, 'SECTIONS', dict(gpu_check.SECTIONS, env=broken,
                                                    op_timing=failing_check, deploy=fine))
    result = gpu_check.main(['--device', 'cpu', '--sections', 'env', 'op_timing', 'deploy',
                             '--out-dir', str(tmp_path)])
    assert calls == ['env', 'op_timing', 'deploy']
    data = json.loads((tmp_path / 'gpu_check.json').read_text())
    s = data['sections']
    assert s['env']['status'] == 'error' and 'RuntimeError: section exploded' in s['env']['error']
    assert 'Traceback' in s['env']['error']
    assert s['op_timing']['status'] == 'failed' and s['op_timing']['data'] == {'x': 1}
    assert s['deploy']['status'] == 'ok'
    assert s['deploy']['skipped'][0].startswith('an item that does not fit (time budget')
    assert data['exit_status'] == result['exit_status'] == 1
    assert data['errored_sections'] == ['env']
    assert data['failed_checks'] == ['op_timing: a check that fails']
    assert all(r['elapsed_s'] >= 0 for r in s.values())
    report = (tmp_path / 'gpu_check.md').read_text()
    assert '## Failures' in report and 'section exploded' in report
    assert 'check failed: op_timing: a check that fails' in report


def test_deadline_skips_the_rest(gpu_check):
    ran = []
    results = gpu_check.run_sections(
        [('a', 10, lambda sec: ran.append('a')), ('b', 10, lambda sec: ran.append('b'))],
        deadline=time.perf_counter() - 1)
    assert ran == [] and [r['status'] for r in results.values()] == ['skipped', 'skipped']


def test_goals_from_measurements(gpu_check):
    def timing(pct):
        return [dict(impl='triton', dtype='fp32', shape='T stage 1', input=[8, 64, 100, 168],
                     fwd=dict(pct_copy=pct), fwd_bwd=dict(pct_copy=pct - 20))]

    train = [dict(faster_than_torch_path=True, below_unfold_peak=True),
             dict(faster_than_torch_path=False, below_unfold_peak=True)]
    results = {'op_timing': {'data': {'rows': timing(75.0)}},
               'train_step': {'data': {'goals': train}}}
    goals = gpu_check.evaluate_goals(results, smoke=False)
    assert [g['met'] for g in goals] == [True, False, False, True]
    assert goals[2]['value'] == '1/2'
    assert [g['met'] for g in gpu_check.evaluate_goals({}, smoke=False)] == [None] * 4
