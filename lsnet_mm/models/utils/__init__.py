"""Model helpers: deploy-mode conversion of whole models, neck widths of LSNet archs."""
from .deploy import switch_model_to_deploy
from .neck_widths import check_neck_widths, lsnet_out_channels, neck_width_message

__all__ = ['check_neck_widths', 'lsnet_out_channels', 'neck_width_message',
           'switch_model_to_deploy']
