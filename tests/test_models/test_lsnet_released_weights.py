"""Released LSNet weights load as released: through init_cfg (ImageNet and downstream
files), and through any loader, the attention layers upgrading tables of another grid
in memory with one log line; the arch and deploy-form checks of the backbone."""
import re

import pytest
import torch
import torch.nn.functional as F
from mmengine.runner import load_checkpoint as mmengine_load_checkpoint
from torch import nn

from lsnet_mm import LSNet
from lsnet_mm.models.backbones import lsnet as lsnet_module
from lsnet_mm.models.layers.attention import relative_offset_index
from lsnet_mm.utils.errors import CheckpointError
from model_helpers import randomize
from released_checkpoints import random_backbone, write_imagenet_checkpoint

pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture
def logged(monkeypatch):
    lines = []
    monkeypatch.setattr(lsnet_module, 'print_log', lambda msg, **kw: lines.append(msg))
    return lines


def bicubic(table, grid, size=14):
    return F.interpolate(table.view(1, -1, grid, grid), size=(size, size), mode='bicubic',
                         align_corners=False).view(table.shape[0], size * size)


def assert_loaded_as_released(model, sd, grid, prefix=''):
    for k, v in model.state_dict().items():
        src = sd[prefix + k]
        if k.endswith('attention_biases'):
            torch.testing.assert_close(v, bicubic(src, grid))
        elif k.endswith('attention_bias_idxs'):
            assert torch.equal(v, relative_offset_index(14))  # built, never read
        else:
            assert torch.equal(v, src), k


@pytest.mark.parametrize('prefix,key', [('', 'model'), ('module.', 'model'), ('', 'state_dict')])
def test_load_released_imagenet_checkpoint(tmp_path, logged, prefix, key):
    path = str(tmp_path / 'lsnet_t.pth')
    sd = write_imagenet_checkpoint(path, 't', prefix=prefix, key=key)
    model = LSNet('t', init_cfg=dict(type='Pretrained', checkpoint=path))
    missing, unexpected = model.load_pretrained(path)
    assert (missing, unexpected) == ([], [])  # heads and index buffers never reach the model
    model.init_weights()
    assert_loaded_as_released(model, sd, 4, prefix)
    loads = [m for m in logged if 'loaded' in m]
    assert len(loads) == 2 and loads[0] == loads[1]
    # every tensor of the model came from the file (the index buffers may be built)
    own = model.state_dict()
    n = int(re.match(rf'LSNet-t: loaded (\d+) tensors from {re.escape(path)}; missing keys: '
                     rf'none; unexpected keys: none$', loads[0]).group(1))
    assert len(own) - sum(k.endswith('attention_bias_idxs') for k in own) <= n <= len(own)


def test_layers_upgrade_released_tables_in_memory(logged):
    """torch's own strict load_state_dict of the released layout (4x4 tables, 16x16
    index buffers): resized bicubically, the model's own index tables, one line."""
    sd = random_backbone('t', torch.Generator().manual_seed(1), grid=4)
    model = LSNet('t')
    model.load_state_dict(sd, strict=True)
    assert_loaded_as_released(model, sd, 4)
    assert logged == ['LSNet-t: released weights upgraded in memory: 5 attention tables '
                      'resized from 4x4 to 14x14']
    model.load_state_dict(model.state_dict(), strict=True)  # nothing to upgrade: no line
    assert len(logged) == 1


def test_downstream_file_loads_through_mmengine(tmp_path, logged):
    """An mmdet 2.28-style file (state_dict + meta; backbone under "backbone.", tables of
    a 7x7 grid, index buffers of that grid) through mmengine's load_checkpoint, strictly:
    the same weights and features as the file upgraded beforehand."""
    class Detector(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = LSNet('s')
            self.neck = nn.Conv2d(448, 8, 1)

    sd = random_backbone('s', torch.Generator().manual_seed(2), grid=7, prefix='backbone.')
    sd.update({f'neck.{k}': v for k, v in nn.Conv2d(448, 8, 1).state_dict().items()})
    path = str(tmp_path / 'retinanet_lsnet_s.pth')
    torch.save(dict(state_dict=sd, meta=dict(CLASSES=('a', 'b'), mmdet_version='2.28.2')), path)
    det = Detector()
    mmengine_load_checkpoint(det, path, strict=True)
    assert_loaded_as_released(det.backbone, sd, 7, 'backbone.')
    assert logged == ['LSNet-s: released weights upgraded in memory: 5 attention tables '
                      'resized from 7x7 to 14x14']
    from lsnet_mm.checkpoint import resize_attention_biases
    upgraded = {k[len('backbone.'):]: resize_attention_biases(v, 14)
                if k.endswith('attention_biases') else v
                for k, v in sd.items() if k.startswith('backbone.')
                and not k.endswith('attention_bias_idxs')}
    ref = LSNet('s')
    ref.load_state_dict(upgraded, strict=True)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(det.backbone.eval()(x), ref.eval()(x)))


def test_loading_reports_missing_and_unexpected(tmp_path):
    path = str(tmp_path / 'partial.pth')
    sd = LSNet('t').state_dict()
    sd.pop('blocks2.2.se.fc1.bias')
    sd['blocks9.0.extra.weight'] = torch.zeros(1)
    torch.save({'model': sd}, path)
    missing, unexpected = LSNet('t').load_pretrained(path)
    assert missing == ['blocks2.2.se.fc1.bias']
    assert unexpected == ['blocks9.0.extra.weight']


def test_mis_shaped_tensor_is_named(tmp_path):
    path = str(tmp_path / 'odd.pth')
    sd = LSNet('t').state_dict()
    sd['blocks2.2.se.fc1.bias'] = torch.zeros(3)
    torch.save({'model': sd}, path)
    with pytest.raises(CheckpointError, match=r"odd\.pth' does not fit the LSNet model: size "
                                              r'mismatch for blocks2\.2\.se\.fc1\.bias'):
        LSNet('t').load_pretrained(path)


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


def test_other_arch_is_named(tmp_path):
    path = str(tmp_path / 'lsnet_s.pth')
    write_imagenet_checkpoint(path, 's')
    with pytest.raises(CheckpointError, match=r"is LSNet-s .* model is LSNet-t.*arch='s'"):
        LSNet('t', init_cfg=dict(type='Pretrained', checkpoint=path)).init_weights()


def test_non_lsnet_weights(tmp_path):
    path = str(tmp_path / 'resnet.pth')
    torch.save({'state_dict': {'conv1.weight': torch.zeros(64, 3, 7, 7)}}, path)
    with pytest.raises(CheckpointError, match='not an LSNet checkpoint'):
        LSNet('t').load_pretrained(path)


def test_deploy_form_must_match_the_model(tmp_path):
    eager, deploy = str(tmp_path / 'eager.pth'), str(tmp_path / 'deploy.pth')
    torch.save({'state_dict': LSNet('t').state_dict()}, eager)
    torch.save({'state_dict': LSNet('t', deploy=True).state_dict()}, deploy)
    with pytest.raises(CheckpointError, match=r"eager\.pth' holds LSNet weights in training "
                                              r'form .*reparameterize_model\.py'):
        LSNet('t', deploy=True).load_pretrained(eager)
    with pytest.raises(CheckpointError, match=r"deploy\.pth' holds LSNet weights in deploy "
                                              r'form .* set deploy=True'):
        LSNet('t').load_pretrained(deploy)
    assert LSNet('t', deploy=True).load_pretrained(deploy) == ([], [])
