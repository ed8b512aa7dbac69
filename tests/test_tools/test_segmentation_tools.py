"""tools/train.py and tools/test.py with the segmentation configs on tiny generated
ADE20K-layout data: training then mmseg IoUMetric evaluation, checkpoint round trip,
resume, a released-format checkpoint through tools/test.py, SyncBN on CPU, and the
early errors (missing data or pretrained file, bad label values, class counts)."""
import glob
import json
import os
import os.path as osp
import shutil
import uuid

import cv2
import numpy as np
import pytest
import torch

import lsnet_mm  # noqa: F401
from lsnet_mm.datasets.demo.ade_scenes import DEMO_CLASSES, generate
from lsnet_mm.utils.errors import CheckpointError, ConfigError, DatasetError, SegLabelError
from product_helpers import ROOT, record_start_weights, run_log, tool
from released_checkpoints import make_mmseg030_checkpoint

DEMO = osp.join(ROOT, 'configs', 'demo', 'fpn_lsnet_t_demo.py')
FPN_T = osp.join(ROOT, 'configs', 'fpn_lsnet_t_ade20k.py')
CLASSES_OPT = '[' + ','.join(DEMO_CLASSES) + ']'  # a list for --cfg-options
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')

train_tool, test_tool = tool('train'), tool('test')


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('ade') / 'ADEChallengeData2016')
    generate(root, num_train=8, num_val=3, width=96, height=72, seed=1)
    return root


def data_opts(root):
    out = []
    for k in LOADERS:
        out += [f'{k}.num_workers=0', f'{k}.persistent_workers=False',
                f'{k}.dataset.data_root={root}']
    return out


def demo_opts(root, max_iters=24, ckpt_interval=12):
    """The demo config scaled to 96x72 images and 64x64 crops, a few iterations."""
    name = f's{uuid.uuid4().hex[:12]}'  # own logger, message hub and visualizer (scalars.json)
    return [f'experiment_name={name}', f'visualizer.name={name}', 'randomness.seed=0',
            f'train_cfg.max_iters={max_iters}', f'train_cfg.val_interval={max_iters}',
            f'default_hooks.checkpoint.interval={ckpt_interval}',
            'default_hooks.checkpoint.max_keep_ckpts=3', 'default_hooks.logger.interval=1',
            'param_scheduler.0.end=3', 'param_scheduler.1.begin=3',
            f'param_scheduler.1.end={max_iters}', 'model.data_preprocessor.size=(64,64)',
            'train_dataloader.dataset.pipeline.2.scale=(288,72)',
            'train_dataloader.dataset.pipeline.3.crop_size=(64,64)',
            'val_dataloader.dataset.pipeline.1.scale=(288,72)',
            'test_dataloader.dataset.pipeline.1.scale=(288,72)'] + data_opts(root)


def scalars(work_dir):
    (path,) = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def assert_seg_metrics(m):
    for k in ('aAcc', 'mIoU', 'mAcc'):
        assert isinstance(m[k], float) and 0.0 <= m[k] <= 100.0, (k, m)


@pytest.fixture(scope='module')
def trained(data, tmp_path_factory):
    wd = str(tmp_path_factory.mktemp('seg_train'))
    model = train_tool.main([DEMO, '--work-dir', wd, '--cfg-options', *demo_opts(data)])
    return wd, model


@pytest.mark.slow  # trains the demo model (module fixture) or a second run
def test_train_then_test_reports_miou_macc_aacc(data, trained, tmp_path):
    wd, model = trained
    assert osp.isfile(osp.join(wd, 'iter_12.pth')) and osp.isfile(osp.join(wd, 'iter_24.pth'))
    # SyncBN in the config, CPU single process: the Runner trained with plain BN
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules())
    assert type(model.decode_head.scale_heads[0][0].bn).__name__ == '_BatchNormXd'

    logged = scalars(wd)
    train_loss = [r['loss'] for r in logged if 'loss' in r]
    assert len(train_loss) == 24 and np.mean(train_loss[-4:]) < np.mean(train_loss[:4])
    (val,) = [r for r in logged if 'mIoU' in r]
    assert val['step'] == 24
    assert_seg_metrics(val)
    # it learned in 24 iterations: the best constant prediction (sky everywhere) scores
    # aAcc 33 and mIoU 5.5 on these 3 validation images; the model gets about 50 and 17
    assert val['aAcc'] > 40.0 and val['mIoU'] > 12.0, val

    # tools/test.py on the saved checkpoint reproduces the validation numbers
    ckpt = osp.join(wd, 'iter_24.pth')
    metrics = test_tool.main([DEMO, ckpt, '--work-dir', str(tmp_path / 'test'),
                              '--cfg-options', *demo_opts(data)])
    assert_seg_metrics(metrics)
    for k in ('aAcc', 'mIoU', 'mAcc'):
        assert metrics[k] == pytest.approx(val[k], abs=0.02), k
    with open(tmp_path / 'test' / 'metrics.json') as f:
        assert json.load(f)['mIoU'] == pytest.approx(metrics['mIoU'])


