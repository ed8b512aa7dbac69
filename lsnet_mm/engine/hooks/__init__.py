"""Hooks registered in the ``lsnet_mm`` scope (``dict(type='lsnet_mm.NAME')``)."""
from .accumulation_param_scheduler_hook import AccumulationParamSchedulerHook
from .checkpoint_check_hook import CheckpointCheckHook
from .compile_hook import LSNetCompileHook
from .deploy_hook import LSNetDeployHook
from .finite_loss_hook import FiniteLossHook
from .random_state_hook import RandomStateHook
from .safe_checkpoint_hook import SafeCheckpointHook

__all__ = ['AccumulationParamSchedulerHook', 'CheckpointCheckHook', 'FiniteLossHook',
           'LSNetCompileHook', 'LSNetDeployHook', 'RandomStateHook', 'SafeCheckpointHook']
