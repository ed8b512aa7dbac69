"""Runner parts: hooks, model wrappers, checkpoint saving, resuming, the work dir lock.

``import lsnet_mm`` registers the hooks, the wrapper and the file backend.
"""
from .fileio import SafeCheckpointBackend
from .hooks import (
    CheckpointCheckHook,
    FiniteLossHook,
    LSNetCompileHook,
    LSNetDeployHook,
    RandomStateHook,
    SafeCheckpointHook,
)
from .resume import find_resume_checkpoint
from .work_dir_lock import acquire_work_dir_lock
from .wrappers import CPUFallbackDDP

__all__ = ['CPUFallbackDDP', 'CheckpointCheckHook', 'FiniteLossHook', 'LSNetCompileHook',
           'LSNetDeployHook', 'RandomStateHook', 'SafeCheckpointBackend', 'SafeCheckpointHook',
           'acquire_work_dir_lock', 'find_resume_checkpoint']
