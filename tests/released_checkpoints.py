"""Checkpoints written the way the LSNet authors released theirs, with random weights.

* ImageNet classifiers (``lsnet_{t,s,b}.pth``): "model" with the backbone keys of
  tests/data/lsnet_backbone_state_dict.json, attention tables of the 4x4 grid (224 px
  input at stride 64) with their (16, 16) ``attention_bias_idxs``, and the classifier
  ``head.*`` / ``head_dist.*``; plus "epoch" and the training "args" (a Namespace);
* COCO detectors of mmdet 2.28 (``lsnet_{t,s,b}_retinanet.pth`` / ``_maskrcnn.pth``)
  and ADE20K segmentors of mmseg 0.30 (``lsnet_{t,s,b}_semfpn.pth``): "state_dict"
  with the backbone under "backbone." and the neck and head keys as those versions
  name them, "meta" (CLASSES, PALETTE, versions, config text, ...) and "optimizer".
"""
import argparse
import functools
import json
import os.path as osp
from collections import OrderedDict

import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
REFERENCE = osp.join(ROOT, 'tests', 'data', 'lsnet_backbone_state_dict.json')
COCO_CLASSES = tuple(f'class_{i}' for i in range(80))
NECK_IN = dict(t=[64, 128, 256, 384], s=[96, 192, 320, 448], b=[128, 256, 384, 512])


def backbone_layout(arch):
    """{key: shape} of the released LSNet backbone (attention tables on the 14x14 grid)."""
    with open(REFERENCE) as f:
        return OrderedDict((k, tuple(v)) for k, v in json.load(f)[arch].items())


@functools.lru_cache(maxsize=None)
def bias_index(grid):
    """The ``attention_bias_idxs`` of a grid x grid table, as the release numbers them."""
    from lsnet_mm.models.layers.attention import relative_offset_index
    return relative_offset_index(grid)


def random_tensor(key, shape, generator):
    """Random weights of moderate scale: convs and linears by their fan-in, BatchNorm
    scales near 0.5 (the features stay of the order of the input through the 20 blocks,
    so that random models still predict varied boxes, scores and labels)."""
    if key.endswith('running_var'):
        return torch.rand(shape, generator=generator) + 0.5
    if key.endswith('bn.weight'):
        return 0.5 + torch.randn(shape, generator=generator) * 0.05
    fan_in = int(torch.tensor(shape[1:]).prod()) if len(shape) >= 2 else 100
    return torch.randn(shape, generator=generator) / fan_in ** 0.5


def random_backbone(arch, generator, grid=14, prefix=''):
    """Random backbone weights in the released layout, attention tables on a grid x grid."""
    sd = OrderedDict()
    for k, shape in backbone_layout(arch).items():
        if k.endswith('num_batches_tracked'):
            v = torch.tensor(1000)
        elif k.endswith('attention_bias_idxs'):
            v = bias_index(grid).clone()
        elif k.endswith('attention_biases'):
            v = torch.randn(shape[0], grid * grid, generator=generator)
        else:
            v = random_tensor(k, shape, generator)
        sd[prefix + k] = v
    return sd


def write_imagenet_checkpoint(path, arch, seed=0, prefix='', key='model'):
    """Write a released-format ImageNet checkpoint; returns its state dict."""
    g = torch.Generator().manual_seed(seed)
    sd = random_backbone(arch, g, grid=4, prefix=prefix)
    dim = backbone_layout(arch)['blocks4.1.c.weight'][0]  # the last stage's width
    for head in ('head', 'head_dist'):
        sd[f'{prefix}{head}.bn.weight'] = torch.ones(dim)
        sd[f'{prefix}{head}.l.weight'] = torch.randn(1000, dim, generator=g)
        sd[f'{prefix}{head}.l.bias'] = torch.zeros(1000)
    torch.save({key: sd, 'epoch': 299, 'args': argparse.Namespace(model=f'lsnet_{arch}')}, path)
    return sd


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


def write_mmdet228_checkpoint(path, detector, arch, shapes, seed=0, grid=14,
                              module_prefix=''):
    """Write a released-format COCO detector.

    Args:
        path (str): Where to write it.
        detector (str): 'retinanet' or 'mask_rcnn'.
        arch (str): 't', 's' or 'b'.
        shapes (dict): {key: shape} of the mmdet 3 model (the neck and head shapes are
            taken from it; a name mmdet 3 lacks is a KeyError).
        seed (int): Seed of the random weights.
        grid (int): Side of the attention-bias grid of the tables.
        module_prefix (str): A prefix of every key, e.g. 'module.' (DataParallel).

    Returns:
        OrderedDict: The state dict as written, without ``module_prefix``.
    """
    g = torch.Generator().manual_seed(seed)
    sd = random_backbone(arch, g, grid=grid, prefix='backbone.')
    for k in mmdet228_keys(detector):
        sd[k] = random_tensor(k, shapes[k], g)
    meta = dict(mmdet_version='2.28.2', CLASSES=COCO_CLASSES, epoch=12, iter=87960,
                config=f"model = dict(backbone=dict(type='lsnet_{arch}'))\n",
                env_info='sys.platform: linux', seed=0,
                exp_name=f'{detector}_lsnet_{arch}.py', mmcv_version='1.7.1',
                hook_msgs=dict(last_ckpt='work_dirs/epoch_12.pth'), time='Mon Apr  1 2024')
    optimizer = dict(state={}, param_groups=[dict(lr=1e-6, betas=(0.9, 0.999),
                                                  weight_decay=0.05, params=[0, 1])])
    torch.save(dict(meta=meta, optimizer=optimizer,
                    state_dict=OrderedDict((module_prefix + k, v) for k, v in sd.items())),
               path)
    return sd


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


def make_mmseg030_checkpoint(path, arch, num_classes=150, seed=0, grid=14):
    """Write a released-format ADE20K segmentor; returns its state dict."""
    g = torch.Generator().manual_seed(seed)
    sd = random_backbone(arch, g, grid=grid, prefix='backbone.')
    for k, shape in mmseg030_neck_head(arch, num_classes).items():
        if k.endswith('num_batches_tracked'):
            sd[k] = torch.tensor(40000)
        else:
            sd[k] = random_tensor(k, shape, g)
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
