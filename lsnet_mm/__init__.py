"""LSNet backbones for OpenMMLab (mmdet 3, mmsegmentation 1).

Importing this package registers ``LSNet``, ``LSConv`` and ``LSNetFPN`` in
mmengine's root MODELS registry, which mmdet's and mmseg's registries fall back
to, so ``custom_imports=dict(imports=['lsnet_mm'])`` makes them buildable from
either library's configs. It also allow-lists, for weights-only loading, the
classes mmengine checkpoints hold, so resuming works on torch >= 2.6.
"""
from .checkpoint import allow_checkpoint_globals
from .models import LSConv, LSNet, LSNetFPN  # noqa: F401 (registers the modules)
from . import datasets, engine  # noqa: F401 (seg dataset, transform, DDP wrapper)

__version__ = '0.1.0'

allow_checkpoint_globals()

__all__ = ['LSConv', 'LSNet', 'LSNetFPN', '__version__']
