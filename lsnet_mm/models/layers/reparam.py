"""Deploy-time re-parameterisation of LSNet's layers (inference only).

:func:`reparameterize` converts a module tree in place, RepVGG-style:

* every :class:`ConvBN` becomes one ``nn.Conv2d`` with bias (BN folded in);
* every :class:`RepVGGDW` (3x3 depthwise Conv-BN + 1x1 depthwise Conv-BN + identity)
  becomes one 3x3 depthwise ``nn.Conv2d``;
* every :class:`LSConv` becomes :class:`LSConvDeploy`: its trailing BatchNorm follows the
  parameter-free aggregation, so it is folded into a per-channel scale and shift
  applied together with the residual (``x + y * scale + shift``);
* every :class:`Attention` becomes :class:`AttentionDeploy`: fused convs, the
  ``key_dim ** -0.5`` score scale folded into the query's depthwise conv, and the
  bicubically resized bias table computed once per feature-map size and kept;
* residual adds, ReLUs and the squeeze-excitation gate work in place on freshly
  computed tensors (fewer allocations: on CPU each fresh large tensor costs page
  faults).

Squeeze-excitation's weights and GroupNorm (data-dependent) are unchanged. The converted
modules compute what the eager modules compute in eval mode, up to float rounding.
They carry no BatchNorm statistics, so a converted model is for inference only.
"""
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ...ops import ska
from .attention import Attention, remember_bias, resize_bias_table
from .block import LSNetBlock, RepVGGDW, Residual, SqueezeExcite
from .conv_bn import ConvBN
from .ls_conv import LSConv


def _copy_conv(conv: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor) -> nn.Conv2d:
    out = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                    conv.padding, groups=conv.groups, bias=True, device=weight.device,
                    dtype=weight.dtype)
    with torch.no_grad():
        out.weight.copy_(weight)
        out.bias.copy_(bias)
    return out


def _as_conv(m: nn.Module) -> nn.Conv2d:
    """The single Conv2d (with bias) equivalent to ``m``, a ConvBN or an already fused conv."""
    if isinstance(m, ConvBN):
        return m.fuse()
    if isinstance(m, nn.Conv2d):
        if m.bias is not None:
            return m
        return _copy_conv(m, m.weight, torch.zeros(m.out_channels, device=m.weight.device,
                                                   dtype=m.weight.dtype))
    raise TypeError(f'cannot fuse {type(m).__name__} into a convolution')


@torch.no_grad()
def fuse_repvgg_dw(m: RepVGGDW) -> nn.Conv2d:
    """Fold a RepVGG-style depthwise mixer into one conv.

    Args:
        m (RepVGGDW): The mixer (its Conv-BNs may already be fused).

    Returns:
        nn.Conv2d: One 3x3 depthwise conv with bias equal to ``conv(x) + conv1(x) + x``
        (BatchNorms in eval mode).
    """
    conv3, conv1 = _as_conv(m.conv), _as_conv(m.conv1)
    weight = conv3.weight + F.pad(conv1.weight, (1, 1, 1, 1))
    weight[:, 0, 1, 1] += 1.0  # identity: the centre tap of each channel's own kernel
    return _copy_conv(conv3, weight, conv3.bias + conv1.bias)


@torch.no_grad()
def bn_affine(bn: nn.BatchNorm2d) -> Tuple[torch.Tensor, torch.Tensor]:
    """Express an eval-mode BatchNorm2d as ``x * scale + shift``.

    Args:
        bn (nn.BatchNorm2d): The BatchNorm (its running statistics are used).

    Returns:
        tuple[torch.Tensor, torch.Tensor]: ``(scale, shift)``, each shaped (C, 1, 1).
    """
    scale = bn.weight / (bn.running_var + bn.eps).sqrt()
    shift = bn.bias - bn.running_mean * scale
    return scale[:, None, None].clone(), shift[:, None, None].clone()


