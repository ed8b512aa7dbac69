"""The LSNet block and its parts: RepVGG-style depthwise mixer, squeeze-excitation, FFN."""
import torch
from torch import nn

from .attention import Attention
from .conv_bn import ConvBN
from .ls_conv import LSConv


class Residual(nn.Module):
    """x + m(x); the wrapped module is named "m" as in the released weights.

    Args:
        m (nn.Module): The residual branch (same output shape as its input).
    """

    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Add the branch's output to the input.

        Args:
            x (torch.Tensor): Input of the branch.

        Returns:
            torch.Tensor: ``x + m(x)``.
        """
        return x + self.m(x)


class RepVGGDW(nn.Module):
    """3x3 depthwise Conv-BN + 1x1 depthwise Conv-BN + identity.

    Args:
        channels (int): Input and output channels.
    """

    def __init__(self, channels):
        super().__init__()
        self.conv = ConvBN(channels, channels, 3, padding=1, groups=channels)
        self.conv1 = ConvBN(channels, channels, 1, groups=channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Mix each channel spatially (three parallel branches, summed).

        Args:
            x (torch.Tensor): (B, C, H, W) features.

        Returns:
            torch.Tensor: (B, C, H, W) mixed features.
        """
        return self.conv(x) + self.conv1(x) + x


class SqueezeExcite(nn.Module):
    """Channel gate x * sigmoid(fc2(relu(fc1(mean(x))))).

    Args:
        channels (int): Input and output channels (the hidden width is about a quarter,
            a multiple of 8).
    """

    def __init__(self, channels):
        super().__init__()
        reduced = max(8, int(channels / 4 + 4) // 8 * 8)
        self.fc1 = nn.Conv2d(channels, reduced, 1)
        self.act = nn.ReLU()
        self.fc2 = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scale each channel by a gate computed from the global average.

        Args:
            x (torch.Tensor): (B, C, H, W) features.

        Returns:
            torch.Tensor: (B, C, H, W) gated features.
        """
        s = self.fc2(self.act(self.fc1(x.mean((2, 3), keepdim=True))))
        return x * s.sigmoid()


class FFN(nn.Module):
    """1x1 expand, ReLU, 1x1 project with a zero-init BN: the residual starts as identity.

    Args:
        channels (int): Input and output channels.
        hidden (int): Hidden channels (LSNet uses twice ``channels``).
    """

    def __init__(self, channels, hidden):
        super().__init__()
        self.pw1 = ConvBN(channels, hidden)
        self.act = nn.ReLU()
        self.pw2 = ConvBN(hidden, channels, bn_weight_init=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Transform each pixel's channels (pointwise MLP).

        Args:
            x (torch.Tensor): (B, C, H, W) features.

        Returns:
            torch.Tensor: (B, C, H, W) projected features (without the residual).
        """
        return self.pw2(self.act(self.pw1(x)))


class LSNetBlock(nn.Module):
    """An LSNet block: ``ffn(se(mixer(x)))``, the FFN with a residual connection.

    Even positions mix with RepVGGDW + SE; odd positions with an LS convolution, or, in
    the last stage, residual self-attention.

    Args:
        channels (int): Input and output channels.
        depth_index (int): Position of the block in its stage.
        use_attention (bool): Odd positions use self-attention instead of LSConv.
        key_dim (int): Query/key width per attention head. Defaults to 16.
        num_heads (int): Attention heads. Defaults to 4.
    """

    def __init__(self, channels, depth_index, use_attention, key_dim=16, num_heads=4):
        super().__init__()
        if depth_index % 2 == 0:
            self.mixer = RepVGGDW(channels)
            self.se = SqueezeExcite(channels)
        else:
            self.mixer = (Residual(Attention(channels, key_dim, num_heads)) if use_attention
                          else LSConv(channels))
            self.se = nn.Identity()
        self.ffn = Residual(FFN(channels, 2 * channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Mix spatially, gate channels (even positions), then apply the residual FFN.

        Args:
            x (torch.Tensor): (B, C, H, W) features.

        Returns:
            torch.Tensor: (B, C, H, W) features.
        """
        return self.ffn(self.se(self.mixer(x)))
