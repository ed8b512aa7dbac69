"""Runner parts: hooks (safe checkpoints, checkpoint checks, deploy mode) and wrappers."""
from .hooks import CheckpointCheckHook, LSNetDeployHook, SafeCheckpointHook
from .wrappers import CPUFallbackDDP, revert_sync_bn_inplace

__all__ = ['CheckpointCheckHook', 'CPUFallbackDDP', 'LSNetDeployHook', 'SafeCheckpointHook',
           'revert_sync_bn_inplace']
