"""Checkpoint URLs: complete files in the torch hub cache, or nothing and a clear error.

A local server (checkpoint_server) serves the files; TORCH_HOME is a temporary folder.
"""
import hashlib
import os
import re

import pytest
import torch
from checkpoint_server import CheckpointServer, offline_url, use_local_network

import lsnet_mm  # noqa: F401
from lsnet_mm.checkpoint import (
    cached_checkpoint_path,
    fetch_checkpoint,
    load_checkpoint,
    read_backbone_weights,
)
from lsnet_mm.utils.errors import CheckpointError

SETTING = 'model.backbone.init_cfg.checkpoint'


@pytest.fixture
def served(tmp_path, monkeypatch):
    """(folder served, hub checkpoint folder, a checkpoint's bytes named lsnet_t.pth)."""
    cache = use_local_network(monkeypatch, tmp_path / 'torch_home')
    folder = tmp_path / 'served'
    folder.mkdir()
    torch.save({'model': {'w': torch.arange(100000.)}}, folder / 'lsnet_t.pth')
    return folder, cache, (folder / 'lsnet_t.pth').read_bytes()


def fixes(path, setting=SETTING):
    return (f'Download the file where there is network access and put it at {path!r} (where '
            f'the loader looks for it), or point {setting} at a local copy (--cfg-options '
            f'{setting}=PATH).')


def test_download_lands_where_mmengine_looks_and_happens_once(served):
    from mmengine.runner import CheckpointLoader

    from lsnet_mm import LSNet
    folder, cache, data = served
    source = LSNet('t')
    torch.save({'model': source.state_dict()}, folder / 'lsnet_s.pth')
    with CheckpointServer(folder) as server:
        # the backbone's init_cfg by URL: downloaded, then read weights-only
        model = LSNet('t', init_cfg=dict(type='Pretrained', checkpoint=server.url('lsnet_s.pth')))
        model.init_weights()
        assert all(torch.equal(v, source.state_dict()[k]) for k, v in model.state_dict().items())
        server.requests.clear()
        url = server.url('lsnet_t.pth')
        path = fetch_checkpoint(url)
        assert path == cached_checkpoint_path(url) == os.path.join(cache, 'lsnet_t.pth')
        with open(path, 'rb') as f:
            assert f.read() == data
        assert fetch_checkpoint(url) == path
        # mmengine's own http loader (load_from, the inferencers) finds the file
        ckpt = CheckpointLoader.load_checkpoint(url, map_location='cpu')
        assert torch.equal(ckpt['model']['w'], torch.arange(100000.))
        assert torch.equal(load_checkpoint(url)['model']['w'], torch.arange(100000.))
        assert server.requests == ['/jameslahm/lsnet/resolve/main/lsnet_t.pth']
    assert sorted(os.listdir(cache)) == ['lsnet_s.pth', 'lsnet_t.pth']  # no temporary file


def test_a_cut_download_stores_nothing(served):
    folder, cache, data = served
    with CheckpointServer(folder) as server:
        server.cut.add('lsnet_t.pth')
        url = server.url('lsnet_t.pth')
        path = cached_checkpoint_path(url)
        with pytest.raises(CheckpointError) as e:
            fetch_checkpoint(url, SETTING)
        assert str(e.value) == (
            f'checkpoint {url!r}: the download was cut short ({len(data) // 2} of {len(data)} '
            f'bytes received); nothing was stored at {path!r}. Run again to retry. '
            + fixes(path))
        assert os.listdir(cache) == []
        server.cut.clear()  # the next run downloads it in full
        assert torch.equal(load_checkpoint(url)['model']['w'], torch.arange(100000.))
        assert len(server.requests) == 2


