# RetinaNet-LSNet-T on the generated shapes data set (lsnet_mm/datasets/demo/coco_shapes.py):
# trains from scratch on CPU in minutes, then evaluates with mmdet's CocoMetric.
#   .venv/bin/python tools/demo.py --models retinanet    # generates data, trains, tests
# configs/retinanet_lsnet_t.py with the demo settings of _base_/demo_coco_shapes.py
# (256 px shapes data, batch 4, AdamW 2e-3, 8 epochs of 40 iterations, seed 0) and a
# smaller head: 64-channel neck and head with two stacked convs, BN statistics trained
# (norm_eval=False). On a 2-core machine run it with OMP_NUM_THREADS=1 (as tools/demo.py
# does): a second compute thread made iterations 2-3x slower there.
_base_ = ['../retinanet_lsnet_t.py', './_base_/demo_coco_shapes.py']
_base_.merge(_base_.pop('demo_overrides'))  # the demo settings over the paper config's

model = dict(
    backbone=dict(init_cfg=None, norm_eval=False),
    neck=dict(out_channels=64),
    bbox_head=dict(num_classes=3, in_channels=64, feat_channels=64, stacked_convs=2),
    test_cfg=dict(nms_pre=300, max_per_img=50))
