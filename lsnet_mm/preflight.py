"""Checks that ``tools/train.py`` and ``tools/test.py`` run before any long work starts.

Library-neutral (mmdet and mmseg configs alike). Each check raises
:class:`PreflightError` with a message that names the path or setting at fault and
how to fix it:

* :func:`check_data` - dataset root, annotation files and image folders exist;
* :func:`check_pretrained` - local ``init_cfg=dict(type='Pretrained', ...)`` files and
  ``load_from`` exist;
* :func:`check_num_classes` - the head's ``num_classes`` agree with the dataset classes;
* :func:`check_checkpoint_fits` - a checkpoint's tensors fit the model (no missing or
  unexpected keys, no shape mismatch; a class-count mismatch is named as such);
* :func:`setup_cpu_distributed` - CPU-only multi-process runs: gloo instead of nccl and
  DDP without device ids (mmengine's defaults assume CUDA).
"""
import os
import os.path as osp
import re

import torch

from .checkpoint import extract_state_dict, load_checkpoint_file

REMOTE_PREFIXES = ('http://', 'https://', 's3://', 'petrel://', 'open-mmlab://',
                   'torchvision://', 'mmcls://', 'mmpretrain://', 'modelzoo://')

LSNET_RELEASE = ('the LSNet release (https://github.com/THU-MIG/lsnet, weights on '
                 'https://huggingface.co/jameslahm/lsnet)')

# How to get a dataset, by dataset type; a config may override it with a top-level
# string ``data_help``.
DATA_HELP = {
    'CocoDataset': (
        'COCO 2017 is expected in mmdet\'s standard layout: {root}/annotations/'
        'instances_train2017.json, instances_val2017.json, {root}/train2017/, {root}/val2017/. '
        'Download the 2017 train/val images and annotations from https://cocodataset.org/#download '
        'and unpack them there (or symlink: ln -s /path/to/coco {root}), or point the config '
        'elsewhere with --cfg-options train_dataloader.dataset.data_root=... '
        '(see docs/detection.md).'),
    'ADE20KDataset': (
        'ADE20K is expected as {root}/images/{{training,validation}} and '
        '{root}/annotations/{{training,validation}}: download ADEChallengeData2016.zip from '
        'http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip and unpack it '
        'there, or set data_root with --cfg-options.'),
}


class PreflightError(RuntimeError):
    """A run that cannot succeed, caught before it starts; the message says why and how to fix it."""


def _is_remote(path):
    return isinstance(path, str) and path.startswith(REMOTE_PREFIXES)


def _join(root, path):
    if not root or osp.isabs(path) or _is_remote(path):
        return path
    return osp.join(root, path)


def _leaf_datasets(ds):
    """Datasets inside wrappers (RepeatDataset, ClassBalancedDataset, ConcatDataset, ...)."""
    if not isinstance(ds, dict):
        return []
    if isinstance(ds.get('datasets'), (list, tuple)):
        return [leaf for d in ds['datasets'] for leaf in _leaf_datasets(d)]
    if isinstance(ds.get('dataset'), dict):
        return _leaf_datasets(ds['dataset'])
    return [ds]


def _dataloader_keys(phase):
    return {'train': ['train_dataloader', 'val_dataloader'],
            'test': ['test_dataloader']}[phase]


