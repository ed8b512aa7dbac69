"""``AccumulationParamSchedulerHook``: iteration schedules counted in optimizer steps.

With gradient accumulation (``optim_wrapper.accumulative_counts=k``) mmengine's
``OptimWrapper`` updates the weights every k-th iteration, but its
``ParamSchedulerHook`` steps the iteration-based schedulers (``by_epoch=False``: the
warm-up ``LinearLR``, ``PolyLR``) after every iteration, so a warm-up of 500 would end
after 500 iterations, that is 500 / k optimizer steps. This hook steps them only after
the iterations in which the optimizer stepped: ``end=500`` then means 500 optimizer
steps, as in the paper's run on 8 GPUs without accumulation, and the learning rate of
every optimizer step equals that run's. Epoch-based schedulers step after each epoch
as before (an epoch holds the same images whatever k is).

Without accumulation (k=1) the optimizer steps at every iteration and the hook behaves
exactly as ``ParamSchedulerHook``, so the configs name it in ``default_hooks``
(``param_scheduler=dict(type='lsnet_mm.AccumulationParamSchedulerHook')``) and a run
may set ``optim_wrapper.accumulative_counts`` alone, under any tool.
:func:`lsnet_mm.apis.accumulation.apply_gradient_accumulation` also scales the lengths
counted in iterations (``IterBasedTrainLoop``, validation and checkpoint intervals).
"""
from typing import Optional, Sequence, Union

from mmengine.hooks import ParamSchedulerHook
from mmengine.optim import OptimWrapperDict

from ...registry import HOOKS

DATA_BATCH = Optional[Union[dict, tuple, list]]


def optimizer_stepped(optim_wrapper) -> bool:
    """Whether the last training iteration updated the weights.

    Args:
        optim_wrapper (OptimWrapper | OptimWrapperDict): The runner's optimizer
            wrapper, after its ``update_params`` of the iteration.

    Returns:
        bool: True when (one of) the optimizer(s) stepped.
    """
    wrappers: Sequence = (list(optim_wrapper.values())
                          if isinstance(optim_wrapper, OptimWrapperDict) else [optim_wrapper])
    return any(w.should_update() for w in wrappers)


@HOOKS.register_module()
class AccumulationParamSchedulerHook(ParamSchedulerHook):
    """mmengine's ``ParamSchedulerHook``, stepping iteration schedules per optimizer step.

    Iteration-based schedulers (``by_epoch=False``) step once per optimizer step instead
    of once per iteration; see the module docstring.
    """

    def after_train_iter(self, runner, batch_idx: int, data_batch: DATA_BATCH = None,
                         outputs: Optional[dict] = None) -> None:
        """Step the iteration-based schedulers if the optimizer stepped.

        Args:
            runner (Runner): The training runner.
            batch_idx (int): Index of the batch in the epoch.
            data_batch (dict | tuple | list, optional): The batch.
            outputs (dict, optional): What ``train_step`` returned.
        """
        if optimizer_stepped(runner.optim_wrapper):
            super().after_train_iter(runner, batch_idx, data_batch, outputs)
