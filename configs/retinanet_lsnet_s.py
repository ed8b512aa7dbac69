# RetinaNet with LSNet-S, COCO 1x (paper: 36.5 box AP). See retinanet_lsnet_t.py.
# Released model: https://huggingface.co/jameslahm/lsnet/resolve/main/lsnet_s_retinanet.pth
_base_ = './retinanet_lsnet_t.py'
model = dict(
    backbone=dict(
        arch='s',
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://huggingface.co/jameslahm/lsnet/resolve/main/lsnet_s.pth')),
    neck=dict(in_channels=[96, 192, 320, 448]))