def check_data(cfg, phase='train'):
    """Raise :class:`PreflightError` if a dataset's files are not where the config says.

    ``phase='train'`` checks the train and val dataloaders (val only when a val loop is
    configured), ``'test'`` the test dataloader.
    """
    problems = {}  # message -> dataloaders it concerns
    for key in _dataloader_keys(phase):
        loader = cfg.get(key)
        if not loader or (key == 'val_dataloader' and not cfg.get('val_cfg')):
            continue
        for ds in _leaf_datasets(loader.get('dataset')):
            backend = (ds.get('backend_args') or {}).get('backend', 'local')
            root = ds.get('data_root') or ''
            if backend != 'local' or _is_remote(root):
                continue
            missing = []
            if root and not osp.isdir(root):
                missing.append(('data_root', root))
            else:
                ann = ds.get('ann_file')
                if ann and not osp.exists(_join(root, ann)):
                    missing.append(('ann_file', _join(root, ann)))
                prefix = ds.get('data_prefix') or {}
                for name, sub in (prefix.items() if isinstance(prefix, dict) else []):
                    if isinstance(sub, str) and sub and not osp.isdir(_join(root, sub)):
                        missing.append((f'data_prefix.{name}', _join(root, sub)))
            if missing:
                typ = ds.get('type', 'dataset')
                typ = typ if isinstance(typ, str) else getattr(typ, '__name__', str(typ))
                what = '; '.join(f'{n} {p!r}' for n, p in missing)
                help_ = cfg.get('data_help') or DATA_HELP.get(typ, '')
                body = (f'{typ} files not found: {what} (cwd {os.getcwd()!r}). '
                        + help_.format(root=root.rstrip('/') or '.'))
                problems.setdefault(body, []).append(key)
    if problems:
        raise PreflightError('\n'.join(f'{", ".join(keys)}: {body}'
                                       for body, keys in problems.items()))


def _pretrained_entries(node, path='model'):
    """(config path, checkpoint) of every init_cfg of type 'Pretrained' under ``node``."""
    out = []
    if isinstance(node, dict):
        for k, v in node.items():
            sub = f'{path}.{k}'
            if k == 'init_cfg':
                for i, c in enumerate(v if isinstance(v, (list, tuple)) else [v]):
                    if isinstance(c, dict) and c.get('type') == 'Pretrained' and c.get('checkpoint'):
                        out.append((f'{sub}.checkpoint' if not isinstance(v, (list, tuple))
                                    else f'{sub}[{i}].checkpoint', c['checkpoint']))
            else:
                out.extend(_pretrained_entries(v, sub))
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            out.extend(_pretrained_entries(v, f'{path}[{i}]'))
    return out


def check_pretrained(cfg):
    """Raise :class:`PreflightError` if a local pretrained file named by the model's
    ``init_cfg`` (e.g. the LSNet ImageNet checkpoint) does not exist."""
    problems = []
    for where, ckpt in _pretrained_entries(cfg.get('model', {})):
        if _is_remote(ckpt) or osp.isfile(ckpt):
            continue
        name = osp.basename(ckpt)
        m = re.match(r'lsnet_([tsb])\.pth$', name)
        how = (f'download the ImageNet checkpoint of LSNet-{m.group(1).upper()} ({name}) from '
               f'{LSNET_RELEASE} and save it as {ckpt!r}'
               if m else f'put the file at {ckpt!r}')
        problems.append(
            f'pretrained weights not found: {ckpt!r} (set by {where}, cwd {os.getcwd()!r}). '
            f'To fix: {how}; or set --cfg-options {where}=PATH; or train from scratch with '
            f'--cfg-options {where.rsplit(".", 1)[0]}=None.')
    if problems:
        raise PreflightError('\n'.join(problems))


def check_load_from(path, what='checkpoint'):
    if path and not _is_remote(path) and not osp.isfile(path):
        raise PreflightError(f'{what} not found: {path!r} (cwd {os.getcwd()!r}). Check the path; '
                             f'released LSNet detection checkpoints are listed in '
                             f'docs/detection.md.')


def _find_num_classes(node, path='model'):
    """{config path: num_classes} in the model config, RPN heads excluded (class-agnostic)."""
    out = {}
    if isinstance(node, dict):
        for k, v in node.items():
            sub = f'{path}.{k}'
            if k == 'num_classes' and isinstance(v, int):
                out[sub] = v
            elif k not in ('rpn_head', 'train_cfg', 'test_cfg'):
                out.update(_find_num_classes(v, sub))
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            out.update(_find_num_classes(v, f'{path}[{i}]'))
    return out


