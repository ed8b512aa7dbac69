"""``CheckpointCheckHook``: say exactly how a loaded checkpoint differs from the model."""
import logging

from mmengine.hooks import Hook
from mmengine.logging import print_log

from ...checkpoint import check_state_dict_finite, extract_state_dict
from ...models.utils.checkpoint_fit import (
    check_state_dict_fits,
    compare_state_dict,
    explain_mismatch,
)
from ...registry import HOOKS


@HOOKS.register_module()
class CheckpointCheckHook(Hook):
    """Compare every checkpoint the runner loads with its model (``after_load_checkpoint``).

    mmengine loads ``load_from`` non-strictly and only logs the keys it skipped. This
    hook adds, on the checkpoint the runner has already read (no second read):

    * ``strict=True`` (what ``tools/test.py`` and ``tools/train.py --resume`` use): a
      :class:`~lsnet_mm.utils.errors.CheckpointError` unless the checkpoint fits exactly,
      naming a classifier trained for another number of classes as such, and any other
      difference by its cause (:mod:`lsnet_mm.models.utils.checkpoint_fit`);
    * ``strict=False`` (fine-tuning with ``load_from``): a warning naming the heads that
      are skipped because the checkpoint was trained for another number of classes
      (other tensors of another shape: a warning explaining them).

    In both modes a checkpoint whose weights hold NaN or inf (saved by a diverged run)
    is refused with a ``CheckpointError`` naming the tensors (``strict=False``: those
    the model loads).

    Args:
        strict (bool): Raise on any difference. Defaults to False.
    """

    priority = 'VERY_HIGH'

    def __init__(self, strict: bool = False):
        self.strict = strict

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Check ``checkpoint`` against ``runner.model``."""
        source = runner.cfg.get('load_from') or 'checkpoint'
        sd = extract_state_dict(checkpoint, source)
        if self.strict:
            what = 'resume checkpoint' if runner.cfg.get('resume') else 'checkpoint'
            check_state_dict_finite(sd, source, what)
            check_state_dict_fits(runner.model, sd, source, what)
            return
        diff = compare_state_dict(runner.model, sd)
        skipped = set(diff['unexpected']) | set(diff['shape'])
        check_state_dict_finite({k: v for k, v in sd.items() if k not in skipped}, source,
                                'load_from checkpoint')
        if diff['heads']:
            # e.g. the class-specific box regression of a Shared2FCBBoxHead: also skipped
            others = [k for k in diff['shape'] if k not in diff['classifiers']]
            print_log(f'load_from {source!r}: fine-tuning on other classes; these classifier '
                      f'weights were trained for another number of classes and are NOT loaded '
                      f'(they keep their initialisation): ' + '; '.join(diff['heads'])
                      + (f'; also not loaded (other shape): {others}' if others else ''),
                      logger='current', level=logging.WARNING)
        elif diff['shape']:
            print_log(f'load_from {source!r}: {len(diff["shape"])} tensors of another shape '
                      f'are not loaded: {explain_mismatch(runner.model, sd)}',
                      logger='current', level=logging.WARNING)
