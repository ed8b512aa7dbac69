"""find_resume_checkpoint (tools/train.py --resume without a path): the checkpoint
last_checkpoint names if it loads, else the newest one that loads, with a warning
naming what was skipped; none loads: an error, not a silent restart from scratch."""
import os.path as osp

import pytest
import torch
from engine_toys import logged_warnings

from lsnet_mm.engine.resume import find_resume_checkpoint, read_last_checkpoint
from lsnet_mm.utils.errors import CheckpointError


def save(path, value, it):
    torch.save(dict(state_dict={'w': torch.full((2,), value)}, meta=dict(epoch=0, iter=it)),
               path)
    return str(path)


def warnings_of(call):
    with logged_warnings() as found:
        return call(), found


def test_skips_unreadable_last_checkpoint(tmp_path):
    wd = str(tmp_path)
    good = save(tmp_path / 'epoch_1.pth', 0.0, 2)
    bad = osp.join(wd, 'epoch_2.pth')
    with open(good, 'rb') as f:
        content = f.read()
    with open(bad, 'wb') as f:
        f.write(content[:len(content) // 2])  # truncated
    (tmp_path / 'last_checkpoint').write_text(bad)
    assert read_last_checkpoint(wd) == bad
    path, warnings = warnings_of(lambda: find_resume_checkpoint(wd))
    assert path == good
    (warning,) = warnings
    assert warning.startswith(f'--resume: resuming from {good}; skipped: '), warning
    assert bad in warning
    (tmp_path / 'last_checkpoint').write_text('')  # a kill while mmengine rewrote it
    assert read_last_checkpoint(wd) is None
    path, warnings = warnings_of(lambda: find_resume_checkpoint(wd))
    assert path == good and f'{tmp_path / "last_checkpoint"} is empty' in warnings[0]
    (tmp_path / 'epoch_1.pth').unlink()
    with pytest.raises(CheckpointError, match=r"^--resume: no usable checkpoint in '.*': .*"
                                              r'epoch_2\.pth'):
        find_resume_checkpoint(wd)
    assert find_resume_checkpoint(str(tmp_path / 'fresh')) is None  # nothing yet: start


def test_skips_non_finite_and_missing_checkpoints(tmp_path):
    # e.g. written by mmengine's own CheckpointHook in a diverged run
    good = save(tmp_path / 'iter_2.pth', 0.0, 2)
    save(tmp_path / 'iter_4.pth', float('nan'), 4)
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_6.pth'))  # gone
    path, warnings = warnings_of(lambda: find_resume_checkpoint(str(tmp_path)))
    assert path == good
    assert warnings == [f'--resume: resuming from {good}; skipped: {tmp_path}/iter_6.pth does '
                        f'not exist; {tmp_path}/iter_4.pth holds non-finite weights (1 tensor: '
                        f'w (2 of 2 values))']