def _dataset_classes(cfg, loader_key):
    from mmengine.registry import DATASETS, init_default_scope
    loader = cfg.get(loader_key)
    if not loader:
        return None
    leaves = _leaf_datasets(loader.get('dataset'))
    if not leaves:
        return None
    ds = leaves[0]
    meta = ds.get('metainfo') or {}
    if meta.get('classes'):
        return tuple(meta['classes'])
    typ = ds.get('type')
    try:
        if cfg.get('default_scope'):
            init_default_scope(cfg.default_scope)
        cls = DATASETS.get(typ) if isinstance(typ, str) else typ
    except Exception:  # pragma: no cover - unknown type: the runner will report it
        return None
    classes = getattr(cls, 'METAINFO', {}).get('classes') if cls is not None else None
    return tuple(classes) if classes else None


def check_num_classes(cfg, loader_key='train_dataloader'):
    """Raise :class:`PreflightError` if the model's num_classes differ from the number of
    dataset classes (metainfo.classes or the dataset type's METAINFO)."""
    classes = _dataset_classes(cfg, loader_key)
    if not classes:
        return
    wrong = {k: v for k, v in _find_num_classes(cfg.get('model', {})).items() if v != len(classes)}
    if wrong:
        raise PreflightError(
            f'{loader_key} has {len(classes)} classes ({", ".join(map(str, classes[:6]))}'
            f'{", ..." if len(classes) > 6 else ""}) but the model has '
            + ', '.join(f'{k}={v}' for k, v in wrong.items())
            + f'. Set num_classes={len(classes)} in the config (e.g. --cfg-options '
            + ' '.join(f'{k}={len(classes)}' for k in wrong) + ') or fix metainfo.classes.')


_CLS_KEY = re.compile(r'(retina_cls|conv_cls|fc_cls|conv_logits|conv_seg|atss_cls|gfl_cls)\.(weight|bias)$')


