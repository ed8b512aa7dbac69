"""A diverging run stops with a clear error and leaves no non-finite checkpoint;
tools/test.py refuses non-finite weights; a neck that does not fit the LSNet arch is
named as such; unreadable checkpoint files are told apart from malicious pickles; a
resumed segmentation run reproduces the uninterrupted one.

The training runs are Semantic FPN-LSNet-T demo runs on 8 generated 64x48 images
(iteration-based, a few iterations each).
"""
import os
import os.path as osp
import pickle
import re
import shutil
import zipfile

import numpy as np
import pytest
import torch
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn

from lsnet_mm.checkpoint import CheckpointError, find_resume_checkpoint, load_checkpoint
from lsnet_mm.engine.hooks import FiniteLossHook, NonFiniteLossError
from lsnet_mm.utils import launch
from lsnet_mm.utils.model_check import ModelConfigError
from product_helpers import ROOT, SEG, random_checkpoint, seg_opts, tiny_ade, tool

train_tool, test_tool = tool('train'), tool('test')
pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def ade(tmp_path_factory):
    return tiny_ade(str(tmp_path_factory.mktemp('ade')), num_train=8)


def run_cli(capsys, main, argv):
    """A tool's main through launch.run_tool: (exit status, stderr)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        launch.run_tool(lambda: main([str(a) for a in argv]))
    return e.value.code, capsys.readouterr().err


def finite(path):
    sd = torch.load(path, map_location='cpu')['state_dict']
    return all(torch.isfinite(v).all() for v in sd.values() if v.is_floating_point())


# --------------------------------------------------------------------- diverging runs

def test_diverging_run_stops_and_keeps_only_finite_checkpoints(ade, tmp_path, capsys):
    # lr 1e6 (the case: loss NaN from iteration 2, logged as INFO, every
    # checkpoint NaN, then evaluated with exit 0); a checkpoint every iteration
    wd = str(tmp_path / 'run')
    code, err = run_cli(capsys, train_tool.main, [
        SEG, '--work-dir', wd, '--cfg-options', *seg_opts(ade, max_iters=6),
        'optim_wrapper.optimizer.lr=1e6', 'default_hooks.checkpoint.interval=1',
        'default_hooks.checkpoint.max_keep_ckpts=10'])
    assert code == 2
    line = err.strip().splitlines()[-1]
    assert line.startswith('error: training diverged'), err[-3000:]
    m = re.search(r'iteration (\d+)', line)
    assert m, line
    stopped = int(m.group(1))
    assert 1 <= stopped < 6  # stopped early, at the iteration named
    assert 'learning rate' in line and 'lr now ' in line and 'data' in line
    assert 'Traceback' not in err
    saved = sorted(f for f in os.listdir(wd) if f.endswith('.pth'))
    # every checkpoint on disk is finite and from before the divergence
    assert all(finite(osp.join(wd, f)) for f in saved), saved
    assert all(int(re.findall(r'\d+', f)[0]) < stopped for f in saved), (saved, stopped)
    assert not [f for f in os.listdir(wd) if f.startswith('.tmp-')]
    if saved:
        with open(osp.join(wd, 'last_checkpoint')) as f:
            last = f.read().strip()
        assert last == osp.join(wd, saved[-1]) and last in line
    else:
        assert not osp.exists(osp.join(wd, 'last_checkpoint'))


class _Toy(BaseModel):
    """y = w x: training on mmengine's Runner in milliseconds."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, targets, mode='tensor'):
        out = self.linear(torch.stack(inputs))
        if mode == 'loss':
            return dict(loss=((out - torch.stack(targets)) ** 2).mean())
        return out


def _toy_runner(tmp_path, hooks, poison_at, where, max_epochs=3):
    """A Runner whose loss ('loss') or one weight ('weights') turns non-finite after
    iteration ``poison_at`` (1-based), before FiniteLossHook checks it."""
    from mmengine.hooks import Hook

    class Poison(Hook):
        priority = 'VERY_HIGH'

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            if runner.iter + 1 != poison_at:
                return
            if where == 'loss':
                outputs['loss'] = outputs['loss'] * float('nan')
            else:  # as an overflowing update would
                with torch.no_grad():
                    runner.model.linear.weight[0, 0] = float('inf')

    data = [dict(inputs=torch.randn(2), targets=torch.randn(1)) for _ in range(4)]
    return Runner(
        model=_Toy(), work_dir=str(tmp_path), experiment_name=f'toy{tmp_path.name}',
        train_dataloader=dict(dataset=data, batch_size=2, num_workers=0,
                              sampler=dict(type='DefaultSampler', shuffle=False)),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs),
        default_hooks=dict(checkpoint=dict(type='SafeCheckpointHook', interval=1),
                           logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=hooks + [Poison()], default_scope='mmengine')


