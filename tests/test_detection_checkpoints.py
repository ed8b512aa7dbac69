"""Released downstream checkpoints (mmdet 2.28 format) load into the mmdet 3 configs.

The checkpoints are written here the way mmdet 2.28 saved them: "state_dict" with the
backbone keys of the authors' release (tests/data/lsnet_backbone_state_dict.json), and
neck/head keys spelled out below as mmdet 2.28 names them, plus "meta" and
"optimizer" entries. Shapes come from the models built from the configs.
"""
import json
import os.path as osp
import subprocess
import sys
from collections import OrderedDict

import pytest
import torch

import lsnet_mm  # noqa: F401
from lsnet_mm.checkpoint import (
    CheckpointError,
    check_state_dict_fits,
    convert_released_checkpoint,
    load_state_dict,
)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONVERTER = osp.join(ROOT, 'tools', 'model_converters', 'convert_checkpoint.py')
REFERENCE = osp.join(ROOT, 'tests', 'data', 'lsnet_backbone_state_dict.json')


pytestmark = pytest.mark.usefixtures('one_thread')


def _wb(prefix):
    return [f'{prefix}.weight', f'{prefix}.bias']


def mmdet228_keys(detector):
    """Neck and head parameter names of the released mmdet 2.28 detectors."""
    keys = []
    for i in range(4):
        keys += _wb(f'neck.lateral_convs.{i}.conv')
    if detector == 'retinanet':
        for i in range(5):  # P3-P6 + the 'on_input' extra conv for P7
            keys += _wb(f'neck.fpn_convs.{i}.conv')
        for branch in ('cls_convs', 'reg_convs'):
            for i in range(4):
                keys += _wb(f'bbox_head.{branch}.{i}.conv')
        keys += _wb('bbox_head.retina_cls') + _wb('bbox_head.retina_reg')
    else:
        for i in range(4):
            keys += _wb(f'neck.fpn_convs.{i}.conv')
        keys += _wb('neck.extra_trans_convs.0.conv') + _wb('neck.extra_fpn_convs.0.conv')
        keys += _wb('rpn_head.rpn_conv') + _wb('rpn_head.rpn_cls') + _wb('rpn_head.rpn_reg')
        keys += _wb('roi_head.bbox_head.fc_cls') + _wb('roi_head.bbox_head.fc_reg')
        keys += _wb('roi_head.bbox_head.shared_fcs.0') + _wb('roi_head.bbox_head.shared_fcs.1')
        for i in range(4):
            keys += _wb(f'roi_head.mask_head.convs.{i}.conv')
        keys += _wb('roi_head.mask_head.upsample') + _wb('roi_head.mask_head.conv_logits')
    return keys


def check_fits(model, path):
    """What tools/test.py's CheckpointCheckHook(strict=True) does with a checkpoint."""
    check_state_dict_fits(model, load_state_dict(path), path)


def build_model(name, **overrides):
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    cfg = Config.fromfile(osp.join(ROOT, 'configs', f'{name}.py'))
    cfg.model.backbone.init_cfg = None
    if overrides:
        cfg.merge_from_dict(overrides)
    init_default_scope('mmdet')
    return MODELS.build(cfg.model), cfg


COCO_CLASSES = tuple(f'class_{i}' for i in range(80))


def released_checkpoint(name, path, module_prefix='', imagenet_tables=False):
    """Write an mmdet 2.28-style checkpoint for config ``name``; returns its state dict."""
    model, _ = build_model(name)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    arch = name[-1]
    with open(REFERENCE) as f:
        backbone = json.load(f)[arch]
    gen = torch.Generator().manual_seed(0)
    sd = OrderedDict()
    for k, shape in backbone.items():
        if k.endswith('num_batches_tracked'):
            sd[f'backbone.{k}'] = torch.tensor(100)
        elif k.endswith('attention_bias_idxs'):
            sd[f'backbone.{k}'] = model.state_dict()[f'backbone.{k}'].clone()
        else:
            sd[f'backbone.{k}'] = torch.randn(shape, generator=gen)
    for k in mmdet228_keys(name.split('_lsnet')[0]):
        sd[k] = torch.randn(shapes[k], generator=gen)  # KeyError: a name mmdet 3 lacks
    expected = OrderedDict(sd)
    if imagenet_tables:  # tables never resized, as in the ImageNet release
        for k in list(sd):
            if k.endswith('attention_biases'):
                sd[k] = torch.randn(sd[k].shape[0], 16, generator=gen)
            elif k.endswith('attention_bias_idxs'):
                del sd[k]
    sd = OrderedDict((module_prefix + k, v) for k, v in sd.items())
    meta = dict(mmdet_version='2.28.2', CLASSES=COCO_CLASSES, epoch=12, iter=87960,
                config=f'model = dict(type={name!r})', env_info='sys.platform: linux',
                seed=0, exp_name=f'{name}.py', mmcv_version='1.7.1',
                hook_msgs=dict(last_ckpt='work_dirs/epoch_12.pth'), time='Mon Apr  1 2024')
    optimizer = dict(state={}, param_groups=[dict(lr=1e-6, betas=(0.9, 0.999),
                                                  weight_decay=0.05, params=[0, 1])])
    torch.save(dict(meta=meta, state_dict=sd, optimizer=optimizer), path)
    return expected


