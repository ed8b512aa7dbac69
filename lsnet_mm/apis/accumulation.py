"""The paper's recipe on fewer GPUs: gradient accumulation with the same schedule.

The paper trains on 8 GPUs (16 images an optimizer step for COCO, 32 for ADE20K).
With ``k`` times fewer images per iteration (e.g. 1 GPU of 2 images for COCO: k=8),
accumulating the gradients of ``k`` iterations per optimizer step restores the
effective batch. :func:`apply_gradient_accumulation` turns a config into that run:

* ``optim_wrapper.accumulative_counts = k`` (mmengine's ``OptimWrapper`` then steps
  every k-th iteration, with the loss scaled by 1/k);
* ``default_hooks.param_scheduler`` is ``lsnet_mm.AccumulationParamSchedulerHook``
  (the paper configs name it already), so that iteration-based schedules (the COCO
  warm-up of 500, the ADE20K ``PolyLR`` over 40k) count optimizer steps and the
  learning rate of every optimizer step equals the unaccumulated run's;
* everything else counted in iterations is multiplied by k: the
  ``IterBasedTrainLoop``'s ``max_iters``, ``val_interval`` and ``val_begin``, the
  checkpoint interval when ``by_epoch=False`` and the logging interval (so that a run
  logs as often per optimizer step as the paper's);
* ``auto_scale_lr.base_batch_size`` is divided by k, so that ``--auto-scale-lr``
  (which mmengine computes from GPUs x images per GPU) scales by the effective batch.

Epoch-based loops and schedules keep their numbers: an epoch holds the same images.
"""
from mmengine.logging import print_log

from ..utils.config_walk import type_name, walk_config
from ..utils.errors import ConfigError

#: The param-scheduler hook that counts optimizer steps (lsnet_mm.engine.hooks).
ACCUMULATION_HOOK = 'lsnet_mm.AccumulationParamSchedulerHook'
#: Loop settings counted in iterations, scaled by k in an ``IterBasedTrainLoop``.
ITERATION_LOOP_KEYS = ('max_iters', 'val_interval', 'val_begin')


def _use_accumulation_hook(cfg) -> None:
    hooks = cfg.setdefault('default_hooks', {})
    hook = hooks.get('param_scheduler') or dict(type='ParamSchedulerHook')
    name = type_name(hook.get('type')).rsplit('.', 1)[-1]
    if name not in ('ParamSchedulerHook', 'AccumulationParamSchedulerHook'):
        raise ConfigError(
            f'gradient accumulation needs default_hooks.param_scheduler to count optimizer '
            f'steps, but the config sets type={hook.get("type")!r}: use '
            f'type={ACCUMULATION_HOOK!r} (or mmengine\'s ParamSchedulerHook, which is '
            f'replaced by it).')
    hooks['param_scheduler'] = dict(hook, type=ACCUMULATION_HOOK)


def _check_schedulers(cfg) -> None:
    converted = [path.rsplit('.', 1)[0] for path, key, value, _ in
                 walk_config(cfg.get('param_scheduler'), 'param_scheduler')
                 if key == 'convert_to_iter_based' and value]
    if converted:
        raise ConfigError(
            f'{", ".join(converted)} set convert_to_iter_based=True: mmengine converts '
            f'their epochs with the epoch length in iterations, which accumulation '
            f'multiplies, while they step once per optimizer step. Write them in '
            f'iterations of the unaccumulated run (by_epoch=False) or set '
            f'convert_to_iter_based=False.')


def _scale_iteration_lengths(cfg, k):
    """Multiply what is counted in iterations by k; returns 'key a -> b' strings."""
    changes = []

    def scale(node, key, path):
        if isinstance(node.get(key), int) and not isinstance(node[key], bool):
            changes.append(f'{path} {node[key]} -> {node[key] * k}')
            node[key] *= k

    train_cfg = cfg.get('train_cfg') or {}
    if type_name(train_cfg.get('type')).endswith('IterBasedTrainLoop') or (
            'max_iters' in train_cfg and 'max_epochs' not in train_cfg):
        for key in ITERATION_LOOP_KEYS:
            scale(train_cfg, key, f'train_cfg.{key}')
    hooks = cfg.get('default_hooks') or {}
    checkpoint, logger = hooks.get('checkpoint'), hooks.get('logger')
    if checkpoint and checkpoint.get('by_epoch', True) is False:
        scale(checkpoint, 'interval', 'default_hooks.checkpoint.interval')
    if logger:  # LoggerHook counts iterations: log as often per optimizer step
        scale(logger, 'interval', 'default_hooks.logger.interval')
    return changes


def apply_gradient_accumulation(cfg, accumulative_counts: int):
    """Make a config accumulate gradients over ``accumulative_counts`` iterations.

    The run then follows the unaccumulated run optimizer step for optimizer step
    (learning rate, warm-up, steps, validation and checkpoints); see the module
    docstring for each setting changed. The config is changed in place; the changes
    are logged and show in the config the runner dumps into the work dir, which
    therefore runs the same way under mmdet's and mmseg's own tools.

    Args:
        cfg (mmengine.Config): A training config (``optim_wrapper`` set).
        accumulative_counts (int): Iterations per optimizer step (k >= 1; 1 changes
            nothing). For the paper's batch: 8 GPUs x images per GPU of the config
            divided by the GPUs x images per GPU of this run.

    Returns:
        mmengine.Config: ``cfg``.

    Raises:
        ConfigError: k is not a positive integer, the config has no optimizer wrapper
            or already accumulates, its param-scheduler hook is another custom hook, or
            a scheduler converts epochs to iterations.
    """
    k = accumulative_counts
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ConfigError(f'gradient accumulation needs a whole number of iterations per '
                          f'optimizer step (1, 2, ...), got {k!r}.')
    if k == 1:
        return cfg
    optim_wrapper = cfg.get('optim_wrapper')
    if not optim_wrapper:
        raise ConfigError('gradient accumulation needs an optim_wrapper in the config '
                          '(a training config).')
    current = optim_wrapper.get('accumulative_counts', 1)
    if current != 1:
        raise ConfigError(
            f'the config already accumulates gradients (optim_wrapper.accumulative_counts='
            f'{current}; e.g. the config a run dumped into its work dir): train it as it '
            f'is, or start from the original config.')
    _use_accumulation_hook(cfg)
    _check_schedulers(cfg)
    optim_wrapper['accumulative_counts'] = k
    changes = _scale_iteration_lengths(cfg, k)
    auto_scale_lr = cfg.get('auto_scale_lr')
    if auto_scale_lr and auto_scale_lr.get('base_batch_size'):
        base = auto_scale_lr['base_batch_size']
        auto_scale_lr['base_batch_size'] = base / k
        changes.append(f'auto_scale_lr.base_batch_size {base} -> {base / k:g} (--auto-scale-lr '
                       f'then scales by the effective batch, GPUs x images per GPU x {k})')
    print_log(f'gradient accumulation: {k} iterations per optimizer step; learning-rate '
              f'schedules count optimizer steps ({ACCUMULATION_HOOK})'
              + ''.join(f'; {c}' for c in changes), logger='current')
    return cfg


__all__ = ['ACCUMULATION_HOOK', 'apply_gradient_accumulation']
