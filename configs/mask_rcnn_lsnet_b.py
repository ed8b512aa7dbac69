# Mask R-CNN with LSNet-B, COCO 1x (paper: 40.8 box / 37.8 mask AP). See mask_rcnn_lsnet_t.py.
# Released model: https://huggingface.co/jameslahm/lsnet/resolve/main/lsnet_b_maskrcnn.pth
_base_ = './mask_rcnn_lsnet_t.py'
model = dict(
    backbone=dict(
        arch='b',
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://huggingface.co/jameslahm/lsnet/resolve/main/lsnet_b.pth')),
    neck=dict(in_channels=[128, 256, 384, 512]))
