"""The project behaves as an OpenMMLab project (issue 9, points 1-3).

* mmdet's and mmseg's own tools/train.py and tools/test.py (as installed in
  ``site-packages/<lib>/.mim/tools``) train and test a config that inherits a paper
  config, and test again with the config the Runner dumped into the work dir;
* ``load_from`` a checkpoint trained for other classes fine-tunes (non-strict, a
  warning naming the skipped classifier), as mmengine does;
* ``import lsnet_mm`` needs only torch and mmengine (LSNet builds with mmdet, mmseg and
  mmcv blocked).

(Weights-only reading and safe downloads are tested in tests/test_checkpoint/.)

The tiny runs use generated data (4 training images), 64 px inputs and 32-channel
necks and heads; the stock tools run as subprocesses of the installed package (no
PYTHONPATH).
"""
import importlib.util
import os
import os.path as osp
import re
import subprocess
import sys
import textwrap

import pytest
import torch

import lsnet_mm  # noqa: F401 (registers the modules, allow-lists checkpoint classes)
from product_helpers import ROOT, record_start_weights, run_log, tiny_ade, tiny_coco, tool

pytestmark = pytest.mark.usefixtures('one_thread')

DET_BASE = osp.join(ROOT, 'configs', 'retinanet_lsnet_t.py')
SEG_BASE = osp.join(ROOT, 'configs', 'fpn_lsnet_t_ade20k.py')
SHAPES = ('circle', 'square', 'triangle')

# A user's config on top of the RetinaNet paper config: tiny data, model and schedule.
DET_CONFIG = '''
_base_ = {base!r}
data_root = {root!r}
metainfo = dict(classes={classes!r})
scale = (64, 64)
model = dict(
    backbone=dict(init_cfg=None),
    neck=dict(out_channels=32),
    bbox_head=dict(num_classes={num_classes}, in_channels=32, feat_channels=32,
                   stacked_convs=1),
    test_cfg=dict(score_thr=0.0, nms_pre=100, max_per_img=20))
train_pipeline = [
    dict(type='lsnet_mm.CheckedLoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=scale, keep_ratio=True),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo,
                 ann_file='annotations/instances_train.json', data_prefix=dict(img='train/'),
                 pipeline=train_pipeline))
test_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo,
                 ann_file='annotations/instances_val.json', data_prefix=dict(img='val/'),
                 pipeline=test_pipeline))
test_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
val_dataloader = None
val_evaluator = None
val_cfg = None
train_cfg = dict(max_epochs=1)
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=2)]
default_hooks = dict(logger=dict(interval=1))
'''

# A user's config on top of the Semantic FPN ADE20K paper config.
SEG_CONFIG = '''
_base_ = {base!r}
data_root = {root!r}
crop_size = (64, 64)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(init_cfg=None),
    neck=dict(out_channels=32),
    decode_head=dict(in_channels=[32] * 4, channels=32))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=(128, 64), ratio_range=(1.0, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='lsnet_mm.AlignResize', scale=(128, 64), size_divisor=32),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root, pipeline=train_pipeline))
test_dataloader = dict(batch_size=1, num_workers=0, persistent_workers=False,
                       dataset=dict(data_root=data_root, pipeline=test_pipeline))
val_dataloader = None
val_evaluator = None
val_cfg = None
train_cfg = dict(max_iters=2)
param_scheduler = [dict(type='PolyLR', power=0.9, eta_min=1e-6, begin=0, end=2, by_epoch=False)]
default_hooks = dict(checkpoint=dict(interval=2), logger=dict(interval=1))
'''


def stock_tool(library, script):
    """The path of ``<library>/.mim/tools/<script>`` in the installed library."""
    pkg = osp.dirname(importlib.util.find_spec(library).origin)
    path = osp.join(pkg, '.mim', 'tools', script)
    assert osp.isfile(path), path
    return path


def clean_env():
    """The environment without PYTHONPATH: lsnet_mm must come from the installation."""
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    env['OMP_NUM_THREADS'] = '1'
    return env


