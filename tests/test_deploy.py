"""Deploy mode: LSNet.switch_to_deploy() folds BN / RepVGG branches and keeps the outputs."""
import copy

import pytest
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from lsnet_mm import LSNet
from lsnet_mm.apis import switch_model_to_deploy
from lsnet_mm.models.layers import Attention, ConvBN, LSConv, RepVGGDW, Residual
from lsnet_mm.models.layers.reparam import AttentionDeploy, LSConvDeploy


def randomize(model, seed=1):
    """Non-trivial BN statistics and affine parameters and attention biases, kept in a
    range where activations stay O(1) through all blocks, so a tight tolerance means
    something: a wrongly folded BN or branch changes outputs by O(0.1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, _BatchNorm):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
                m.weight.copy_(torch.rand(c, generator=g) * 0.4 + 0.3)  # also the zero-init ones
                m.bias.copy_(torch.randn(c, generator=g) * 0.1)
        for name, p in model.named_parameters():
            if name.endswith('attention_biases'):
                p.copy_(torch.randn(p.shape, generator=g))
    return model


def _max_rel_diff(a, b):
    return max(float((x - y).abs().max()) / max(1.0, float(x.abs().max())) for x, y in zip(a, b))


@pytest.mark.parametrize('arch', ['t', 's', 'b'])
def test_deploy_matches_eager(arch):
    eager = randomize(LSNet(arch)).eval()
    deploy = copy.deepcopy(eager).switch_to_deploy()
    # stage-4 map 1x2, so the bias table is resized; batch 2.
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        ref, out = eager(x), deploy(x)
        again = deploy(x)  # cached attention bias: same result
    assert [o.shape for o in out] == [r.shape for r in ref]
    assert _max_rel_diff(ref, out) < 1e-4
    assert all(torch.equal(a, b) for a, b in zip(out, again))
    # The outputs are far from what a model without the folded branches gives.
    assert max(float(r.abs().max()) for r in ref) > 0.1


def test_deploy_structure():
    model = LSNet('s')
    n_conv_bn = sum(isinstance(m, ConvBN) for m in model.modules())
    n_repvgg = sum(isinstance(m, RepVGGDW) for m in model.modules())
    n_lsconv = sum(isinstance(m, LSConv) for m in model.modules())
    n_attn = sum(isinstance(m, Attention) for m in model.modules())
    assert n_conv_bn and n_repvgg and n_lsconv and n_attn
    assert model.switch_to_deploy() is model and model.deploy and not model.training
    mods = list(model.modules())
    assert not [m for m in mods if isinstance(m, (_BatchNorm, ConvBN, RepVGGDW, LSConv,
                                                  Attention, Residual))]
    assert sum(isinstance(m, LSConvDeploy) for m in mods) == n_lsconv
    assert sum(isinstance(m, AttentionDeploy) for m in mods) == n_attn
    # Each RepVGG mixer is one 3x3 depthwise conv with bias.
    for stage in model.stages:
        for blk in stage:
            if hasattr(blk, 'mixer') and isinstance(blk.mixer, nn.Conv2d):
                c = blk.mixer
                assert c.kernel_size == (3, 3) and c.groups == c.in_channels == c.out_channels
                assert c.bias is not None
    assert sum(isinstance(getattr(b, 'mixer', None), nn.Conv2d)
               for s in model.stages for b in s) == n_repvgg
    # No unfused (bias-free) conv is left: every conv carries its folded BN shift.
    assert all(m.bias is not None for m in mods if isinstance(m, nn.Conv2d))
    model.switch_to_deploy()  # idempotent


def test_attention_bias_computed_once_per_size(monkeypatch):
    model = LSNet('t').switch_to_deploy()
    attn = next(m for m in model.modules() if isinstance(m, AttentionDeploy))
    calls = []
    real = torch.nn.functional.interpolate

    def counting(*a, **k):
        calls.append(k.get('size'))
        return real(*a, **k)
    monkeypatch.setattr(torch.nn.functional, 'interpolate', counting)
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(1, 3, 128, 192))
        n_first = len(calls)
        model(torch.randn(1, 3, 64, 64))
    assert n_first == sum(isinstance(m, AttentionDeploy) for m in model.modules())
    assert len(calls) == 2 * n_first
    assert len(attn._bias_cache) == 2


def test_switch_model_to_deploy_finds_backbones():
    class Detector(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = LSNet('t', out_indices=(1, 2, 3))
            self.neck = nn.Conv2d(384, 8, 1)

    det = Detector().eval()
    assert switch_model_to_deploy(det) == 1
    assert det.backbone.deploy
    assert switch_model_to_deploy(nn.Sequential(nn.Conv2d(3, 3, 1))) == 0
    with pytest.raises(ValueError, match='no LSNet'):
        switch_model_to_deploy(nn.Sequential(nn.Conv2d(3, 3, 1)), strict=True)


def test_deploy_with_grad_enabled_and_state_dict_roundtrip():
    eager = randomize(LSNet('t')).eval()
    deploy = copy.deepcopy(eager).switch_to_deploy()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = eager(x)
    out = deploy(x)  # grad mode on: in-place ops must stay autograd-safe
    sum(o.sum() for o in out).backward()
    assert _max_rel_diff(ref, [o.detach() for o in out]) < 1e-4
    # A deployed state dict loads into another deployed model of the same arch.
    other = LSNet('t').switch_to_deploy()
    other.load_state_dict(deploy.state_dict())
    with torch.no_grad():
        assert _max_rel_diff(ref, other(x)) < 1e-4


def test_deploy_hook_converts_before_test():
    from types import SimpleNamespace

    from mmengine.registry import HOOKS
    hook = HOOKS.build(dict(type='LSNetDeployHook'))
    model = nn.Sequential(LSNet('t'))
    hook.before_test(SimpleNamespace(model=model))
    assert model[0].deploy
