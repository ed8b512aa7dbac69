"""tools/test.py refuses non-finite weights; a neck that does not fit the LSNet arch
is named as such; unreadable checkpoint files are told apart from malicious pickles.

(The divergence guard, safe saving and resume tests are in tests/test_engine/.)
"""
import os
import os.path as osp

import pytest
import torch

from lsnet_mm.apis import launch
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
