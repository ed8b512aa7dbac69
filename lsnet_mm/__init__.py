"""LSNet backbones for OpenMMLab (mmdet 3, mmsegmentation 1).

``import lsnet_mm`` (or ``custom_imports=dict(imports=['lsnet_mm'])`` in a config)
registers the project's modules and nothing else:

* in mmengine's root ``MODELS`` (which mmdet's and mmseg's registries fall back to):
  the ``LSNet`` backbone and its layers (``LSConv``, ...), with torch and mmengine
  alone; with mmdet or mmseg also the ``LSNetFPN`` neck;
* in scope ``lsnet_mm`` (:mod:`lsnet_mm.registry`, configs write
  ``type='lsnet_mm.SafeCheckpointHook'``): the hooks and the ``CPUFallbackDDP`` wrapper;
  with mmcv the transforms; with mmseg the datasets;
* in mmengine's file backends: ``'lsnet_mm.safe_checkpoint'``
  (:mod:`lsnet_mm.engine.fileio`), the atomic, space-checked writer that the
  checkpoint hook saves through.

It also allow-lists, through torch's public ``add_safe_globals``, the classes mmengine
checkpoints hold (:func:`lsnet_mm.checkpoint.allow_checkpoint_globals`), so that
torch's default weights-only loading reads them in ``load_from``, resuming and the
inferencers. Nothing of torch, mmengine, mmdet or mmseg is replaced or patched.
"""
from . import engine  # noqa: F401 (registers the hooks and the DDP wrapper)
from .checkpoint import allow_checkpoint_globals
from .models import LSConv, LSNet
from .utils.optional import is_installed
from .version import __version__

if is_installed('mmcv'):
    from . import datasets  # noqa: F401 (registers transforms and, with mmseg, datasets)
if is_installed('mmdet') or is_installed('mmseg'):
    from .models.necks import LSNetFPN  # noqa: F401

allow_checkpoint_globals()

__all__ = ['LSConv', 'LSNet', '__version__']
