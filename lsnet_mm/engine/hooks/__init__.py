"""Hooks ``import lsnet_mm`` registers in mmengine's HOOKS registry."""
from .checkpoint_check_hook import CheckpointCheckHook
from .deploy_hook import LSNetDeployHook
from .safe_checkpoint_hook import SafeCheckpointHook

__all__ = ['CheckpointCheckHook', 'LSNetDeployHook', 'SafeCheckpointHook']
