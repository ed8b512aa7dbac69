"""LSNet backbone: released state-dict layout, shapes, freezing, numerics."""
import json
import math
import os

import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

from lsnet_mm import LSNet
from model_helpers import randomize

REFERENCE = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'data',
                         'lsnet_backbone_state_dict.json')

pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.mark.parametrize('arch', ['t', 's', 'b'])
def test_state_dict_matches_released_layout(arch):
    ref = json.load(open(REFERENCE))[arch]
    sd = LSNet(arch).state_dict()
    assert list(sd) == list(ref)  # same keys, same order
    assert {k: list(v.shape) for k, v in sd.items()} == ref


@pytest.mark.parametrize('arch,params', [('t', 11.0), ('s', 15.7), ('b', 22.8)])
def test_parameter_count_matches_paper(arch, params):
    n = sum(p.numel() for p in LSNet(arch).parameters())
    assert round(n / 1e6, 1) == params


@pytest.mark.parametrize('size', [(224, 224), (100, 77), (130, 200), (65, 64), (16, 16), (1, 1)])
def test_feature_shapes_and_strides(size):
    model = LSNet('t').eval()
    h, w = size
    with torch.no_grad():
        outs = model(torch.randn(2, 3, h, w))
    assert len(outs) == 4
    for i, (o, c) in enumerate(zip(outs, (64, 128, 256, 384))):
        stride = 8 * 2 ** i
        exp_h, exp_w = h, w
        for _ in range(3 + i):
            exp_h, exp_w = math.ceil(exp_h / 2), math.ceil(exp_w / 2)
        assert o.shape == (2, c, exp_h, exp_w), (stride, o.shape)
        if h % stride == 0 and w % stride == 0:
            assert (o.shape[2] * stride, o.shape[3] * stride) == (h, w)


def test_out_indices_and_out_channels():
    model = LSNet('s', out_indices=(1, 3)).eval()
    outs = model(torch.randn(1, 3, 128, 128))
    assert [o.shape[1] for o in outs] == [192, 448] == model.out_channels


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="arch must be one of"):
        LSNet('xl')
    with pytest.raises(ValueError, match='out_indices'):
        LSNet('t', out_indices=(4,))
    with pytest.raises(ValueError, match='frozen_stages'):
        LSNet('t', frozen_stages=7)


@pytest.mark.parametrize('frozen', [-1, 0, 2])
def test_frozen_stages(frozen):
    model = LSNet('t', frozen_stages=frozen, norm_eval=False)
    model.train()
    parts = [model.patch_embed, model.blocks1, model.blocks2, model.blocks3, model.blocks4]
    for i, part in enumerate(parts):
        frozen_part = i <= frozen
        assert all(p.requires_grad != frozen_part for p in part.parameters())
        assert all(m.training != frozen_part for m in part.modules())
    # a training step leaves frozen weights untouched and moves the others
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    sum(o.mean() for o in model(torch.randn(2, 3, 64, 64))).backward()
    opt.step()
    after = model.state_dict()
    stem_key = 'patch_embed.0.c.weight'
    assert torch.equal(before[stem_key], after[stem_key]) == (frozen >= 0)
    assert torch.equal(before['patch_embed.0.bn.running_mean'],
                       after['patch_embed.0.bn.running_mean']) == (frozen >= 0)
    assert not torch.equal(before['blocks4.1.c.weight'], after['blocks4.1.c.weight'])


def test_norm_eval_keeps_bn_statistics():
    model = LSNet('t')  # norm_eval defaults to True, as the paper's recipes
    model.train()
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert bns and not any(m.training for m in bns)
    assert model.blocks2[2].ffn.training  # the rest trains
    before = model.blocks3[3].mixer.bn.running_mean.clone()
    model(torch.randn(2, 3, 64, 64))
    assert torch.equal(before, model.blocks3[3].mixer.bn.running_mean)
    model2 = LSNet('t', norm_eval=False).train()
    assert all(m.training for m in model2.modules() if isinstance(m, _BatchNorm))


def test_eval_bias_cache_gives_identical_results():
    model = randomize(LSNet('t')).eval()
    x = torch.randn(1, 3, 200, 136)
    with torch.no_grad():
        cached1 = model(x)[-1]
        cached2 = model(x)[-1]
    uncached = model(x)[-1].detach()  # grad enabled + trainable params: no cache
    assert torch.equal(cached1, cached2)
    torch.testing.assert_close(cached1, uncached, rtol=0, atol=0)
    # a weight update invalidates the cached table
    attn = model.blocks4[3].mixer.m
    with torch.no_grad():
        attn.attention_biases.add_(1.0)
        changed = model(x)[-1]
    assert not torch.allclose(changed, cached1)


def test_attention_bias_resized_bicubically_to_map_size():
    attn = randomize(LSNet('t')).blocks4[3].mixer.m
    n = 6 * 5
    table = attn.attention_biases[:, attn.attention_bias_idxs]
    expected = torch.nn.functional.interpolate(table[None], size=(n, n), mode='bicubic',
                                               align_corners=False)[0]
    torch.testing.assert_close(attn.attention_bias(n), expected)
    # the 14x14 grid's own size needs no resize
    assert torch.equal(attn.attention_bias(196), table)
    # offsets are numbered in first-seen order over the 14x14 grid
    assert attn.attention_bias_idxs[0, :14].tolist() == list(range(14))
    assert attn.attention_bias_idxs.max() == 195


def test_autocast_cpu_bfloat16():
    model = randomize(LSNet('t')).eval()
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            outs = model(x)
    for o, r in zip(outs, ref):
        assert o.shape == r.shape and torch.isfinite(o).all()
        assert torch.nn.functional.cosine_similarity(o.float().flatten(), r.flatten(), dim=0) > 0.98


def test_autocast_training_step():
    model = LSNet('t').train()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        loss = sum(o.float().mean() for o in model(torch.randn(2, 3, 64, 96)))
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
