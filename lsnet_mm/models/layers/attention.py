"""Multi-head self-attention of LSNet's last stage, with a learned relative-position bias.

The bias is learned on a 14x14 grid (one value per |dy|, |dx| offset and head)
and resized bicubically to (N, N) for the actual feature map of N pixels, so the
same weights serve any input size.

Released weights load as released: a bias table of another grid (the ImageNet models'
4x4) is resized to the layer's own grid while it is loaded, and index tables of another
grid are replaced by the layer's own (:meth:`Attention._load_from_state_dict`).
"""
import itertools
import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ...checkpoint import resize_attention_biases
from .conv_bn import ConvBN


def relative_offset_index(resolution: int) -> torch.Tensor:
    """Index each point pair of an R x R grid by its (|dy|, |dx|) offset.

    Args:
        resolution (int): The grid side R.

    Returns:
        torch.Tensor: (R*R, R*R) long indices, offsets numbered in first-seen order (as
        the released weights' ``attention_bias_idxs``).
    """
    points = list(itertools.product(range(resolution), range(resolution)))
    offsets, idxs = {}, []
    for p1 in points:
        for p2 in points:
            off = (abs(p1[0] - p2[0]), abs(p1[1] - p2[1]))
            idxs.append(offsets.setdefault(off, len(offsets)))
    n = len(points)
    return torch.tensor(idxs, dtype=torch.long).view(n, n)


def resize_bias_table(table: torch.Tensor, n: int) -> torch.Tensor:
    """Resize a ``(num_heads, R*R, R*R)`` bias table bicubically for a map of n pixels.

    Args:
        table (torch.Tensor): The per-head bias of every point pair of the R x R grid.
        n (int): Number of pixels of the feature map.

    Returns:
        torch.Tensor: ``(num_heads, n, n)``; ``table`` itself when it already fits
        (except while tracing for export, so a dynamic-shape graph resizes at any size).
    """
    if table.shape[-1] == n and not torch.jit.is_tracing():
        return table
    return F.interpolate(table.unsqueeze(0), size=(n, n), mode='bicubic',
                         align_corners=False).squeeze(0)


class Attention(nn.Module):
    """Multi-head self-attention over all pixels with a resized relative-position bias.

    Queries pass through a 3x3 depthwise conv; values are ``channels // num_heads``
    wide per head; the output goes through ReLU and a zero-initialised Conv-BN.

    In deploy mode the Conv-BNs are fused, the ``key_dim ** -0.5`` score scale is folded
    into the query's depthwise conv, the ReLU works in place and the bias table is a
    constant (cached per feature-map size, whether or not gradients are enabled).

    Args:
        channels (int): Input and output channels.
        key_dim (int): Query/key width per head. Defaults to 16.
        num_heads (int): Number of heads. Defaults to 4.
        resolution (int): Side of the grid the bias table is learned on. Defaults to 14.
        deploy (bool): Build the deploy form. Defaults to False.
    """

    #: Cached bias tables per layer; the cache is emptied when it would grow beyond.
    max_cached_tables = 16

    def __init__(self, channels, key_dim=16, num_heads=4, resolution=14, deploy=False):
        super().__init__()
        self.deploy = deploy
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.resolution = resolution
        self.scale = key_dim ** -0.5
        self.nh_kd = key_dim * num_heads
        self.head_dim = channels // num_heads  # value width: attn_ratio (C / (kd * nh)) * kd
        self.dh = self.head_dim * num_heads
        self.qkv = ConvBN(channels, 2 * self.nh_kd + self.dh, deploy=deploy)
        self.proj = nn.Sequential(nn.ReLU(inplace=deploy),
                                  ConvBN(self.dh, channels, bn_weight_init=0, deploy=deploy))
        self.dw = ConvBN(self.nh_kd, self.nh_kd, 3, padding=1, groups=self.nh_kd,
                         deploy=deploy)
        idx = relative_offset_index(resolution)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, int(idx.max()) + 1),
                                             requires_grad=not deploy)
        self.register_buffer('attention_bias_idxs', idx, persistent=True)
        # Eval-time cache of resized tables, keyed so that a weight update, a load
        # or a device move can never serve a stale table.
        self._bias_cache = {}
        #: What the last load upgraded: ``(grid side in the file, own side)`` or None.
        self.upgraded_from: Optional[Tuple[int, int]] = None

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        """Fuse the Conv-BNs and fold the score scale into the query conv, in place."""
        if self.deploy:
            return
        for m in (self.qkv, self.proj[1], self.dw):
            m.switch_to_deploy()
        # (q * s)^T k == (q^T k) * s; exact for the default key_dim 16 (s = 0.25).
        self.dw.c.weight.mul_(self.scale)
        self.dw.c.bias.mul_(self.scale)
        self.proj[0].inplace = True
        self.attention_biases.requires_grad_(False)
        self.deploy = True

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Load, upgrading released tables of another grid in memory (see the module doc)."""
        self.upgraded_from = None
        self._bias_cache.clear()
        key = prefix + 'attention_biases'
        table = state_dict.get(key)
        own = self.attention_biases
        if table is not None and table.dim() == 2 and table.shape[0] == own.shape[0] \
                and table.shape[1] != own.shape[1]:
            state_dict[key] = resize_attention_biases(table, self.resolution)
            self.upgraded_from = (math.isqrt(table.shape[1]), self.resolution)
        key = prefix + 'attention_bias_idxs'
        if key not in state_dict or state_dict[key].shape != self.attention_bias_idxs.shape:
            state_dict[key] = self.attention_bias_idxs  # the layer's own: never read
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def attention_bias(self, n: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The bias for a map of n pixels: the learned table resized bicubically.

        Args:
            n (int): Number of pixels of the feature map.
            dtype (torch.dtype): The dtype of the attention scores. Defaults to float32.

        Returns:
            torch.Tensor: ``(num_heads, n, n)`` biases (cached in eval mode unless
            gradients flow into the table).
        """
        p, idxs = self.attention_biases, self.attention_bias_idxs
        cacheable = not self.training and not (torch.is_grad_enabled() and p.requires_grad) \
            and not torch.jit.is_tracing()
        if self.deploy:  # a constant table (the cache is emptied by a load)
            key = (n, dtype, p.device)
        else:
            key = (n, dtype, p.device, p._version, p.data_ptr(), idxs._version)
        table = self._bias_cache.get(key) if cacheable else None
        if table is None:
            table = resize_bias_table(p[:, idxs], n).to(dtype)
            if cacheable:
                if len(self._bias_cache) >= self.max_cached_tables:
                    self._bias_cache.clear()
                self._bias_cache[key] = table
        return table

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attend over all pixels.

        Args:
            x (torch.Tensor): (B, C, H, W) features.

        Returns:
            torch.Tensor: (B, C, H, W) features.
        """
        b, _, h, w = x.shape
        n = h * w
        q, k, v = self.qkv(x).split([self.nh_kd, self.nh_kd, self.dh], dim=1)
        q = self.dw(q).reshape(b, self.num_heads, self.key_dim, n)
        k = k.reshape(b, self.num_heads, self.key_dim, n)
        v = v.reshape(b, self.num_heads, self.head_dim, n)
        bias = self.attention_bias(n, q.dtype)
        if self.deploy:  # the scale is in the query conv; add into the fresh scores
            attn = (q.transpose(-2, -1) @ k).add_(bias)
        else:
            attn = (q.transpose(-2, -1) @ k) * self.scale + bias
        attn = attn.softmax(dim=-1)
        out = (v @ attn.transpose(-2, -1)).reshape(b, self.dh, h, w)
        return self.proj(out)
