"""Shared helpers of the inference / plotting / robustness / resume tests: tiny demo
data sets, fast config overrides and checkpoints without training."""
import importlib.util
import os
import os.path as osp
import uuid

import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
RETINA = osp.join(ROOT, 'configs', 'demo', 'retinanet_lsnet_t_demo.py')
MASK = osp.join(ROOT, 'configs', 'demo', 'mask_rcnn_lsnet_t_demo.py')
SEG = osp.join(ROOT, 'configs', 'demo', 'fpn_lsnet_t_demo.py')


def tool(name):
    """tools/NAME.py as a module (its main() takes an argv list)."""
    spec = importlib.util.spec_from_file_location(f'lsnet_product_tool_{name}',
                                                  osp.join(ROOT, 'tools', f'{name}.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def tiny_coco(root, num_train=4, num_val=2, size=96):
    from lsnet_mm.detection import make_demo_coco
    make_demo_coco(root, num_train=num_train, num_val=num_val, size=size, min_radius=12,
                   max_radius=24)
    return root


def tiny_ade(root, num_train=4, num_val=2, width=64, height=48):
    from lsnet_mm.datasets.demo_ade import generate
    generate(root, num_train=num_train, num_val=num_val, width=width, height=height)
    return root


def det_opts(root, max_epochs=1, batch=2, scale=96, val=False):
    """--cfg-options for a fast detection run on tiny_coco data (2 iterations/epoch)."""
    # unique names: mmengine keeps one visualizer per name in the process, and a second
    # run under the config's name 'visualizer' would log into the first run's folder
    tag = uuid.uuid4().hex[:12]
    out = [f'experiment_name=t{tag}', f'visualizer.name=v{tag}',
           f'train_cfg.max_epochs={max_epochs}',
           f'train_cfg.val_interval={max_epochs if val else 1000}',
           'default_hooks.checkpoint.interval=1', 'default_hooks.logger.interval=1',
           'param_scheduler.0.end=2', f'train_dataloader.batch_size={batch}',
           f'train_dataloader.dataset.pipeline.2.scale=({scale},{scale})',
           f'val_dataloader.dataset.pipeline.1.scale=({scale},{scale})',
           f'test_dataloader.dataset.pipeline.1.scale=({scale},{scale})']
    for k in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        out += [f'{k}.num_workers=0', f'{k}.persistent_workers=False',
                f'{k}.dataset.data_root={root}/']
    out += [f'{k}.ann_file={root}/annotations/instances_val.json'
            for k in ('val_evaluator', 'test_evaluator')]
    if not val:  # the epoch-based loop would validate after the last epoch
        out = [o for o in out if not o.startswith(('val_dataloader', 'val_evaluator'))]
        out += ['val_cfg=None', 'val_dataloader=None', 'val_evaluator=None']
    return out


def seg_opts(root, max_iters=2, crop=64, val=False):
    """--cfg-options for a fast segmentation run on tiny_ade data."""
    tag = uuid.uuid4().hex[:12]
    out = [f'experiment_name=t{tag}', f'visualizer.name=v{tag}',
           f'train_cfg.max_iters={max_iters}',
           f'train_cfg.val_interval={max_iters if val else 1000}',
           f'default_hooks.checkpoint.interval={max_iters}', 'default_hooks.logger.interval=1',
           f'model.data_preprocessor.size=({crop},{crop})',
           f'train_dataloader.dataset.pipeline.3.crop_size=({crop},{crop})',
           'train_dataloader.batch_size=2',
           'train_dataloader.dataset.pipeline.2.scale=(128,96)',
           'val_dataloader.dataset.pipeline.1.scale=(128,96)',
           'test_dataloader.dataset.pipeline.1.scale=(128,96)',
           'param_scheduler.0.end=1', 'param_scheduler.1.begin=1',
           f'param_scheduler.1.end={max(2, max_iters)}']
    for k in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        out += [f'{k}.num_workers=0', f'{k}.persistent_workers=False',
                f'{k}.dataset.data_root={root}']
    return out


def random_checkpoint(config, path, cfg_options=None):
    """Save a checkpoint of the config's model at its initial weights, with the
    dataset classes in its meta (as a training checkpoint has them)."""
    import lsnet_mm  # noqa: F401
    import lsnet_mm.detection  # noqa: F401
    from mmengine.config import Config
    from lsnet_mm.inference import build_model_from_cfg

    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    torch.manual_seed(0)
    model, _ = build_model_from_cfg(cfg)
    model.init_weights()
    meta = dict(dataset_meta=dict(classes=tuple(cfg.metainfo['classes'])))
    os.makedirs(osp.dirname(path) or '.', exist_ok=True)
    torch.save(dict(state_dict=model.state_dict(), meta=meta), path)
    return path


_CACHE = {}


def cached(key, make):
    """Compute once per test session (random checkpoints shared by the test files)."""
    if key not in _CACHE:
        _CACHE[key] = make()
    return _CACHE[key]


def session_dir():
    """A temporary folder for the whole session, removed at exit."""
    import atexit
    import shutil
    import tempfile

    def make():
        d = tempfile.mkdtemp(prefix='lsnet_product_')
        atexit.register(shutil.rmtree, d, True)
        return d
    return cached('session_dir', make)


def det_checkpoint():
    """Mask R-CNN demo model at its initial weights (boxes, scores and masks)."""
    return cached('det_ckpt', lambda: random_checkpoint(
        MASK, osp.join(session_dir(), 'mask_rcnn_init.pth')))


def seg_checkpoint():
    return cached('seg_ckpt', lambda: random_checkpoint(
        SEG, osp.join(session_dir(), 'fpn_init.pth')))


# test-time sizes that keep the CPU tests fast
DET_INFER_OPTS = ['test_dataloader.dataset.pipeline.1.scale=(128,128)',
                  'model.test_cfg.rcnn.max_per_img=5']
SEG_INFER_OPTS = ['test_dataloader.dataset.pipeline.1.scale=(128,96)']
