"""The checks a tool runs before any long work starts: :func:`check_before_run`.

``tools/train.py`` and ``tools/test.py`` call :func:`check_before_run` with their phase
before the Runner is built; it runs every check in one order, and each failure raises an
:class:`~lsnet_mm.utils.errors.LSNetError` whose message names the setting or file at
fault and the fix (the tools print it as one ``error:`` line, exit status 2):

1. the config itself: top-level keys the Runner does not know that look like a
   misspelled one (a warning naming the closest key), ``type`` names that no registry
   of the config's scope knows (with the closest registered names), neck widths that do
   not fit the LSNet arch (:func:`lsnet_mm.models.utils.check_neck_widths`);
2. outputs: the work dir and the tool's output paths can be written;
3. checkpoints: local files exist; ``http(s)://`` URLs are downloaded into the cache
   mmengine's loader reads (:func:`lsnet_mm.checkpoint.fetch_checkpoint`), complete or
   not at all;
4. data: the heads' ``num_classes`` agree with the dataset classes, and the datasets the
   config builds are checked file by file (:mod:`lsnet_mm.datasets.verify`).
"""
import difflib
import importlib
import inspect
import logging
import os
import os.path as osp
import re
import tempfile
from typing import Iterable, List, Optional, Sequence

from mmengine.logging import print_log

from ..checkpoint import fetch_checkpoint, is_local_path, is_url, load_checkpoint
from ..datasets.verify import check_num_classes, verify_datasets
from ..models.utils import check_neck_widths
from ..utils.config_walk import walk_config
from ..utils.errors import CheckpointError, ConfigError

#: Keys whose ``type`` is not a registry name: mmcv picks NMS functions and RoI layers by
#: attribute name (``nms=dict(type='nms')``, ``roi_layer=dict(type='RoIAlign')``).
NON_REGISTRY_TYPES = ('nms', 'roi_layer')

#: Top-level keys that configs of this project and of mmdet/mmseg define besides the
#: Runner's arguments (variables of the base configs, the project's own settings).
KNOWN_TOP_LEVEL = frozenset({
    'custom_imports', 'dataset_type', 'data_root', 'backend_args', 'train_pipeline',
    'test_pipeline', 'tta_model', 'tta_pipeline', 'img_scales', 'crop_size', 'norm_cfg',
    'metainfo', 'dataset_check', 'data_help', 'model_wrapper_cfg', 'find_unused_parameters',
    'vis_backends', 'max_epochs', 'max_iters', 'base_lr', 'img_scale', 'val_interval',
})


# ------------------------------------------------------------------------- the config

def _runner_keys() -> frozenset:
    from mmengine.runner import Runner
    return frozenset(n for n in inspect.signature(Runner.__init__).parameters if n != 'self')


def check_config_keys(cfg) -> List[str]:
    """Warn about top-level keys that look like a misspelled Runner setting.

    mmengine's Runner ignores keys it does not know, so ``train_dataloder=...`` silently
    trains with the base config's dataloader. A key close to a Runner argument (but not
    one, nor a known config variable) gets a warning naming the closest argument.

    Args:
        cfg (mmengine.Config): The config.

    Returns:
        list[str]: The warnings given (empty when every key looks intended).
    """
    runner_keys = _runner_keys()
    warnings = []
    for key in cfg.keys():
        if key in runner_keys or key in KNOWN_TOP_LEVEL or key.startswith('_'):
            continue
        close = difflib.get_close_matches(key, sorted(runner_keys), n=1, cutoff=0.8)
        if close:
            warnings.append(f'config key {key!r} is not a setting of mmengine\'s Runner and is '
                            f'ignored; did you mean {close[0]!r}?')
    for text in warnings:
        print_log(f'warning: {text}', logger='current', level=logging.WARNING)
    return warnings


def _scope_registries(scope: Optional[str]) -> list:
    """Every registry of mmengine and of the config's scope (mmdet, mmseg, ...)."""
    from mmengine.registry import Registry
    modules = [importlib.import_module('mmengine.registry')]
    for name in (scope, 'lsnet_mm'):
        if name and name != 'mmengine':
            try:
                modules.append(importlib.import_module(f'{name}.registry'))
            except ImportError:
                pass
    return [v for m in modules for v in vars(m).values() if isinstance(v, Registry)]


