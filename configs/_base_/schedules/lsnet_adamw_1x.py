# The LSNet paper's COCO 1x schedule (replaces mmdet's schedule_1x.py): 12 epochs,
# AdamW lr 1e-4, betas (0.9, 0.999), weight decay 0.05 except on the attention bias
# tables, linear warm-up over 500 iterations from 0.001x, lr x0.1 at epochs 8 and 11.
# The learning rate is set for a batch of 16 (8 GPUs x 2): --auto-scale-lr adapts it to
# another batch, --accumulate K keeps the batch on fewer GPUs (docs/model_zoo.md).
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=12, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={'attention_biases': dict(decay_mult=0.0)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1),
]
auto_scale_lr = dict(enable=False, base_batch_size=16)