@pytest.mark.slow  # trains the demo model (module fixture) or a second run
def test_checkpoint_round_trip_and_resume(data, trained, tmp_path):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmengine.runner import load_checkpoint
    from mmseg.registry import MODELS
    wd, model = trained
    ckpt_path = osp.join(wd, 'iter_24.pth')
    init_default_scope('mmseg')
    cfg = Config.fromfile(DEMO)
    fresh = MODELS.build(cfg.model)
    ckpt = load_checkpoint(fresh, ckpt_path, map_location='cpu', strict=True)
    assert ckpt['meta']['iter'] == 24
    assert tuple(ckpt['meta']['dataset_meta']['classes']) == DEMO_CLASSES
    trained_sd, loaded_sd = model.state_dict(), fresh.state_dict()
    assert trained_sd.keys() == loaded_sd.keys()
    for k, v in trained_sd.items():
        assert torch.equal(v, loaded_sd[k]), k

    # resume from iteration 12 in a new work dir: continues at 13, with the optimizer
    # state restored (AdamW's step count reaches 24, not 12)
    wd2 = str(tmp_path / 'resumed')
    os.makedirs(wd2)
    shutil.copy(osp.join(wd, 'iter_12.pth'), osp.join(wd2, 'iter_12.pth'))
    train_tool.main([DEMO, '--work-dir', wd2, '--resume', osp.join(wd2, 'iter_12.pth'),
                     '--cfg-options', *demo_opts(data)])
    steps = [r['step'] for r in scalars(wd2) if 'loss' in r]
    assert steps == list(range(13, 25))
    resumed = torch.load(osp.join(wd2, 'iter_24.pth'), map_location='cpu', weights_only=True)
    assert resumed['meta']['iter'] == 24
    opt_steps = {float(s['step']) for s in resumed['optimizer']['state'].values()}
    assert opt_steps == {24.0}


@pytest.mark.slow  # trains the demo model (module fixture) or a second run
def test_dumped_config_keeps_the_users_checkpoint_hook(trained):
    """The config the runner dumps is the user's: SafeCheckpointHook because the config
    names it, with the --cfg-options given; nothing swapped in by tools/train.py."""
    from mmengine.config import Config
    wd, _ = trained
    dumped = Config.fromfile(osp.join(wd, osp.basename(DEMO)))
    written = Config.fromfile(DEMO)
    written.default_hooks.checkpoint.update(interval=12, max_keep_ckpts=3)  # demo_opts
    assert dumped.default_hooks.checkpoint == written.default_hooks.checkpoint
    assert dumped.default_hooks.checkpoint.type == 'lsnet_mm.SafeCheckpointHook'
    assert dumped.get('custom_hooks', []) == written.get('custom_hooks', [])


@pytest.mark.slow  # trains the demo model (module fixture) or a second run
def test_out_writes_label_maps(data, trained, tmp_path):
    """--out DIR (as mmseg's test.py): one PNG label map per test image, at the image's
    size, with the class indices shifted back by reduce_zero_label (1..6)."""
    wd, _ = trained
    out = str(tmp_path / 'pred')
    metrics = test_tool.main([DEMO, osp.join(wd, 'iter_24.pth'), '--out', out,
                              '--work-dir', str(tmp_path / 'wd'),
                              '--cfg-options', *demo_opts(data)])
    assert_seg_metrics(metrics)  # still evaluated
    images = sorted(glob.glob(osp.join(data, 'images', 'validation', '*.jpg')))
    names = sorted(os.listdir(out))
    assert names == [osp.splitext(osp.basename(p))[0] + '.png' for p in images]
    for name, img in zip(names, images):
        pred = cv2.imread(osp.join(out, name), cv2.IMREAD_UNCHANGED)
        assert pred.shape == cv2.imread(img).shape[:2]
        assert set(np.unique(pred)) <= set(range(1, len(DEMO_CLASSES) + 1))


