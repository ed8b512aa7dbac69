"""Checks that ``tools/train.py`` and ``tools/test.py`` run before any long work starts.

Library-neutral (mmdet and mmseg configs alike). Each check raises
:class:`PreflightError` with a message that names the path or setting at fault and
how to fix it:

* :func:`check_data` - dataset root, annotation files and image folders exist;
* :func:`check_pretrained` - local ``init_cfg=dict(type='Pretrained', ...)`` files and
  ``load_from`` exist;
* :func:`check_num_classes` - the head's ``num_classes`` agree with the dataset classes;
* :func:`check_dataset_not_empty` - the training / test set holds samples.

The content of the datasets (annotation files, image headers, label map sizes, class
names) is checked by :func:`lsnet_mm.datasets.dataset_check.check_datasets`.

Checkpoints are checked against the model by
:class:`~lsnet_mm.engine.hooks.CheckpointCheckHook` when the runner loads them.
"""
import os
import os.path as osp
import re

from ..checkpoint import is_local_path

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
    """A run that cannot succeed, caught before it starts; the message says why and the fix."""


def is_remote(path):
    """Whether a path names a remote file (a URL or a storage backend's prefix).

    Args:
        path (str): A path from the config.

    Returns:
        bool: True for ``http://``, ``s3://``, ``open-mmlab://``, ... paths.
    """
    return isinstance(path, str) and path.startswith(REMOTE_PREFIXES)


def _join(root, path):
    if not root or osp.isabs(path) or is_remote(path):
        return path
    return osp.join(root, path)


def leaf_datasets(ds):
    """The dataset configs inside dataset wrappers, in order.

    Args:
        ds (dict | None): A dataloader's ``dataset`` config: a dataset, or a wrapper
            (``RepeatDataset``, ``ClassBalancedDataset``, ``MultiImageMixDataset``: key
            ``dataset``; ``ConcatDataset``: key ``datasets``), possibly nested.

    Returns:
        list[dict]: The configs of the datasets themselves (no wrappers).
    """
    if not isinstance(ds, dict):
        return []
    if isinstance(ds.get('datasets'), (list, tuple)):
        return [leaf for d in ds['datasets'] for leaf in leaf_datasets(d)]
    if isinstance(ds.get('dataset'), dict):
        return leaf_datasets(ds['dataset'])
    return [ds]



def phase_dataloaders(cfg, phase):
    """The dataloaders a phase uses, as (config key, dataloader config) pairs.

    Args:
        cfg (mmengine.Config): The config.
        phase (str): ``'train'``: the train dataloader and the val dataloader (the
            latter only when a val loop is configured, ``val_cfg``); ``'test'``: the
            test dataloader.

    Returns:
        list[tuple[str, dict]]: The configured dataloaders (missing ones left out).
    """
    keys = {'train': ['train_dataloader', 'val_dataloader'],
            'test': ['test_dataloader']}[phase]
    out = []
    for key in keys:
        loader = cfg.get(key)
        if not loader or (key == 'val_dataloader' and not cfg.get('val_cfg')):
            continue
        out.append((key, loader))
    return out


def check_data(cfg, phase='train'):
    """Raise :class:`PreflightError` if a dataset's files are not where the config says.

    ``phase='train'`` checks the train and val dataloaders (val only when a val loop is
    configured), ``'test'`` the test dataloader.
    """
    problems = {}  # message -> dataloaders it concerns
    for key, loader in phase_dataloaders(cfg, phase):
        for ds in leaf_datasets(loader.get('dataset')):
            backend = (ds.get('backend_args') or {}).get('backend', 'local')
            root = ds.get('data_root') or ''
            if backend != 'local' or is_remote(root):
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
                    if (isinstance(c, dict) and c.get('type') == 'Pretrained'
                            and c.get('checkpoint')):
                        out.append((f'{sub}.checkpoint' if not isinstance(v, (list, tuple))
                                    else f'{sub}[{i}].checkpoint', c['checkpoint']))
            else:
                out.extend(_pretrained_entries(v, sub))
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            out.extend(_pretrained_entries(v, f'{path}[{i}]'))
    return out


def check_pretrained(cfg):
    """Raise :class:`PreflightError` if a local pretrained file does not exist.

    Args:
        cfg (mmengine.Config): The config; every ``init_cfg=dict(type='Pretrained')``
            under ``model`` (e.g. the LSNet ImageNet checkpoint) is checked.
    """
    problems = []
    for where, ckpt in _pretrained_entries(cfg.get('model', {})):
        if not is_local_path(ckpt) or osp.isfile(ckpt):
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
    """Raise :class:`PreflightError` if a local checkpoint to load does not exist.

    Args:
        path (str | None): ``load_from`` or the tool's checkpoint argument.
        what (str): How the message calls it.
    """
    if path and is_local_path(path) and not osp.isfile(path):
        raise PreflightError(f'{what} not found: {path!r} (cwd {os.getcwd()!r}). Check the path; '
                             f'released LSNet detection checkpoints are listed in '
                             f'docs/detection.md.')


def find_num_classes(node, path='model'):
    """{config path: num_classes} in the model config, RPN heads excluded (class-agnostic)."""
    out = {}
    if isinstance(node, dict):
        for k, v in node.items():
            sub = f'{path}.{k}'
            if k == 'num_classes' and isinstance(v, int):
                out[sub] = v
            elif k not in ('rpn_head', 'train_cfg', 'test_cfg'):
                out.update(find_num_classes(v, sub))
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            out.update(find_num_classes(v, f'{path}[{i}]'))
    return out


def _dataset_classes(cfg, loader_key):
    from mmengine.registry import DATASETS, init_default_scope
    loader = cfg.get(loader_key)
    if not loader:
        return None
    leaves = leaf_datasets(loader.get('dataset'))
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
    """Raise :class:`PreflightError` if the heads' num_classes differ from the dataset's.

    Args:
        cfg (mmengine.Config): The config.
        loader_key (str): The dataloader whose dataset classes count
            (``metainfo.classes``, else the dataset type's METAINFO).
    """
    classes = _dataset_classes(cfg, loader_key)
    if not classes:
        return
    wrong = {k: v for k, v in find_num_classes(cfg.get('model', {})).items() if v != len(classes)}
    if wrong:
        raise PreflightError(
            f'{loader_key} has {len(classes)} classes ({", ".join(map(str, classes[:6]))}'
            f'{", ..." if len(classes) > 6 else ""}) but the model has '
            + ', '.join(f'{k}={v}' for k, v in wrong.items())
            + f'. Set num_classes={len(classes)} in the config (e.g. --cfg-options '
            + ' '.join(f'{k}={len(classes)}' for k in wrong) + ') or fix metainfo.classes.')


def _empty_dataset_message(cfg, key):
    ds = (leaf_datasets((cfg.get(key) or {}).get('dataset')) or [{}])[0]
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
    """Raise :class:`PreflightError` if the ``phase`` loop's dataset holds no sample.

    The loop is built now (the runner reuses it).

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
