"""Deploy mode: every layer's switch_to_deploy(), LSNet(deploy=True), the generic walker,
and output parity with eval mode for the backbones and for models built from configs."""
import copy
import os.path as osp

import pytest
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from lsnet_mm import LSNet
from lsnet_mm.models import switch_model_to_deploy
from lsnet_mm.models.layers import (
    FFN,
    Attention,
    ConvBN,
    LargeKernelPerception,
    LSConv,
    LSNetBlock,
    RepVGGDW,
    Residual,
    SqueezeExcite,
    reparameterize,
)
from lsnet_mm.utils.errors import ConfigError
from model_helpers import max_rel_diff, randomize

pytestmark = pytest.mark.usefixtures('one_thread')

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

# (B, H, W): stage-4 maps of 1x2 (bias table resized), 2x3 with odd sizes, 1x1
SIZES = [(2, 64, 96), (1, 97, 130), (1, 32, 32)]


@pytest.fixture(scope='module')
def eager_b():
    return randomize(LSNet('b')).eval()


@pytest.mark.parametrize('arch', ['t', 's', 'b'])
def test_deploy_matches_eval_mode(arch, request):
    eager = request.getfixturevalue('eager_b') if arch == 'b' else randomize(LSNet(arch)).eval()
    deploy = copy.deepcopy(eager).switch_to_deploy()
    for b, h, w in SIZES:
        x = torch.randn(b, 3, h, w)
        with torch.no_grad():
            ref, out = eager(x), deploy(x)
            again = deploy(x)  # the cached attention bias: the same result
        assert [o.shape for o in out] == [r.shape for r in ref]
        assert max_rel_diff(ref, out) < 1e-4, (arch, h, w)
        assert all(torch.equal(a, b) for a, b in zip(out, again))
        # The outputs are far from what a model without the folded branches gives.
        assert max(float(r.abs().max()) for r in ref) > 0.1


def _structure(model):
    return str(model), {k: tuple(v.shape) for k, v in model.state_dict().items()}


def test_switched_model_is_what_deploy_true_builds():
    switched = LSNet('s').switch_to_deploy()
    built = LSNet('s', deploy=True)
    assert _structure(switched) == _structure(built)
    assert list(switched.state_dict()) == list(built.state_dict())  # same order too


def test_deploy_structure():
    model = LSNet('s')
    count = {cls: sum(isinstance(m, cls) for m in model.modules())
             for cls in (RepVGGDW, LSConv, Attention, SqueezeExcite)}
    assert all(count.values())
    assert model.switch_to_deploy() is model and model.deploy and not model.training
    mods = list(model.modules())
    assert not [m for m in mods if isinstance(m, _BatchNorm)]
    # every layer is in deploy form: one conv per ConvBN / RepVGG mixer, all with bias
    assert all(m.deploy for m in mods if hasattr(m, 'switch_to_deploy'))
    assert all(list(m.children()) == [m.c] for m in mods if isinstance(m, ConvBN))
    repvgg = [m for m in mods if isinstance(m, RepVGGDW)]
    assert len(repvgg) == count[RepVGGDW]
    for m in repvgg:
        c = m.conv
        assert list(m.children()) == [c] and type(c) is nn.Conv2d
        assert c.kernel_size == (3, 3) and c.groups == c.in_channels == c.out_channels
    assert all(m.bias is not None for m in mods if isinstance(m, nn.Conv2d))
    # the LS convolutions' BatchNorms are a scale and a shift; attention tables constants
    assert sum(hasattr(m, 'bn_scale') and not hasattr(m, 'bn') for m in mods) == count[LSConv]
    assert not [m for m in mods if isinstance(m, Attention) and m.attention_biases.requires_grad]
    # the in-place work of deploy mode (measured: docs/benchmarks.md)
    assert all(m.inplace for m in mods if isinstance(m, (Residual, SqueezeExcite, nn.ReLU)))
    before = _structure(model)
    model.switch_to_deploy()  # idempotent
    assert _structure(model) == before


LAYERS = {
    'ConvBN': (lambda deploy: ConvBN(16, 24, 3, 2, 1, deploy=deploy), (2, 16, 9, 7)),
    'RepVGGDW': (lambda deploy: RepVGGDW(16, deploy=deploy), (2, 16, 9, 7)),
    'FFN': (lambda deploy: FFN(16, 32, deploy=deploy), (2, 16, 5, 4)),
    'LKP': (lambda deploy: LargeKernelPerception(16, deploy=deploy), (2, 16, 9, 7)),
    'LSConv': (lambda deploy: LSConv(16, deploy=deploy), (2, 16, 9, 7)),
    'Attention': (lambda deploy: Attention(32, 16, 2, deploy=deploy), (2, 32, 3, 5)),
    'block-repvgg': (lambda deploy: LSNetBlock(16, 0, False, deploy=deploy), (2, 16, 6, 5)),
    'block-ls': (lambda deploy: LSNetBlock(16, 1, False, deploy=deploy), (2, 16, 6, 5)),
    'block-attn': (lambda deploy: LSNetBlock(32, 1, True, 16, 2, deploy=deploy), (2, 32, 3, 4)),
}