@pytest.mark.slow  # trains the demo model (module fixture) or a second run
def test_load_from_other_classes_fine_tunes(data, tmp_path, monkeypatch):
    """load_from a 150-class ADE20K checkpoint into a 6-class config: trains (mmengine's
    non-strict loading), warns naming the classifier that is skipped, starts from the
    checkpoint's backbone, neck and the rest of the head."""
    ckpt = _released_ckpt(tmp_path)
    sd = torch.load(ckpt, map_location='cpu')['state_dict']
    start = record_start_weights(monkeypatch, train_tool)
    wd = str(tmp_path / 'ft')
    name = f's{uuid.uuid4().hex[:12]}'
    opts = [o for o in data_opts(data) if not o.startswith('val_')] + [
        f'train_dataloader.dataset.metainfo.classes={CLASSES_OPT}',
        f'experiment_name={name}', f'visualizer.name={name}', f'load_from={ckpt}',
        'model.backbone.init_cfg=None', 'model.decode_head.num_classes=6',
        'train_cfg.max_iters=2', 'val_cfg=None', 'val_dataloader=None', 'val_evaluator=None',
        'param_scheduler.0.end=2', 'default_hooks.logger.interval=1',
        'model.data_preprocessor.size=(64,64)', 'train_dataloader.batch_size=2',
        'train_dataloader.dataset.pipeline.2.scale=(128,96)',
        'train_dataloader.dataset.pipeline.3.crop_size=(64,64)']
    model = train_tool.main([FPN_T, '--work-dir', wd, '--cfg-options', *opts])
    assert torch.load(osp.join(wd, 'iter_2.pth'), map_location='cpu')['meta']['iter'] == 2
    (loaded,) = start
    assert loaded['decode_head.conv_seg.weight'].shape[0] == 6
    for k, v in loaded.items():
        if not k.startswith('decode_head.conv_seg.'):
            assert torch.equal(v, sd[k]), k  # everything else came from the checkpoint
    # trained: the weights moved away from the checkpoint's
    assert not torch.equal(model.state_dict()['neck.fpn_convs.0.conv.weight'],
                           sd['neck.fpn_convs.0.conv.weight'])
    log = run_log(wd)
    assert 'fine-tuning on other classes' in log
    assert 'decode_head.conv_seg.weight (150, 128, 1, 1) in the checkpoint' in log
    assert 'decode_head.num_classes=6' in log


def test_released_format_checkpoint_through_test_tool(data, tmp_path):
    """A 150-class mmseg 0.30 checkpoint evaluated with the real LSNet-T config (the
    paper's test resize) on the demo data, whose label maps use ADE20K's ids."""
    ckpt = str(tmp_path / 'lsnet_t_semfpn.pth')
    make_mmseg030_checkpoint(ckpt, 't')
    opts = data_opts(data) + ['test_dataloader.dataset.indices=2']
    metrics = test_tool.main([FPN_T, ckpt, '--work-dir', str(tmp_path / 'wd'),
                              '--cfg-options', *opts])
    assert_seg_metrics(metrics)


def test_missing_dataset_is_named_with_how_to_get_it(tmp_path):
    missing = str(tmp_path / 'nowhere' / 'ADEChallengeData2016')
    with pytest.raises(DatasetError) as e:
        train_tool.main([FPN_T, '--work-dir', str(tmp_path / 'wd'),
                         '--cfg-options', *data_opts(missing),
                         'model.backbone.init_cfg=None'])
    msg = str(e.value)
    assert missing in msg and 'ADEChallengeData2016.zip' in msg
    with pytest.raises(CheckpointError) as e:
        test_tool.main([DEMO, str(tmp_path / 'x.pth'), '--work-dir', str(tmp_path / 'wd')])
    assert 'x.pth' in str(e.value)  # the checkpoint is checked first
    torch.save(dict(state_dict=dict(w=torch.zeros(1))), tmp_path / 'x.pth')
    with pytest.raises(DatasetError) as e:
        test_tool.main([DEMO, str(tmp_path / 'x.pth'), '--work-dir', str(tmp_path / 'wd'),
                        '--cfg-options', *data_opts(missing)])
    assert missing in str(e.value) and 'lsnet_mm.datasets.demo.ade_scenes' in str(e.value)

    # the dataset itself (for runs that bypass the tools) says the same
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS
    init_default_scope('mmseg')
    with pytest.raises(DatasetError) as e:
        DATASETS.build(dict(type='lsnet_mm.CheckedADE20KDataset', data_root=missing,
                            data_prefix=dict(img_path='images/validation',
                                             seg_map_path='annotations/validation')))
    assert osp.join(missing, 'images/validation') in str(e.value)
    assert 'ADEChallengeData2016.zip' in str(e.value)


