"""lsnet_mm.checkpoint's reader: weights-only, and every failure named by what the file is.

Missing files, random bytes, foreign archives and truncated checkpoints are "not a
PyTorch checkpoint" with the reason; pickled code, in torch's zip format, its legacy
format and plain pickles of any protocol, is refused naming the objects, and never runs;
what mmengine's own checkpoints hold loads through the allow-list.
"""
import argparse
import os
import pickle
import zipfile
from collections import OrderedDict

import numpy as np
import pytest
import torch

import lsnet_mm  # noqa: F401 (the allow-list)
from lsnet_mm.checkpoint import (
    extract_state_dict,
    is_local_path,
    is_url,
    load_checkpoint,
    load_state_dict,
)
from lsnet_mm.checkpoint.file_inspection import inspect_checkpoint_file
from lsnet_mm.utils.errors import CheckpointError

NOT_A_CHECKPOINT = 'is not a PyTorch checkpoint (truncated, corrupted or another format): '


class Payload:
    """Pickles as a call ``func(arg)``: code that runs when unpickled without limits."""

    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return (self.func, (self.arg,))


def error_of(path, **kwargs):
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(str(path), **kwargs)
    return str(e.value)


def test_missing_file_names_path_cwd_and_fix(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    msg = error_of('pretrained/nope.pth', what='LSNet pretrained checkpoint')
    assert msg.startswith(f"LSNet pretrained checkpoint not found: 'pretrained/nope.pth' "
                          f"(cwd {str(tmp_path)!r}). Check the path")
    assert 'docs/model_zoo.md' in msg  # where the released files and their URLs are


def test_random_bytes_and_foreign_files_are_not_checkpoints(tmp_path):
    rng = np.random.default_rng(0)
    sizes = [0, 1, 2, 3, 5, 8, 17, 64, 100, 255, 1000, 4096, 10000, 65536, 300000]
    files = []
    for i in range(30):
        data = bytearray(rng.bytes(sizes[i % len(sizes)]))
        if i % 3 == 1 and len(data) > 2:
            data[:2] = b'\x80\x02'  # looks like the start of a protocol-2 pickle
        if i % 5 == 2 and data:
            data[:1] = b'c'  # the GLOBAL opcode
        files.append(tmp_path / f'junk{i}.pth')
        files[-1].write_bytes(bytes(data))
    for path in files:
        msg = error_of(path)
        assert msg.startswith(f'checkpoint {str(path)!r} {NOT_A_CHECKPOINT}'), msg
        assert 'allow-list' not in msg and 'weights_only' not in msg, msg

    # the reason says what the file is
    (tmp_path / 'empty.pth').write_bytes(b'')
    with zipfile.ZipFile(tmp_path / 'archive.pth', 'w') as z:
        z.writestr('notes/readme.txt', 'hello')
    torch.save({'state_dict': {'w': torch.zeros(1000)}}, tmp_path / 'good.pth')
    data = (tmp_path / 'good.pth').read_bytes()
    (tmp_path / 'cut.pth').write_bytes(data[:len(data) // 2])
    expected = {'empty.pth': 'the file is empty.',
                'archive.pth': 'a zip archive without the data.pkl record torch.save writes.',
                'cut.pth': 'a zip archive without its central directory (truncated).'}
    for name, reason in expected.items():
        path = str(tmp_path / name)
        assert error_of(path) == f'checkpoint {path!r} {NOT_A_CHECKPOINT}{reason}'
    torch.save([torch.zeros(1)], tmp_path / 'a_list.pth')
    path = str(tmp_path / 'a_list.pth')
    assert error_of(path) == (f'checkpoint {path!r} holds a list, not a dict of tensors or a '
                              f'checkpoint dict')


def _save(obj, path, fmt):
    if fmt == 'zip':
        torch.save(obj, path)
    elif fmt == 'legacy':
        torch.save(obj, path, _use_new_zipfile_serialization=False)
    else:  # a plain pickle of that protocol
        with open(path, 'wb') as f:
            pickle.dump(obj, f, protocol=int(fmt[-1]))


@pytest.mark.parametrize('fmt', ['zip', 'legacy', 'pickle1', 'pickle2', 'pickle4'])
def test_pickled_code_is_refused_by_name_and_never_runs(tmp_path, fmt):
    marker = tmp_path / 'ran'
    for func, arg, name in [(os.mkdir, str(marker), 'posix.mkdir'),
                            (exec, f'open({str(marker)!r}, "w")', 'builtins.exec')]:
        path = tmp_path / f'evil_{name}.pth'
        # (plain pickles of tensors name torch.storage._load_from_bytes, also refused)
        _save({'state_dict': {}, 'meta': Payload(func, arg)}, path, fmt)
        msg = error_of(path, what='weights')
        assert msg == (f'weights {str(path)!r} holds Python objects outside the weights-only '
                       f'allow-list ({name}) and was not loaded, since loading it could run '
                       f'code from the file. If you trust it, re-save its state dict only.')
        assert not marker.exists()
    if fmt == 'zip':  # control: the payload is real
        torch.load(tmp_path / 'evil_posix.mkdir.pth', weights_only=False)
        assert marker.is_dir()


def test_only_the_refused_objects_are_named(tmp_path):
    path = tmp_path / 'mixed.pth'
    torch.save({'state_dict': OrderedDict(w=torch.zeros(2)), 'np': np.arange(3),
                'args': argparse.Namespace(lr=0.1), 'x': Payload(os.system, 'true'),
                'y': Payload(eval, '1')}, path)
    content = inspect_checkpoint_file(str(path))
    assert content.problem is None
    assert content.refused == ['posix.system', 'builtins.eval']


def test_mmengine_checkpoint_contents_load_weights_only(tmp_path):
    """What a training run saves: history buffers (numpy, their statistics methods),
    config dicts, namespaces; torch's default weights-only load reads them."""
    from mmengine.config import ConfigDict
    from mmengine.logging import HistoryBuffer
    buf = HistoryBuffer()
    buf.update(np.float64(0.5))
    ckpt = {'state_dict': {'w': torch.ones(2)},
            'message_hub': {'log_scalars': {'loss': buf}},
            'meta': {'cfg': ConfigDict(a=1), 'args': argparse.Namespace(x=1),
                     'seed': np.int64(3), 'arr': np.zeros((2, 2), np.float32)}}
    path = tmp_path / 'train.pth'
    torch.save(ckpt, path)
    loaded = torch.load(path)  # the default: weights_only=True
    assert loaded['message_hub']['log_scalars']['loss'].current() == 0.5
    assert load_checkpoint(str(path))['meta']['cfg'] == ConfigDict(a=1)
    # getattr is allowed for the statistics methods only
    evil = tmp_path / 'getattr.pth'
    with open(evil, 'wb') as f:
        pickle.dump({'f': _GetAttr(HistoryBuffer, '__init__')}, f, protocol=2)
    assert error_of(evil) == (
        f'checkpoint {str(evil)!r} holds Python objects outside the weights-only allow-list '
        f'(allowed objects used in calls the allow-list does not permit) and was not loaded, '
        f'since loading it could run code from the file. If you trust it, re-save its '
        f'state dict only.')


class _GetAttr:
    def __init__(self, obj, name):
        self.obj, self.name = obj, name

    def __reduce__(self):
        return (getattr, (self.obj, self.name))


def test_state_dict_forms(tmp_path):
    w = torch.arange(3.)
    for key in ('model', 'state_dict', None):
        sd = {'module.a.w': w, 'b': w}
        path = tmp_path / f'{key}.pth'
        torch.save({key: sd, 'epoch': 3} if key else sd, path)
        assert list(load_state_dict(str(path))) == ['a.w', 'b']
    with pytest.raises(CheckpointError, match=r"'x.pth' has no state dict of tensors .*"
                                              r"\['meta'\]"):
        extract_state_dict({'meta': {'a': 1}}, 'x.pth')


def test_local_paths_urls_and_other_schemes(tmp_path):
    assert is_local_path('pretrained/lsnet_t.pth') and is_local_path(tmp_path / 'a.pth')
    for remote in ('https://huggingface.co/jameslahm/lsnet/resolve/main/lsnet_t.pth',
                   'http://127.0.0.1/x.pth', 's3://bucket/x.pth', 'open-mmlab://resnet50'):
        assert not is_local_path(remote), remote
    assert is_url('http://127.0.0.1/x.pth') and not is_url('s3://bucket/x.pth')
    assert not is_url(str(tmp_path / 'a.pth'))


def test_other_schemes_are_read_by_mmengine(tmp_path):
    """A prefix registered with mmengine's CheckpointLoader is read by its loader."""
    from mmengine.runner import CheckpointLoader

    def loader(filename, map_location):
        if filename.endswith('bad'):
            raise pickle.UnpicklingError('refused')
        return {'state_dict': {'w': torch.zeros(1)}, 'from': filename}

    CheckpointLoader.register_scheme('lsnettest://', loader, force=True)
    assert load_checkpoint('lsnettest://x')['from'] == 'lsnettest://x'
    assert error_of('lsnettest://bad') == (
        "checkpoint 'lsnettest://bad' could not be read: weights-only loading refused it "
        "(objects outside the allow-list, or a damaged file)")


def test_lsnet_init_cfg_reads_through_the_checker(tmp_path):
    """The backbone's Pretrained init_cfg gets the same errors, naming the file."""
    from lsnet_mm import LSNet
    missing = str(tmp_path / 'nope.pth')
    with pytest.raises(CheckpointError, match=r"^LSNet pretrained checkpoint not found: "
                                              + repr(missing).replace('.', r'\.')):
        LSNet('t', init_cfg=dict(type='Pretrained', checkpoint=missing)).init_weights()
    junk = tmp_path / 'junk.pth'
    junk.write_bytes(b'this is not a checkpoint at all' * 10)
    cut = tmp_path / 'cut.pth'
    torch.save({'model': LSNet('t').state_dict()}, cut)
    cut.write_bytes(cut.read_bytes()[:cut.stat().st_size // 2])
    for path in (junk, cut):
        msg = str(pytest.raises(CheckpointError, LSNet('t', init_cfg=dict(
            type='Pretrained', checkpoint=str(path))).init_weights).value)
        assert msg.startswith(f'LSNet pretrained checkpoint {str(path)!r} {NOT_A_CHECKPOINT}')
    marker = tmp_path / 'pwned'
    evil = tmp_path / 'evil.pth'
    torch.save({'model': LSNet('t').state_dict(), 'x': Payload(os.mkdir, str(marker))}, evil)
    with pytest.raises(CheckpointError, match=r'allow-list \(posix\.mkdir\)'):
        LSNet('t', init_cfg=dict(type='Pretrained', checkpoint=str(evil))).init_weights()
    assert not marker.exists()
