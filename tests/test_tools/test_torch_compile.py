"""torch.compile: compiled vs eager outputs of the deploy-mode layers and backbone,
``tools/test.py --compile`` and ``tools/infer.py --compile`` (after ``--deploy``),
``compile=True`` in a training config through tools/train.py, and the benchmark
tool's compile mode.

Inductor (torch.compile's default backend) needs ~15-20 s on the 2-core CI machine
for even one small layer (C++ kernels built with the system compiler; ~90 s for the
LSNet-T backbone, cached afterwards), so it runs on one deploy-mode LS block. The
end-to-end runs use TorchDynamo with a recording backend (``compile.backend=...``,
mmengine's way to pass torch.compile options): the model code is captured as in an
inductor run (same graph breaks and guards), the captured graphs run as they are, and
the test sees which graphs were compiled.
"""
import glob
import json
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from torch._dynamo.utils import counters

from lsnet_mm import LSNet
from lsnet_mm.models.layers import reparameterize
from lsnet_mm.models.layers.block import LSNetBlock
from product_helpers import RETINA, SEG, random_checkpoint, seg_opts, tiny_ade, tool

pytestmark = pytest.mark.usefixtures('one_thread')

RECORDER = 'lsnet_test_recorder'
GRAPHS = []  # the code of every FX graph the recording backend was given


def _record(gm, example_inputs):
    GRAPHS.append(gm.code)
    return gm.forward


if RECORDER not in torch._dynamo.list_backends(exclude_tags=()):
    torch._dynamo.register_backend(_record, name=RECORDER)

# The Semantic FPN demo with a small LSNet (every kind of block: RepVGG + SE, LS
# convolution, attention) and a 16-channel neck and head: all code paths of the paper
# models, a fraction of the ops to capture (the RetinaNet demo at 96 px, even with this
# backbone, took ~50 s to capture: mmdet's target assignment breaks the graph ~40 times).
# The optimizer settings of the detection configs: paramwise_cfg makes mmengine's param
# groups ConfigDicts, on which TorchDynamo fails if it traces the optimizer step.
TINY_SEG = f"""_base_ = '{SEG}'
model = dict(
    backbone=dict(arch=dict(_delete_=True, embed_dims=(16, 32, 32, 48), depths=(0, 2, 0, 2))),
    neck=dict(in_channels=[16, 32, 32, 48], out_channels=16),
    decode_head=dict(in_channels=[16] * 4, channels=16))
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={{'attention_biases': dict(decay_mult=0.0)}}))
"""


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()
    GRAPHS.clear()
    yield
    torch._dynamo.reset()


@pytest.fixture(scope='module')
def seg(tmp_path_factory):
    """(config, checkpoint, tiny ADE data root)."""
    d = tmp_path_factory.mktemp('compile_seg')
    config = str(d / 'tiny_seg.py')
    with open(config, 'w') as f:
        f.write(TINY_SEG)
    root = tiny_ade(str(d / 'ade'))
    return config, random_checkpoint(config, str(d / 'w.pth'), init_weights=False), root


def _dumped_config(work_dir, config):
    """The config the runner wrote into its work dir."""
    from mmengine.config import Config
    return Config.fromfile(osp.join(work_dir, osp.basename(config)))


def test_deploy_ls_block_inductor_matches_eager():
    """Inductor (the default backend) on a deploy-mode LS-convolution block: the SKA
    op's PyTorch path (a custom autograd.Function) compiles into one graph."""
    block = LSNetBlock(16, depth_index=1, use_attention=False).eval()
    for m in block.modules():  # BN statistics away from the identity
        if isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(m.running_mean, -0.5, 0.5)
            torch.nn.init.uniform_(m.running_var, 0.5, 2.0)
    reparameterize(block)
    assert block.mixer.deploy and not hasattr(block.mixer, 'bn')
    x = torch.randn(2, 16, 9, 7)
    with torch.no_grad():
        want = block(x)
        got = torch.compile(block)(x)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert counters['stats']['unique_graphs'] == 1 and not counters['graph_break']


def test_deploy_backbone_compiles_to_one_graph():
    """LSNet-T in deploy mode through AOTAutograd (inductor's front end: in-place ops
    functionalised) in one graph, equal to eager."""
    model = LSNet('t').eval().switch_to_deploy()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        want = model(x)
        got = torch.compile(model, backend='aot_eager')(x)
    assert len(got) == len(want) == 4
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-4)
    assert counters['stats']['unique_graphs'] == 1 and not counters['graph_break']


