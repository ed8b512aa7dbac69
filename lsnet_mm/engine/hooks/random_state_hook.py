"""``RandomStateHook``: a resumed run draws the random numbers the uninterrupted one drew.

mmengine's resume restores the weights, the optimizer, the schedule and the seed, and
an iteration-based loop replays the skipped iterations through the dataloader, so the
data pipeline's random draws (crops, flips, photometric changes: numpy, in the loader
workers or, without workers, in the main process) repeat. The main process's torch
generator is not restored: dropout (Semantic FPN's head) and mmdet's random RoI
samplers then draw other numbers after a resume. An epoch-based loop resumes at an
epoch boundary without a replay, so a run without loader workers also draws other
numpy numbers.

:class:`RandomStateHook` (named in the configs' ``custom_hooks``):

* stores the RNG states (Python, numpy, torch, CUDA) in every checkpoint
  (``meta.rng_state``, as tensors and numbers: weights-only loadable);
* on resume restores them before the first iteration trained (iteration-based loops:
  torch and CUDA only, after mmengine's replay has restored the data pipeline's
  numpy draws; epoch-based loops: all of them, before the epoch's first batch);
* keeps validation from consuming training random numbers (the states are put back
  after each validation), so whether a run validated at a checkpoint does not
  change what it draws next.

Whether a run resumed is told from public state: the loop of a resumed run starts at
the checkpoint's iteration (``runner.iter == meta.iter``), one that only loaded the
weights (``load_from``) at 0, and keeps the seeded states.

What it cannot restore: the states inside persistent dataloader workers of an
epoch-based loop (``persistent_workers=True``, mmdet's default) - the restarted
workers begin from their seeds again, so the augmentations of the epochs after a
resume differ from the uninterrupted run's (with non-persistent workers mmengine seeds
them the same way every epoch, and they repeat). In an iteration-based loop torch's
state is restored after the first batch is loaded (mmengine calls no hook between its
replay and that batch), so torch random numbers drawn while loading in the main
process are not repeated, e.g. by a ``DataLoader`` iterator that a finite sampler
restarts there: use ``InfiniteSampler``, as mmseg's iteration-based configs do.
"""
import random
from typing import Optional

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.runner import EpochBasedTrainLoop

from ...registry import HOOKS


def get_rng_state() -> dict:
    """The Python, numpy, torch and CUDA random states, as tensors and numbers.

    Returns:
        dict: ``python``, ``numpy``, ``torch`` and (when CUDA is initialised) ``cuda``.
    """
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = dict(python=(version, torch.tensor(internal, dtype=torch.int64), gauss),
                 numpy=(kind, torch.from_numpy(keys.astype(np.int64)), int(pos),
                        int(has_gauss), float(cached)),
                 torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, python_numpy: bool = True) -> None:
    """Restore what :func:`get_rng_state` returned.

    Args:
        state (dict): The states.
        python_numpy (bool): Restore the Python and numpy states too, not only torch's
            and CUDA's. Defaults to True.
    """
    if python_numpy and 'python' in state:
        version, internal, gauss = state['python']
        random.setstate((version, tuple(int(v) for v in internal.tolist()), gauss))
    if python_numpy and 'numpy' in state:
        kind, keys, pos, has_gauss, cached = state['numpy']
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if 'torch' in state:
        torch.set_rng_state(state['torch'])
    cuda = state.get('cuda')
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


@HOOKS.register_module()
class RandomStateHook(Hook):
    """Save the RNG states in checkpoints and restore them on resume.

    See the module docstring. Name it in a config's ``custom_hooks``
    (``dict(type='lsnet_mm.RandomStateHook')``).
    """

    priority = 'VERY_LOW'

    def __init__(self):
        self._pending: Optional[dict] = None
        self._pending_iter: Optional[int] = None
        self._before_val: Optional[dict] = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Store the current states in ``checkpoint['meta']['rng_state']``."""
        checkpoint.setdefault('meta', {})['rng_state'] = get_rng_state()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Keep a loaded checkpoint's states until training starts.

        mmengine calls this for ``load_from`` and for resuming alike (and re-seeds
        after loading when the seeds differ): :meth:`before_train` tells them apart.
        """
        meta = checkpoint.get('meta') or {}
        if isinstance(meta.get('rng_state'), dict):
            self._pending, self._pending_iter = meta['rng_state'], meta.get('iter')

    def before_train(self, runner) -> None:
        """Keep the states only if the run resumed from their checkpoint.

        A resumed loop starts at the checkpoint's iteration; a run that merely loaded
        the weights (``load_from``) starts at 0.
        """
        if self._pending is not None and runner.iter != self._pending_iter:
            self._pending = None

    def before_train_epoch(self, runner) -> None:
        """Epoch-based loops: restore every state before the epoch's first batch."""
        if self._pending is not None and isinstance(runner.train_loop, EpochBasedTrainLoop):
            set_rng_state(self._pending)
            self._pending = None

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        """Iteration-based loops: restore torch's and CUDA's states (see the module)."""
        if self._pending is not None:
            set_rng_state(self._pending, python_numpy=False)
            self._pending = None

    def before_val(self, runner) -> None:
        """Remember the training states."""
        self._before_val = get_rng_state()

    def after_val(self, runner) -> None:
        """Put the training states back."""
        if self._before_val is not None:
            set_rng_state(self._before_val)
            self._before_val = None