def _registered_names(registries: Sequence) -> List[str]:
    """The names a config may use: lsnet_mm's with their scope prefix, others as they are."""
    return sorted({(f'{reg.scope}.' if reg.scope == 'lsnet_mm' else '') + name
                   for reg in registries for name in reg.module_dict})


def _container_key(path: str) -> str:
    """The key of the dict holding ``path``'s ``type`` (``model.test_cfg.nms.type`` -> nms)."""
    parts = re.split(r'[.\[]', path[:-len('.type')])
    return parts[-1].rstrip(']') if parts else ''


def check_registry_types(cfg) -> None:
    """Raise if a ``type`` of the config is known to no registry of its scope.

    mmengine reports an unknown type only when it builds that part (a misspelled
    evaluator fails after the whole training), with a KeyError and no suggestion.

    Args:
        cfg (mmengine.Config): The config (its ``custom_imports`` already imported, as
            ``Config.fromfile`` does).

    Raises:
        ConfigError: Names each unknown type, its config path and the closest
            registered names.
    """
    from mmengine.registry import DefaultScope
    scope = cfg.get('default_scope')
    registries = _scope_registries(scope)
    unknown = []
    with DefaultScope.overwrite_default_scope(scope):
        for path, key, value, _ in walk_config(cfg.to_dict() if hasattr(cfg, 'to_dict')
                                               else cfg):
            if key != 'type' or not isinstance(value, str) or \
                    _container_key(path) in NON_REGISTRY_TYPES:
                continue
            if not any(_get(reg, value) is not None for reg in registries):
                unknown.append((path, value))
    if not unknown:
        return
    names = _registered_names(registries)
    lines = []
    for path, value in unknown:
        close = difflib.get_close_matches(value, names, n=3, cutoff=0.6)
        lines.append(f'{path}={value!r} is not registered in scope {scope or "mmengine"!r}'
                     + (f' (closest registered names: {", ".join(map(repr, close))})'
                        if close else ''))
    raise ConfigError('unknown type in the config: ' + '; '.join(lines) + '. Fix the spelling, '
                      'or import the module that registers it (custom_imports).')


def _get(registry, name):
    try:
        return registry.get(name)
    except (KeyError, RuntimeError, ImportError):
        return None


# ------------------------------------------------------------------------- outputs

def check_writable_dir(path: str, setting: str) -> None:
    """Raise unless ``path`` is a folder this process can write into, or can be made one.

    Nothing is created: a temporary file is written into ``path`` or, when it does not
    exist yet, into its nearest existing parent (where the run would create it).

    Args:
        path (str): The folder.
        setting (str): How to name it in the message, e.g. ``'--work-dir'``.

    Raises:
        ConfigError: The folder cannot be created or written, with the reason.
    """
    parent = osp.abspath(osp.expanduser(path))
    while not osp.exists(parent):
        parent = osp.dirname(parent)
    try:
        if not osp.isdir(parent):
            raise NotADirectoryError(f'{parent!r} is a file')
        with tempfile.NamedTemporaryFile(dir=parent, prefix='.lsnet-write-check-'):
            pass
    except OSError as e:
        raise ConfigError(f'{setting} {path!r} cannot be written ({e.strerror or e}); choose a '
                          f'folder you can write to, or fix its permissions.') from None


def check_outputs(cfg, outputs: Iterable = ()) -> None:
    """Check that the work dir and the tool's output paths can be written.

    Args:
        cfg (mmengine.Config): The config (``work_dir`` set).
        outputs (Iterable[tuple[str, str, bool]]): ``(path, setting, is_file)`` of the
            tool's outputs, e.g. ``('preds.pkl', '--out', True)``; a file's folder is
            checked.

    Raises:
        ConfigError: An output cannot be written.
    """
    if cfg.get('work_dir'):
        check_writable_dir(cfg.work_dir, '--work-dir (work_dir)')
    for path, setting, is_file in outputs:
        if not path:
            continue
        if is_file and osp.isdir(path):
            raise ConfigError(f'{setting} {path!r} is a folder; give a file name.')
        check_writable_dir(osp.dirname(osp.abspath(path)) if is_file else path, setting)