def run(cmd, cwd, timeout=300):
    """Run ``cmd`` in ``cwd``; return its output, failing the test on a non-zero exit."""
    r = subprocess.run(cmd, cwd=cwd, env=clean_env(), capture_output=True, text=True,
                       timeout=timeout)
    out = r.stdout + r.stderr
    assert r.returncode == 0, f'{cmd} exited {r.returncode}:\n{out[-4000:]}'
    return out


def write_config(path, template, **kw):
    with open(path, 'w') as f:
        f.write(template.format(**kw))
    return str(path)


def assert_safe_checkpoints(work_dir, output, name):
    """The run used the config's SafeCheckpointHook and left one complete checkpoint."""
    from mmengine.config import Config
    # the runner's list of hooks (not only the config it prints)
    assert re.search(r'\(VERY_LOW\s*\)\s+SafeCheckpointHook', output)
    assert not re.search(r'\)\s+CheckpointHook\b', output)
    ckpt = osp.join(work_dir, name)
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        assert f.read().strip() == ckpt
    assert not [f for f in os.listdir(work_dir) if f.startswith('.tmp-')]
    assert 'state_dict' in torch.load(ckpt, map_location='cpu')
    (dumped,) = [f for f in os.listdir(work_dir) if f.endswith('.py')]
    dumped = osp.join(work_dir, dumped)
    assert Config.fromfile(dumped).default_hooks.checkpoint.type == 'lsnet_mm.SafeCheckpointHook'
    return ckpt, dumped


# ---------------------------------------------------------------- stock OpenMMLab tools

@pytest.fixture(scope='module')
def det_run(tmp_path_factory):
    """mmdet's own tools/train.py on a config inheriting configs/retinanet_lsnet_t.py."""
    tmp = tmp_path_factory.mktemp('stock_det')
    root = tiny_coco(str(tmp / 'data')) + '/'
    cfg = write_config(tmp / 'retina_tiny.py', DET_CONFIG, base=DET_BASE, root=root,
                       classes=SHAPES, num_classes=3)
    wd = str(tmp / 'work')
    out = run([sys.executable, stock_tool('mmdet', 'train.py'), cfg, '--work-dir', wd], tmp)
    return dict(tmp=tmp, root=root, cfg=cfg, wd=wd, out=out)


def test_stock_mmdet_train_and_test(det_run):
    tmp, wd = det_run['tmp'], det_run['wd']
    assert 'Epoch(train) [1][2/2]' in det_run['out']  # 4 images, batch 2: 2 iterations
    ckpt, dumped = assert_safe_checkpoints(wd, det_run['out'], 'epoch_1.pth')
    assert osp.basename(dumped) == 'retina_tiny.py'
    for config, name in ((det_run['cfg'], 'test_cfg'), (dumped, 'test_dumped')):
        out = run([sys.executable, stock_tool('mmdet', 'test.py'), config, ckpt,
                   '--work-dir', str(tmp / name)], tmp)
        assert 'Epoch(test) [1/1]' in out and 'coco/bbox_mAP: ' in out, out[-3000:]
        assert 'coco/bbox_mAP_50: ' in out


def test_stock_mmseg_train_and_test(tmp_path):
    root = tiny_ade(str(tmp_path / 'ade'))
    cfg = write_config(tmp_path / 'fpn_tiny.py', SEG_CONFIG, base=SEG_BASE, root=root)
    wd = str(tmp_path / 'work')
    out = run([sys.executable, stock_tool('mmseg', 'train.py'), cfg, '--work-dir', wd],
              tmp_path)
    assert 'Iter(train) [2/2]' in out
    ckpt, dumped = assert_safe_checkpoints(wd, out, 'iter_2.pth')
    assert osp.basename(dumped) == 'fpn_tiny.py'
    for config, name in ((cfg, 'test_cfg'), (dumped, 'test_dumped')):
        out = run([sys.executable, stock_tool('mmseg', 'test.py'), config, ckpt,
                   '--work-dir', str(tmp_path / name)], tmp_path)
        assert 'Iter(test) [2/2]' in out and 'mIoU: ' in out and 'aAcc: ' in out, out[-3000:]


