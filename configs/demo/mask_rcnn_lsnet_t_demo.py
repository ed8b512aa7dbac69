# Mask R-CNN-LSNet-T on the generated shapes data set (lsnet_mm/datasets/demo/coco_shapes.py):
# trains from scratch on CPU in minutes, then evaluates box and mask AP with CocoMetric.
#   .venv/bin/python tools/demo.py --models mask_rcnn    # generates data, trains, tests
# configs/mask_rcnn_lsnet_t.py with the demo settings of _base_/demo_coco_shapes.py
# (256 px shapes data, batch 4, AdamW 2e-3, seed 0), masks loaded too, 6 epochs of 40
# iterations, and smaller heads: 64-channel neck and heads, fewer proposals and RoI
# samples, BN statistics trained (norm_eval=False). On a 2-core machine run it with
# OMP_NUM_THREADS=1 (as tools/demo.py does): a second compute thread made iterations
# 2-3x slower there.
_base_ = ['../mask_rcnn_lsnet_t.py', './_base_/demo_coco_shapes.py']
_base_.merge(_base_.pop('demo_overrides'))  # the demo settings over the paper config's

ch = 64
model = dict(
    backbone=dict(init_cfg=None, norm_eval=False),
    neck=dict(out_channels=ch),
    rpn_head=dict(in_channels=ch, feat_channels=ch),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=ch),
        bbox_head=dict(num_classes=3, in_channels=ch, fc_out_channels=256),
        mask_roi_extractor=dict(out_channels=ch),
        mask_head=dict(num_classes=3, in_channels=ch, conv_out_channels=ch)),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=1000, max_per_img=300),
        rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(
        rpn=dict(nms_pre=300, max_per_img=100),
        rcnn=dict(max_per_img=50)))

# the demo pipelines, loading the instance masks too (LoadAnnotations is the second step
# of the train pipeline and the third of the test pipeline)
train_pipeline = _base_.train_pipeline
test_pipeline = _base_.test_pipeline
train_pipeline[1].with_mask = True
test_pipeline[2].with_mask = True
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

# 6 epochs (learning rate x0.1 for the last one), checkpoint at the end
max_epochs = 6
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
_base_.param_scheduler[1].update(end=max_epochs, milestones=[max_epochs - 1])
default_hooks = dict(checkpoint=dict(interval=max_epochs))
