"""Conversions of the released files, and the converter tool that writes them.

The released files are written in the authors' layout (tests/released_checkpoints.py);
a converted file holds what the models make of the released one in memory, and the
tool writes its output only when the result is complete and (with --config) fits.
"""
import importlib.util
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import lsnet_mm  # noqa: F401
from lsnet_mm.apis import build_model_from_cfg
from lsnet_mm.checkpoint import (
    convert_released_checkpoint,
    imagenet_to_backbone,
    resize_attention_biases,
    upgrade_state_dict,
)
from lsnet_mm.models.utils.checkpoint_fit import check_state_dict_fits
from lsnet_mm.utils.errors import CheckpointError, ConfigError
from released_checkpoints import (
    COCO_CLASSES,
    ROOT,
    write_imagenet_checkpoint,
    write_mmdet228_checkpoint,
)

pytestmark = pytest.mark.usefixtures('one_thread')
CONVERTER = osp.join(ROOT, 'tools', 'model_converters', 'convert_checkpoint.py')
RETINA_T = osp.join(ROOT, 'configs', 'retinanet_lsnet_t.py')
TABLE = 'backbone.blocks4.3.mixer.m.attention_biases'


def converter():
    spec = importlib.util.spec_from_file_location('lsnet_convert_checkpoint_tool', CONVERTER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def retina_t():
    return build_model_from_cfg(RETINA_T)[0]


@pytest.fixture(scope='module')
def shapes(retina_t):
    return {k: tuple(v.shape) for k, v in retina_t.state_dict().items()}


def test_resize_attention_biases_is_bicubic_on_the_grid():
    table = torch.randn(4, 16)
    expected = F.interpolate(table.view(1, 4, 4, 4), size=(14, 14), mode='bicubic',
                             align_corners=False).view(4, 196)
    assert torch.equal(resize_attention_biases(table, 14), expected)
    assert resize_attention_biases(expected, 14) is expected
    with pytest.raises(CheckpointError, match=r'^attention bias table of shape \(4, 15\) is '
                                              r'not square$'):
        resize_attention_biases(torch.zeros(4, 15), 14)


def test_imagenet_file_to_backbone_file(tmp_path):
    src, dst = str(tmp_path / 'lsnet_t.pth'), str(tmp_path / 'out' / 'lsnet_t_backbone.pth')
    released = write_imagenet_checkpoint(src, 't', prefix='module.')
    converter().main([src, dst, '--imagenet'])
    saved = torch.load(dst)  # weights-only (the default)
    out = saved['state_dict']
    assert saved['meta'] == dict(arch='t', converted_from=src)
    assert not any(k.startswith(('head.', 'head_dist.')) or k.endswith('bias_idxs')
                   for k in out)
    expected = imagenet_to_backbone({k[7:]: v for k, v in released.items()})
    assert list(out) == list(expected)
    key = TABLE[len('backbone.'):]
    assert torch.equal(out[key], resize_attention_biases(released['module.' + key], 14))
    assert all(torch.equal(out[k], expected[k]) for k in out)
    # the configs' init_cfg loads the file completely
    from lsnet_mm import LSNet
    model = LSNet('t', init_cfg=dict(type='Pretrained', checkpoint=dst))
    model.init_weights()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in out.items())


def test_released_variant_converts_to_what_the_model_loads_in_memory(tmp_path, shapes,
                                                                     retina_t):
    """module.-prefixed keys, attention tables of the 4x4 grid, no index buffers: loaded
    as released (upgraded in memory) and converted, the model gets the same weights."""
    from mmengine.runner import load_checkpoint
    src = str(tmp_path / 'lsnet_t_retinanet.pth')
    released = write_mmdet228_checkpoint(src, 'retinanet', 't', shapes, grid=4,
                                         module_prefix='module.')
    ckpt = convert_released_checkpoint(src)
    out = ckpt['state_dict']
    assert out[TABLE].shape == (4, 196)
    assert torch.equal(out[TABLE], resize_attention_biases(released[TABLE], 14))
    assert ckpt['meta']['dataset_meta'] == dict(classes=COCO_CLASSES)
    assert ckpt['meta']['mmdet_version'] == '2.28.2' and ckpt['meta']['converted_from'] == src
    check_state_dict_fits(retina_t, out, 'converted')
    load_checkpoint(retina_t, src, map_location='cpu', strict=True)
    in_memory = retina_t.state_dict()
    for k, v in out.items():
        assert torch.equal(in_memory[k], v), k


def test_upgrade_drops_ema_copies_and_keeps_what_is_asked():
    sd = {'backbone.a': torch.zeros(1), 'ema_backbone_a': torch.zeros(1),
          'neck.b': torch.ones(1), 'bbox_head.c': torch.ones(1)}
    assert list(upgrade_state_dict(sd)) == ['backbone.a', 'neck.b', 'bbox_head.c']
    assert list(upgrade_state_dict(sd, keep=('backbone', 'neck'))) == ['backbone.a', 'neck.b']
    with pytest.raises(CheckpointError, match=r"^nothing left after conversion \(kept only "
                                              r"\['roi_head'\]\)$"):
        upgrade_state_dict(sd, keep=['roi_head'])


def test_converter_writes_its_output_only_when_it_fits(tmp_path, shapes, capsys):
    src, dst = str(tmp_path / 'in.pth'), str(tmp_path / 'out' / 'retinanet_t.pth')
    write_mmdet228_checkpoint(src, 'retinanet', 't', shapes)
    converter().main([src, dst, '--config', RETINA_T])
    assert capsys.readouterr().out.splitlines()[-1] == (
        f'{dst} fits {RETINA_T}: no missing, unexpected or mis-shaped keys')
    assert torch.load(dst)['meta']['converted_from'] == src
    os.remove(dst)
    # the config of another arch: one error line, exit status 2, no output file left
    r = subprocess.run([sys.executable, CONVERTER, src, dst, '--config',
                        osp.join(ROOT, 'configs', 'retinanet_lsnet_s.py')],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 2, r.stderr[-3000:]
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith(f'error: converted checkpoint {dst!r} does not fit the model of '
                           f"this config: backbone: the checkpoint's backbone is LSNet-t")
    assert "the config has arch='s'" in line and 'Traceback' not in r.stderr
    assert os.listdir(tmp_path / 'out') == []


def test_keep_backbone_and_neck(tmp_path, shapes):
    from mmengine.runner import load_checkpoint
    src, dst = str(tmp_path / 'in.pth'), str(tmp_path / 'bb_neck.pth')
    released = write_mmdet228_checkpoint(src, 'retinanet', 't', shapes)
    converter().main([src, dst, '--keep', 'backbone', 'neck'])
    out = torch.load(dst)
    assert {k.split('.')[0] for k in out['state_dict']} == {'backbone', 'neck'}
    assert 'dataset_meta' not in out['meta']  # the classes went with the heads
    model, _ = build_model_from_cfg(RETINA_T)
    load_checkpoint(model, dst, map_location='cpu', strict=False)
    key = 'neck.lateral_convs.0.conv.weight'
    assert torch.equal(model.state_dict()[key], released[key])
    with pytest.raises(ConfigError, match='^--config verifies complete models; drop --keep'):
        converter().main([src, dst, '--keep', 'backbone', '--config', RETINA_T])
