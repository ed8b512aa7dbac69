# Semantic FPN with an LSNet-S backbone on ADE20K, 40k iterations (paper: 41.6 mIoU).
# Same recipe as configs/fpn_lsnet_t_ade20k.py; backbone from the authors' lsnet_s.pth.
# Released model: https://huggingface.co/jameslahm/lsnet/resolve/main/lsnet_s_semfpn.pth
_base_ = './fpn_lsnet_t_ade20k.py'

model = dict(
    backbone=dict(
        arch='s',
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://huggingface.co/jameslahm/lsnet/resolve/main/lsnet_s.pth')),
    neck=dict(in_channels=[96, 192, 320, 448]))
