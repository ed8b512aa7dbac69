"""SafeCheckpointBackend: atomic puts, removals deferred until the caller says the new
checkpoint is complete, temporary files of interrupted saves cleaned up. (A put that
fails with EFBIG is tested in test_safe_checkpoint_hook.py, in a child process.)"""
import os

import pytest
from mmengine.fileio import get_file_backend

from lsnet_mm.engine.fileio import SAFE_CHECKPOINT_BACKEND, SafeCheckpointBackend


def test_selected_by_backend_args_and_puts_atomically(tmp_path):
    backend = get_file_backend(str(tmp_path), backend_args=dict(backend=SAFE_CHECKPOINT_BACKEND))
    assert type(backend) is SafeCheckpointBackend
    path = tmp_path / 'sub' / 'epoch_1.pth'
    backend.put(b'old', path)  # creates the folder as LocalBackend does
    inode = os.stat(path).st_ino
    backend.put(b'new', path)
    assert path.read_bytes() == b'new' and os.listdir(path.parent) == ['epoch_1.pth']
    assert os.stat(path).st_ino != inode  # a new file renamed over the old one
    # a write that fails half way (here: not bytes) leaves the old file and no temp file
    with pytest.raises(TypeError):
        backend.put('not bytes', path)
    assert path.read_bytes() == b'new' and os.listdir(path.parent) == ['epoch_1.pth']


def test_removals_wait_for_remove_deferred(tmp_path):
    backend = SafeCheckpointBackend()
    for name in ('a.pth', 'b.pth', 'c.pth'):
        (tmp_path / name).write_bytes(b'x')
    (tmp_path / 'ds').mkdir()  # a DeepSpeed checkpoint is a folder
    (tmp_path / 'ds' / 'part').write_bytes(b'x')
    backend.remove(tmp_path / 'a.pth')
    backend.remove(tmp_path / 'b.pth')
    backend.rmtree(tmp_path / 'ds')
    backend.put(b'saved again', tmp_path / 'b.pth')  # written after its removal was asked
    assert sorted(os.listdir(tmp_path)) == ['a.pth', 'b.pth', 'c.pth', 'ds']
    assert backend.remove_deferred() == [str(tmp_path / 'a.pth'), str(tmp_path / 'ds')]
    assert sorted(os.listdir(tmp_path)) == ['b.pth', 'c.pth']
    assert (tmp_path / 'b.pth').read_bytes() == b'saved again'
    assert backend.remove_deferred() == []  # done once
    backend.remove(tmp_path / 'c.pth')
    backend.discard_deferred()  # a save failed: keep the old checkpoints
    assert backend.remove_deferred() == [] and (tmp_path / 'c.pth').exists()


def test_remove_temp_files(tmp_path):
    for name in ('.tmp-epoch_2.pth.4242', '.tmp-best_mae_epoch_2.pth.7', 'epoch_1.pth',
                 'tmp-kept.pth'):
        (tmp_path / name).write_bytes(b'x')
    removed = SafeCheckpointBackend.remove_temp_files(str(tmp_path))
    assert sorted(os.path.basename(p) for p in removed) == ['.tmp-best_mae_epoch_2.pth.7',
                                                            '.tmp-epoch_2.pth.4242']
    assert sorted(os.listdir(tmp_path)) == ['epoch_1.pth', 'tmp-kept.pth']
