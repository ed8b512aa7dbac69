"""``FiniteLossHook``: stop a diverging run at the first non-finite loss or weight.

A run whose learning rate is far too high (or whose data holds broken targets) turns
its loss to NaN within a few iterations. mmengine logs ``loss: nan`` as any other value
and goes on, saving NaN checkpoints that ``tools/test.py`` then evaluates. mmdet's
``CheckInvalidLossHook`` asserts a finite loss, but only every ``interval`` (50)
iterations, with an ``AssertionError`` whose message is empty, for mmdet configs only,
and checkpoints saved in between still hold NaN weights.

:class:`FiniteLossHook` (``dict(type='lsnet_mm.FiniteLossHook')`` in a config's
``custom_hooks``: the ``lsnet_mm`` scope resolves from mmdet and mmseg configs alike)
checks after every iteration, before the checkpoint, EMA and logger hooks of that
iteration run:

* the loss terms the model returned (``outputs`` of ``train_step``), at no cost;
* the gradient norm, when the optimizer wrapper clips gradients (``clip_grad``: it
  logs the norm) and is not an ``AmpOptimWrapper`` (whose loss scaler skips steps with
  overflowing gradients by design);
* optionally (``check_weights=True``) the weights and buffers after the step. This
  costs a pass over all weights (about 0.1 s per iteration for RetinaNet-LSNet-T on
  one CPU thread) and is off by default: non-finite gradients make the weights, and so
  the next iteration's loss, non-finite, and ``SafeCheckpointHook`` checks the weights
  before every save.

The first non-finite value raises :class:`NonFiniteLossError`, naming the iteration,
the loss terms, the learning rate, the last checkpoint (all saved ones are finite)
and the likely causes; ``tools/train.py`` prints it as ``error: ...`` with exit status
2. In a multi-process run the verdict is shared (one all-reduce of a flag), so every
process stops at the same iteration instead of waiting for the one that stopped.
"""
import itertools
import math
from typing import List, Optional, Tuple

import torch
from mmengine.dist import all_reduce, get_world_size
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.optim import AmpOptimWrapper
from mmengine.runner import EpochBasedTrainLoop

from ...checkpoint import describe_non_finite, non_finite_tensors
from ...registry import HOOKS
from ...utils.errors import NonFiniteLossError
from ..resume import read_last_checkpoint


def _plain_model(runner):
    model = runner.model
    return model.module if is_model_wrapper(model) else model


def _non_finite_weights(runner) -> List[Tuple[str, int, int]]:
    """The runner's model parameters and buffers that hold NaN or inf.

    Args:
        runner (mmengine.runner.Runner): The runner.

    Returns:
        list[tuple[str, int, int]]: ``(name, non-finite values, all values)`` per tensor,
        as :func:`lsnet_mm.checkpoint.non_finite_tensors`.
    """
    model = _plain_model(runner)
    return non_finite_tensors(itertools.chain(model.named_parameters(),
                                              model.named_buffers()))


def _learning_rates(runner) -> str:
    try:
        lrs = runner.optim_wrapper.get_lr()
    except (AttributeError, KeyError, TypeError):  # pragma: no cover - custom wrappers
        return ''
    # 'lr' (or 'NAME.lr' of an OptimWrapperDict), not 'base_lr': the rates the step used
    values = sorted({v for k, vs in lrs.items() if k == 'lr' or k.endswith('.lr')
                     for v in vs}, reverse=True)
    return ', '.join(f'{v:.3g}' for v in values[:3])


