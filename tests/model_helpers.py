"""Shared helpers of the model tests: LSNet weights far from their initialisation, and
output comparison. (Checkpoints in the authors' released layout: tests/released_checkpoints.py.)"""
import torch
from torch.nn.modules.batchnorm import _BatchNorm


def randomize(model, seed=1):
    """Non-trivial BN statistics and affine parameters and attention biases, kept in a
    range where activations stay O(1) through all blocks (convs keep their default init),
    so a tight tolerance means something: a wrongly folded BN or branch changes outputs
    by O(0.1)."""
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


def max_rel_diff(a, b):
    """Largest |a - b| over matching tensors, relative to max(1, max |a|)."""
    return max(float((x - y).abs().max()) / max(1.0, float(x.abs().max())) for x, y in zip(a, b))
