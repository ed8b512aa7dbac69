"""Conversions of the authors' released files for this project's models.

* ImageNet classifiers (``lsnet_{t,s,b}.pth``: "model" with the classifier ``head.*`` /
  ``head_dist.*``, 4x4 attention-bias tables and their ``attention_bias_idxs``):
  :func:`imagenet_to_backbone` / :func:`read_backbone_weights` give the backbone's
  state dict, tables resized to the 14x14 grid used downstream;
* mmdet 2.28 detectors and mmseg 0.30 segmentors ("state_dict" with ``backbone.`` /
  ``neck.`` / head keys, "meta" with CLASSES and PALETTE): their parameter names are
  those of mmdet 3 / mmseg 1, so they load as released (the LSNet modules upgrade
  attention tables of another grid in memory); :func:`convert_released_checkpoint`
  writes the upgraded form as a file (``tools/model_converters/convert_checkpoint.py``).
"""
import math
from collections import OrderedDict
from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F

from ..utils.errors import CheckpointError
from .reader import extract_state_dict, load_checkpoint, load_state_dict

#: Side of the attention-bias grid the downstream models use (the released ImageNet
#: models use 4x4 at 224 px input).
BIAS_RESOLUTION = 14
#: Top-level keys of the released ImageNet classifiers that no backbone has.
CLASSIFIER_PREFIXES = ('head.', 'head_dist.', 'dist_head.')
#: The entries of a released file's "meta" that a converted file keeps.
KEPT_META = ('CLASSES', 'PALETTE', 'mmdet_version', 'mmseg_version', 'epoch', 'iter')


def resize_attention_biases(table: torch.Tensor, resolution: int) -> torch.Tensor:
    """Resize an attention-bias table to another grid.

    Args:
        table (torch.Tensor): ``(num_heads, r * r)`` biases of an r x r grid.
        resolution (int): The side of the new grid.

    Returns:
        torch.Tensor: ``(num_heads, resolution ** 2)``, bicubically interpolated on the
        ``(1, num_heads, r, r)`` view (``align_corners=False``); ``table`` itself when
        it already has that grid.

    Raises:
        CheckpointError: The table is not of a square grid.
    """
    nh, n = table.shape
    r = math.isqrt(n)
    if r * r != n:
        raise CheckpointError(f'attention bias table of shape {tuple(table.shape)} is not square')
    if r == resolution:
        return table
    grid = table.reshape(1, nh, r, r).float()
    grid = F.interpolate(grid, size=(resolution, resolution), mode='bicubic',
                         align_corners=False)
    return grid.reshape(nh, resolution * resolution).to(table.dtype)


def _is_index_buffer_of_other_grid(key: str, value: torch.Tensor, resolution: int) -> bool:
    """An ``attention_bias_idxs`` buffer not of the grid the models build their own for."""
    return key.endswith('attention_bias_idxs') and tuple(value.shape) != (resolution ** 2,) * 2


def imagenet_to_backbone(sd: Dict[str, torch.Tensor],
                         resolution: int = BIAS_RESOLUTION) -> 'OrderedDict[str, torch.Tensor]':
    """Convert released ImageNet weights to a backbone state dict.

    Args:
        sd (dict): The released classifier's state dict.
        resolution (int): Side of the attention-bias grid of the backbone.

    Returns:
        OrderedDict: Without the classifier (``head``, ``head_dist``) and the index
        buffers (the model builds its own), bias tables resized to ``resolution``.
    """
    out = OrderedDict()
    for k, v in sd.items():
        if k.startswith(CLASSIFIER_PREFIXES) or k.endswith('attention_bias_idxs'):
            continue
        out[k] = resize_attention_biases(v, resolution) if k.endswith('attention_biases') else v
    return out


