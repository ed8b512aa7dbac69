"""Released LSNet detection checkpoints (mmdet 2.28) -> mmdet 3 state dicts.

The modules these configs use kept their parameter names from mmdet 2.28 to 3.x:
RetinaHead (``cls_convs.i.conv``, ``reg_convs.i.conv``, ``retina_cls``, ``retina_reg``),
RPNHead with one conv (``rpn_conv``, ``rpn_cls``, ``rpn_reg``), Shared2FCBBoxHead
(``shared_fcs.i``, ``fc_cls``, ``fc_reg``), FCNMaskHead (``convs.i.conv``, ``upsample``,
``conv_logits``) and FPN (``lateral_convs.i.conv``, ``fpn_convs.i.conv``). So a released
file loads into the mmdet 3 configs as it is (its "state_dict" holds exactly the
model's keys). The conversion below normalises what can differ between files: a
DataParallel ``module.`` prefix, a weights-only ``model`` dict instead of
``state_dict``, LSNet attention tables saved at another resolution (resized to the
14x14 grid, as for ImageNet weights), training-only entries (optimizer, EMA copies).
"""
import re
from collections import OrderedDict

import torch

from ..checkpoint import CheckpointError, extract_state_dict, load_checkpoint_file, \
    resize_attention_biases

BIAS_RESOLUTION = 14
# (pattern, replacement) applied in order to mmdet 2.28 keys. Empty for the modules of
# these configs (see the module docstring); kept as the single place to add renames.
MMDET2_RENAMES = []


def mmdet2_to_mmdet3(sd, keep=None):
    """Convert an mmdet 2.28 detector state dict to mmdet 3 names.

    Args:
        sd (dict): the checkpoint's state dict (``module.`` prefixes already removed).
        keep (Sequence[str], optional): top-level modules to keep, e.g.
            ``('backbone', 'neck')`` to drop the heads before fine-tuning on other classes.
    """
    out = OrderedDict()
    for k, v in sd.items():
        if k.startswith('ema_') or '.ema_' in k:  # EMA copies made by mmdet 2's EMAHook
            continue
        for pat, rep in MMDET2_RENAMES:
            k = re.sub(pat, rep, k)
        if keep and k.split('.', 1)[0] not in keep:
            continue
        if k.startswith('backbone.') and k.endswith('attention_biases'):
            v = resize_attention_biases(v, BIAS_RESOLUTION)
        if k.startswith('backbone.') and k.endswith('attention_bias_idxs') and \
                tuple(v.shape) != (BIAS_RESOLUTION ** 2,) * 2:
            continue  # the model builds its own index table for the 14x14 grid
        out[k] = v
    if not out:
        raise CheckpointError('nothing left after conversion' +
                              (f' (kept only {list(keep)})' if keep else ''))
    return out


def convert_mmdet2_checkpoint(src, dst, keep=None):
    """Read a released mmdet 2.x checkpoint weights-only and write a file that mmdet 3
    configs load with no missing or unexpected keys. Returns the converted state dict."""
    ckpt = load_checkpoint_file(src, what='detection checkpoint')
    sd = extract_state_dict(ckpt, src)
    if not any(k.startswith(('backbone.', 'neck.')) for k in sd):
        raise CheckpointError(
            f'{src!r} is not a detector checkpoint (no "backbone." keys; first keys: '
            f'{list(sd)[:4]}). For an ImageNet checkpoint use --imagenet.')
    out = mmdet2_to_mmdet3(sd, keep)
    meta = ckpt.get('meta') if isinstance(ckpt.get('meta'), dict) else {}
    meta = {k: v for k, v in meta.items() if k in ('CLASSES', 'mmdet_version', 'epoch', 'iter')}
    if 'CLASSES' in meta and keep is None:
        meta['dataset_meta'] = dict(classes=tuple(meta['CLASSES']))
    meta['converted_from'] = str(src)
    torch.save(dict(state_dict=out, meta=meta), dst)
    return out
