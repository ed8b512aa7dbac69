# Semantic FPN with an LSNet-B backbone on ADE20K, 40k iterations (paper: 43.1 mIoU).
# Same recipe as configs/fpn_lsnet_t_ade20k.py; backbone from the authors' lsnet_b.pth.
# Released model: https://huggingface.co/jameslahm/lsnet/resolve/main/lsnet_b_semfpn.pth
_base_ = './fpn_lsnet_t_ade20k.py'

model = dict(
    backbone=dict(
        arch='b',
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://huggingface.co/jameslahm/lsnet/resolve/main/lsnet_b.pth')),
    neck=dict(in_channels=[128, 256, 384, 512]))