@pytest.mark.parametrize('name', ['retinanet_lsnet_t', 'mask_rcnn_lsnet_t', 'mask_rcnn_lsnet_s'])
def test_released_checkpoint_loads_directly(tmp_path, name):
    from mmengine.runner import load_checkpoint
    path = str(tmp_path / f'{name}_coco.pth')
    expected = released_checkpoint(name, path)
    model, cfg = build_model(name)
    check_fits(model, path)  # raises on any missing/unexpected/mis-shaped key
    load_checkpoint(model, path, map_location='cpu', strict=True)  # what tools/test.py does
    own = model.state_dict()
    assert set(own) == set(expected)
    assert all(torch.equal(own[k], v) for k, v in expected.items())


def test_converter_normalises_released_variants(tmp_path):
    """module. prefix, ImageNet-resolution attention tables, no index buffers."""
    src, dst = str(tmp_path / 'in.pth'), str(tmp_path / 'out.pth')
    released_checkpoint('mask_rcnn_lsnet_t', src, module_prefix='module.', imagenet_tables=True)
    model, cfg = build_model('mask_rcnn_lsnet_t')
    with pytest.raises(CheckpointError, match='tools/model_converters/convert_checkpoint.py'):
        check_fits(model, src)
    out = convert_released_checkpoint(src, dst)
    assert out['backbone.blocks4.3.mixer.m.attention_biases'].shape == (4, 196)
    check_fits(model, dst)
    saved = torch.load(dst, map_location='cpu')  # weights-only (torch default) succeeds
    assert saved['meta']['dataset_meta']['classes'] == COCO_CLASSES


def test_converter_cli_verifies_against_config(tmp_path):
    src, dst = str(tmp_path / 'in.pth'), str(tmp_path / 'out.pth')
    released_checkpoint('retinanet_lsnet_t', src, module_prefix='module.')
    r = subprocess.run([sys.executable, CONVERTER, src, dst, '--config',
                        osp.join(ROOT, 'configs', 'retinanet_lsnet_t.py')],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert 'no missing, unexpected or mis-shaped keys' in r.stdout
    # the wrong config (other arch) is refused with a non-zero exit
    r = subprocess.run([sys.executable, CONVERTER, src, dst, '--config',
                        osp.join(ROOT, 'configs', 'retinanet_lsnet_s.py')],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and 'does not fit' in r.stderr


def test_keep_backbone_and_neck(tmp_path):
    src, dst = str(tmp_path / 'in.pth'), str(tmp_path / 'out.pth')
    released_checkpoint('retinanet_lsnet_t', src)
    out = convert_released_checkpoint(src, dst, keep=('backbone', 'neck'))
    assert {k.split('.')[0] for k in out} == {'backbone', 'neck'}
    # a 3-class model takes backbone and neck from it
    from mmengine.runner import load_checkpoint
    model, _ = build_model('retinanet_lsnet_t', **{'model.bbox_head.num_classes': 3})
    load_checkpoint(model, dst, map_location='cpu', strict=False)
    assert torch.equal(model.state_dict()['neck.lateral_convs.0.conv.weight'],
                       out['neck.lateral_convs.0.conv.weight'])


@pytest.mark.parametrize('name,implied', [('retinanet_lsnet_t', 80), ('mask_rcnn_lsnet_t', 80)])
def test_wrong_num_classes_is_named(tmp_path, name, implied):
    path = str(tmp_path / 'coco.pth')
    released_checkpoint(name, path)
    key = 'model.bbox_head.num_classes' if name.startswith('retinanet') else \
        'model.roi_head.bbox_head.num_classes'
    over = {key: 3}
    if name.startswith('mask'):
        over['model.roi_head.mask_head.num_classes'] = 3
    model, cfg = build_model(name, **over)
    with pytest.raises(CheckpointError) as e:
        check_fits(model, path)
    msg = str(e.value)
    assert 'number of classes' in msg and f'{key[6:]}=3' in msg
    assert f'implies num_classes={implied}' in msg


def test_imagenet_to_backbone_file(tmp_path):
    """--imagenet writes a backbone-only file that the configs' init_cfg loads fully."""
    from lsnet_mm import LSNet
    src, dst = str(tmp_path / 'lsnet_t.pth'), str(tmp_path / 'lsnet_t_backbone.pth')
    sd = {k: v for k, v in LSNet('t').state_dict().items() if not k.endswith('bias_idxs')}
    sd = {k: (torch.randn(v.shape[0], 16) if k.endswith('attention_biases') else v)
          for k, v in sd.items()}
    sd['head.l.weight'] = torch.randn(1000, 384)
    torch.save({'model': sd}, src)
    r = subprocess.run([sys.executable, CONVERTER, src, dst, '--imagenet'], capture_output=True,
                       text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    out = torch.load(dst, map_location='cpu')['state_dict']
    assert 'head.l.weight' not in out
    assert out['blocks4.3.mixer.m.attention_biases'].shape == (4, 196)
    missing, unexpected = LSNet('t').load_pretrained(dst)
    assert missing == [] and unexpected == []
