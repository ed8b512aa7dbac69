# RetinaNet with an LSNet-T backbone, COCO 2017, 1x schedule (12 epochs), as in the
# LSNet paper (34.2 box AP). Batch 16 = 8 GPUs x 2 images. Other GPU counts: add
# --auto-scale-lr (the learning rate is set for base_batch_size=16), or keep the
# paper's batch on 1-2 GPUs by gradient accumulation (tools/train.py --accumulate 8
# on 1 GPU, 4 on 2; docs/model_zoo.md).
#   python tools/train.py configs/retinanet_lsnet_t.py
#   bash tools/dist_train.sh configs/retinanet_lsnet_t.py 8
# Data: COCO 2017 in mmdet's layout under data/coco/ (docs/detection.md).
# Backbone: the authors' ImageNet checkpoint, by its release URL. The released COCO
# model: https://huggingface.co/jameslahm/lsnet/resolve/main/lsnet_t_retinanet.pth
#   python tools/test.py configs/retinanet_lsnet_t.py \
#       https://huggingface.co/jameslahm/lsnet/resolve/main/lsnet_t_retinanet.pth
# All configs, checkpoints and results: docs/model_zoo.md.
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    './_base_/schedules/lsnet_adamw_1x.py',
    'mmdet::_base_/default_runtime.py',
]
custom_imports = dict(imports=['lsnet_mm'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='LSNet',
        arch='t',
        out_indices=(0, 1, 2, 3),
        norm_eval=True,  # frozen BN statistics, as the paper
        # the authors' ImageNet weights, downloaded into the torch hub cache on first
        # use (offline: put the file there, or set this key to a local path)
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://huggingface.co/jameslahm/lsnet/resolve/main/lsnet_t.pth')),
    # LSNet strides 8-64 -> P3-P6 from the four stages, P7 by an extra conv on the
    # last input: strides 8-128, as RetinaHead's anchor generator expects.
    neck=dict(
        _delete_=True,
        type='LSNetFPN',
        in_channels=[64, 128, 256, 384],
        out_channels=256,
        start_level=0,
        add_extra_convs='on_input',
        num_outs=5),
    bbox_head=dict(anchor_generator=dict(strides=[8, 16, 32, 64, 128])))

# mmdet's COCO pipelines (resize 1333x800 keeping ratio, flip 0.5; the model pads to
# 32). Training reads images with CheckedLoadImageFromFile (mmcv's loader whose errors
# name the file); the test pipeline keeps mmcv's LoadImageFromFile, which mmdet's
# DetInferencer replaces by its in-memory loader.
backend_args = None
train_pipeline = [
    dict(type='lsnet_mm.CheckedLoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(batch_size=2, num_workers=2, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
# Checkpoints written atomically, the old one deleted only after the new one is
# complete (mmengine's CheckpointHook otherwise; lsnet_mm/engine/hooks/).
# AccumulationParamSchedulerHook: mmengine's ParamSchedulerHook, stepping the
# iteration-based schedule (the warm-up) once per optimizer step, so that
# optim_wrapper.accumulative_counts=K keeps the paper's schedule (docs/model_zoo.md).
default_hooks = dict(
    param_scheduler=dict(type='lsnet_mm.AccumulationParamSchedulerHook'),
    checkpoint=dict(type='lsnet_mm.SafeCheckpointHook', interval=1))
# FiniteLossHook: a diverging run (loss or weights NaN/inf) stops at that iteration
# with an error naming it and the likely causes; no checkpoint of non-finite weights is
# written. RandomStateHook: checkpoints carry the RNG states, so a resumed run draws
# what the uninterrupted one drew (docs/robustness.md, "Training and checkpoints").
custom_hooks = [dict(type='lsnet_mm.FiniteLossHook'), dict(type='lsnet_mm.RandomStateHook')]