# ---------------------------------------------------------------- fine-tuning

def test_load_from_other_classes_fine_tunes(det_run, tmp_path, monkeypatch):
    """tools/train.py: load_from the 3-class checkpoint of the stock run into a 2-class
    config trains, warns naming the skipped classifier, and starts from the
    checkpoint's backbone, neck and box regression weights."""
    ckpt = osp.join(det_run['wd'], 'epoch_1.pth')
    sd = torch.load(ckpt, map_location='cpu')['state_dict']
    cfg = write_config(tmp_path / 'retina_two.py', DET_CONFIG, base=DET_BASE,
                       root=det_run['root'], classes=SHAPES[:2], num_classes=2)
    train_tool = tool('train')
    start = record_start_weights(monkeypatch, train_tool)
    wd = str(tmp_path / 'work')
    model = train_tool.main([cfg, '--work-dir', wd, '--cfg-options', f'load_from={ckpt}',
                             'experiment_name=finetune', 'visualizer.name=finetune'])
    (loaded,) = start
    assert loaded['bbox_head.retina_cls.weight'].shape[0] == 2 * 9  # 2 classes x 9 anchors
    assert sd['bbox_head.retina_cls.weight'].shape[0] == 3 * 9
    same = [k for k in loaded if not k.startswith('bbox_head.retina_cls.')]
    assert any(k.startswith('backbone.') for k in same) and 'bbox_head.retina_reg.weight' in same
    for k in same:
        assert torch.equal(loaded[k], sd[k]), k
    # then it trained: 2 iterations, weights moved, a checkpoint of the 2-class model
    out = torch.load(osp.join(wd, 'epoch_1.pth'), map_location='cpu')
    assert out['meta']['iter'] == 2
    assert out['meta']['dataset_meta']['classes'] == SHAPES[:2]
    assert not torch.equal(model.state_dict()['neck.fpn_convs.0.conv.weight'],
                           sd['neck.fpn_convs.0.conv.weight'])
    log = run_log(wd)
    assert 'fine-tuning on other classes' in log
    assert ('bbox_head.retina_cls.weight (27, 32, 3, 3) in the checkpoint vs (18, 32, 3, 3) '
            'in the model (bbox_head.num_classes=2, the checkpoint implies num_classes=3)') in log


# ---------------------------------------------------------------- http checkpoints


# ---------------------------------------------------------------- optional libraries

BLOCKED_IMPORT = textwrap.dedent('''
    import sys
    for name in sys.argv[1:]:
        sys.modules[name] = None  # as if not installed: importing it raises ImportError
    import torch
    import lsnet_mm
    from mmengine.registry import HOOKS, MODELS
    model = MODELS.build(dict(type='LSNet', arch='t')).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 64))
        lsconv = lsnet_mm.LSConv(64)(torch.randn(1, 64, 8, 8))
    assert [o.shape[1] for o in outs] == [64, 128, 256, 384], [o.shape for o in outs]
    assert lsconv.shape == (1, 64, 8, 8)
    assert 'LSNetFPN' not in MODELS.module_dict and MODELS.get('LSNetFPN') is None
    assert HOOKS.get('lsnet_mm.SafeCheckpointHook') is not None
    loaded = sorted(m for m in sys.modules if m.split('.')[0] in sys.argv[1:]
                    and sys.modules[m] is not None)
    assert not loaded, loaded
    print('BUILT', type(model).__name__)
''')


@pytest.mark.parametrize('blocked', [('mmdet', 'mmseg'), ('mmdet', 'mmseg', 'mmcv')])
def test_import_without_mmdet_mmseg_mmcv(tmp_path, blocked):
    r = subprocess.run([sys.executable, '-c', BLOCKED_IMPORT, *blocked], cwd=str(tmp_path),
                       env=clean_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and 'BUILT LSNet' in r.stdout, r.stdout[-3000:] + r.stderr[-3000:]
