# Semantic FPN with an LSNet-T backbone on ADE20K, 40k iterations, as in the LSNet
# paper (40.1 mIoU single-scale). Batch 32 = 8 GPUs x 4 images. Other GPU counts: add
# --auto-scale-lr (the learning rate is set for base_batch_size=32), or keep the paper's
# batch on 1-2 GPUs by gradient accumulation (tools/train.py --accumulate 8 on 1 GPU, 4
# on 2: also multiplies the iterations and intervals; docs/model_zoo.md).
#   python tools/train.py configs/fpn_lsnet_t_ade20k.py
#   bash tools/dist_train.sh configs/fpn_lsnet_t_ade20k.py 8
#   python tools/test.py configs/fpn_lsnet_t_ade20k.py CHECKPOINT   # mIoU, mAcc, aAcc
# Data: ADE20K (ADEChallengeData2016) under data/ade/ (docs/segmentation.md).
# Backbone: the authors' ImageNet checkpoint, by its release URL. The released ADE20K
# model (mmseg 0.30 format, upgraded when loaded):
#   python tools/test.py configs/fpn_lsnet_t_ade20k.py \
#       https://huggingface.co/jameslahm/lsnet/resolve/main/lsnet_t_semfpn.pth
# All configs, checkpoints and results: docs/model_zoo.md.
_base_ = [
    'mmseg::_base_/models/fpn_r50.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_40k.py',
]
custom_imports = dict(imports=['lsnet_mm'], allow_failed_imports=False)

data_root = 'data/ade/ADEChallengeData2016'
data_help = ('ADE20K is expected as {root}/images/{{training,validation}}/*.jpg and '
             '{root}/annotations/{{training,validation}}/*.png: download '
             'http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip and unzip '
             'it into data/ade/ (or symlink it there), or set data_root with --cfg-options '
             'train_dataloader.dataset.data_root=PATH val_dataloader.dataset.data_root=PATH '
             '(see docs/segmentation.md).')
crop_size = (512, 512)
norm_cfg = dict(type='SyncBN', requires_grad=True)  # BN on CPU / single process
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size=crop_size)

model = dict(
    data_preprocessor=data_preprocessor,
    pretrained=None,
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
    # LSNet strides 8, 16, 32, 64 -> four FPN levels; FPNHead keeps its nominal
    # feature_strides 4-32 (only their ratios matter: each level is upsampled to the
    # finest one, and the logits to the input size).
    neck=dict(
        _delete_=True,
        type='LSNetFPN',
        in_channels=[64, 128, 256, 384],
        out_channels=256,
        num_outs=4),
    decode_head=dict(
        type='FPNHead',
        in_channels=[256, 256, 256, 256],
        in_index=[0, 1, 2, 3],
        feature_strides=[4, 8, 16, 32],
        channels=128,
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=norm_cfg,
        align_corners=False),
    test_cfg=dict(mode='whole'))

# mmseg's ADE20K pipelines: 150 classes, reduce_zero_label (0 = "other" is ignored,
# ids 1-150 -> 0-149); train: resize 2048x512 x ratio 0.5-2.0, crop 512x512, flip,
# photometric distortion. Test: the paper's resize (keep ratio at 2048x512, then
# both sides rounded up to a multiple of 32).
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=(2048, 512), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='lsnet_mm.AlignResize', scale=(2048, 512), size_divisor=32),
    # annotations after the resize: the metric compares with the original label map
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
# CheckedADE20KDataset = mmseg's ADE20KDataset + errors that name the files: a missing
# dataset, label values outside the classes, a label map of another size than its image,
# and an image or label map that the pipeline's LoadImageFromFile / LoadAnnotations
# cannot read (lsnet_mm/datasets/ade20k.py). tools/train.py and tools/test.py also check
# every file before the run (lsnet_mm/datasets/verify.py).
train_dataloader = dict(
    batch_size=4,
    num_workers=4,
    dataset=dict(type='lsnet_mm.CheckedADE20KDataset', data_root=data_root,
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    dataset=dict(type='lsnet_mm.CheckedADE20KDataset', data_root=data_root,
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])  # reports aAcc, mIoU, mAcc
test_evaluator = val_evaluator

# AdamW lr 2e-4, weight decay 1e-4; poly decay (power 0.9) to 1e-6 over 40k iterations.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=1e-4),
    clip_grad=None)
param_scheduler = [
    dict(type='PolyLR', eta_min=1e-6, power=0.9, begin=0, end=40000, by_epoch=False),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=40000, val_interval=4000)
# SafeCheckpointHook: mmengine's CheckpointHook (same arguments) writing checkpoints
# atomically (lsnet_mm/engine/hooks/safe_checkpoint_hook.py).
# AccumulationParamSchedulerHook: mmengine's ParamSchedulerHook, stepping the
# iteration-based schedule (PolyLR) once per optimizer step, so that
# optim_wrapper.accumulative_counts=K keeps the paper's schedule (docs/model_zoo.md).
default_hooks = dict(
    param_scheduler=dict(type='lsnet_mm.AccumulationParamSchedulerHook'),
    checkpoint=dict(type='lsnet_mm.SafeCheckpointHook', by_epoch=False, interval=4000,
                    max_keep_ckpts=3))
# FiniteLossHook: a diverging run (loss or weights NaN/inf) stops at that iteration
# with an error naming it and the likely causes; no checkpoint of non-finite weights is
# written. RandomStateHook: checkpoints carry the RNG states, so a resumed run draws
# what the uninterrupted one drew (docs/robustness.md, "Training and checkpoints").
custom_hooks = [dict(type='lsnet_mm.FiniteLossHook'), dict(type='lsnet_mm.RandomStateHook')]
# Multi-process runs: mmengine's DDP wrapper; on CPU-only machines (torchrun + gloo) it
# reverts SyncBN to BN first (lsnet_mm/engine/wrappers/). Single-process runs: the
# Runner reverts SyncBN itself.
model_wrapper_cfg = dict(type='lsnet_mm.CPUFallbackDDP', broadcast_buffers=False,
                         find_unused_parameters=False)
auto_scale_lr = dict(enable=False, base_batch_size=32)
