# RetinaNet-LSNet-T on the generated shapes data set (lsnet_mm/detection/demo_data.py):
# trains from scratch on CPU in minutes, then evaluates with mmdet's CocoMetric.
#   .venv/bin/python tools/demo_detection.py            # generates data, trains, tests
# Differences from configs/retinanet_lsnet_t.py, all for CPU speed and a from-scratch
# start (no ImageNet weights offline): 256 px images, 64-channel neck and head with
# two stacked convs, BN statistics trained (norm_eval=False), AdamW at 2e-3, 8 epochs of 40
# iterations (batch 4). On a 2-core machine run it with OMP_NUM_THREADS=1 (as the demo
# script does): a second compute thread made iterations 2-3x slower there.
_base_ = '../retinanet_lsnet_t.py'

data_root = 'data/demo_coco/'
data_help = ('The demo data set is generated, not downloaded: run '
             '".venv/bin/python tools/make_demo_data.py" (or tools/demo_detection.py).')
metainfo = dict(classes=('circle', 'square', 'triangle'),
                palette=[(220, 20, 60), (0, 160, 0), (0, 60, 220)])
img_scale = (256, 256)

model = dict(
    backbone=dict(init_cfg=None, norm_eval=False),
    neck=dict(out_channels=64),
    bbox_head=dict(num_classes=3, in_channels=64, feat_channels=64, stacked_convs=2),
    test_cfg=dict(nms_pre=300, max_per_img=50))

train_pipeline = [
    dict(type='CheckedLoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='CheckedLoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=4, num_workers=1, persistent_workers=True,
    dataset=dict(data_root=data_root, metainfo=metainfo,
                 ann_file='annotations/instances_train.json', data_prefix=dict(img='train/'),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4, num_workers=1, persistent_workers=True,
    dataset=dict(data_root=data_root, metainfo=metainfo,
                 ann_file='annotations/instances_val.json', data_prefix=dict(img='val/'),
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator

max_epochs = 8
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs)
optim_wrapper = dict(optimizer=dict(lr=2e-3), clip_grad=dict(max_norm=10.0, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[7],
         gamma=0.1),
]
auto_scale_lr = dict(enable=False, base_batch_size=4)
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
# fixed seed: the demo's numbers repeat from run to run
randomness = dict(seed=0)