def test_finite_loss_hook_names_the_iteration(tmp_path):
    runner = _toy_runner(tmp_path, [dict(type='FiniteLossHook')], poison_at=4, where='loss')
    with pytest.raises(NonFiniteLossError) as e:
        runner.train()
    msg = str(e.value)
    assert msg.startswith('training diverged at iteration 4 (epoch 2, batch 2): the loss is '
                          'not finite (loss=nan)'), msg
    assert f'{tmp_path}/epoch_1.pth' in msg and 'learning rate' in msg and 'lr now 0.01:' in msg
    assert sorted(f for f in os.listdir(tmp_path) if f.endswith('.pth')) == ['epoch_1.pth']


def test_safe_checkpoint_hook_never_writes_non_finite_weights(tmp_path):
    # no FiniteLossHook: a weight turns inf in the last iteration of epoch 2
    runner = _toy_runner(tmp_path, [], poison_at=4, where='weights')
    with pytest.raises(NonFiniteLossError) as e:
        runner.train()
    msg = str(e.value)
    assert 'not saving the checkpoint of epoch 2' in msg and 'linear.weight (1 of 2 values)' in msg
    assert sorted(f for f in os.listdir(tmp_path) if f.endswith('.pth')) == ['epoch_1.pth']
    with open(tmp_path / 'last_checkpoint') as f:
        assert f.read().strip() == str(tmp_path / 'epoch_1.pth')
    assert finite(tmp_path / 'epoch_1.pth')


def test_finite_loss_hook_weights_check(tmp_path):
    # the loss of iteration 3 is finite, the weights after its step are not
    hook = dict(type='FiniteLossHook', check_weights=True)
    runner = _toy_runner(tmp_path, [hook], poison_at=3, where='weights')
    with pytest.raises(NonFiniteLossError, match=r'at iteration 3 .*weights are not after the '
                                                 r'optimizer step.*linear\.weight \(1 of 2'):
        runner.train()
    # without the weights check, the next loss shows it
    runner = _toy_runner(tmp_path / 'b', [dict(type='FiniteLossHook')], 3, 'weights')
    with pytest.raises(NonFiniteLossError, match=r'at iteration 4 .*the loss is not finite'):
        runner.train()
    with pytest.raises(ValueError):
        FiniteLossHook(interval=0)


# --------------------------------------------------------------------- checkpoints

@pytest.fixture(scope='module')
def nan_checkpoint(tmp_path_factory):
    path = str(tmp_path_factory.mktemp('ckpt') / 'nan.pth')
    random_checkpoint(SEG, path)
    ckpt = torch.load(path, map_location='cpu')
    ckpt['state_dict']['decode_head.conv_seg.weight'][0, 0] = float('nan')
    torch.save(ckpt, path)
    return path


def test_test_tool_refuses_non_finite_checkpoint(ade, nan_checkpoint, tmp_path, capsys):
    wd = tmp_path / 'test'
    code, err = run_cli(capsys, test_tool.main, [SEG, nan_checkpoint, '--work-dir', wd,
                                                 '--cfg-options', *seg_opts(ade)])
    assert code == 2, err[-3000:]
    line = err.strip().splitlines()[-1]
    assert line.startswith(f'error: checkpoint {nan_checkpoint!r} holds non-finite weights')
    assert 'decode_head.conv_seg.weight (1 of 384 values)' in line, line
    assert not osp.exists(wd / 'metrics.json')


def test_resume_skips_non_finite_checkpoint(tmp_path):
    # e.g. written by mmengine's own CheckpointHook in a diverged run
    for it, value in ((2, 0.0), (4, float('nan'))):
        torch.save(dict(state_dict={'w': torch.full((2,), value)}, meta=dict(epoch=0, iter=it)),
                   tmp_path / f'iter_{it}.pth')
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_4.pth'))
    assert find_resume_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_2.pth')


