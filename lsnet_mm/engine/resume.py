"""Which checkpoint a run resumes from: ``tools/train.py --resume`` without a path.

mmengine's own choice (``resume=True`` without ``load_from``) is the file that the work
dir's ``last_checkpoint`` names, read as is. :func:`find_resume_checkpoint` takes the
newest checkpoint that really loads instead: a ``last_checkpoint`` left empty by a
kill, naming a missing or truncated file, or a checkpoint of non-finite weights
(written by mmengine's own ``CheckpointHook`` in a diverged run) is skipped with a
warning naming what was skipped and why.
"""
import glob
import logging
import os.path as osp
import re
from typing import List, Optional

from mmengine.logging import print_log

from ..checkpoint import describe_non_finite, load_checkpoint, non_finite_tensors
from ..utils.errors import CheckpointError

_NUMBERED = re.compile(r'^(epoch|iter)_(\d+)\.pth$')


def read_last_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint the work dir's ``last_checkpoint`` file names.

    mmengine's ``CheckpointHook`` writes that file after each complete save.

    Args:
        work_dir (str): A run's work dir.

    Returns:
        str | None: The path written there; None when the file is missing or empty.
    """
    pointer = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(pointer):
        return None
    with open(pointer) as f:
        return f.read().strip() or None


def _numbered_checkpoints(work_dir: str) -> List[str]:
    """``epoch_N.pth`` / ``iter_N.pth`` in ``work_dir``, newest (highest N) first."""
    found = []
    for path in glob.glob(osp.join(glob.escape(work_dir), '*.pth')):
        m = _NUMBERED.match(osp.basename(path))
        if m:
            found.append((int(m.group(2)), osp.getmtime(path), path))
    return [path for _, _, path in sorted(found, reverse=True)]


def _why_not_resumable(path: str) -> Optional[str]:
    """Why ``path`` cannot be resumed from; None if it can."""
    if not osp.isfile(path):
        return f'{path} does not exist'
    try:
        ckpt = load_checkpoint(path)
    except CheckpointError as e:
        return str(e)
    if not isinstance(ckpt.get('state_dict'), dict) or 'meta' not in ckpt:
        return f'{path} is not an mmengine training checkpoint (no state_dict/meta)'
    found = non_finite_tensors(ckpt['state_dict'].items())
    if found:
        return f'{path} holds non-finite weights ({describe_non_finite(found)})'
    return None


def find_resume_checkpoint(work_dir: str, logger: str = 'current') -> Optional[str]:
    """The checkpoint ``tools/train.py --resume`` (no path) resumes from.

    Args:
        work_dir (str): The run's work dir.
        logger (str): Where to log the checkpoints that were skipped.

    Returns:
        str | None: The file ``last_checkpoint`` names if it loads, else the newest
        ``epoch_*.pth`` / ``iter_*.pth`` that loads ("loads": a readable mmengine
        training checkpoint whose weights are finite); None if the work dir holds none.

    Raises:
        CheckpointError: The work dir holds checkpoints but none of them loads.
    """
    named = read_last_checkpoint(work_dir)
    skipped = []
    if named is None and osp.isfile(osp.join(work_dir, 'last_checkpoint')):
        skipped.append(f'{osp.join(work_dir, "last_checkpoint")} is empty')
    candidates = [] if named is None else [named]
    candidates += [p for p in _numbered_checkpoints(work_dir)
                   if named is None or osp.abspath(p) != osp.abspath(named)]
    for path in candidates:
        why = _why_not_resumable(path)
        if why is None:
            if skipped:
                print_log(f'--resume: resuming from {path}; skipped: ' + '; '.join(skipped),
                          logger=logger, level=logging.WARNING)
            return path
        skipped.append(why)
    if skipped:
        raise CheckpointError(
            f'--resume: no usable checkpoint in {work_dir!r}: ' + '; '.join(skipped)
            + '. Resume from a given file with --resume PATH, or start over in a new '
              '--work-dir.')
    return None
