"""LSNetFPN: an FPN plus optional finer levels made by transposed convolution.

LSNet's finest output has stride 8; Mask R-CNN wants a stride-4 level. Each extra
level upsamples the finest lateral (after the top-down pass) with a 2x2 stride-2
ConvTranspose2d and smooths it with a 3x3 conv. Extra levels come first in the
output, so ``num_outs`` counts them (e.g. 5 = one stride-4 level + strides 8-64).

The FPN is mmdet's, or mmseg's where mmdet is not installed (the two are the same
module with the same parameter names), so the neck serves both libraries.

Every forward pass first compares the widths of its inputs with ``in_channels`` and
raises :class:`~lsnet_mm.utils.errors.ConfigError` naming
``neck.in_channels``, the LSNet arch and the widths it needs (rather than PyTorch's conv
shape error), under any tool.
"""
from mmcv.cnn import ConvModule
from torch import nn

from ...registry import MODELS
from ...utils.errors import ConfigError
from ..utils.neck_widths import neck_width_message

try:
    from mmdet.models.necks import FPN
except ImportError:
    from mmseg.models.necks import FPN


@MODELS.register_module()
class LSNetFPN(FPN):
    """FPN with ``num_extra_trans_convs`` finer levels in front of its outputs.

    Args:
        in_channels (list[int]): Channels of the backbone outputs used.
        out_channels (int): Channels of every output level.
        num_outs (int): Output levels, the finer ones included.
        num_extra_trans_convs (int): Levels added below the finest input, each at half
            the stride of the next (a 2x2 stride-2 transposed conv, then a 3x3 conv).
            Defaults to 0 (a plain FPN).
        conv_cfg (dict, optional): Conv config of the FPN and the extra levels.
        norm_cfg (dict, optional): Norm config of the FPN and the extra levels.
        act_cfg (dict, optional): Activation config of the FPN and the extra levels.
        **kwargs: The other arguments of mmdet's ``FPN`` (start_level,
            add_extra_convs, ...).
    """

    def __init__(self, in_channels, out_channels, num_outs, num_extra_trans_convs=0,
                 conv_cfg=None, norm_cfg=None, act_cfg=None, **kwargs):
        if num_extra_trans_convs < 0 or num_extra_trans_convs >= num_outs:
            raise ValueError(f'num_extra_trans_convs must be in 0..num_outs-1, got '
                             f'{num_extra_trans_convs} with num_outs={num_outs}')
        super().__init__(in_channels, out_channels, num_outs - num_extra_trans_convs,
                         conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg, **kwargs)
        self.num_extra_trans_convs = num_extra_trans_convs
        self.extra_trans_convs = nn.ModuleList()
        self.extra_fpn_convs = nn.ModuleList()
        for _ in range(num_extra_trans_convs):
            self.extra_trans_convs.append(ConvModule(
                out_channels, out_channels, 2, stride=2, conv_cfg=dict(type='deconv'),
                norm_cfg=norm_cfg, act_cfg=act_cfg, inplace=False))
            self.extra_fpn_convs.append(ConvModule(
                out_channels, out_channels, 3, padding=1, conv_cfg=conv_cfg,
                norm_cfg=norm_cfg, act_cfg=act_cfg, inplace=False))

    def forward(self, inputs):
        """Run the FPN, then the extra levels on its finest top-down lateral.

        Args:
            inputs (tuple[Tensor]): Backbone feature maps, finest first.

        Returns:
            tuple[Tensor]: ``num_outs`` maps, finest first.

        Raises:
            ConfigError: The inputs' widths differ from ``in_channels``.
        """
        widths = [int(x.shape[1]) for x in inputs]
        if widths != list(self.in_channels):
            raise ConfigError(neck_width_message(self.in_channels, widths))
        if not self.num_extra_trans_convs:
            return super().forward(inputs)
        # FPN.forward hands the finest top-down lateral to fpn_convs[0]; catch it there
        # rather than re-writing mmdet's top-down pass.
        finest = []
        hook = self.fpn_convs[0].register_forward_pre_hook(lambda m, args: finest.append(args[0]))
        try:
            outs = super().forward(inputs)
        finally:
            hook.remove()
        x, extra = finest[0], []
        for up, smooth in zip(self.extra_trans_convs, self.extra_fpn_convs):
            x = up(x)
            extra.insert(0, smooth(x))
        return tuple(extra) + tuple(outs)
