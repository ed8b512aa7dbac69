"""LS convolution ("See Large, Focus Small").

Large-kernel perception predicts per-pixel 3x3 kernels; small-kernel aggregation
applies them.
"""
import torch
from torch import nn

from ...ops import ska
from .conv_bn import ConvBN, bn_scale_shift


class LargeKernelPerception(nn.Module):
    """Predicts one 3x3 kernel per pixel and weight group from a 7x7 depthwise context.

    1x1 Conv-BN to half the channels, ReLU, large depthwise Conv-BN, 1x1 Conv-BN, ReLU,
    then a 1x1 conv to ``small_kernel ** 2`` values per group, GroupNorm-ed (the
    GroupNorm depends on the data and stays in deploy mode).

    Args:
        channels (int): Input channels.
        large_kernel (int): Size of the depthwise context kernel. Defaults to 7.
        small_kernel (int): Size of the predicted kernels. Defaults to 3.
        group_width (int): Channels sharing one predicted kernel. Defaults to 8.
        deploy (bool): Build the deploy form (fused Conv-BNs, in-place ReLU).
            Defaults to False.
    """

    def __init__(self, channels, large_kernel=7, small_kernel=3, group_width=8,
                 deploy=False):
        super().__init__()
        hidden = channels // 2
        self.deploy = deploy
        self.num_groups = channels // group_width
        self.small_kernel = small_kernel
        self.cv1 = ConvBN(channels, hidden, deploy=deploy)
        self.act = nn.ReLU(inplace=deploy)
        self.cv2 = ConvBN(hidden, hidden, large_kernel, padding=large_kernel // 2, groups=hidden,
                          deploy=deploy)
        self.cv3 = ConvBN(hidden, hidden, deploy=deploy)
        self.cv4 = nn.Conv2d(hidden, small_kernel ** 2 * self.num_groups, kernel_size=1)
        self.norm = nn.GroupNorm(self.num_groups, small_kernel ** 2 * self.num_groups)

    def switch_to_deploy(self) -> None:
        """Fuse the Conv-BNs and let the ReLU work in place (on fresh conv outputs)."""
        for m in (self.cv1, self.cv2, self.cv3):
            m.switch_to_deploy()
        self.act.inplace = True
        self.deploy = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predict the kernels.

        Args:
            x (torch.Tensor): (B, C, H, W) features.

        Returns:
            torch.Tensor: (B, C // group_width, small_kernel ** 2, H, W) kernels.
        """
        x = self.act(self.cv3(self.cv2(self.act(self.cv1(x)))))
        w = self.norm(self.cv4(x))
        b, _, h, wd = w.shape
        return w.view(b, self.num_groups, self.small_kernel ** 2, h, wd)


class LSConv(nn.Module):
    """LS convolution with a residual connection: ``bn(ska(x, lkp(x))) + x``.

    In deploy mode the BatchNorm, which follows the parameter-free aggregation, is a
    per-channel scale and shift (buffers ``bn_scale``, ``bn_shift``) applied together
    with the residual: ``x + ska(x, lkp(x)) * bn_scale + bn_shift``.

    Args:
        channels (int): Input and output channels, divisible by 8 (the group width).
        deploy (bool): Build the deploy form. Defaults to False.
    """

    def __init__(self, channels, deploy=False):
        super().__init__()
        if channels % 8:
            raise ValueError(f'LSConv needs channels divisible by 8, got {channels}')
        self.deploy = deploy
        self.lkp = LargeKernelPerception(channels, deploy=deploy)
        if deploy:
            self.register_buffer('bn_scale', torch.ones(channels, 1, 1))
            self.register_buffer('bn_shift', torch.zeros(channels, 1, 1))
        else:
            self.bn = nn.BatchNorm2d(channels)

    def switch_to_deploy(self) -> None:
        """Fold the BatchNorm into a scale and shift and convert the perception branch."""
        self.lkp.switch_to_deploy()
        if self.deploy:
            return
        scale, shift = bn_scale_shift(self.bn)
        self.register_buffer('bn_scale', scale[:, None, None].clone())
        self.register_buffer('bn_shift', shift[:, None, None].clone())
        del self.bn
        self.deploy = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """See large (predict kernels), focus small (aggregate 3x3 neighbourhoods).

        Args:
            x (torch.Tensor): (B, C, H, W) features.

        Returns:
            torch.Tensor: (B, C, H, W) features, ``x`` plus the normalised aggregation.
        """
        y = ska(x, self.lkp(x))
        if self.deploy:
            return torch.addcmul(x, y, self.bn_scale).add_(self.bn_shift)
        return self.bn(y) + x
