"""How a state dict fits a model, and when it does not, why.

:func:`compare_state_dict` lists what differs; :func:`explain_mismatch` groups every
difference by top-level module (``backbone``, ``neck``, ``bbox_head``, ...) and names
its cause where the models tell it:

* the backbone is an LSNet of another arch than the config's (from the tensors);
* the neck was trained for other input widths (its lateral convs) or output widths;
* a classifier was trained for another number of classes (with the head's
  ``num_classes`` and the count the checkpoint implies), told apart from a head that
  only takes inputs of another width (e.g. after a neck-width change);
* a module the checkpoint lacks, or holds in excess (e.g. an ImageNet classifier).

:func:`check_state_dict_fits` is the strict check (``tools/test.py``, resuming).
Differences the LSNet layers upgrade in memory while loading are not mismatches:
attention-bias tables of another grid and ``attention_bias_idxs`` of another size or
absent; nor are missing ``num_batches_tracked`` counters (filled in by torch).
"""
import math
import re
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

from ...utils.errors import CheckpointError
from ..backbones.lsnet import LSNet, arch_of, describe_state_dict

#: Parameter names of the classifiers of mmdet's and mmseg's heads.
CLASSIFIER_KEY = re.compile(
    r'(retina_cls|conv_cls|fc_cls|conv_logits|conv_seg|atss_cls|gfl_cls)\.(weight|bias)$')
_LATERAL_WEIGHT = re.compile(r'lateral_convs\.(\d+)\.conv\.weight$')
_SHOWN = 3  # keys named per kind of difference


def _upgraded_on_load(key: str, theirs: Optional[torch.Tensor], own: torch.Tensor) -> bool:
    """A difference the LSNet layers resolve while loading (see the module doc)."""
    if key.endswith('attention_bias_idxs'):
        return True
    if key.endswith('attention_biases') and theirs is not None and theirs.dim() == own.dim() == 2:
        n = theirs.shape[1]
        return theirs.shape[0] == own.shape[0] and math.isqrt(n) ** 2 == n
    return theirs is None and key.endswith('num_batches_tracked')


def _num_classes_of(model: nn.Module, key: str) -> Tuple[Optional[str], Optional[int]]:
    """The innermost module above parameter ``key`` that has ``num_classes``."""
    parts = key.split('.')[:-1]
    for n in range(len(parts), 0, -1):
        name = '.'.join(parts[:n])
        try:
            mod = model.get_submodule(name)
        except AttributeError:
            continue
        if isinstance(getattr(mod, 'num_classes', None), int):
            return name, mod.num_classes
    return None, None