def test_the_hash_a_file_name_carries_is_checked(served):
    folder, cache, data = served
    digest = hashlib.sha256(data).hexdigest()
    (folder / f'lsnet_t-{digest[:10]}.pth').write_bytes(data)
    (folder / 'lsnet_t-0123abcd.pth').write_bytes(data)
    with CheckpointServer(folder) as server:
        assert os.path.isfile(fetch_checkpoint(server.url(f'lsnet_t-{digest[:10]}.pth')))
        url = server.url('lsnet_t-0123abcd.pth')
        with pytest.raises(CheckpointError) as e:
            fetch_checkpoint(url)
    path = cached_checkpoint_path(url)
    assert str(e.value).startswith(
        f'checkpoint {url!r}: the downloaded file has SHA-256 {digest}, but its name says '
        f'0123abcd...: the server holds another file than the one named; nothing was '
        f'stored at {path!r}.')
    assert os.listdir(cache) == [f'lsnet_t-{digest[:10]}.pth']


def test_offline_names_url_cache_file_and_both_fixes(served, tmp_path):
    from lsnet_mm import LSNet
    folder, cache, data = served
    url = offline_url('lsnet_t.pth')
    path = os.path.join(cache, 'lsnet_t.pth')
    with pytest.raises(CheckpointError) as e:
        read_backbone_weights(url)
    msg = str(e.value)
    reason = re.escape('[Errno 111] Connection refused')
    assert re.fullmatch(rf'checkpoint {re.escape(repr(url))} could not be downloaded '
                        rf'\({reason}\) and is not in the cache at {re.escape(repr(path))}\. '
                        + re.escape(fixes(path)), msg), msg
    # the first fix: the file put at that path loads, offline
    source = LSNet('t')
    torch.save({'model': source.state_dict()}, tmp_path / 'copy.pth')
    os.makedirs(cache, exist_ok=True)
    os.replace(tmp_path / 'copy.pth', path)
    model = LSNet('t', init_cfg=dict(type='Pretrained', checkpoint=url))
    model.init_weights()
    key = 'patch_embed.0.c.weight'
    assert torch.equal(model.state_dict()[key], source.state_dict()[key])


def load_error(folder, name, **kwargs):
    """(URL, cache path, message) of loading the served file ``name``, which must fail."""
    with CheckpointServer(folder) as server:
        url = server.url(name)
        with pytest.raises(CheckpointError) as e:
            load_checkpoint(url, **kwargs)
    return url, cached_checkpoint_path(url), str(e.value)


def test_http_errors_are_named(served):
    url, path, msg = load_error(served[0], 'nope.pth', setting='load_from')
    assert msg == (
        f'checkpoint {url!r} could not be downloaded (HTTP Error 404: File not found) and is '
        f'not in the cache at {path!r}. ' + fixes(path, 'load_from'))


def test_a_cached_copy_that_does_not_load_is_fetched_once_more(served):
    folder, cache, data = served
    os.makedirs(cache)
    path = os.path.join(cache, 'lsnet_t.pth')
    with open(path, 'wb') as f:
        f.write(data[:1000])  # left by an interrupted download of another tool
    with CheckpointServer(folder) as server:
        ckpt = load_checkpoint(server.url('lsnet_t.pth'))
        assert len(server.requests) == 1
    assert torch.equal(ckpt['model']['w'], torch.arange(100000.))
    with open(path, 'rb') as f:
        assert f.read() == data
    # offline: the damaged copy is named with the command that removes it
    with open(path, 'wb') as f:
        f.write(data[:1000])
    url = offline_url('lsnet_t.pth')
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(url)
    msg = str(e.value)
    assert msg.startswith(f'checkpoint {url + " (cached at " + path + ")"!r} is not a PyTorch '
                          f'checkpoint')
    assert f'Remove the cached copy with: rm {path}' in msg
    assert 'downloading it again failed: checkpoint' in msg and 'Connection refused' in msg


def test_downloaded_code_is_refused_and_not_kept(served, tmp_path):
    folder, cache, _ = served
    marker = tmp_path / 'ran'

    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    torch.save({'state_dict': {'w': torch.zeros(1)}, 'x': Payload()}, folder / 'evil.pth')
    url, path, msg = load_error(folder, 'evil.pth', what='weights')
    assert msg == (
        f'weights {url + " (cached at " + path + ")"!r} holds Python objects outside the '
        f'weights-only allow-list (posix.mkdir) and was not loaded, since loading it could '
        f'run code from the file. If you trust it, re-save its state dict only. The download '
        f'was not kept.')
    assert not os.path.exists(path) and not marker.exists()