def read_backbone_weights(filename, prefix: Optional[str] = None,
                          setting: str = 'model.backbone.init_cfg.checkpoint'
                          ) -> 'OrderedDict[str, torch.Tensor]':
    """Backbone weights from a released ImageNet file or a downstream checkpoint.

    Args:
        filename (str): A local path or URL (see
            :func:`~lsnet_mm.checkpoint.load_checkpoint`).
        prefix (str, optional): Keep only keys under this prefix, with it removed.
            Defaults to ``'backbone.'`` when the file holds such keys (a detector or
            segmentor), else no prefix (an ImageNet classifier).
        setting (str): The config setting that names the file, for the error messages.
            Defaults to the backbone's ``init_cfg``.

    Returns:
        OrderedDict: A state dict in the backbone's own names (see
        :func:`imagenet_to_backbone`).
    """
    sd = load_state_dict(filename, what='LSNet pretrained checkpoint', setting=setting)
    if prefix is None and any(k.startswith('backbone.') for k in sd):
        prefix = 'backbone.'
    if prefix:
        sd = OrderedDict((k[len(prefix):], v) for k, v in sd.items() if k.startswith(prefix))
    return imagenet_to_backbone(sd, BIAS_RESOLUTION)


def upgrade_state_dict(sd: Dict[str, torch.Tensor],
                       keep: Optional[Sequence[str]] = None) -> 'OrderedDict[str, torch.Tensor]':
    """Normalise a released mmdet 2.28 / mmseg 0.30 state dict for mmdet 3 / mmseg 1.

    Args:
        sd (dict): The checkpoint's state dict (``module.`` prefixes removed).
        keep (Sequence[str], optional): Top-level modules to keep, e.g.
            ``('backbone', 'neck')`` to drop the heads.

    Returns:
        OrderedDict: Without EMA copies (mmdet 2's EMAHook), LSNet attention tables at
        the 14x14 grid, index buffers of another grid dropped (the model builds its own).

    Raises:
        CheckpointError: Nothing is left (e.g. ``keep`` names no module of the file).
    """
    out = OrderedDict()
    for k, v in sd.items():
        if k.startswith('ema_') or '.ema_' in k or (keep and k.split('.', 1)[0] not in keep):
            continue
        if k.startswith('backbone.'):
            if _is_index_buffer_of_other_grid(k, v, BIAS_RESOLUTION):
                continue
            if k.endswith('attention_biases'):
                v = resize_attention_biases(v, BIAS_RESOLUTION)
        out[k] = v
    if not out:
        raise CheckpointError('nothing left after conversion' +
                              (f' (kept only {list(keep)})' if keep else ''))
    return out


def convert_released_checkpoint(src, keep: Optional[Sequence[str]] = None) -> dict:
    """A released detector or segmentor file as an mmengine checkpoint.

    Args:
        src (str): The released file (a local path or URL).
        keep (Sequence[str], optional): See :func:`upgrade_state_dict`.

    Returns:
        dict: ``dict(state_dict=..., meta=...)`` to save; ``meta.dataset_meta`` holds
        the file's ``CLASSES`` (and ``PALETTE``) when all modules are kept.

    Raises:
        CheckpointError: ``src`` cannot be read or is no detector or segmentor.
    """
    ckpt = load_checkpoint(src, what='released checkpoint')
    sd = extract_state_dict(ckpt, str(src))
    if not any(k.startswith(('backbone.', 'neck.')) for k in sd):
        raise CheckpointError(
            f'{src!r} is not a detector or segmentor checkpoint (no "backbone." keys; first '
            f'keys: {list(sd)[:4]}). For an ImageNet checkpoint use --imagenet.')
    meta = ckpt.get('meta') if isinstance(ckpt.get('meta'), dict) else {}
    meta = {k: v for k, v in meta.items() if k in KEPT_META}
    if 'CLASSES' in meta and keep is None:
        meta['dataset_meta'] = dict(classes=tuple(meta['CLASSES']))
        if meta.get('PALETTE') is not None:
            meta['dataset_meta']['palette'] = [tuple(c) for c in meta['PALETTE']]
    meta['converted_from'] = str(src)
    return dict(state_dict=upgrade_state_dict(sd, keep), meta=meta)