@pytest.mark.parametrize('name', list(LAYERS))
def test_each_layer_owns_its_deploy_step(name):
    """layer.switch_to_deploy() alone (no walker) and reparameterize() give the structure
    of Layer(deploy=True) and the layer's eval-mode outputs."""
    make, shape = LAYERS[name]
    eager = randomize(make(False)).eval()
    x = torch.randn(shape)
    with torch.no_grad():
        want = eager(x)
        for convert in (lambda m: m.switch_to_deploy(), reparameterize):
            layer = copy.deepcopy(eager)
            convert(layer)
            assert _structure(layer) == _structure(make(True))
            torch.testing.assert_close(layer(x), want, rtol=1e-5, atol=1e-5)
            assert not any(isinstance(m, _BatchNorm) for m in layer.modules())


def test_deploy_built_directly_loads_a_deploy_state_dict_strictly():
    converted = randomize(LSNet('t')).switch_to_deploy()
    built = LSNet('t', deploy=True)
    built.load_state_dict(converted.state_dict(), strict=True)
    built.eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(built(x), converted(x)))


def test_attention_bias_computed_once_per_size(monkeypatch):
    model = LSNet('t').switch_to_deploy()
    attn = [m for m in model.modules() if isinstance(m, Attention)]
    calls = []
    real = torch.nn.functional.interpolate

    def counting(*a, **k):
        calls.append(k.get('size'))
        return real(*a, **k)
    monkeypatch.setattr(torch.nn.functional, 'interpolate', counting)
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(1, 3, 128, 192))
        assert calls == [(6, 6)] * len(attn)  # 2x3 pixels, once per layer
        model(torch.randn(1, 3, 64, 64))
        assert calls[len(attn):] == [(1, 1)] * len(attn)
        assert all(len(m._bias_cache) == 2 for m in attn)
        # a load may change the table: computed again
        model.load_state_dict(model.state_dict())
        model(torch.randn(1, 3, 64, 64))
    assert len(calls) == 3 * len(attn)


def test_switch_model_to_deploy_finds_backbones():
    class Detector(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = LSNet('t', out_indices=(1, 2, 3))
            self.neck = nn.Conv2d(384, 8, 1)

    det = Detector().eval()
    assert switch_model_to_deploy(det) == 1
    assert det.backbone.deploy and not any(isinstance(m, _BatchNorm) for m in det.modules())
    assert switch_model_to_deploy(nn.Sequential(nn.Conv2d(3, 3, 1))) == 0
    with pytest.raises(ConfigError, match='contains no LSNet backbone'):
        switch_model_to_deploy(nn.Sequential(nn.Conv2d(3, 3, 1)), strict=True)


def test_deploy_with_grad_enabled_and_state_dict_roundtrip():
    eager = randomize(LSNet('t')).eval()
    deploy = copy.deepcopy(eager).switch_to_deploy()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = eager(x)
    out = deploy(x)  # grad mode on: in-place ops must stay autograd-safe
    sum(o.sum() for o in out).backward()
    assert max_rel_diff(ref, [o.detach() for o in out]) < 1e-4
    # A deployed state dict loads into another deployed model of the same arch.
    other = LSNet('t').switch_to_deploy()
    other.load_state_dict(deploy.state_dict())
    with torch.no_grad():
        assert max_rel_diff(ref, other(x)) < 1e-4


def _flat(out):
    if isinstance(out, torch.Tensor):
        return [out]
    return [t for o in out for t in _flat(o)]


@pytest.mark.parametrize('config', ['retinanet_lsnet_t.py', 'fpn_lsnet_t_ade20k.py'])
def test_models_from_configs_deploy_matches_eval_mode(config):
    """A detector and a segmentor of the paper configs: head outputs (tensor mode) of the
    deploy model equal eval mode's at several input sizes."""
    from lsnet_mm.apis import build_model_from_cfg
    model, _ = build_model_from_cfg(osp.join(ROOT, 'configs', config))
    randomize(model.backbone)
    deploy = copy.deepcopy(model)
    assert switch_model_to_deploy(deploy) == 1
    for h, w in [(96, 128), (160, 96)]:
        x = torch.randn(1, 3, h, w)
        with torch.no_grad():
            ref, out = _flat(model(x, mode='tensor')), _flat(deploy(x, mode='tensor'))
        assert len(ref) == len(out) >= 1 and ref[0].shape[-2:] == out[0].shape[-2:]
        assert max_rel_diff(ref, out) < 1e-4, (config, h, w)
