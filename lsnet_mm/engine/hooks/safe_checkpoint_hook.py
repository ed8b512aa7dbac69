"""Checkpoints that survive a kill at any moment, and resuming from the last good one.

mmengine's ``CheckpointHook`` (0.10) deletes the oldest kept checkpoint *before* it
writes the new one, writes the new one in place (``open(path, 'wb')``), then
rewrites ``last_checkpoint`` in place. With ``max_keep_ckpts=1`` a run killed while
it saves has no good checkpoint left: the old one is gone, the new one is
truncated, ``last_checkpoint`` names a missing file. A new best checkpoint
(``save_best``) likewise replaces the old one only after deleting it.

:class:`SafeCheckpointHook` (same arguments as ``CheckpointHook``; this project's
configs name it in ``default_hooks.checkpoint``) orders the work so that a finished
checkpoint is never lost:

1. the new checkpoint is written to a hidden temporary file in the same folder,
   flushed to disk, and renamed to its final name (``os.replace``, atomic);
2. ``last_checkpoint`` is replaced the same way;
3. only then are the checkpoints past ``max_keep_ckpts`` (or the previous best)
   deleted.

A kill at any point leaves ``last_checkpoint`` naming a complete checkpoint.
Non-local storage (``backend_args`` / ``out_dir`` on another backend) keeps
mmengine's behaviour.

Weights holding NaN or inf (a diverged run) are never written, on any storage: the
hook raises :class:`~lsnet_mm.engine.hooks.NonFiniteLossError` instead of saving
them, so ``last_checkpoint`` and the best checkpoint keep naming finite weights, also
in runs whose config does not name ``FiniteLossHook``.

``tools/train.py --resume`` (without a path) resumes from the newest checkpoint
that loads and holds finite weights
(:func:`lsnet_mm.checkpoint.find_resume_checkpoint`).
"""
import glob
import os
import os.path as osp

from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook
from mmengine.logging import print_log
from mmengine.registry import HOOKS

from ...checkpoint import describe_non_finite
from .finite_loss_hook import NonFiniteLossError, divergence_advice, non_finite_weights

TMP_PREFIX = '.tmp-'


def _fsync_file(path):
    with open(path, 'rb+') as f:
        os.fsync(f.fileno())


def _fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def atomic_write_text(path, text):
    """Replace ``path`` with ``text`` atomically (temporary file, fsync, rename)."""
    tmp = osp.join(osp.dirname(path) or '.', f'{TMP_PREFIX}{osp.basename(path)}')
    with open(tmp, 'w') as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(osp.dirname(path) or '.')


class _DeferRemoval:
    """File backend proxy that records removals instead of doing them."""

    def __init__(self, backend, pending):
        self._backend = backend
        self._pending = pending

    def remove(self, path):
        self._pending.append(('remove', path))

    def rmtree(self, path):
        self._pending.append(('rmtree', path))

    def __getattr__(self, name):
        return getattr(self._backend, name)


@HOOKS.register_module()
class SafeCheckpointHook(CheckpointHook):
    """``CheckpointHook`` that writes checkpoints atomically.

    Same arguments as mmengine's ``CheckpointHook``; old checkpoints are deleted only
    after the new one is complete, and non-finite weights are never saved (see the
    module docstring).
    """

    def before_train(self, runner):
        """Set up as ``CheckpointHook`` does; remove temporary files of a killed run."""
        super().before_train(runner)
        from mmengine.fileio.backends import LocalBackend
        self._local = (isinstance(self.file_backend, LocalBackend)
                       and self.file_client_args is None)
        if self._local and is_main_process():  # leftovers of a run killed while saving
            for tmp in glob.glob(osp.join(self.out_dir, f'{TMP_PREFIX}*')):
                try:
                    os.remove(tmp)
                except OSError:  # pragma: no cover
                    pass

    def _is_local(self):
        return getattr(self, '_local', False)

    def _remove_all(self, pending):
        if not is_main_process():
            return
        for how, path in pending:
            try:
                if how == 'remove' and self.file_backend.isfile(path):
                    self.file_backend.remove(path)
                elif how == 'rmtree' and self.file_backend.isdir(path):
                    self.file_backend.rmtree(path)
            except OSError as e:  # pragma: no cover - a leftover file is not worth a crash
                print_log(f'could not remove old checkpoint {path}: {e}', logger='current',
                          level=30)

    def _save_atomic(self, runner, filename, **kwargs):
        """runner.save_checkpoint to a temporary name, then rename into place."""
        tmp_name = f'{TMP_PREFIX}{filename}'
        runner.save_checkpoint(self.out_dir, tmp_name, self.file_client_args,
                               backend_args=self.backend_args, **kwargs)
        if not is_main_process():  # mmengine's Runner saves on the main process only
            return
        tmp = osp.join(self.out_dir, tmp_name)
        final = osp.join(self.out_dir, filename)
        _fsync_file(tmp)
        os.replace(tmp, final)
        _fsync_dir(self.out_dir)

    def _refuse_non_finite(self, runner, what):
        found = non_finite_weights(runner)
        if found:
            raise NonFiniteLossError(
                f'training diverged: not saving the {what} since the model holds non-finite '
                f'weights (NaN or inf) in {describe_non_finite(found)}. '
                + divergence_advice(runner))

    def _save_checkpoint_with_step(self, runner, step, meta):
        self._refuse_non_finite(
            runner, f'checkpoint of {"epoch" if self.by_epoch else "iteration"} {step}')
        if not self._is_local():
            return super()._save_checkpoint_with_step(runner, step, meta)
        # as mmengine, except that the outdated checkpoint is removed after the save
        outdated = []
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and
                                            self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                old = self.keep_ckpt_ids.popleft()
                outdated.append(('remove', osp.join(self.out_dir, self.filename_tmpl.format(old))))
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))

        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        self._save_atomic(runner, ckpt_filename, save_optimizer=self.save_optimizer,
                          save_param_scheduler=self.save_param_scheduler, meta=meta,
                          by_epoch=self.by_epoch, **self.args)
        if not is_main_process():
            return
        atomic_write_text(osp.join(runner.work_dir, 'last_checkpoint'), self.last_ckpt)
        outdated = [(h, p) for h, p in outdated if osp.abspath(p) != osp.abspath(self.last_ckpt)]
        self._remove_all(outdated)

    def _save_best_checkpoint(self, runner, metrics):
        if self.save_best:  # else mmengine's method returns without saving
            self._refuse_non_finite(runner, f'best checkpoint after iteration {runner.iter}')
        if not self._is_local():
            return super()._save_best_checkpoint(runner, metrics)
        # mmengine deletes the previous best before saving the new one: defer the
        # deletion until the new one is complete, and save it atomically
        pending = []
        backend = self.file_backend
        orig_save = runner.save_checkpoint

        def save_best(out_dir, filename, file_client_args=None, **kwargs):
            if filename.startswith(TMP_PREFIX):  # _save_atomic renames it itself
                return orig_save(out_dir, filename, file_client_args, **kwargs)
            tmp_name = f'{TMP_PREFIX}{filename}'
            orig_save(out_dir, tmp_name, file_client_args, **kwargs)
            if is_main_process():
                tmp, final = osp.join(out_dir, tmp_name), osp.join(out_dir, filename)
                _fsync_file(tmp)
                os.replace(tmp, final)
                _fsync_dir(out_dir)

        self.file_backend = _DeferRemoval(backend, pending)
        runner.save_checkpoint = save_best
        try:
            super()._save_best_checkpoint(runner, metrics)
        finally:
            self.file_backend = backend
            del runner.save_checkpoint  # back to the class's method
            self._remove_all(pending)
