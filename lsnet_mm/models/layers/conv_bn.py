"""Conv-BN, LSNet's basic unit, and the one BatchNorm-folding helper of the package."""
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn


@torch.no_grad()
def bn_scale_shift(bn: nn.BatchNorm2d) -> Tuple[torch.Tensor, torch.Tensor]:
    """Express an eval-mode BatchNorm2d as ``x * scale + shift`` per channel.

    Args:
        bn (nn.BatchNorm2d): The BatchNorm (its running statistics are used).

    Returns:
        tuple[torch.Tensor, torch.Tensor]: ``(scale, shift)``, each of shape (C,).
    """
    scale = bn.weight / (bn.running_var + bn.eps).sqrt()
    return scale, bn.bias - bn.running_mean * scale


def conv2d(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` without a second module call (for the deploy forms that wrap a conv).

    Module calls cost microseconds each, which add up over LSNet's hundred small layers:
    a deploy-mode layer that holds one conv runs it as the bare conv it replaces would
    cost. Forward hooks registered on ``conv`` itself do not run.

    Args:
        conv (nn.Conv2d): The convolution (zero padding).
        x (torch.Tensor): Its input.

    Returns:
        torch.Tensor: ``conv(x)``.
    """
    return F.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation,
                    conv.groups)


@torch.no_grad()
def fuse_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """Fold a BatchNorm into the convolution before it.

    Args:
        conv (nn.Conv2d): The convolution (with or without bias).
        bn (nn.BatchNorm2d): The BatchNorm applied to its output, in eval mode.

    Returns:
        nn.Conv2d: A new conv with bias computing ``bn(conv(x))``.
    """
    scale, shift = bn_scale_shift(bn)
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                      conv.padding, conv.dilation, conv.groups, bias=True,
                      device=conv.weight.device, dtype=conv.weight.dtype)
    fused.weight.copy_(conv.weight * scale[:, None, None, None])
    fused.bias.copy_(shift if conv.bias is None else conv.bias * scale + shift)
    return fused


class ConvBN(nn.Sequential):
    """Conv2d (no bias) + BatchNorm2d; ``bn_weight_init=0`` gives a zero-init residual branch.

    In deploy mode the unit is one conv with bias, still named ``c`` (the BatchNorm
    folded in): ``deploy=True`` builds it so, :meth:`switch_to_deploy` converts to it.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        kernel_size (int): Kernel size. Defaults to 1.
        stride (int): Stride. Defaults to 1.
        padding (int): Zero padding. Defaults to 0.
        groups (int): Convolution groups. Defaults to 1.
        bn_weight_init (float): Initial BatchNorm scale. Defaults to 1.0.
        deploy (bool): Build the fused form. Defaults to False.
    """

    def __init__(self, in_channels, out_channels, kernel_size=1, stride=1, padding=0,
                 groups=1, bn_weight_init=1.0, deploy=False):
        super().__init__()
        self.deploy = deploy
        self.add_module('c', nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding,
                                       groups=groups, bias=deploy))
        if not deploy:
            self.add_module('bn', nn.BatchNorm2d(out_channels))
            nn.init.constant_(self.bn.weight, bn_weight_init)
            nn.init.constant_(self.bn.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolve and normalise (deploy: the fused conv, see :func:`conv2d`).

        Args:
            x (torch.Tensor): (B, in_channels, H, W) features.

        Returns:
            torch.Tensor: (B, out_channels, H', W') features.
        """
        return conv2d(self.c, x) if self.deploy else super().forward(x)

    def switch_to_deploy(self) -> None:
        """Fold the BatchNorm into the convolution, in place (no-op when done)."""
        if self.deploy:
            return
        self.c = fuse_conv_bn(self.c, self.bn)
        del self.bn
        self.deploy = True
