"""The Semantic FPN-LSNet ADE20K configs: the paper's recipe (the released ImageNet weights
by URL), and every config builds and runs a forward pass (no pretrained file needed:
init_cfg=None)."""
import copy
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

import lsnet_mm  # noqa: F401

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
RELEASE = 'https://huggingface.co/jameslahm/lsnet/resolve/main/'
ARCHS = dict(t=[64, 128, 256, 384], s=[96, 192, 320, 448], b=[128, 256, 384, 512])

pytestmark = pytest.mark.usefixtures('one_thread')


PARSED = {}


def load(arch):
    """The config of an arch (parsed once per module; a copy the test may change)."""
    if arch not in PARSED:
        PARSED[arch] = Config.fromfile(osp.join(ROOT, 'configs', f'fpn_lsnet_{arch}_ade20k.py'))
    return copy.deepcopy(PARSED[arch])


@pytest.mark.parametrize('arch', list(ARCHS))
def test_recipe(arch):
    cfg = load(arch)
    assert cfg.default_scope == 'mmseg'
    assert cfg.custom_imports == dict(imports=['lsnet_mm'], allow_failed_imports=False)
    m = cfg.model
    assert m.type == 'EncoderDecoder'
    assert m.backbone == dict(type='LSNet', arch=arch, out_indices=(0, 1, 2, 3), norm_eval=True,
                              init_cfg=dict(type='Pretrained',
                                            checkpoint=f'{RELEASE}lsnet_{arch}.pth'))
    assert m.neck == dict(type='LSNetFPN', in_channels=ARCHS[arch], out_channels=256, num_outs=4)
    h = m.decode_head
    assert (h.type, h.channels, h.dropout_ratio, h.num_classes) == ('FPNHead', 128, 0.1, 150)
    assert h.feature_strides == [4, 8, 16, 32] and h.in_channels == [256] * 4
    assert h.norm_cfg.type == 'SyncBN'
    assert m.data_preprocessor.size == (512, 512)
    # data: ADE20K in mmseg's layout, 150 classes with reduce_zero_label
    ds = cfg.train_dataloader.dataset
    assert ds.type == 'lsnet_mm.CheckedADE20KDataset'
    assert ds.data_root == 'data/ade/ADEChallengeData2016'
    assert ds.data_prefix == dict(img_path='images/training', seg_map_path='annotations/training')
    assert cfg.val_dataloader.dataset.data_prefix.img_path == 'images/validation'
    steps = {s['type']: s for s in ds.pipeline}
    assert steps['LoadAnnotations']['reduce_zero_label'] is True
    assert steps['RandomResize']['scale'] == (2048, 512)
    assert steps['RandomResize']['ratio_range'] == (0.5, 2.0)
    assert steps['RandomCrop']['crop_size'] == (512, 512)
    assert steps['RandomFlip']['prob'] == 0.5 and 'PhotoMetricDistortion' in steps
    # schedule: batch 4 per GPU x 8 = 32, AdamW 2e-4 / 1e-4, poly 0.9 to 1e-6, 40k iters
    assert cfg.train_dataloader.batch_size == 4 and cfg.auto_scale_lr.base_batch_size == 32
    assert cfg.auto_scale_lr.enable is False  # --auto-scale-lr turns it on
    opt = cfg.optim_wrapper.optimizer
    assert (opt.type, opt.lr, opt.weight_decay) == ('AdamW', 2e-4, 1e-4)
    (poly,) = cfg.param_scheduler
    assert (poly.type, poly.power, poly.eta_min, poly.end, poly.by_epoch) == \
        ('PolyLR', 0.9, 1e-6, 40000, False)
    assert cfg.train_cfg.max_iters == 40000 and cfg.train_cfg.type == 'IterBasedTrainLoop'
    assert cfg.val_evaluator.type == 'IoUMetric' and cfg.val_evaluator.iou_metrics == ['mIoU']
    assert cfg.model_wrapper_cfg.type == 'lsnet_mm.CPUFallbackDDP'
    hook = cfg.default_hooks.checkpoint
    assert (hook.type, hook.by_epoch, hook.interval) == ('lsnet_mm.SafeCheckpointHook', False,
                                                         4000)
    # PolyLR counted in optimizer steps, also with optim_wrapper.accumulative_counts
    assert cfg.default_hooks.param_scheduler.type == 'lsnet_mm.AccumulationParamSchedulerHook'
    assert cfg.test_dataloader.dataset.pipeline[0].type == 'LoadImageFromFile'


@pytest.mark.parametrize('arch', list(ARCHS))
def test_builds_and_runs_forward(arch):
    from mmseg.registry import MODELS
    from mmseg.structures import SegDataSample
    init_default_scope('mmseg')
    cfg = load(arch)
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    model.init_weights()
    assert type(model.backbone).__name__ == 'LSNet' and model.backbone.arch == arch
    assert type(model.neck).__name__ == 'LSNetFPN'
    assert isinstance(model.decode_head.scale_heads[0][0].bn, torch.nn.SyncBatchNorm)
    model.eval()
    x = torch.randn(1, 3, 128, 160)
    with torch.no_grad():
        feats = model.extract_feat(x)
        assert [f.shape[-2:] for f in feats] == [(16, 20), (8, 10), (4, 5), (2, 3)]
        logits = model(x, mode='tensor')
        assert logits.shape == (1, 150, 16, 20)  # stride 8
        sample = SegDataSample(metainfo=dict(img_shape=(128, 160), ori_shape=(100, 125),
                                             pad_shape=(128, 160)))
        (pred,) = model(x, [sample], mode='predict')
    assert pred.pred_sem_seg.data.shape == (1, 100, 125)  # back to the original size
    assert int(pred.pred_sem_seg.data.max()) < 150
    assert torch.isfinite(logits).all()


def test_sync_bn_head_trains_on_cpu_without_distributed():
    """The head's SyncBN runs a training step on CPU outside a process group (PyTorch
    falls back to batch norm; the Runner also reverts it, see test_segmentation_tools)."""
    from mmengine.structures import PixelData
    from mmseg.registry import MODELS
    from mmseg.structures import SegDataSample
    init_default_scope('mmseg')
    cfg = load('t')
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    model.train()
    x = torch.randn(2, 3, 64, 64)
    samples = []
    for _ in range(2):
        s = SegDataSample(metainfo=dict(img_shape=(64, 64), ori_shape=(64, 64),
                                        pad_shape=(64, 64)))
        s.gt_sem_seg = PixelData(data=torch.randint(0, 150, (1, 64, 64)))
        samples.append(s)
    losses = model(x, samples, mode='loss')
    loss = losses['decode.loss_ce']
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    bn = model.decode_head.scale_heads[0][0].bn
    assert int(bn.num_batches_tracked) == 1 and bn.weight.grad is not None
