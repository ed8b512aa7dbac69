"""Shared helpers of the tool / inference / plotting / robustness / resume tests: tiny
demo data sets, fast config overrides, checkpoints without training, run logs and a hook
that records the weights a training run starts from."""
import glob
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
    from lsnet_mm.datasets.demo.coco_shapes import make_demo_coco
    make_demo_coco(root, num_train=num_train, num_val=num_val, size=size, min_radius=12,
                   max_radius=24)
    return root


def tiny_ade(root, num_train=4, num_val=2, width=64, height=48):
    from lsnet_mm.datasets.demo.ade_scenes import generate
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


def random_checkpoint(config, path, cfg_options=None, seed=0, init_weights=True):
    """Save a checkpoint of a config's model at random initial weights.

    The model is built in the config's registry (its ``default_scope``) with the
    backbone's ``init_cfg`` set to None (no pretrained file is read), optionally
    initialised with ``init_weights()``, and saved as a training run saves it:
    ``state_dict`` and ``meta.dataset_meta`` (classes and palette of the config's
    test dataset).

    Args:
        config (str): Config file.
        path (str): Where to write the checkpoint.
        cfg_options (dict, optional): Settings merged into the config first.
        seed (int): Torch seed for the initial weights. Defaults to 0.
        init_weights (bool): Apply the model's ``init_weights()`` (mmdet's heads then
            start with near-equal scores); otherwise PyTorch's default initialisation,
            whose predictions differ from box to box. Defaults to True.

    Returns:
        str: ``path``.
    """
    import copy

    from mmengine.config import Config
    from mmengine.registry import DATASETS, MODELS, init_default_scope

    cfg = Config.fromfile(config)  # custom_imports: registers lsnet_mm
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    init_default_scope(cfg.get('default_scope'))
    cfg.model.backbone.init_cfg = None
    torch.manual_seed(seed)
    model = MODELS.build(cfg.model)
    if init_weights:
        model.init_weights()
    # the classes and palette a training run records: the test dataset's metainfo
    dataset_cfg = copy.deepcopy(cfg.test_dataloader.dataset)
    dataset_cfg['lazy_init'] = True
    metainfo = DATASETS.build(dataset_cfg).metainfo
    meta = dict(dataset_meta={k: metainfo[k] for k in ('classes', 'palette') if k in metainfo})
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


def run_log(work_dir):
    """The text of the newest run's log file in ``work_dir`` (WORK_DIR/STAMP/STAMP.log).

    Args:
        work_dir (str): A work dir written by mmengine's Runner.

    Returns:
        str: The log's content.
    """
    logs = sorted(glob.glob(osp.join(work_dir, '*', '*.log')))
    assert logs, f'no run log in {work_dir}'
    with open(logs[-1]) as f:
        return f.read()


_START_WEIGHTS = []  # state dicts recorded by the hook below, one per training run


def _start_weights_hook():
    """Register (once) the hook that records the model's weights in ``before_train``."""
    from mmengine.hooks import Hook
    from mmengine.registry import HOOKS
    name = 'LSNetTestStartWeightsHook'
    if HOOKS.get(name) is None:
        class _Record(Hook):
            def before_train(self, runner):
                model = getattr(runner.model, 'module', runner.model)
                _START_WEIGHTS.append({k: v.detach().clone()
                                       for k, v in model.state_dict().items()})

        HOOKS.register_module(name=name, module=_Record)
    return name


def record_start_weights(monkeypatch, train_tool):
    """Make ``train_tool.main`` record the weights each training run starts from.

    The hook runs in ``before_train``: after the runner has loaded ``load_from`` (or
    resumed), before the first step.

    Args:
        monkeypatch (pytest.MonkeyPatch): The test's monkeypatch fixture.
        train_tool (module): tools/train.py as loaded by :func:`tool`.

    Returns:
        list: Filled with one state dict per training run started.
    """
    hook, build_cfg = _start_weights_hook(), train_tool.build_cfg
    _START_WEIGHTS.clear()

    def build_cfg_with_record(args):
        cfg = build_cfg(args)
        cfg.custom_hooks = list(cfg.get('custom_hooks') or []) + [dict(type=hook)]
        return cfg

    monkeypatch.setattr(train_tool, 'build_cfg', build_cfg_with_record)
    return _START_WEIGHTS
