"""Multi-head self-attention of LSNet's last stage, with a learned relative-position bias.

The bias is learned on a 14x14 grid (one value per |dy|, |dx| offset and head)
and resized bicubically to (N, N) for the actual feature map of N pixels, so the
same weights serve any input size.
"""
import itertools
from typing import Hashable

import torch
import torch.nn.functional as F
from torch import nn

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


def remember_bias(cache: dict, key: Hashable, bias: torch.Tensor,
                  max_entries: int = 16) -> torch.Tensor:
    """Store a resized bias table in a bounded cache (emptied when it grows too large).

    Args:
        cache (dict): The cache of one attention layer.
        key (Hashable): What the table was computed for.
        bias (torch.Tensor): The table.
        max_entries (int): The cache is emptied before an insertion once it holds more
            than this many tables. Defaults to 16.

    Returns:
        torch.Tensor: ``bias``.
    """
    if len(cache) > max_entries:
        cache.clear()
    cache[key] = bias
    return bias


class Attention(nn.Module):
    """Multi-head self-attention over all pixels with a resized relative-position bias.

    Queries pass through a 3x3 depthwise conv; values are ``channels // num_heads``
    wide per head; the output goes through ReLU and a zero-initialised Conv-BN.

    Args:
        channels (int): Input and output channels.
        key_dim (int): Query/key width per head. Defaults to 16.
        num_heads (int): Number of heads. Defaults to 4.
        resolution (int): Side of the grid the bias table is learned on. Defaults to 14.
    """

    def __init__(self, channels, key_dim=16, num_heads=4, resolution=14):
        super().__init__()
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.scale = key_dim ** -0.5
        self.nh_kd = key_dim * num_heads
        self.head_dim = channels // num_heads  # value width: attn_ratio (C / (kd * nh)) * kd
        self.dh = self.head_dim * num_heads
        self.qkv = ConvBN(channels, 2 * self.nh_kd + self.dh)
        self.proj = nn.Sequential(nn.ReLU(), ConvBN(self.dh, channels, bn_weight_init=0))
        self.dw = ConvBN(self.nh_kd, self.nh_kd, 3, padding=1, groups=self.nh_kd)
        idx = relative_offset_index(resolution)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, int(idx.max()) + 1))
        self.register_buffer('attention_bias_idxs', idx, persistent=True)
        # Eval-time cache of resized tables, keyed so that a weight update, a load
        # or a device move can never serve a stale table.
        self._bias_cache = {}

    def attention_bias(self, n: int) -> torch.Tensor:
        """The bias for a map of n pixels: the learned table resized bicubically.

        Args:
            n (int): Number of pixels of the feature map.

        Returns:
            torch.Tensor: ``(num_heads, n, n)`` biases (cached in eval mode without grad).
        """
        p = self.attention_biases
        cacheable = not self.training and not (torch.is_grad_enabled() and p.requires_grad) \
            and not torch.jit.is_tracing()
        key = (n, p.device, p._version, p.data_ptr())
        if cacheable and key in self._bias_cache:
            return self._bias_cache[key]
        table = resize_bias_table(self.attention_biases[:, self.attention_bias_idxs], n)
        return remember_bias(self._bias_cache, key, table) if cacheable else table

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
        q = self.dw(q)
        q = q.reshape(b, self.num_heads, self.key_dim, n)
        k = k.reshape(b, self.num_heads, self.key_dim, n)
        v = v.reshape(b, self.num_heads, self.head_dim, n)
        attn = (q.transpose(-2, -1) @ k) * self.scale + self.attention_bias(n).to(q.dtype)
        attn = attn.softmax(dim=-1)
        out = (v @ attn.transpose(-2, -1)).reshape(b, self.dh, h, w)
        return self.proj(out)
