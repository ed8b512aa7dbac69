"""LSNet backbones for OpenMMLab (mmdet 3, mmsegmentation 1).

``import lsnet_mm`` (or ``custom_imports=dict(imports=['lsnet_mm'])`` in a config)
registers the project's modules in mmengine's root registries, which mmdet's and
mmseg's registries fall back to:

* with torch and mmengine alone: the ``LSNet`` backbone and its layers (``LSConv``,
  ...), the hooks ``SafeCheckpointHook``, ``CheckpointCheckHook`` and
  ``LSNetDeployHook``, and the ``CPUFallbackDDP`` wrapper;
* with mmcv: the transforms ``CheckedLoadImageFromFile`` and ``AlignResize``;
* with mmdet or mmseg: the ``LSNetFPN`` neck; with mmseg: ``CheckedADE20KDataset``.

It also allow-lists, for weights-only loading, the classes mmengine checkpoints hold
(:func:`lsnet_mm.checkpoint.allow_checkpoint_globals`), so ``load_from`` and resuming
work on torch >= 2.6, and routes mmengine's reads of local and http(s) checkpoints
through :mod:`lsnet_mm.checkpoint` (weights-only, errors that name the file).
"""
from . import engine  # noqa: F401 (registers the hooks and the DDP wrapper)
from .checkpoint import allow_checkpoint_globals, register_checkpoint_loaders
from .models import LSConv, LSNet
from .utils.optional import is_installed
from .version import __version__

if is_installed('mmcv'):
    from . import datasets  # noqa: F401 (registers transforms and, with mmseg, datasets)
if is_installed('mmdet') or is_installed('mmseg'):
    from .models.necks import LSNetFPN  # noqa: F401

allow_checkpoint_globals()
register_checkpoint_loaders()

__all__ = ['LSConv', 'LSNet', '__version__']