def test_tools_test_compile_after_deploy(seg, tmp_path):
    """tools/test.py --deploy --compile: the same metrics as --deploy alone; the graphs
    compiled are those of the deploy-mode model; the dumped config says compile."""
    test_tool = tool('test')
    config, weights, root = seg
    opts = seg_opts(root)
    eager = test_tool.main([config, weights, '--deploy', '--work-dir', str(tmp_path / 'e'),
                            '--cfg-options', *opts])
    assert not GRAPHS
    compiled = test_tool.main([config, weights, '--deploy', '--compile', '--work-dir',
                               str(tmp_path / 'c'), '--cfg-options', *opts,
                               f'compile.backend={RECORDER}'])
    assert compiled == eager and set(eager) >= {'mIoU', 'aAcc'}
    code = '\n'.join(GRAPHS)
    # the deploy-mode LSConv's folded BatchNorm, and none of the training form's
    assert 'bn_scale' in code and 'lkp' in code and 'mixer_modules_bn' not in code
    assert _dumped_config(str(tmp_path / 'c'), config).compile == dict(backend=RECORDER)
    assert 'compile' not in _dumped_config(str(tmp_path / 'e'), config)


def test_tools_infer_compile_same_label_maps(seg, tmp_path):
    """tools/infer.py --deploy --compile: the config's compile options, equal label maps."""
    infer = tool('infer')
    config, weights, root = seg
    compile_config = str(tmp_path / 'compile_seg.py')
    with open(compile_config, 'w') as f:
        f.write(f"_base_ = '{config}'\ncompile = dict(backend='{RECORDER}')\n")
    image = sorted(glob.glob(osp.join(root, 'images', 'validation', '*.jpg')))[0]
    maps = []
    for name, cfg, flags in (('eager', config, []), ('compiled', compile_config, ['--compile'])):
        infer.main([image, cfg, '--weights', weights, '--out-dir', str(tmp_path / name),
                    '--deploy', '--no-save-vis', *flags])
        maps.append(cv2.imread(str(tmp_path / name / 'pred' / '00000000_pred.png'),
                               cv2.IMREAD_UNCHANGED))
        assert bool(GRAPHS) == (name == 'compiled')
    assert maps[0] is not None and len(np.unique(maps[0])) > 1
    assert np.array_equal(maps[0], maps[1])
    assert 'bn_scale' in '\n'.join(GRAPHS)


def _losses(work_dir):
    (path,) = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    with open(path) as f:
        rows = [json.loads(line) for line in f]
    return [r['loss'] for r in rows if 'loss' in r]


def test_train_with_compile_logs_eager_losses(seg, tmp_path):
    """compile in a training config (mmengine compiles train_step): three iterations
    from the same seed log the losses of an eager run, with the forward and the
    losses compiled; the optimizer (paramwise ConfigDict groups) steps eagerly."""
    train_tool = tool('train')
    config, _, root = seg
    runs = {}
    for name, extra in (('eager', []), ('compiled', [f'compile.backend={RECORDER}'])):
        wd = str(tmp_path / name)
        train_tool.main([config, '--work-dir', wd, '--cfg-options',
                         *seg_opts(root, max_iters=3, crop=32), *extra])
        runs[name] = _losses(wd)
        assert bool(GRAPHS) == (name == 'compiled')
    assert len(runs['eager']) == 3
    np.testing.assert_allclose(runs['compiled'], runs['eager'], rtol=1e-5)
    code = '\n'.join(GRAPHS)
    assert 'cross_entropy' in code and 'lkp' in code  # losses and backbone compiled


def test_benchmark_modes_json(tmp_path):
    """benchmark.py --modes eager deploy+compile: one run, JSON fields for the modes."""
    benchmark = tool('analysis_tools/benchmark')
    out = tmp_path / 'compile.json'
    benchmark.main([RETINA, '--backbone-only', '--shape', '32', '32', '--modes', 'eager',
                    'deploy+compile', '--warmup', '0', '--iters', '2', '--threads', '1',
                    '--no-flops', '--cfg-options', f'compile.backend={RECORDER}',
                    '--out', str(out)])
    data = json.loads(out.read_text())
    assert data['modes'] == ['eager', 'deploy+compile'] and not data['predict']
    assert data['cfg_options'] == {'compile.backend': RECORDER}
    eager, comp = data['results']
    assert (eager['mode'], eager['deploy'], eager['compiled']) == ('eager', False, False)
    assert (comp['mode'], comp['deploy'], comp['compiled']) == ('deploy+compile', True, True)
    assert comp['name'].endswith('backbone [deploy+compile]')
    assert comp['compile_options'] == {'backend': RECORDER} and eager['compile_options'] is None
    assert comp['first_run_s'] > 0 and 'first_run_s' not in eager
    assert len(comp['times_ms']) == len(eager['times_ms']) == 2
    # the compiled module's parameters are the deploy-mode backbone's
    assert comp['params'] == sum(p.numel() for p in LSNet('t').switch_to_deploy().parameters())
    assert data['ratio']['other'] == comp['name']
    assert data['ratio']['latency_other_over_this'] == pytest.approx(
        comp['latency_ms']['median'] / eager['latency_ms']['median'])
    assert 'bn_scale' in '\n'.join(GRAPHS)
    assert 'first run (compilation) of' in benchmark.format_table(data)
