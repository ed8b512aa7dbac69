"""Models built from configs with random weights (benchmarks, ONNX export, tests).

:func:`build_model_from_cfg` builds the model of an mmdet / mmseg config (a file, a
``mmdet::`` / ``mmseg::`` package config or a loaded ``Config``) in the config's
default scope, without reading any pretrained file: every ``init_cfg`` of type
``Pretrained`` and every ``pretrained=`` is dropped (:func:`drop_pretrained`).
Weights, when wanted, are loaded afterwards (:mod:`lsnet_mm.checkpoint`).
"""
import copy
import os.path as osp
from typing import Any, Tuple, Union

from mmengine.config import Config, ConfigDict
from torch import nn


def load_config(name: Union[str, Config]) -> Config:
    """Read a config from a file or from an installed package's ``pkg::path`` name.

    Args:
        name (str | Config): A config file, a package config such as
            ``'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'``, or a loaded config
            (returned as it is).

    Returns:
        Config: The config.

    Raises:
        FileNotFoundError: ``name`` is neither an existing file nor a package config
            that mmengine can find.
    """
    if isinstance(name, Config):
        return name
    if osp.isfile(name):
        return Config.fromfile(name)
    if '::' in name:
        from mmengine.hub import get_config
        try:
            return get_config(name)
        except Exception as e:  # mmengine raises several types for a bad name
            raise FileNotFoundError(
                f'cannot load config {name!r} ({e}). Package configs are named like '
                f'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py and need that package '
                f'installed.') from e
    raise FileNotFoundError(f'config file {name!r} not found')


def _is_pretrained(init_cfg: Any) -> bool:
    """Whether an ``init_cfg`` (a dict or a list of dicts) reads pretrained weights."""
    cfgs = init_cfg if isinstance(init_cfg, (list, tuple)) else [init_cfg]
    return any(isinstance(c, dict) and c.get('type') == 'Pretrained' for c in cfgs)


def drop_pretrained(cfg: Any) -> Any:
    """Remove every pretrained-weights reference from a model config, in place.

    ``init_cfg`` entries of type ``Pretrained`` (alone or in a list) and every
    ``pretrained`` key become ``None``, at any depth, so that building the model
    reads no file and downloads nothing.

    Args:
        cfg (dict | list): A model config (nested dicts and lists).

    Returns:
        dict | list: ``cfg`` itself.
    """
    if isinstance(cfg, dict):
        for key, value in cfg.items():
            if key == 'pretrained' or key == 'init_cfg' and _is_pretrained(value):
                cfg[key] = None
            else:
                drop_pretrained(value)
    elif isinstance(cfg, (list, tuple)):
        for value in cfg:
            drop_pretrained(value)
    return cfg


def build_model_from_cfg(config: Union[str, Config]) -> Tuple[nn.Module, str]:
    """Build the model of a config with random weights, in eval mode.

    The config's ``custom_imports`` are imported and its ``default_scope`` (``'mmdet'``
    when it names none) is made the default registry scope before the model is built.
    No pretrained file is read (see :func:`drop_pretrained`).

    Args:
        config (str | Config): A config file, a ``pkg::path`` package config or a
            loaded config (not modified).

    Returns:
        tuple[nn.Module, str]: The model and the registry scope it was built in
        (``'mmdet'`` or ``'mmseg'``).
    """
    from mmengine.registry import MODELS, init_default_scope
    from mmengine.utils import import_modules_from_strings

    import lsnet_mm  # noqa: F401 (registers the LSNet modules)
    cfg = load_config(config)
    if cfg.get('custom_imports'):
        import_modules_from_strings(**cfg.custom_imports)
    scope = cfg.get('default_scope', 'mmdet')
    init_default_scope(scope)
    model_cfg = cfg.model.to_dict() if hasattr(cfg.model, 'to_dict') else dict(cfg.model)
    model = MODELS.build(ConfigDict(drop_pretrained(copy.deepcopy(model_cfg))))
    model.eval()
    return model, scope