def divergence_advice(runner) -> str:
    """Where a run stands when it diverged, and what usually causes it.

    Args:
        runner (mmengine.runner.Runner): The runner.

    Returns:
        str: The learning rate, the last checkpoint and the likely causes, as
        sentences to append to an error message.
    """
    last = read_last_checkpoint(runner.work_dir)
    lr = _learning_rates(runner)
    where = (f'The last checkpoint, {last}, was saved before and holds finite weights; '
             f'no checkpoint of the diverged weights was written.' if last else
             'No checkpoint was saved.')
    return (f'{where} Likely causes: a learning rate too high for this batch size '
            f'(lr now {lr or "?"}: lower optim_wrapper.optimizer.lr, or use --auto-scale-lr '
            f'when training with fewer GPUs or images per GPU than the config\'s '
            f'auto_scale_lr.base_batch_size; a longer warm-up or '
            f'optim_wrapper.clip_grad=dict(max_norm=...) also help), or broken data (boxes '
            f'or label maps that do not fit their images, wrong class ids).')


def _non_finite_losses(outputs) -> List[str]:
    bad = []
    for name, value in (outputs or {}).items():
        if 'loss' not in name:
            continue
        if torch.is_tensor(value):
            finite = bool(torch.isfinite(value.detach()).all())
            shown = f'{value.detach().float().mean().item():.4g}'
        elif isinstance(value, (int, float)):
            finite, shown = math.isfinite(value), f'{value:.4g}'
        else:
            continue
        if not finite:
            bad.append(f'{name}={shown}')
    return bad


def _non_finite_grad_norm(runner) -> Optional[float]:
    """The iteration's gradient norm if the optimizer wrapper logged a non-finite one."""
    wrapper = runner.optim_wrapper
    if isinstance(wrapper, AmpOptimWrapper) or not getattr(wrapper, 'clip_grad_kwargs', None):
        return None
    scalars = runner.message_hub.log_scalars
    if 'train/grad_norm' not in scalars:
        return None
    value = scalars['train/grad_norm'].current()
    return None if math.isfinite(value) else value


def _any_process(flag: bool) -> bool:
    """Whether ``flag`` holds in any process of the run (no-op when single-process)."""
    if get_world_size() == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0])
    all_reduce(t, op='sum')
    return bool(t.item() > 0)


@HOOKS.register_module()
class FiniteLossHook(Hook):
    """Raise :class:`NonFiniteLossError` at the first non-finite loss or weight.

    See the module docstring. Name it in a config's ``custom_hooks``
    (``dict(type='lsnet_mm.FiniteLossHook')``).

    Args:
        interval (int): Check every ``interval`` iterations. Defaults to 1: the loss
            and gradient-norm checks cost nothing, and the run stops at the first
            diverged iteration.
        check_weights (bool): Also check the weights and buffers after the step (a
            pass over all weights, see the module docstring). Defaults to False.
    """

    priority = 'ABOVE_NORMAL'  # before EMA (NORMAL), logger and checkpoint hooks

    def __init__(self, interval: int = 1, check_weights: bool = False):
        if interval < 1:
            raise ValueError(f'FiniteLossHook interval must be >= 1, got {interval}')
        self.interval = interval
        self.check_weights = check_weights

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        """Check the iteration's loss terms and the updated weights."""
        if not self.every_n_train_iters(runner, self.interval):
            return
        losses = _non_finite_losses(outputs)
        grad_norm = None if losses else _non_finite_grad_norm(runner)
        weights = (_non_finite_weights(runner)
                   if self.check_weights and not losses and grad_norm is None else [])
        if not _any_process(bool(losses or grad_norm is not None or weights)):
            return
        it = runner.iter + 1  # as the log counts
        where = f'iteration {it}'
        if isinstance(runner.train_loop, EpochBasedTrainLoop):
            where += f' (epoch {runner.epoch + 1}, batch {batch_idx + 1})'
        if losses:
            what = f'the loss is not finite ({", ".join(losses)})'
        elif grad_norm is not None:
            what = (f'the loss was finite but the gradient norm is {grad_norm} (non-finite '
                    f'gradients)')
        elif weights:
            what = (f'the loss was finite but the weights are not after the optimizer step '
                    f'(non-finite gradients or an overflowing update) in '
                    f'{describe_non_finite(weights)}')
        else:
            what = 'another process of this run had a non-finite loss or weights'
        raise NonFiniteLossError(f'training diverged at {where}: {what}. '
                                 + divergence_advice(runner))
