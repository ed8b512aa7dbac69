"""Hooks ``import lsnet_mm`` registers in mmengine's HOOKS registry."""
from .checkpoint_check_hook import CheckpointCheckHook
from .compile_hook import LSNetCompileHook
from .deploy_hook import LSNetDeployHook
from .finite_loss_hook import FiniteLossHook, NonFiniteLossError
from .random_state_hook import RandomStateHook
from .safe_checkpoint_hook import SafeCheckpointHook

__all__ = ['CheckpointCheckHook', 'FiniteLossHook', 'LSNetCompileHook', 'LSNetDeployHook',
           'NonFiniteLossError', 'RandomStateHook', 'SafeCheckpointHook']
