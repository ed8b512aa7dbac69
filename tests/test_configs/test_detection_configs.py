"""The six COCO detection configs: recipe values (the released ImageNet weights by URL),
model build, strides and one forward pass."""
import copy
import functools
import os.path as osp

import pytest
import torch

import lsnet_mm  # noqa: F401

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
RELEASE = 'https://huggingface.co/jameslahm/lsnet/resolve/main/'

ARCH_DIMS = {'t': [64, 128, 256, 384], 's': [96, 192, 320, 448], 'b': [128, 256, 384, 512]}
CONFIGS = [f'{det}_lsnet_{a}' for det in ('retinanet', 'mask_rcnn') for a in 'tsb']


pytestmark = pytest.mark.usefixtures('one_thread')


@functools.lru_cache(maxsize=None)
def _load(name):
    from mmengine.config import Config
    return Config.fromfile(osp.join(ROOT, 'configs', f'{name}.py'))


def load_cfg(name):
    """The config (parsed once per module; a copy the test may change)."""
    return copy.deepcopy(_load(name))


@pytest.mark.parametrize('name', CONFIGS)
def test_recipe(name):
    cfg = load_cfg(name)
    arch = name[-1]
    bb, neck = cfg.model.backbone, cfg.model.neck
    assert bb.type == 'LSNet' and bb.arch == arch and bb.norm_eval
    # the authors' ImageNet checkpoint, by its release URL (downloaded on first use)
    assert bb.init_cfg == dict(type='Pretrained', checkpoint=f'{RELEASE}lsnet_{arch}.pth')
    assert neck.type == 'LSNetFPN' and neck.in_channels == ARCH_DIMS[arch]
    assert neck.start_level == 0 and neck.num_outs == 5
    if name.startswith('retinanet'):
        assert neck.add_extra_convs == 'on_input' and neck.get('num_extra_trans_convs', 0) == 0
    else:
        assert neck.num_extra_trans_convs == 1
    assert 'lsnet_mm' in cfg.custom_imports.imports and not cfg.custom_imports.allow_failed_imports
    opt = cfg.optim_wrapper
    assert opt.optimizer.type == 'AdamW' and opt.optimizer.lr == 1e-4
    assert opt.optimizer.weight_decay == 0.05 and tuple(opt.optimizer.betas) == (0.9, 0.999)
    assert opt.paramwise_cfg.custom_keys['attention_biases'] == dict(decay_mult=0.0)
    warm, steps = cfg.param_scheduler
    assert (warm.type, warm.start_factor, warm.by_epoch, warm.end) == \
        ('LinearLR', 0.001, False, 500)
    assert steps.type == 'MultiStepLR' and steps.milestones == [8, 11]
    assert cfg.train_cfg.max_epochs == 12
    assert cfg.train_dataloader.batch_size == 2 and cfg.auto_scale_lr.base_batch_size == 16
    assert cfg.auto_scale_lr.enable is False  # --auto-scale-lr turns it on
    # warm-up counted in optimizer steps, also with optim_wrapper.accumulative_counts
    assert cfg.default_hooks.param_scheduler.type == 'lsnet_mm.AccumulationParamSchedulerHook'
    assert cfg.train_dataloader.dataset.data_root == 'data/coco/'
    assert cfg.train_dataloader.dataset.ann_file == 'annotations/instances_train2017.json'
    assert cfg.test_evaluator.type == 'CocoMetric'
    want = ['bbox'] if name.startswith('retinanet') else ['bbox', 'segm']
    assert list(cfg.test_evaluator.metric if isinstance(cfg.test_evaluator.metric, list)
                else [cfg.test_evaluator.metric]) == want
    # what the project adds is named in the config, nothing is swapped in by the tools
    assert cfg.default_hooks.checkpoint.type == 'lsnet_mm.SafeCheckpointHook'
    assert cfg.default_hooks.checkpoint.interval == 1
    assert cfg.train_dataloader.dataset.pipeline[0].type == 'lsnet_mm.CheckedLoadImageFromFile'
    # mmdet's DetInferencer looks for LoadImageFromFile in the test pipeline
    for key in ('val_dataloader', 'test_dataloader'):
        assert cfg[key].dataset.pipeline[0].type == 'LoadImageFromFile', key


def _sample(h, w):
    from mmdet.structures import DetDataSample
    meta = dict(img_id=0, img_shape=(h, w), ori_shape=(h, w), scale_factor=(1.0, 1.0),
                pad_shape=(h, w), batch_input_shape=(h, w))
    return DetDataSample(metainfo=meta)


@pytest.mark.parametrize('name', CONFIGS)
def test_build_and_forward(name):
    from mmengine.registry import MODELS, init_default_scope
    cfg = load_cfg(name)
    cfg.model.backbone.init_cfg = None  # no pretrained file in tests
    if name.startswith('retinanet'):  # fewer candidates from the untrained heads: faster
        cfg.model.test_cfg.update(nms_pre=100, max_per_img=10)
    else:
        cfg.model.test_cfg.rpn.update(nms_pre=100, max_per_img=20)
        cfg.model.test_cfg.rcnn.max_per_img = 5
    init_default_scope('mmdet')
    model = MODELS.build(cfg.model).eval()
    h, w = 128, 192
    with torch.no_grad():
        feats = model.extract_feat(torch.rand(1, 3, h, w))
    strides = [h // f.shape[-2] for f in feats]
    assert all(f.shape[1] == 256 for f in feats)
    if name.startswith('retinanet'):
        assert strides == [8, 16, 32, 64, 128]
        assert list(model.bbox_head.prior_generator.strides) == [(s, s) for s in strides]
    else:
        assert strides == [4, 8, 16, 32, 64]
        assert list(model.rpn_head.prior_generator.strides) == [(s, s) for s in strides]
        assert list(model.roi_head.bbox_roi_extractor.featmap_strides) == strides[:4]
        assert list(model.roi_head.mask_roi_extractor.featmap_strides) == strides[:4]
    data = dict(inputs=[torch.randint(0, 256, (3, h, w), dtype=torch.uint8)],
                data_samples=[_sample(h, w)])
    with torch.no_grad():
        out = model.test_step(data)
    pred = out[0].pred_instances
    assert pred.bboxes.ndim == 2 and pred.bboxes.shape[1] == 4
    assert len(pred.scores) == len(pred.labels) == len(pred.bboxes)
    if name.startswith('mask_rcnn'):
        assert pred.masks.shape[1:] == (h, w)


def test_attention_biases_get_no_weight_decay():
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import MODELS, init_default_scope
    cfg = load_cfg('retinanet_lsnet_t')
    cfg.model.backbone.init_cfg = None
    init_default_scope('mmdet')
    model = MODELS.build(cfg.model)
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    names = {id(p): n for n, p in model.named_parameters()}
    decay = {names[id(p)]: g['weight_decay'] for g in wrapper.optimizer.param_groups
             for p in g['params']}
    biases = [n for n in decay if n.endswith('attention_biases')]
    assert len(biases) == 5  # the attention (odd) blocks of stage 4
    assert all(decay[n] == 0.0 for n in biases)
    assert decay['backbone.patch_embed.0.c.weight'] == 0.05
    assert decay['bbox_head.retina_cls.weight'] == 0.05
