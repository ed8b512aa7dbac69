"""The project's registries: children of mmengine's root registries in scope ``lsnet_mm``.

Hooks, model wrappers, transforms and datasets are registered here, so their names can
never collide with another library's: configs name them with the scope, e.g.
``dict(type='lsnet_mm.SafeCheckpointHook')``, which mmengine resolves from any
default scope (mmdet, mmseg, mmpretrain, ...); it imports this module by itself when it
meets the ``lsnet_mm.`` prefix, and the ``locations`` below import the modules that
register into each registry.

The models (``LSNet``, ``LSConv``, ``LSNetFPN``) are registered in mmengine's root
``MODELS`` instead (:data:`MODELS` is that registry), so that ``type='LSNet'`` works
unprefixed in any mmdet or mmseg config; their names carry the LSNet prefix.
"""
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import Registry

#: Root registry of models: LSNet backbones, layers and necks (unprefixed names).
MODELS = MMENGINE_MODELS
#: Runner hooks (``lsnet_mm.SafeCheckpointHook``, ...).
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, scope='lsnet_mm',
                 locations=['lsnet_mm.engine.hooks'])
#: Model wrappers (``lsnet_mm.CPUFallbackDDP``).
MODEL_WRAPPERS = Registry('model_wrapper', parent=MMENGINE_MODEL_WRAPPERS, scope='lsnet_mm',
                          locations=['lsnet_mm.engine.wrappers'])
#: Data transforms (``lsnet_mm.AlignResize``, ``lsnet_mm.CheckedLoadImageFromFile``).
TRANSFORMS = Registry('transform', parent=MMENGINE_TRANSFORMS, scope='lsnet_mm',
                      locations=['lsnet_mm.datasets.transforms'])
#: Datasets (``lsnet_mm.CheckedADE20KDataset``).
DATASETS = Registry('dataset', parent=MMENGINE_DATASETS, scope='lsnet_mm',
                    locations=['lsnet_mm.datasets'])

__all__ = ['DATASETS', 'HOOKS', 'MODELS', 'MODEL_WRAPPERS', 'TRANSFORMS']
