"""``SafeCheckpointHook``: no finished checkpoint lost, no non-finite weights written.

mmengine's ``CheckpointHook`` (0.10) removes the checkpoints past ``max_keep_ckpts``
(and the previous best one) before it writes the new one, and its ``LocalBackend``
writes in place: with ``max_keep_ckpts=1`` a run killed (or out of disk space) while
saving had no good checkpoint left.

:class:`SafeCheckpointHook` takes the same arguments (this project's configs name it
in ``default_hooks.checkpoint``) and, for a local ``out_dir`` without
``backend_args`` / ``file_client_args``, saves through
:class:`~lsnet_mm.engine.fileio.SafeCheckpointBackend` (``backend_args``
``dict(backend='lsnet_mm.safe_checkpoint')``). A save then goes:

1. mmengine asks to remove the outdated checkpoints: the backend only notes them;
2. the new checkpoint is written to a temporary file, flushed and renamed into place;
3. mmengine rewrites ``last_checkpoint`` (a few bytes, in place);
4. the hook removes the noted checkpoints.

A kill at any moment leaves the previous checkpoint, and ``last_checkpoint`` naming
a complete file (killed within step 3, the file may be empty: ``tools/train.py
--resume`` then takes the newest checkpoint that loads,
:func:`lsnet_mm.engine.resume.find_resume_checkpoint`). A save that fails (no space
left, quota, read-only disk) removes its temporary file and stops the run with one
:class:`~lsnet_mm.utils.errors.CheckpointSaveError` naming the file, the cause and
the last complete checkpoint. Temporary files of a killed run are removed when the
next run on the folder starts. Other storage (``backend_args``, a remote
``out_dir``) keeps mmengine's behaviour.

Weights holding NaN or inf (a diverged run) are never written, on any storage: the
hook checks every checkpoint the runner saves (``before_save_checkpoint``) and
raises :class:`~lsnet_mm.utils.errors.NonFiniteLossError` instead, so
``last_checkpoint`` and the best checkpoint keep naming finite weights, also in runs
whose config does not name ``FiniteLossHook``.
"""
from contextlib import contextmanager

from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook
from mmengine.logging import print_log

from ...checkpoint import describe_non_finite, non_finite_tensors
from ...registry import HOOKS
from ...utils.errors import CheckpointSaveError, NonFiniteLossError
from ..fileio import SAFE_CHECKPOINT_BACKEND, SafeCheckpointBackend
from ..resume import read_last_checkpoint
from .finite_loss_hook import divergence_advice

# the tensors of a checkpoint dict that hold weights (EMAHook adds 'ema_state_dict')
_WEIGHTS = ('state_dict', 'ema_state_dict')


@HOOKS.register_module()
class SafeCheckpointHook(CheckpointHook):
    """``CheckpointHook`` that saves atomically and refuses non-finite weights.

    Same arguments as mmengine's ``CheckpointHook``; see the module docstring.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        local = self.out_dir is None or '://' not in str(self.out_dir)
        if local and self.backend_args is None and self.file_client_args is None:
            self.backend_args = dict(backend=SAFE_CHECKPOINT_BACKEND)

    def before_train(self, runner) -> None:
        """Set up as ``CheckpointHook``; remove what an interrupted save left behind.

        Args:
            runner (mmengine.runner.Runner): The runner.
        """
        super().before_train(runner)  # sets file_backend
        if isinstance(self.file_backend, SafeCheckpointBackend) and is_main_process():
            self.file_backend.remove_deferred()  # checkpoints past a lower max_keep_ckpts
            leftovers = SafeCheckpointBackend.remove_temp_files(self.out_dir)
            if leftovers:
                print_log(f'SafeCheckpointHook: removed {len(leftovers)} temporary file(s) of '
                          f'a save that was interrupted: {leftovers}', logger='current')

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        """Save as ``CheckpointHook`` does, then remove the outdated checkpoints.

        Args:
            runner (mmengine.runner.Runner): The runner.
            batch_idx (int): The batch's index in the epoch.
            data_batch (dict | tuple | list, optional): The batch.
            outputs (dict, optional): The outputs of ``train_step``.
        """
        with self._removals_after_save(runner):
            super().after_train_iter(runner, batch_idx, data_batch, outputs)

    def after_train_epoch(self, runner) -> None:
        """Save as ``CheckpointHook`` does, then remove the outdated checkpoints.

        Args:
            runner (mmengine.runner.Runner): The runner.
        """
        with self._removals_after_save(runner):
            super().after_train_epoch(runner)

    def after_val_epoch(self, runner, metrics) -> None:
        """Save the best checkpoint as ``CheckpointHook`` does, then remove the old best.

        Args:
            runner (mmengine.runner.Runner): The runner.
            metrics (dict): The validation metrics.
        """
        with self._removals_after_save(runner):
            super().after_val_epoch(runner, metrics)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Refuse to save weights that hold NaN or inf.

        Args:
            runner (mmengine.runner.Runner): The runner.
            checkpoint (dict): The checkpoint about to be written.

        Raises:
            NonFiniteLossError: Names the step and the tensors.
        """
        found = []
        for key in _WEIGHTS:
            if isinstance(checkpoint.get(key), dict):
                found += non_finite_tensors(checkpoint[key].items())
        if not found:
            return
        meta = checkpoint.get('meta') or {}
        step = (f'epoch {meta.get("epoch")}' if self.by_epoch else
                f'iteration {meta.get("iter")}')
        raise NonFiniteLossError(
            f'training diverged: not saving the checkpoint of {step} since the model holds '
            f'non-finite weights (NaN or inf) in {describe_non_finite(found)}. '
            + divergence_advice(runner))

    @contextmanager
    def _removals_after_save(self, runner):
        """Remove the checkpoints mmengine dropped only once the saves inside completed."""
        backend = self.file_backend
        if not isinstance(backend, SafeCheckpointBackend):
            yield
            return
        try:
            yield
        except CheckpointSaveError as e:
            backend.discard_deferred()
            raise CheckpointSaveError(f'{e} {_after_failed_save(runner)}') from e
        except BaseException:
            backend.discard_deferred()
            raise
        backend.remove_deferred()


def _after_failed_save(runner) -> str:
    """Where a run whose save failed stands, and how to go on."""
    last = read_last_checkpoint(runner.work_dir)
    if last is None:
        return 'No checkpoint of this work dir was complete before; fix this and start again.'
    return (f'The last complete checkpoint, {last!r}, is intact (the work dir\'s '
            f'last_checkpoint names it; older checkpoints are removed only after a new one '
            f'is complete, so a save needs room for one more). Fix this, or save to another '
            f'disk with default_hooks.checkpoint.out_dir=DIR, and continue with '
            f'tools/train.py CONFIG --work-dir {runner.work_dir} --resume.')
