# Mask R-CNN with LSNet-S, COCO 1x (paper: 37.4 box / 34.8 mask AP). See mask_rcnn_lsnet_t.py.
# Released model: https://huggingface.co/jameslahm/lsnet/resolve/main/lsnet_s_maskrcnn.pth
_base_ = './mask_rcnn_lsnet_t.py'
model = dict(
    backbone=dict(
        arch='s',
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://huggingface.co/jameslahm/lsnet/resolve/main/lsnet_s.pth')),
    neck=dict(in_channels=[96, 192, 320, 448]))