def _implied_classes(model_n, ckpt_n, cfg_n):
    """Number of classes a checkpoint's classifier of ``ckpt_n`` outputs implies, given the
    model's ``model_n`` outputs for ``cfg_n`` classes (sigmoid k*C, softmax C+1)."""
    if cfg_n and model_n % cfg_n == 0 and ckpt_n % (model_n // cfg_n) == 0:
        return ckpt_n // (model_n // cfg_n)
    if cfg_n and model_n == cfg_n + 1:
        return ckpt_n - 1
    return None


def check_checkpoint_fits(model, path, cfg=None, what='checkpoint'):
    """Raise :class:`PreflightError` unless the state dict in ``path`` fits ``model``
    exactly: same keys (``attention_bias_idxs`` index buffers may be absent: the model
    builds them) and same shapes. A classifier shape mismatch is reported as a
    num_classes mismatch."""
    model = getattr(model, 'module', model)
    ckpt = load_checkpoint_file(path, what=what)
    sd = extract_state_dict(ckpt, path)
    own = model.state_dict()
    missing = [k for k in own if k not in sd and not k.endswith('attention_bias_idxs')]
    unexpected = [k for k in sd if k not in own]
    wrong = [k for k in sd if k in own and tuple(sd[k].shape) != tuple(own[k].shape)]
    if not (missing or unexpected or wrong):
        return
    cls_wrong = [k for k in wrong if _CLS_KEY.search(k)]
    if cls_wrong:
        nums = _find_num_classes(cfg.get('model', {})) if cfg is not None else {}
        cfg_n = next(iter(nums.values()), None)
        k = cls_wrong[0]
        implied = _implied_classes(own[k].shape[0], sd[k].shape[0], cfg_n)
        raise PreflightError(
            f'{what} {path!r} was trained for a different number of classes than the config: '
            f'{k} has shape {tuple(sd[k].shape)} in the checkpoint but {tuple(own[k].shape)} in '
            f'the model built with ' + (', '.join(f'{a}={b}' for a, b in nums.items())
                                         or 'the configured num_classes')
            + (f' (the checkpoint implies num_classes={implied})' if implied else '')
            + '. Use the config that matches the checkpoint, set num_classes accordingly, or, '
              'to fine-tune on other classes, drop the heads first with '
              '"tools/convert_checkpoint.py IN OUT --keep backbone neck".')
    lines = []
    if wrong:
        lines.append('shape mismatch: ' + '; '.join(
            f'{k} {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}' for k in wrong[:5]))
    if missing:
        lines.append(f'missing in the checkpoint ({len(missing)}): {missing[:5]}')
    if unexpected:
        lines.append(f'unexpected in the checkpoint ({len(unexpected)}): {unexpected[:5]}')
    raise PreflightError(
        f'{what} {path!r} does not fit the model of this config: ' + '; '.join(lines)
        + '. Released mmdet 2.x checkpoints can be converted with tools/convert_checkpoint.py; '
          'otherwise use the config the checkpoint was trained with.')


def setup_cpu_distributed(cfg, launcher):
    """Make a multi-process run work without CUDA (gloo backend, CPU DDP).

    mmengine's launcher code calls ``torch.cuda.set_device`` and wraps the model with
    ``device_ids=[LOCAL_RANK]``; neither works on CPU. For the ``pytorch`` launcher
    (torchrun) the process group is created here with gloo through torch.distributed,
    which mmengine then uses as is, and DDP is configured with ``device_ids=None``.
    """
    if launcher == 'none' or torch.cuda.is_available():
        return
    env_cfg = cfg.setdefault('env_cfg', {})
    dist_cfg = env_cfg.setdefault('dist_cfg', {})
    if dist_cfg.get('backend', 'nccl') != 'gloo':
        dist_cfg['backend'] = 'gloo'
    if cfg.get('model_wrapper_cfg') is None:
        cfg.model_wrapper_cfg = dict(type='MMDistributedDataParallel', device_ids=None,
                                     broadcast_buffers=False,
                                     find_unused_parameters=cfg.get('find_unused_parameters',
                                                                    False))
    if launcher != 'pytorch':
        raise PreflightError(
            f'--launcher {launcher} without CUDA is not supported (mmengine assumes GPUs for it); '
            f'on CPU use torchrun (tools/dist_train.sh, --launcher pytorch) with the gloo backend.')
    import torch.distributed as dist
    if not dist.is_initialized():
        kwargs = {}
        if dist_cfg.get('timeout') is not None:
            import datetime
            kwargs['timeout'] = datetime.timedelta(seconds=dist_cfg['timeout'])
        dist.init_process_group(backend='gloo', **kwargs)


def _empty_dataset_message(cfg, key):
    ds = (_leaf_datasets((cfg.get(key) or {}).get('dataset')) or [{}])[0]
    where = ' '.join(f'{k}={ds[k]!r}' for k in ('data_root', 'ann_file') if ds.get(k))
    msg = f'{key}: the dataset ({where or "see the config"}) holds no usable sample'
    filt = ds.get('filter_cfg') or {}
    if filt.get('filter_empty_gt') or filt.get('min_size'):
        msg += (f' after its filter_cfg={dict(filt)}: images without annotated objects '
                f'(filter_empty_gt=True) and images smaller than min_size pixels are left out. '
                f'Check that the annotation file lists objects for its images (category ids that '
                f'match metainfo.classes), or keep the images without objects with --cfg-options '
                f'{key}.dataset.filter_cfg.filter_empty_gt=False (they then train the background '
                f'only), or lower {key}.dataset.filter_cfg.min_size.')
    else:
        msg += ': the annotation file lists no images, or none matched the image folder.'
    return msg


def check_dataset_not_empty(runner, phase='train'):
    """Build the ``phase`` ('train' or 'test') loop of ``runner`` now (the runner reuses
    it) and raise :class:`PreflightError` if its dataset holds no sample.

    mmdet's datasets fail on an empty data list with numpy's "need at least one array to
    concatenate"; an empty loop would otherwise run no iteration and save untrained
    checkpoints as if it had trained.
    """
    key = f'{phase}_dataloader'
    try:
        loop = getattr(runner, f'{phase}_loop')
    except ValueError as e:
        if 'need at least one array to concatenate' not in str(e):
            raise
        raise PreflightError(_empty_dataset_message(runner.cfg, key)) from e
    if loop is not None and len(loop.dataloader.dataset) == 0:
        raise PreflightError(_empty_dataset_message(runner.cfg, key))