def _implied_classes(model_n: int, ckpt_n: int, cfg_n: Optional[int]) -> Optional[int]:
    """Classes a classifier with ``ckpt_n`` outputs implies.

    The model's ``model_n`` outputs stand for ``cfg_n`` classes (sigmoid heads k*C,
    softmax heads C+1).
    """
    if cfg_n and model_n % cfg_n == 0 and ckpt_n % (model_n // cfg_n) == 0:
        return ckpt_n // (model_n // cfg_n)
    if cfg_n and model_n == cfg_n + 1:
        return ckpt_n - 1
    return None


def _head_entry(model: nn.Module, key: str, theirs: tuple, own: tuple) -> str:
    """A classifier trained for another class count, described with its head."""
    head, n = _num_classes_of(model, key)
    implied = _implied_classes(own[0], theirs[0], n)
    text = f'{key} {theirs} in the checkpoint vs {own} in the model'
    if head is None:
        return text
    return text + (f' ({head}.num_classes={n}, the checkpoint implies num_classes={implied})'
                   if implied else f' ({head}.num_classes={n})')


def compare_state_dict(model: nn.Module, sd: Dict[str, torch.Tensor]) -> dict:
    """How a state dict differs from a model's.

    Args:
        model (nn.Module): The model (a wrapper's ``module`` is used).
        sd (dict): The state dict to load (keys as the model names them).

    Returns:
        dict: ``missing``, ``unexpected`` and ``shape`` (keys of another shape) lists,
        ``own_shapes`` (the model's shape of each ``shape`` key); ``classifiers``: the
        classifier tensors with another number of outputs (one that differs in its
        input width only is not one), ``heads``: a description of each, naming the
        head's ``num_classes`` and the number of classes the checkpoint implies, and
        ``head_modules``: the heads they belong to. Differences the LSNet layers
        upgrade while loading are left out.
    """
    model = getattr(model, 'module', model)
    own = model.state_dict()
    missing = [k for k in own if k not in sd and not _upgraded_on_load(k, None, own[k])]
    unexpected = [k for k in sd if k not in own]
    shape = [k for k in sd if k in own and tuple(sd[k].shape) != tuple(own[k].shape)
             and not _upgraded_on_load(k, sd[k], own[k])]
    classifiers = [k for k in shape if CLASSIFIER_KEY.search(k) and sd[k].dim() > 0
                   and own[k].dim() > 0 and sd[k].shape[0] != own[k].shape[0]]
    return dict(missing=missing, unexpected=unexpected, shape=shape,
                own_shapes={k: tuple(own[k].shape) for k in shape}, classifiers=classifiers,
                heads=[_head_entry(model, k, tuple(sd[k].shape), tuple(own[k].shape))
                       for k in classifiers],
                head_modules=sorted({_num_classes_of(model, k)[0] or k.rsplit('.', 2)[0]
                                     for k in classifiers}))


def _arch_cause(backbone: LSNet, prefix: str, sd: Dict[str, torch.Tensor]) -> Optional[str]:
    """The checkpoint's LSNet backbone vs the model's arch, when they differ."""
    theirs = OrderedDict((k[len(prefix):], v) for k, v in sd.items() if k.startswith(prefix))
    if not theirs:
        return None
    found = describe_state_dict(theirs)
    config = (f"the config has arch={backbone.arch!r} (embed dims {backbone.embed_dims}, "
              f"depths {backbone.depths})")
    if found is None:
        return (f'the checkpoint\'s {prefix.rstrip(".") or "model"} is not an LSNet (no '
                f'patch_embed stem weights; first keys: {list(theirs)[:3]}), {config}')
    if found == (backbone.embed_dims, backbone.depths):
        return None
    arch = arch_of(theirs)
    name = f'LSNet-{arch}' if arch else 'an LSNet of another size'
    return (f"the checkpoint's backbone is {name} (embed dims {found[0]}, depths {found[1]}), "
            f'{config}' + (f"; use the LSNet-{backbone.arch} checkpoint or set arch='{arch}'"
                           if arch else ''))


def _tensors(n: int) -> str:
    return f'{n} tensor{"s" if n != 1 else ""}'


def _follows_from(theirs: tuple, mine: tuple, widths: set) -> bool:
    """Whether two shapes differ only by channel widths in ``widths`` ((theirs, mine))."""
    return len(theirs) == len(mine) and all(a == b or (a, b) in widths
                                            for a, b in zip(theirs, mine))


def _width_causes(sd: Dict[str, torch.Tensor], own: Dict[str, torch.Tensor],
                  keys: List[str]) -> Tuple[List[str], List[str]]:
    """Neck widths (from its lateral convs) and input-width-only differences.

    Returns:
        tuple[list[str], list[str]]: The causes found and the keys they do not explain.
    """
    causes, widths = [], set()
    lateral = sorted((int(m.group(1)), k, k[:m.start()].rstrip('.') or 'the neck')
                     for k in keys for m in [_LATERAL_WEIGHT.search(k)] if m)
    if lateral:
        theirs = [int(sd[k].shape[1]) for _, k, _ in lateral]
        mine = [int(own[k].shape[1]) for _, k, _ in lateral]
        outs = sorted({(int(sd[k].shape[0]), int(own[k].shape[0])) for _, k, _ in lateral})
        widths = {(a, b) for a, b in zip(theirs, mine) if a != b} | {
            (a, b) for a, b in outs if a != b}
        module = lateral[0][2]
        if theirs != mine:
            causes.append(f'{module}.lateral_convs.* widths differ: the neck was trained for '
                          f'in_channels {theirs}, the model has in_channels {mine}')
        if any(a != b for a, b in outs):
            causes.append(f'{module} was trained with out_channels {[a for a, _ in outs]}, '
                          f'the model has {[b for _, b in outs]}')
    explained = [k for k in keys if _follows_from(tuple(sd[k].shape), tuple(own[k].shape),
                                                  widths)]
    if causes:
        causes[-1] += f' ({_tensors(len(explained))} of these widths)'
    inputs, left = {}, []
    for k in keys:
        a, b = tuple(sd[k].shape), tuple(own[k].shape)
        if k in explained:
            continue
        if len(a) == len(b) >= 2 and a[0] == b[0] and a[2:] == b[2:]:
            inputs.setdefault((a[1], b[1]), []).append(k)
        else:
            left.append(k)
    for (a, b), ks in inputs.items():
        causes.append(f'{_tensors(len(ks))} take inputs of width {a} in the checkpoint, {b} in '
                      f'the model (the width of what feeds them changed, not the classes), '
                      f'e.g. {ks[0]}')
    return causes, left


def _listing(kind: str, keys: List[str], shapes: Optional[Dict[str, str]] = None) -> str:
    shown = [f'{k} {shapes[k]}' if shapes else k for k in keys[:_SHOWN]]
    more = f', and {len(keys) - _SHOWN} more' if len(keys) > _SHOWN else ''
    return f'{len(keys)} {kind} ({", ".join(shown)}{more})'


def _in(key: str, module: str) -> bool:
    return not module or key == module or key.startswith(module + '.')


def _explain_module(model: nn.Module, module: str, diff: dict, sd: Dict[str, torch.Tensor],
                    own: Dict[str, torch.Tensor]) -> str:
    """The differences under one module (``''``: the whole model), with their causes."""
    missing = [k for k in diff['missing'] if _in(k, module)]
    unexpected = [k for k in diff['unexpected'] if _in(k, module)]
    shape = [k for k in diff['shape'] if _in(k, module)]
    label = module or type(model).__name__
    if not any(_in(k, module) for k in sd):
        return f'{label}: not in the checkpoint ({_tensors(len(missing))} missing)'
    if not any(_in(k, module) for k in own):
        hint = (" (EMA copies of mmdet 2's EMAHook: convert the file with "
                'tools/model_converters/convert_checkpoint.py)' if module.startswith('ema_')
                else '')
        extra = _tensors(len(unexpected))
        return f'{label}: in the checkpoint but not in the model ({extra}){hint}'
    lsnet = model if not module else getattr(model, module, None)
    if isinstance(lsnet, LSNet):
        cause = _arch_cause(lsnet, f'{module}.' if module else '', sd)
        if cause:  # every other difference follows from the arch: counted, not listed
            counts = [_listing(kind, ks) for kind, ks in (
                ('missing', missing), ('unexpected', unexpected), ('of another shape', shape))
                if ks]
            return f'{label}: {cause} [{"; ".join(counts)}]'
    causes = [h for k, h in zip(diff['classifiers'], diff['heads']) if _in(k, module)]
    width_causes, left = _width_causes(sd, own, [k for k in shape
                                                 if k not in diff['classifiers']])
    causes += width_causes
    shapes = {k: f'{tuple(sd[k].shape)} in the checkpoint vs {tuple(own[k].shape)}'
              for k in left}
    for kind, keys, shown in (('missing', missing, None), ('unexpected', unexpected, None),
                              ('of another shape', left, shapes)):
        if keys:
            causes.append(_listing(kind, keys, shown))
    return f'{label}: ' + '; '.join(causes)


def explain_mismatch(model: nn.Module, sd: Dict[str, torch.Tensor]) -> str:
    """Every difference between a state dict and a model, grouped by module, with causes.

    Args:
        model (nn.Module): The model (a wrapper's ``module`` is used).
        sd (dict): The state dict to load.

    Returns:
        str: One ``'MODULE: ...'`` part per top-level module that differs (the whole
        model for an LSNet backbone alone), joined by ``' | '``, e.g. ``"backbone: the
        checkpoint's backbone is LSNet-s (embed dims ...), the config has arch='t'
        (...) [...]"`` or ``"bbox_head: bbox_head.retina_cls.weight (720, 256, 3, 3) in
        the checkpoint vs (27, 256, 3, 3) in the model (bbox_head.num_classes=3, the
        checkpoint implies num_classes=80); ..."``; empty when the state dict fits.
    """
    model = getattr(model, 'module', model)
    diff = compare_state_dict(model, sd)
    own = model.state_dict()
    keys = diff['missing'] + diff['unexpected'] + diff['shape']
    if not keys:
        return ''
    if isinstance(model, LSNet):
        return _explain_module(model, '', diff, sd, own)
    modules = dict.fromkeys(k.split('.', 1)[0] for k in keys)
    return ' | '.join(_explain_module(model, m, diff, sd, own) for m in modules)


def _class_count_only(diff: dict) -> bool:
    """Whether every difference lies in heads whose classifiers have another class count."""
    return bool(diff['heads']) and not (diff['missing'] or diff['unexpected']) and all(
        any(_in(k, head) for head in diff['head_modules']) for k in diff['shape'])


def check_state_dict_fits(model: nn.Module, sd: Dict[str, torch.Tensor],
                          filename: str = 'checkpoint', what: str = 'checkpoint') -> None:
    """Raise unless ``sd`` loads into ``model`` with nothing missing, extra or mis-shaped.

    Args:
        model (nn.Module): The model.
        sd (dict): The state dict (``module.`` prefixes removed).
        filename (str): The checkpoint's name, for the message.
        what (str): How the message calls it ('checkpoint', 'resume checkpoint', ...).

    Raises:
        CheckpointError: A checkpoint trained for another number of classes is named as
            such (the heads' ``num_classes`` and the count the checkpoint implies);
            any other difference by :func:`explain_mismatch`.
    """
    diff = compare_state_dict(model, sd)
    if not (diff['missing'] or diff['unexpected'] or diff['shape']):
        return
    if _class_count_only(diff):
        raise CheckpointError(
            f'{what} {filename!r} was trained for a different number of classes than the '
            f'model: ' + '; '.join(diff['heads']) + '. Use the config that matches the '
            'checkpoint or set num_classes accordingly; to fine-tune on other classes, '
            'start a training run with load_from=CHECKPOINT (the heads are then skipped).')
    raise CheckpointError(
        f'{what} {filename!r} does not fit the model of this config: '
        f'{explain_mismatch(model, sd)}. Use the config the checkpoint was trained with, '
        f'or change the settings named here to match the checkpoint.')
