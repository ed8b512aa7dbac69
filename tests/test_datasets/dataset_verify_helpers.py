"""Configs (mmengine Config objects built in Python) and edits of generated data for the
tests of lsnet_mm.datasets.verify."""
import json
import os.path as osp
import re

import pytest
from mmengine.config import Config

from lsnet_mm.utils.errors import DatasetError

SHAPES = ('circle', 'square', 'triangle')
DEMO_ADE = ('wall', 'sky', 'tree', 'road', 'grass', 'person')
COCO_TRAIN_PIPELINE = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True),
                       dict(type='Resize', scale=(96, 96), keep_ratio=True),
                       dict(type='PackDetInputs')]


def coco_dataset(root, split, **kwargs):
    """An mmdet CocoDataset config for product_helpers.tiny_coco data."""
    ds = dict(type='CocoDataset', data_root=f'{root}/',
              ann_file=f'annotations/instances_{split}.json', data_prefix=dict(img=f'{split}/'),
              metainfo=dict(classes=SHAPES), pipeline=COCO_TRAIN_PIPELINE)
    ds.update(kwargs)
    return ds


def ade_dataset(root, split, **kwargs):
    """CheckedADE20KDataset (six demo classes) for product_helpers.tiny_ade data."""
    ds = dict(type='lsnet_mm.CheckedADE20KDataset', data_root=root,
              data_prefix=dict(img_path=f'images/{split}', seg_map_path=f'annotations/{split}'),
              metainfo=dict(classes=DEMO_ADE), pipeline=[])
    ds.update(kwargs)
    return ds


def run_config(scope, work_dir, train, val=None, test=None, **extra):
    """A config holding only what the dataset check reads."""
    cfg = dict(default_scope=scope, work_dir=str(work_dir),
               train_dataloader=dict(batch_size=2, dataset=train))
    if val is not None:
        cfg.update(val_dataloader=dict(batch_size=1, dataset=val), val_cfg=dict(type='ValLoop'))
    if test is not None:
        cfg.update(test_dataloader=dict(batch_size=1, dataset=test))
    cfg.update(extra)
    return Config(cfg)


def coco_config(root, work_dir, val=True, train_kwargs=None, **extra):
    """Train (filter_empty_gt) and val (test mode) splits of tiny_coco data."""
    train = coco_dataset(root, 'train', filter_cfg=dict(filter_empty_gt=True),
                         **(train_kwargs or {}))
    return run_config('mmdet', work_dir, train,
                      coco_dataset(root, 'val', test_mode=True) if val else None, **extra)


def edit_json(path, edit):
    """Rewrite a JSON file with ``edit(data)`` applied; returns the data."""
    with open(path) as f:
        data = json.load(f)
    edit(data)
    with open(path, 'w') as f:
        json.dump(data, f)
    return data


def failure(check, error=DatasetError):
    """Run ``check()``, expect ``error``; its message."""
    with pytest.raises(error) as e:
        check()
    msg = str(e.value)
    assert re.match(r'dataset check failed with \d+ problems?\n', msg), msg
    return msg


def ann(root, split):
    return osp.join(root, 'annotations', f'instances_{split}.json')