def test_random_bytes_are_not_a_checkpoint_but_pickled_code_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    sizes = [0, 1, 2, 3, 5, 8, 17, 64, 100, 255, 1000, 4096, 10000, 65536, 300000]
    files = []
    for i in range(30):
        data = bytearray(rng.bytes(sizes[i % len(sizes)]))
        if i % 3 == 1 and len(data) > 2:
            data[:2] = b'\x80\x02'  # looks like the start of a protocol-2 pickle
        if i % 5 == 2 and data:
            data[:1] = b'c'  # the GLOBAL opcode
        files.append(tmp_path / f'junk{i}.pth')
        files[-1].write_bytes(bytes(data))
    with zipfile.ZipFile(tmp_path / 'archive.pth', 'w') as z:  # a zip, not torch's
        z.writestr('notes/readme.txt', 'hello')
    files.append(tmp_path / 'archive.pth')
    for path in files:
        with pytest.raises(CheckpointError) as e:
            load_checkpoint(str(path))
        msg = str(e.value)
        assert f'{str(path)!r} is not a PyTorch checkpoint' in msg, msg
        assert 'allow-list' not in msg, msg

    marker = tmp_path / 'ran'

    class Payload:
        def __init__(self, func, arg):
            self.func, self.arg = func, arg

        def __reduce__(self):
            return (self.func, (self.arg,))

    payloads = [(os.mkdir, str(marker), r'GLOBAL posix\.mkdir'),
                (exec, f'open({str(marker)!r}, "w")', r'GLOBAL exec ')]  # a builtin
    for proto in (1, 2):  # torch.save writes protocol 2; an older pickle
        for func, arg, named in payloads:
            evil = tmp_path / f'evil{proto}.pth'
            with open(evil, 'wb') as f:
                pickle.dump({'state_dict': {}, 'x': Payload(func, arg)}, f, protocol=proto)
            with pytest.raises(CheckpointError, match='outside the weights-only allow-list.*'
                                                      + named):
                load_checkpoint(str(evil))
    torch.save({'state_dict': {'w': torch.zeros(1)}, 'x': Payload(os.mkdir, str(marker))},
               tmp_path / 'evil.pth')
    with pytest.raises(CheckpointError, match='outside the weights-only allow-list'):
        load_checkpoint(str(tmp_path / 'evil.pth'))
    assert not marker.exists()


# --------------------------------------------------------------------- model widths

S_WITH_T_NECK = ['model.neck.in_channels=[64,128,256,384]']


@pytest.mark.parametrize('config', ['retinanet_lsnet_s.py', 'fpn_lsnet_s_ade20k.py'])
def test_neck_width_mismatch_named_by_the_tools(config, tmp_path, capsys):
    cfg = osp.join(ROOT, 'configs', config)
    code, err = run_cli(capsys, train_tool.main, [cfg, '--work-dir', tmp_path, '--cfg-options',
                                                  *S_WITH_T_NECK])
    assert code == 2
    line = err.strip().splitlines()[-1]
    assert line.startswith('error: model.neck.in_channels=[64, 128, 256, 384] does not fit '
                           "LSNet-s (arch='s', out_indices=(0, 1, 2, 3)), whose outputs have "
                           '[96, 192, 320, 448] channels'), line
    assert 't [64, 128, 256, 384], s [96, 192, 320, 448], b [128, 256, 384, 512]' in line
    # before anything else: no work dir, no data needed (COCO / ADE20K are absent here)
    assert not os.listdir(tmp_path)
    code, err2 = run_cli(capsys, test_tool.main, [cfg, 'nope.pth', '--cfg-options',
                                                  *S_WITH_T_NECK])
    assert code == 2 and err2.strip().splitlines()[-1] == line


def test_neck_width_mismatch_named_at_the_first_forward():
    """mmdet's/mmseg's own tools and the inferencers build the model without our
    checks: LSNetFPN names the mismatch instead of a conv shape error."""
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'retinanet_lsnet_s.py'))
    cfg.model.backbone.init_cfg = None
    cfg.model.neck.in_channels = [64, 128, 256, 384]
    init_default_scope('mmdet')
    model = MODELS.build(cfg.model).eval()
    with torch.no_grad(), pytest.raises(ModelConfigError) as e:
        model._forward(torch.zeros(1, 3, 64, 64))
    assert str(e.value).startswith(
        "model.neck.in_channels=[64, 128, 256, 384] does not fit the backbone (LSNet arch 's'), "
        'whose outputs have [96, 192, 320, 448] channels: set model.neck.in_channels='
        '[96, 192, 320, 448]'), str(e.value)


# --------------------------------------------------------------------- resume

def test_resumed_segmentation_run_reproduces_the_uninterrupted_one(ade, tmp_path):
    """Semantic FPN's head uses dropout (torch's generator), the train pipeline random
    resizes, crops, flips and colour changes (numpy): with RandomStateHook a run resumed
    from iter_2.pth ends with the weights of the run that was not interrupted (without
    it they differ by about 0.5)."""
    opts = seg_opts(ade, max_iters=4) + ['default_hooks.checkpoint.interval=2',
                                         'default_hooks.checkpoint.max_keep_ckpts=2',
                                         'train_cfg.val_interval=2']  # validates at 2 too
    full, resumed = tmp_path / 'full', tmp_path / 'resumed'
    train_tool.main([SEG, '--work-dir', str(full), '--cfg-options', *opts])
    resumed.mkdir()
    shutil.copy(full / 'iter_2.pth', resumed / 'iter_2.pth')
    assert 'rng_state' in torch.load(full / 'iter_2.pth')['meta']
    train_tool.main([SEG, '--work-dir', str(resumed), '--resume', str(resumed / 'iter_2.pth'),
                     '--cfg-options', *opts])
    a = torch.load(full / 'iter_4.pth')['state_dict']
    b = torch.load(resumed / 'iter_4.pth')['state_dict']
    for k, v in a.items():
        torch.testing.assert_close(b[k], v, rtol=0, atol=1e-6, msg=k)
