# What the detection demos (configs/demo/retinanet_lsnet_t_demo.py,
# configs/demo/mask_rcnn_lsnet_t_demo.py) change in their paper configs, all for CPU speed
# and a start from scratch (no ImageNet weights offline): the generated shapes data set
# (python -m lsnet_mm.datasets.demo.coco_shapes: 256 px images, three classes), 256 px
# pipelines (boxes only; the Mask R-CNN demo loads the masks too), batch 4, AdamW at 2e-3
# with gradient clipping, 8 epochs of 40 iterations, checkpoint at the end, seed 0.
#
# A list of _base_ files may not define a key twice, and the paper config defines all of
# these, so they are kept under one key that a demo config merges over its paper config
# (Python-style modification of base variables, as mmengine's config tutorial shows):
#     _base_ = ['../retinanet_lsnet_t.py', './_base_/demo_coco_shapes.py']
#     _base_.merge(_base_.pop('demo_overrides'))
# so the resolved (and dumped) config holds the settings themselves, not this key.
__data_root = 'data/demo_coco/'
__metainfo = dict(classes=('circle', 'square', 'triangle'),
                  palette=[(220, 20, 60), (0, 160, 0), (0, 60, 220)])
__img_scale = (256, 256)
__train_pipeline = [
    dict(type='lsnet_mm.CheckedLoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=__img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
# mmcv's LoadImageFromFile at test time, as in the paper configs: DetInferencer swaps
# it for its in-memory loader
__test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=__img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
__val_dataloader = dict(
    batch_size=4, num_workers=1, persistent_workers=True,
    dataset=dict(data_root=__data_root, metainfo=__metainfo,
                 ann_file='annotations/instances_val.json', data_prefix=dict(img='val/'),
                 pipeline=__test_pipeline))
__val_evaluator = dict(ann_file=__data_root + 'annotations/instances_val.json')
__max_epochs = 8

demo_overrides = dict(
    data_root=__data_root,
    data_help=('The demo data set is generated, not downloaded: run ".venv/bin/python -m '
               'lsnet_mm.datasets.demo.coco_shapes --root {root}" (or tools/demo.py, which '
               'generates, trains and tests).'),
    metainfo=__metainfo,
    img_scale=__img_scale,
    train_pipeline=__train_pipeline,
    test_pipeline=__test_pipeline,
    train_dataloader=dict(
        batch_size=4, num_workers=1, persistent_workers=True,
        dataset=dict(data_root=__data_root, metainfo=__metainfo,
                     ann_file='annotations/instances_train.json',
                     data_prefix=dict(img='train/'), pipeline=__train_pipeline)),
    val_dataloader=__val_dataloader,
    test_dataloader=__val_dataloader,
    val_evaluator=__val_evaluator,
    test_evaluator=__val_evaluator,
    max_epochs=__max_epochs,
    train_cfg=dict(type='EpochBasedTrainLoop', max_epochs=__max_epochs,
                   val_interval=__max_epochs),
    optim_wrapper=dict(optimizer=dict(lr=2e-3), clip_grad=dict(max_norm=10.0, norm_type=2)),
    param_scheduler=[
        dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
        dict(type='MultiStepLR', begin=0, end=__max_epochs, by_epoch=True,
             milestones=[__max_epochs - 1], gamma=0.1),
    ],
    auto_scale_lr=dict(enable=False, base_batch_size=4),
    # the paper config's checkpoint hook (SafeCheckpointHook) at the end of training
    default_hooks=dict(
        logger=dict(interval=10),
        checkpoint=dict(type='lsnet_mm.SafeCheckpointHook', interval=__max_epochs,
                        max_keep_ckpts=1)),
    # fixed seed: the demo's numbers repeat from run to run
    randomness=dict(seed=0),
)
