# Semantic FPN-LSNet-T on the generated ADE20K-layout demo data
# (lsnet_mm/datasets/demo/ade_scenes.py): trains from scratch on CPU in minutes, then
# evaluates mIoU / mAcc / aAcc with mmseg's IoUMetric.
#   .venv/bin/python tools/demo.py --models fpn       # generates data, trains, tests
# Same model, data convention and pipelines as configs/fpn_lsnet_t_ade20k.py
# (ADE20K label maps with reduce_zero_label, SyncBN head -> BN on CPU, the paper's
# AlignResize at test time), scaled down for a CPU and a from-scratch start (no
# ImageNet weights offline): six of ADE20K's classes (metainfo.classes; mmseg maps
# their ids to 0-5 and ignores the rest), 192x144 images, 128x128 crops from
# resizes of 576x144 x 0.5-2.0, test at 576x144 rounded up to multiples of 32,
# 64-channel neck and head, BN statistics trained (norm_eval=False), AdamW at 2e-3.
_base_ = '../fpn_lsnet_t_ade20k.py'

data_root = 'data/demo_ade/ADEChallengeData2016'
data_help = ('The demo data set is generated, not downloaded: run '
             '".venv/bin/python -m lsnet_mm.datasets.demo.ade_scenes --root {root}" (or '
             'tools/demo.py, which generates, trains and tests).')
# ADE20K names of the classes the generator draws
# (lsnet_mm.datasets.demo.ade_scenes.DEMO_CLASSES)
metainfo = dict(classes=('wall', 'sky', 'tree', 'road', 'grass', 'person'))
num_classes = 6
crop_size = (128, 128)
scale = (576, 144)
channels = 64

model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(init_cfg=None, norm_eval=False),
    neck=dict(out_channels=channels),
    decode_head=dict(in_channels=[channels] * 4, channels=channels, num_classes=num_classes))

# the paper config's pipelines at the demo's sizes (Python-style modification of base
# variables): RandomResize and RandomCrop of the train pipeline, AlignResize at test time
train_pipeline = _base_.train_pipeline
train_pipeline[2].scale = scale
train_pipeline[3].crop_size = crop_size
test_pipeline = _base_.test_pipeline
test_pipeline[1].scale = scale
train_dataloader = dict(
    batch_size=4, num_workers=2, persistent_workers=True,
    dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=2, persistent_workers=True,
    dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=test_pipeline))
test_dataloader = val_dataloader

max_iters = 300
optim_wrapper = dict(
    optimizer=dict(lr=2e-3), clip_grad=dict(_delete_=True, max_norm=10.0, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.05, by_epoch=False, begin=0, end=20),
    dict(type='PolyLR', eta_min=1e-6, power=0.9, begin=20, end=max_iters, by_epoch=False),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
auto_scale_lr = dict(enable=False, base_batch_size=4)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=25, log_metric_by_epoch=False),
    checkpoint=dict(type='lsnet_mm.SafeCheckpointHook', by_epoch=False, interval=max_iters,
                    max_keep_ckpts=1))
randomness = dict(seed=0)  # a reproducible demo number
