# RetinaNet with LSNet-B, COCO 1x (paper: 39.2 box AP). See retinanet_lsnet_t.py.
# Released model: https://huggingface.co/jameslahm/lsnet/resolve/main/lsnet_b_retinanet.pth
_base_ = './retinanet_lsnet_t.py'
model = dict(
    backbone=dict(
        arch='b',
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://huggingface.co/jameslahm/lsnet/resolve/main/lsnet_b.pth')),
    neck=dict(in_channels=[128, 256, 384, 512]))
