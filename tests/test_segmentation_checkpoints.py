"""Released Semantic FPN-LSNet checkpoints (mmseg 0.30 format) load into the mmseg 1
configs with no missing or unexpected keys, and a checkpoint for another number of
classes is refused with a message that says so.

The checkpoints are written here the way mmseg 0.30 saved them: "meta" (mmseg_version,
CLASSES, PALETTE, config text, iter), "state_dict" with the backbone keys of the
authors' release (tests/data/lsnet_backbone_state_dict.json) under "backbone.", and the
neck and decode-head keys and shapes spelled out below as mmseg 0.30 names them
(LSNetFPN = mmdet FPN; FPNHead with SyncBN), plus an AdamW "optimizer" state.
"""
import json
import os.path as osp
from collections import OrderedDict

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner import load_checkpoint

import lsnet_mm  # noqa: F401
from lsnet_mm.checkpoint import CheckpointError, check_state_dict_fits, load_state_dict

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
REFERENCE = osp.join(ROOT, 'tests', 'data', 'lsnet_backbone_state_dict.json')
NECK_IN = dict(t=[64, 128, 256, 384], s=[96, 192, 320, 448], b=[128, 256, 384, 512])


def mmseg030_neck_head(arch, num_classes=150):
    """{key: shape} of the neck and decode head of the released mmseg 0.30 models."""
    out = OrderedDict()
    for i, c in enumerate(NECK_IN[arch]):
        out[f'neck.lateral_convs.{i}.conv.weight'] = (256, c, 1, 1)
        out[f'neck.lateral_convs.{i}.conv.bias'] = (256,)
    for i in range(4):
        out[f'neck.fpn_convs.{i}.conv.weight'] = (256, 256, 3, 3)
        out[f'neck.fpn_convs.{i}.conv.bias'] = (256,)
    out['decode_head.conv_seg.weight'] = (num_classes, 128, 1, 1)
    out['decode_head.conv_seg.bias'] = (num_classes,)
    # FPNHead: scale head i has max(1, i) ConvModules (conv + SyncBN), each followed by a
    # parameter-free 2x Upsample for i > 0: Sequential indices 0, 2, 4.
    for i, n in enumerate((1, 1, 2, 3)):
        for j in range(n):
            p = f'decode_head.scale_heads.{i}.{2 * j}'
            out[f'{p}.conv.weight'] = (128, 256 if j == 0 else 128, 3, 3)
            for s in ('weight', 'bias', 'running_mean', 'running_var'):
                out[f'{p}.bn.{s}'] = (128,)
            out[f'{p}.bn.num_batches_tracked'] = ()
    return out


def make_mmseg030_checkpoint(path, arch, num_classes=150, seed=0):
    """Write a checkpoint in the released mmseg 0.30 format; returns its state dict."""
    g = torch.Generator().manual_seed(seed)
    with open(REFERENCE) as f:
        backbone = json.load(f)[arch]
    shapes = OrderedDict((f'backbone.{k}', tuple(v)) for k, v in backbone.items())
    shapes.update(mmseg030_neck_head(arch, num_classes))
    sd = OrderedDict()
    for k, shape in shapes.items():
        if k.endswith('num_batches_tracked'):
            sd[k] = torch.tensor(40000)
        elif k.endswith('attention_bias_idxs'):
            sd[k] = torch.randint(0, 49, shape, generator=g)
        elif k.endswith('running_var'):
            sd[k] = torch.rand(shape, generator=g) + 0.5
        else:
            sd[k] = torch.randn(shape, generator=g) * 0.05
    from mmseg.datasets import ADE20KDataset
    classes = ADE20KDataset.METAINFO['classes'][:num_classes]
    meta = dict(mmseg_version='0.30.0', mmcv_version='1.7.1', exp_name=f'lsnet_{arch}_semfpn.py',
                config=f"model = dict(backbone=dict(type='lsnet_{arch}'))\n", seed=0,
                CLASSES=tuple(classes), PALETTE=[[i, i, i] for i in range(num_classes)],
                iter=40000, epoch=17, hook_msgs=dict(last_ckpt='iter_40000.pth'),
                time='Sat Mar  1 00:00:00 2025', env_info='sys.platform: linux')
    params = [k for k in sd if not k.endswith(('running_mean', 'running_var',
                                               'num_batches_tracked', 'attention_bias_idxs'))]
    optimizer = dict(
        state={0: dict(step=torch.tensor(40000.), exp_avg=torch.zeros(sd[params[0]].shape),
                       exp_avg_sq=torch.zeros(sd[params[0]].shape))},
        param_groups=[dict(lr=1e-6, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-4,
                           amsgrad=False, initial_lr=2e-4, params=list(range(len(params))))])
    torch.save(dict(meta=meta, state_dict=sd, optimizer=optimizer), path)
    return sd


def build_model(arch, **head):
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    cfg = Config.fromfile(osp.join(ROOT, 'configs', f'fpn_lsnet_{arch}_ade20k.py'))
    cfg.model.backbone.init_cfg = None
    cfg.model.decode_head.update(head)
    return cfg, MODELS.build(cfg.model)


@pytest.mark.parametrize('arch', ['t', 's', 'b'])
def test_released_mmseg030_checkpoint_loads_without_missing_or_unexpected_keys(tmp_path, arch):
    path = str(tmp_path / f'lsnet_{arch}_semfpn.pth')
    sd = make_mmseg030_checkpoint(path, arch)
    cfg, model = build_model(arch)
    own = model.state_dict()
    # the key sets are the same (index buffers are the model's own, also in the file)
    assert set(sd) == set(own), (sorted(set(sd) - set(own))[:5], sorted(set(own) - set(sd))[:5])
    # the check tools/test.py runs (CheckpointCheckHook(strict=True)): no error
    check_state_dict_fits(model, load_state_dict(path), path)
    # strict loading (raises on any missing or unexpected key or shape mismatch),
    # weights-only reading of a file with mmseg 0.30's meta and optimizer entries
    ckpt = load_checkpoint(model, path, map_location='cpu', strict=True)
    assert ckpt['meta']['mmseg_version'] == '0.30.0'
    new = model.state_dict()
    for k in ('backbone.patch_embed.0.c.weight', 'backbone.blocks4.3.mixer.m.attention_biases',
              'neck.lateral_convs.3.conv.weight', 'decode_head.conv_seg.weight',
              'decode_head.scale_heads.3.4.bn.running_var'):
        assert torch.equal(new[k], sd[k]), k


def test_checkpoint_for_other_number_of_classes_is_refused(tmp_path):
    path = str(tmp_path / 'ade150.pth')
    make_mmseg030_checkpoint(path, 't', num_classes=150)
    cfg, model = build_model('t', num_classes=6)
    with pytest.raises(CheckpointError) as e:
        check_state_dict_fits(model, load_state_dict(path), path)
    msg = str(e.value)
    assert 'different number of classes' in msg and 'decode_head.conv_seg' in msg
    assert 'decode_head.num_classes=6' in msg and 'implies num_classes=150' in msg
    assert path in msg
