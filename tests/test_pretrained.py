"""Loading released ImageNet checkpoints, and the errors a bad checkpoint gives."""
import argparse
import os

import pytest
import torch
import torch.nn.functional as F

from lsnet_mm import LSNet
from lsnet_mm.checkpoint import CheckpointError
from lsnet_mm.models.backbones import lsnet as lsnet_module
from lsnet_mm.models.layers.attention import relative_offset_index
from test_backbone import randomize


def released_imagenet_checkpoint(arch, path, prefix='', key='model'):
    """Write a checkpoint the way the authors released theirs: classifier heads, 4x4
    attention tables (224 input at stride 64) with their index buffers."""
    src = randomize(LSNet(arch))
    sd = {}
    for k, v in src.state_dict().items():
        if k.endswith('attention_biases'):
            v = torch.randn(v.shape[0], 16)
        elif k.endswith('attention_bias_idxs'):
            v = relative_offset_index(4)
        sd[prefix + k] = v
    dim = src.embed_dims[-1]
    for head in ('head', 'head_dist'):
        sd[f'{prefix}{head}.bn.weight'] = torch.ones(dim)
        sd[f'{prefix}{head}.l.weight'] = torch.randn(1000, dim)
        sd[f'{prefix}{head}.l.bias'] = torch.zeros(1000)
    torch.save({key: sd, 'epoch': 299, 'args': argparse.Namespace(model=f'lsnet_{arch}')}, path)
    return sd


@pytest.mark.parametrize('prefix,key', [('', 'model'), ('module.', 'model'), ('', 'state_dict')])
def test_load_released_imagenet_checkpoint(tmp_path, monkeypatch, prefix, key):
    path = str(tmp_path / 'lsnet_t.pth')
    sd = released_imagenet_checkpoint('t', path, prefix, key)
    logged = []
    monkeypatch.setattr(lsnet_module, 'print_log', lambda msg, **kw: logged.append(msg))
    model = LSNet('t', init_cfg=dict(type='Pretrained', checkpoint=path))
    missing, unexpected = model.load_pretrained(path)
    model.init_weights()
    own = model.state_dict()
    for k, v in own.items():
        src = sd[prefix + k]
        if k.endswith('attention_biases'):
            expected = F.interpolate(src.view(1, -1, 4, 4), size=(14, 14), mode='bicubic',
                                     align_corners=False).view(src.shape[0], 196)
            torch.testing.assert_close(v, expected)
        elif k.endswith('attention_bias_idxs'):
            assert torch.equal(v, relative_offset_index(14))  # built, never read
        else:
            assert torch.equal(v, src), k
    assert missing == []
    assert unexpected == []  # heads and index buffers are dropped before loading
    assert len(logged) == 2 and 'missing keys: none; unexpected keys: none' in logged[-1]


def test_loading_reports_missing_and_unexpected(tmp_path):
    path = str(tmp_path / 'partial.pth')
    sd = LSNet('t').state_dict()
    sd.pop('blocks2.2.se.fc1.bias')
    sd['blocks9.0.extra.weight'] = torch.zeros(1)
    torch.save({'model': sd}, path)
    missing, unexpected = LSNet('t').load_pretrained(path)
    assert missing == ['blocks2.2.se.fc1.bias']
    assert unexpected == ['blocks9.0.extra.weight']


def test_loaded_model_computes_same_features_as_source(tmp_path):
    src = randomize(LSNet('s')).eval()
    path = str(tmp_path / 'downstream.pth')
    torch.save({'state_dict': {'backbone.' + k: v for k, v in src.state_dict().items()}}, path)
    model = LSNet('s', init_cfg=dict(type='Pretrained', checkpoint=path, prefix='backbone.'))
    model.init_weights()
    model.eval()
    x = torch.randn(1, 3, 160, 224)
    with torch.no_grad():
        for a, b in zip(model(x), src(x)):
            torch.testing.assert_close(a, b)


def test_missing_file(tmp_path):
    path = str(tmp_path / 'nope.pth')
    with pytest.raises(CheckpointError, match=r'pretrained checkpoint not found: .*nope\.pth'):
        LSNet('t', init_cfg=dict(type='Pretrained', checkpoint=path)).init_weights()


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / 'junk.pth'
    path.write_bytes(b'this is not a checkpoint at all' * 10)
    with pytest.raises(CheckpointError, match='junk.pth.* is not a PyTorch checkpoint'):
        LSNet('t').load_pretrained(str(path))


def test_truncated_checkpoint(tmp_path):
    path = tmp_path / 'cut.pth'
    torch.save({'model': LSNet('t').state_dict()}, path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match='cut.pth'):
        LSNet('t').load_pretrained(str(path))


def test_other_arch_is_named(tmp_path):
    path = str(tmp_path / 'lsnet_s.pth')
    released_imagenet_checkpoint('s', path)
    with pytest.raises(CheckpointError, match=r"is LSNet-s .* model is LSNet-t.*arch='s'"):
        LSNet('t', init_cfg=dict(type='Pretrained', checkpoint=path)).init_weights()


def test_non_lsnet_weights(tmp_path):
    path = str(tmp_path / 'resnet.pth')
    torch.save({'state_dict': {'conv1.weight': torch.zeros(64, 3, 7, 7)}}, path)
    with pytest.raises(CheckpointError, match='not an LSNet checkpoint'):
        LSNet('t').load_pretrained(path)


def test_pickled_code_is_never_executed(tmp_path):
    marker = tmp_path / 'pwned'

    class Evil:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    path = str(tmp_path / 'evil.pth')
    torch.save({'model': LSNet('t').state_dict(), 'payload': Evil()}, path)
    with pytest.raises(CheckpointError, match='allow-list'):
        LSNet('t').load_pretrained(path)
    assert not marker.exists()
