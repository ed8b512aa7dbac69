"""The LSNet block and its parts: RepVGG-style depthwise mixer, squeeze-excitation, FFN.

Deploy mode (``deploy=True``, or :meth:`switch_to_deploy` on the layers, children first:
:func:`~lsnet_mm.models.layers.reparam.reparameterize`): the RepVGG mixer is one 3x3
depthwise conv, the Conv-BNs are fused, and the residual adds, the ReLUs and the
squeeze-excitation gate work in place on freshly computed tensors (fewer allocations:
on CPU each fresh large tensor costs page faults). A block knows which of its tensors
are fresh, so it sets those in-place flags of its parts.
"""
import torch
import torch.nn.functional as F
from torch import nn

from .attention import Attention
from .conv_bn import ConvBN, conv2d
from .ls_conv import LSConv


class Residual(nn.Module):
    """x + m(x); the wrapped module is named "m" as in the released weights.

    Args:
        m (nn.Module): The residual branch (same output shape as its input).
        inplace (bool): Add ``x`` into the branch's output tensor; only for branches
            whose output is a fresh tensor nothing else reads. Defaults to False.
    """

    def __init__(self, m, inplace=False):
        super().__init__()
        self.m = m
        self.inplace = inplace

    def extra_repr(self) -> str:
        """The in-place flag, shown in the module's repr."""
        return f'inplace={self.inplace}'

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Add the branch's output to the input.

        Args:
            x (torch.Tensor): Input of the branch.

        Returns:
            torch.Tensor: ``x + m(x)``.
        """
        return self.m(x).add_(x) if self.inplace else x + self.m(x)


class RepVGGDW(nn.Module):
    """3x3 depthwise Conv-BN + 1x1 depthwise Conv-BN + identity.

    In deploy mode the three branches are one 3x3 depthwise conv with bias, ``conv``.

    Args:
        channels (int): Input and output channels.
        deploy (bool): Build the deploy form. Defaults to False.
    """

    def __init__(self, channels, deploy=False):
        super().__init__()
        self.deploy = deploy
        if deploy:
            self.conv = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
        else:
            self.conv = ConvBN(channels, channels, 3, padding=1, groups=channels)
            self.conv1 = ConvBN(channels, channels, 1, groups=channels)

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        """Fold the three branches into one 3x3 depthwise conv, in place."""
        if self.deploy:
            return
        self.conv.switch_to_deploy()
        self.conv1.switch_to_deploy()
        conv3, conv1 = self.conv.c, self.conv1.c
        conv3.weight.add_(F.pad(conv1.weight, (1, 1, 1, 1)))
        conv3.weight[:, 0, 1, 1] += 1.0  # identity: the centre tap of each channel's kernel
        conv3.bias.add_(conv1.bias)
        self.conv = conv3
        del self.conv1
        self.deploy = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Mix each channel spatially (three parallel branches, summed).

        Args:
            x (torch.Tensor): (B, C, H, W) features.

        Returns:
            torch.Tensor: (B, C, H, W) mixed features.
        """
        if self.deploy:
            return conv2d(self.conv, x)
        return self.conv(x) + self.conv1(x) + x


class SqueezeExcite(nn.Module):
    """Channel gate x * sigmoid(fc2(relu(fc1(mean(x))))).

    Args:
        channels (int): Input and output channels (the hidden width is about a quarter,
            a multiple of 8).
        inplace (bool): Gate the input tensor in place (and apply the ReLU in place);
            only for inputs nothing else reads. Defaults to False.
    """

    def __init__(self, channels, inplace=False):
        super().__init__()
        reduced = max(8, int(channels / 4 + 4) // 8 * 8)
        self.fc1 = nn.Conv2d(channels, reduced, 1)
        self.act = nn.ReLU(inplace=inplace)
        self.fc2 = nn.Conv2d(reduced, channels, 1)
        self.inplace = inplace

    def extra_repr(self) -> str:
        """The in-place flag, shown in the module's repr."""
        return f'inplace={self.inplace}'

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scale each channel by a gate computed from the global average.

        Args:
            x (torch.Tensor): (B, C, H, W) features.

        Returns:
            torch.Tensor: (B, C, H, W) gated features (``x`` itself when in place).
        """
        s = self.fc2(self.act(self.fc1(x.mean((2, 3), keepdim=True)))).sigmoid()
        return x.mul_(s) if self.inplace else x * s


class FFN(nn.Module):
    """1x1 expand, ReLU, 1x1 project with a zero-init BN: the residual starts as identity.

    Args:
        channels (int): Input and output channels.
        hidden (int): Hidden channels (LSNet uses twice ``channels``).
        deploy (bool): Build the deploy form (fused Conv-BNs, in-place ReLU).
            Defaults to False.
    """

    def __init__(self, channels, hidden, deploy=False):
        super().__init__()
        self.deploy = deploy
        self.pw1 = ConvBN(channels, hidden, deploy=deploy)
        self.act = nn.ReLU(inplace=deploy)
        self.pw2 = ConvBN(hidden, channels, bn_weight_init=0, deploy=deploy)

    def switch_to_deploy(self) -> None:
        """Fuse the Conv-BNs and let the ReLU work in place (on pw1's fresh output)."""
        self.pw1.switch_to_deploy()
        self.pw2.switch_to_deploy()
        self.act.inplace = True
        self.deploy = True

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
        deploy (bool): Build the deploy form. Defaults to False.
    """

    def __init__(self, channels, depth_index, use_attention, key_dim=16, num_heads=4,
                 deploy=False):
        super().__init__()
        self.deploy = deploy
        if depth_index % 2 == 0:
            self.mixer = RepVGGDW(channels, deploy=deploy)
            self.se = SqueezeExcite(channels, inplace=deploy)
        elif use_attention:
            self.mixer = Residual(Attention(channels, key_dim, num_heads, deploy=deploy),
                                  inplace=deploy)
            self.se = nn.Identity()
        else:
            self.mixer = LSConv(channels, deploy=deploy)
            self.se = nn.Identity()
        self.ffn = Residual(FFN(channels, 2 * channels, deploy=deploy), inplace=deploy)

    def switch_to_deploy(self) -> None:
        """Convert the parts, then work in place where the inputs are fresh tensors.

        The RepVGG mixer, the attention and the FFN all end in a convolution, whose
        fresh output the gate and the residual adds may write into.
        """
        if isinstance(self.mixer, Residual):
            self.mixer.m.switch_to_deploy()
            self.mixer.inplace = True
        else:
            self.mixer.switch_to_deploy()
        if isinstance(self.se, SqueezeExcite):
            self.se.inplace = self.se.act.inplace = True
        self.ffn.m.switch_to_deploy()
        self.ffn.inplace = True
        self.deploy = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Mix spatially, gate channels (even positions), then apply the residual FFN.

        Args:
            x (torch.Tensor): (B, C, H, W) features.

        Returns:
            torch.Tensor: (B, C, H, W) features.
        """
        return self.ffn(self.se(self.mixer(x)))