class LSConvDeploy(nn.Module):
    """``x + ska(x, lkp(x)) * scale + shift``: LSConv with its BatchNorm folded.

    Args:
        lsconv (LSConv): The eval-mode layer to convert (its perception branch is reused).
    """

    def __init__(self, lsconv: LSConv):
        super().__init__()
        self.lkp = lsconv.lkp  # its ConvBNs are fused by reparameterize()
        scale, shift = bn_affine(lsconv.bn)
        self.register_buffer('bn_scale', scale)
        self.register_buffer('bn_shift', shift)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Aggregate with the predicted kernels and apply the folded BatchNorm.

        Args:
            x (torch.Tensor): (B, C, H, W) features.

        Returns:
            torch.Tensor: (B, C, H, W), as :class:`LSConv` gives in eval mode.
        """
        y = ska(x, self.lkp(x))
        return torch.addcmul(x, y, self.bn_scale).add_(self.bn_shift)


class AttentionDeploy(nn.Module):
    """Attention with fused convs and the score scale folded into the query conv.

    The resized relative-position bias is computed once per feature-map size.

    Args:
        attn (Attention): The eval-mode layer to convert.
    """

    def __init__(self, attn: Attention):
        super().__init__()
        self.num_heads, self.key_dim = attn.num_heads, attn.key_dim
        self.nh_kd, self.head_dim, self.dh = attn.nh_kd, attn.head_dim, attn.dh
        self.qkv = _as_conv(attn.qkv)
        dw = _as_conv(attn.dw)
        # (q * s)^T k == (q^T k) * s; exact for the default key_dim 16 (s = 0.25).
        self.dw = _copy_conv(dw, dw.weight * attn.scale, dw.bias * attn.scale)
        self.proj = attn.proj
        with torch.no_grad():
            table = attn.attention_biases[:, attn.attention_bias_idxs].detach().clone()
        # (nh, R*R, R*R) table on the training grid; resized tables are cached per size.
        self.register_buffer('bias_table', table)
        self._bias_cache = {}

    def _load_from_state_dict(self, *args, **kwargs):
        self._bias_cache.clear()
        super()._load_from_state_dict(*args, **kwargs)

    def attention_bias(self, n: int, dtype: torch.dtype) -> torch.Tensor:
        """The bias for a map of n pixels, computed on first use of each size.

        Args:
            n (int): Number of pixels of the feature map.
            dtype (torch.dtype): The dtype of the attention scores.

        Returns:
            torch.Tensor: ``(num_heads, n, n)`` contiguous biases.
        """
        t = self.bias_table
        key = (n, t.device, dtype)
        bias = self._bias_cache.get(key)
        if bias is None:
            with torch.no_grad():
                bias = resize_bias_table(t, n).to(dtype).contiguous()
            remember_bias(self._bias_cache, key, bias)
        return bias

    @torch.no_grad()
    def precompute(self, *sizes):
        """Compute the bias for feature maps of the given sizes ahead of time.

        Args:
            *sizes (tuple[int, int]): ``(h, w)`` sizes of the last stage's feature map.
        """
        for h, w in sizes:
            self.attention_bias(h * w, self.bias_table.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attend over all pixels with the fused layers.

        Args:
            x (torch.Tensor): (B, C, H, W) features.

        Returns:
            torch.Tensor: (B, C, H, W), as :class:`Attention` gives in eval mode.
        """
        b, _, h, w = x.shape
        n = h * w
        q, k, v = self.qkv(x).split([self.nh_kd, self.nh_kd, self.dh], dim=1)
        q = self.dw(q).reshape(b, self.num_heads, self.key_dim, n)
        k = k.reshape(b, self.num_heads, self.key_dim, n)
        v = v.reshape(b, self.num_heads, self.head_dim, n)
        attn = (q.transpose(-2, -1) @ k).add_(self.attention_bias(n, q.dtype))
        attn = attn.softmax(dim=-1)
        out = (v @ attn.transpose(-2, -1)).reshape(b, self.dh, h, w)
        return self.proj(out)


class ResidualDeploy(nn.Module):
    """x + m(x), adding in place into m's fresh output.

    Args:
        residual (Residual): The layer to convert (its branch is reused).
    """

    def __init__(self, residual: Residual):
        super().__init__()
        self.m = residual.m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Add the input into the branch's output.

        Args:
            x (torch.Tensor): Input of the branch.

        Returns:
            torch.Tensor: ``m(x) + x`` (the branch's output tensor, updated in place).
        """
        return self.m(x).add_(x)


class SqueezeExciteInplace(nn.Module):
    """Squeeze-excitation gating its input in place.

    Only for inputs nothing else reads (in LSNet's blocks it follows the fused RepVGG
    conv, whose output is fresh).

    Args:
        se (SqueezeExcite): The layer to convert (its convs are reused).
    """

    def __init__(self, se: SqueezeExcite):
        super().__init__()
        self.fc1, self.act, self.fc2 = se.fc1, se.act, se.fc2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Gate the channels of ``x`` in place.

        Args:
            x (torch.Tensor): (B, C, H, W) features no other module reads.

        Returns:
            torch.Tensor: ``x`` itself, gated.
        """
        s = self.fc2(self.act(self.fc1(x.mean((2, 3), keepdim=True))))
        return x.mul_(s.sigmoid())


def _convert(m: nn.Module) -> nn.Module:
    if isinstance(m, ConvBN):
        return m.fuse()
    if isinstance(m, RepVGGDW):
        return fuse_repvgg_dw(m)
    if isinstance(m, LSConv):
        return LSConvDeploy(m)
    if isinstance(m, Attention):
        return AttentionDeploy(m)
    if isinstance(m, Residual):
        return ResidualDeploy(m)
    if isinstance(m, LSNetBlock) and isinstance(m.se, SqueezeExcite) \
            and isinstance(m.mixer, nn.Conv2d):  # the fused RepVGG mixer: a fresh output
        m.se = SqueezeExciteInplace(m.se)
    if isinstance(m, nn.ReLU):
        m.inplace = True  # every ReLU in LSNet acts on a fresh conv/matmul output
    return m


@torch.no_grad()
def reparameterize(module: nn.Module) -> nn.Module:
    """Convert ``module``'s LSNet layers in place for inference (see the module docstring).

    Children are converted before their parents, so a parent sees fused children.

    Args:
        module (nn.Module): A module tree holding LSNet layers (in eval mode).

    Returns:
        nn.Module: ``module`` itself, or its replacement if ``module`` is itself a
        converted layer type.
    """
    for name, child in list(module.named_children()):
        new = reparameterize(child)
        if new is not child:
            setattr(module, name, new)
    new = _convert(module)
    if new is not module:
        new.train(False)
    return new