def test_missing_pretrained_file_is_named(data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no pretrained/ here
    with pytest.raises(CheckpointError) as e:
        train_tool.main([FPN_T, '--work-dir', str(tmp_path / 'wd'), '--cfg-options',
                         *data_opts(data), 'model.backbone.init_cfg.checkpoint=pretrained/x.pth'])
    msg = str(e.value)
    assert msg.startswith("model.backbone.init_cfg.checkpoint: checkpoint not found: "
                          "'pretrained/x.pth'") and 'docs/model_zoo.md' in msg, msg
    assert not osp.exists(tmp_path / 'wd')  # before the run starts


def _corrupt(root, split, value):
    prefix = 'train' if split == 'training' else 'val'
    path = osp.join(root, 'annotations', split, f'ADE_{prefix}_00000002.png')
    lab = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    lab[:] = value
    cv2.imwrite(path, lab)
    return path


def test_label_values_outside_the_classes_are_named(data, tmp_path):
    bad = str(tmp_path / 'ADEChallengeData2016')
    shutil.copytree(data, bad)
    train_png = _corrupt(bad, 'training', 200)  # ADE20K ids stop at 150
    val_png = _corrupt(bad, 'validation', 151)
    # training: the first batch holds every image of the tiny set
    opts = demo_opts(bad, max_iters=4, ckpt_interval=4) + ['train_dataloader.batch_size=8']
    with pytest.raises(SegLabelError) as e:
        train_tool.main([DEMO, '--work-dir', str(tmp_path / 'wd'), '--cfg-options', *opts])
    assert train_png in str(e.value) and '[200]' in str(e.value)
    # evaluation
    with pytest.raises(SegLabelError) as e:
        test_tool.main([FPN_T, _released_ckpt(tmp_path), '--work-dir', str(tmp_path / 'wd2'),
                        '--cfg-options', *data_opts(bad)])
    assert val_png in str(e.value) and '[151]' in str(e.value)


def _released_ckpt(tmp_path):
    path = str(tmp_path / 'released_t.pth')
    if not osp.isfile(path):
        make_mmseg030_checkpoint(path, 't')
    return path


def test_class_count_mismatches_are_refused(data, tmp_path):
    # config (150 classes) vs checkpoint: the demo data seen as 6 ADE20K classes
    opts = data_opts(data) + [f'{k}.dataset.metainfo.classes={CLASSES_OPT}' for k in LOADERS]
    with pytest.raises(CheckpointError) as e:
        test_tool.main([FPN_T, _released_ckpt(tmp_path), '--work-dir', str(tmp_path / 'wd'),
                        '--cfg-options', *opts, 'model.decode_head.num_classes=6'])
    msg = str(e.value)
    assert 'different number of classes' in msg and 'num_classes=150' in msg
    # config vs dataset
    with pytest.raises(ConfigError) as e:
        train_tool.main([DEMO, '--work-dir', str(tmp_path / 'wd'), '--cfg-options',
                         *demo_opts(data), 'model.decode_head.num_classes=150'])
    msg = str(e.value)
    assert '6 classes' in msg and 'model.decode_head.num_classes=150' in msg


def test_sync_bn_falls_back_to_bn_in_cpu_process_group(tmp_path):
    """A CPU process group (torchrun + gloo, as tools/train.py sets up without CUDA):
    DDP refuses a CPU module with SyncBN; the configs' CPUFallbackDDP reverts it to BN
    (sharing the parameters) and wraps without device ids, as the Runner builds it."""
    import torch.distributed as dist
    from mmengine.config import Config
    from mmengine.model import MMDistributedDataParallel
    from mmengine.registry import MODEL_WRAPPERS
    assert not dist.is_initialized()
    dist.init_process_group('gloo', init_method=f'file://{tmp_path / "pg"}', rank=0,
                            world_size=1)
    try:
        def net():
            return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.SyncBatchNorm(8))
        with pytest.raises(ValueError, match='SyncBatchNorm layers only work with GPU'):
            MMDistributedDataParallel(module=net(), device_ids=None)
        module = net()
        weight = module[1].weight
        wrapper_cfg = Config.fromfile(FPN_T).model_wrapper_cfg
        # what Runner.wrap_model does in a distributed run
        ddp = MODEL_WRAPPERS.build(wrapper_cfg, default_args=dict(module=module, device_ids=[0]))
        assert type(ddp).__name__ == 'CPUFallbackDDP' and ddp.device_ids is None
        assert not isinstance(module[1], torch.nn.SyncBatchNorm) and module[1].weight is weight
        x = torch.randn(2, 3, 8, 8)
        ddp(x).sum().backward()
        assert weight.grad is not None and int(module[1].num_batches_tracked) == 1
    finally:
        dist.destroy_process_group()