# ------------------------------------------------------------------------- checkpoints

def _pretrained_entries(cfg) -> list:
    """(config path, checkpoint) of every ``init_cfg`` of type Pretrained in the model."""
    return [(f'{path}.checkpoint', value['checkpoint'])
            for path, key, value, _ in walk_config(cfg.get('model') or {}, 'model')
            if isinstance(value, dict) and value.get('type') == 'Pretrained'
            and value.get('checkpoint') and (key == 'init_cfg' or path.endswith(']'))]


def prepare_checkpoint(path: str, setting: str, read: bool = False) -> str:
    """Make sure a checkpoint the run will read is there: a local file, or a URL cached.

    URLs (``http(s)://``) are downloaded now, complete or not at all, into the cache
    mmengine's loader reads (:func:`lsnet_mm.checkpoint.fetch_checkpoint`), so a cut
    connection or an offline machine stops the run before it starts. Other remote
    storage (``s3://``...) is left to its loader.

    Args:
        path (str): The checkpoint path or URL.
        setting (str): The config key or flag that names it, for the message.
        read (bool): Also read the file (weights-only), so that a damaged or unsafe
            file is named now rather than by torch's unpickler inside the Runner.
            Defaults to False.

    Returns:
        str: The local file to hand to mmengine: ``path`` itself, or the cached copy of a
        URL. (mmengine's http loader unpickles with torch.hub's defaults, which are not
        weights-only; a local path is read weights-only.)

    Raises:
        CheckpointError: A local file is missing, a URL cannot be fetched, or (``read``)
            the file is not a checkpoint that loads weights-only.
    """
    if is_local_path(path):
        if not osp.isfile(osp.expanduser(path)):
            raise CheckpointError(
                f'{setting}: checkpoint not found: {path!r} (cwd {os.getcwd()!r}). Check the '
                f'path; the released LSNet checkpoints and their URLs are listed in '
                f'docs/model_zoo.md.')
        local = path
    elif is_url(path):
        local = fetch_checkpoint(path, setting=setting)
    else:
        return path
    if read:
        load_checkpoint(local, setting=setting)
    return local


def prepare_checkpoints(cfg, phase: str) -> None:
    """Check or fetch every checkpoint a ``phase`` run reads; URLs become cached files.

    Args:
        cfg (mmengine.Config): The config. ``load_from`` (the checkpoint to resume,
            fine-tune from or, for ``'test'``, evaluate) is read and, if a URL, replaced
            by its cached copy; for ``'train'`` the model's ``Pretrained`` init_cfgs are
            fetched too (the LSNet backbone reads its URL through the cache, weights-only).
        phase (str): ``'train'`` or ``'test'`` (a test run does not initialise weights).
    """
    if phase == 'train':
        for where, path in _pretrained_entries(cfg):
            prepare_checkpoint(path, where)
    if cfg.get('load_from'):
        setting = ('CHECKPOINT' if phase == 'test' else
                   '--resume' if cfg.get('resume') else 'load_from')
        cfg.load_from = prepare_checkpoint(cfg.load_from, setting, read=True)


# ------------------------------------------------------------------------- the entry

def check_before_run(cfg, phase: str, outputs: Iterable = ()) -> None:
    """Run every check before a training or test run, in one order (module docstring).

    Args:
        cfg (mmengine.Config): The run's config, as the tool will hand it to the Runner
            (work_dir, load_from, resume set; a test run's checkpoint is its load_from).
            A ``load_from`` URL is replaced by its cached copy.
        phase (str): ``'train'`` or ``'test'``.
        outputs (Iterable[tuple[str, str, bool]]): The tool's output paths, see
            :func:`check_outputs`.

    Raises:
        LSNetError: The first problem found (ConfigError, CheckpointError or
            DatasetError), naming the setting or file and the fix.
    """
    if phase not in ('train', 'test'):
        raise ValueError(f"phase must be 'train' or 'test', got {phase!r}")
    check_config_keys(cfg)
    check_registry_types(cfg)
    check_neck_widths(cfg)
    check_outputs(cfg, outputs)
    prepare_checkpoints(cfg, phase)
    check_num_classes(cfg, phase)
    verify_datasets(cfg, phase)
