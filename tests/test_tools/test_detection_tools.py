"""tools/train.py and tools/test.py on tiny generated COCO data: training then COCO
evaluation for both detectors, --out / --show-dir, the dumped config, save/resume, a
2-process gloo run, strict checkpoints for tools/test.py and --resume, and the early
errors."""
import argparse
import glob
import json
import os
import os.path as osp
import re
import shutil
import subprocess
import sys
import uuid

import cv2
import pytest
import torch

import lsnet_mm  # noqa: F401
from lsnet_mm.datasets.demo.coco_shapes import make_demo_coco
from lsnet_mm.utils.errors import CheckpointError, ConfigError, DatasetError, ImageDecodeError
from product_helpers import MASK, RETINA, ROOT, record_start_weights, run_log, tool

train_tool, test_tool = tool('train'), tool('test')


pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('shapes'))
    make_demo_coco(root, num_train=4, num_val=2, size=96, min_radius=12, max_radius=24)
    return root


def opts(root, max_epochs=1, batch=2, workers=0, score_thr=None):
    """cfg-options for a fast run on the tiny data set (96 px images, 2 iterations/epoch).
    ``score_thr`` ('retinanet' or 'mask_rcnn'): keep every detection, so that a model
    trained for two iterations still yields COCO numbers (mmdet reports nothing when
    no box passes the default 0.05)."""
    run = uuid.uuid4().hex[:12]  # fresh mmengine logger/message hub/visualizer per run
    out = [f'experiment_name=t{run}', f'visualizer.name=v{run}',
           f'train_cfg.max_epochs={max_epochs}', f'train_cfg.val_interval={max_epochs}',
           'default_hooks.checkpoint.interval=1', 'default_hooks.checkpoint.max_keep_ckpts=-1',
           'default_hooks.logger.interval=1',
           'param_scheduler.0.end=2', f'train_dataloader.batch_size={batch}',
           'train_dataloader.dataset.pipeline.2.scale=(96,96)',
           'val_dataloader.dataset.pipeline.1.scale=(96,96)',
           'test_dataloader.dataset.pipeline.1.scale=(96,96)']
    for k in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        out += [f'{k}.num_workers={workers}', f'{k}.persistent_workers={workers > 0}',
                f'{k}.dataset.data_root={root}/']
    out += [f'{k}.ann_file={root}/annotations/instances_val.json'
            for k in ('val_evaluator', 'test_evaluator')]
    if score_thr == 'retinanet':
        out += ['model.test_cfg.score_thr=0.0']
    elif score_thr == 'mask_rcnn':
        out += ['model.test_cfg.rcnn.score_thr=0.0']
    return out


def assert_coco_metrics(metrics, kinds):
    for kind in kinds:
        for suffix in ('mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l'):
            v = metrics[f'coco/{kind}_{suffix}']
            assert isinstance(v, float) and (0.0 <= v <= 1.0 or v == -1.0), (kind, suffix, v)


@pytest.fixture(scope='module')
def trained(data, tmp_path_factory):
    """Each detector trained for one epoch (2 iterations) through tools/train.py."""
    out = {}
    for name, cfg in (('retinanet', RETINA), ('mask_rcnn', MASK)):
        wd = str(tmp_path_factory.mktemp(name))
        train_tool.main([cfg, '--work-dir', wd, '--cfg-options', *opts(data)])
        out[name] = (cfg, wd, osp.join(wd, 'epoch_1.pth'))
    return out


@pytest.mark.parametrize('name,kinds', [('retinanet', ['bbox']), ('mask_rcnn', ['bbox', 'segm'])])
def test_train_then_test(data, trained, tmp_path, name, kinds):
    cfg, wd, ckpt = trained[name]
    assert osp.isfile(ckpt)
    with open(osp.join(wd, 'last_checkpoint')) as f:
        assert f.read().strip() == ckpt
    out = str(tmp_path / 'preds.pkl')
    metrics = test_tool.main([cfg, ckpt, '--work-dir', str(tmp_path), '--out', out,
                              '--cfg-options', *opts(data, score_thr=name)])
    assert_coco_metrics(metrics, kinds)
    with open(tmp_path / 'metrics.json') as f:
        assert json.load(f)['coco/bbox_mAP'] == metrics['coco/bbox_mAP']
    from mmengine.fileio import load
    preds = load(out)
    assert len(preds) == 2 and {p['img_id'] for p in preds} == {1, 2}
    inst = preds[0]['pred_instances']
    assert inst['bboxes'].shape[1] == 4 and len(inst['scores']) == len(inst['labels'])
    if 'segm' in kinds:
        assert len(inst['masks']) == len(inst['bboxes'])  # RLE-encoded masks
        assert all('counts' in m for m in inst['masks'])


def test_checkpoint_is_weights_only_loadable(trained):
    """Training checkpoints (message hub, numpy buffers, config) load with torch's
    default weights-only unpickler through the lsnet_mm allow-list."""
    _, _, ckpt = trained['retinanet']
    assert torch.load.__module__ == 'torch.serialization'  # nobody patched torch.load
    c = torch.load(ckpt, map_location='cpu')  # weights_only=True is the default on torch>=2.6
    assert {'state_dict', 'optimizer', 'message_hub', 'meta'} <= set(c)
    assert c['meta']['epoch'] == 1 and c['meta']['iter'] == 2
    assert c['meta']['dataset_meta']['classes'] == ('circle', 'square', 'triangle')


def test_show_dir_saves_pictures(data, trained, tmp_path):
    """--show-dir (as mmdet's test.py): one picture per test image, under the run's
    timestamped folder of the work dir."""
    cfg, _, ckpt = trained['retinanet']
    wd = str(tmp_path / 'wd')
    test_tool.main([cfg, ckpt, '--work-dir', wd, '--show-dir', 'vis',
                    '--cfg-options', *opts(data, score_thr='retinanet')])
    pictures = sorted(glob.glob(osp.join(wd, '*', 'vis', '*.png')))
    assert [osp.basename(p) for p in pictures] == ['000000.png', '000001.png']
    # the 96 px test image twice: ground truth (left) next to the prediction (right)
    assert cv2.imread(pictures[0]).shape == (96, 192, 3)


def _parse_opts(options):
    from mmengine.config import DictAction
    p = argparse.ArgumentParser()
    p.add_argument('--cfg-options', nargs='+', action=DictAction)
    return p.parse_args(['--cfg-options', *options]).cfg_options


@pytest.mark.parametrize('name', ['retinanet', 'mask_rcnn'])
def test_dumped_config_is_what_the_user_wrote(data, trained, name):
    """The config the runner dumps into the work dir is the user's config with the
    --cfg-options merged: the checkpoint hook is the SafeCheckpointHook the config
    names, nothing is swapped in behind the user's back; it builds again as is."""
    from mmengine.config import Config
    cfg, wd, _ = trained[name]
    dumped = Config.fromfile(osp.join(wd, osp.basename(cfg)))
    written = Config.fromfile(cfg)
    written.merge_from_dict(_parse_opts(opts(data)))
    assert dumped.default_hooks == written.default_hooks
    assert dumped.default_hooks.checkpoint.type == 'lsnet_mm.SafeCheckpointHook'
    assert dumped.get('custom_hooks', []) == written.get('custom_hooks', [])
    assert dumped.model == written.model


def test_users_plain_checkpoint_hook_is_kept(data, tmp_path):
    """A user who names mmengine's own CheckpointHook gets it: tools/train.py does not
    swap in SafeCheckpointHook (the run's hook list and the dumped config say so)."""
    from mmengine.config import Config
    wd = str(tmp_path / 'wd')
    train_tool.main([RETINA, '--work-dir', wd, '--cfg-options', *opts(data),
                     'default_hooks.checkpoint.type=CheckpointHook'])
    assert Config.fromfile(osp.join(wd, osp.basename(RETINA))).default_hooks.checkpoint.type \
        == 'CheckpointHook'
    log = run_log(wd)
    assert re.search(r'\(VERY_LOW\s*\)\s+CheckpointHook', log)
    assert not re.search(r'\)\s+SafeCheckpointHook', log)
    assert osp.isfile(osp.join(wd, 'epoch_1.pth'))


def _scalar_iters(wd):
    """Training iterations logged by the newest run in a work dir."""
    runs = sorted(d for d in os.listdir(wd) if osp.isdir(osp.join(wd, d, 'vis_data')))
    with open(osp.join(wd, runs[-1], 'vis_data', 'scalars.json')) as f:
        rows = [json.loads(line) for line in f]
    return [r['iter'] for r in rows if 'loss' in r]


def test_resume_continues(data, trained, tmp_path):
    cfg, wd0, _ = trained['retinanet']
    wd = str(tmp_path / 'run')
    shutil.copytree(wd0, wd)
    with open(osp.join(wd, 'last_checkpoint'), 'w') as f:
        f.write(osp.join(wd, 'epoch_1.pth'))
    train_tool.main([cfg, '--work-dir', wd, '--resume',
                     '--cfg-options', *opts(data, max_epochs=2)])
    assert _scalar_iters(wd) == [3, 4]  # continued after iteration 2, did not start over
    c1 = torch.load(osp.join(wd, 'epoch_1.pth'), map_location='cpu')
    c2 = torch.load(osp.join(wd, 'epoch_2.pth'), map_location='cpu')
    assert c2['meta']['epoch'] == 2 and c2['meta']['iter'] == 4
    steps = lambda c: {int(s['step']) for s in c['optimizer']['state'].values()}  # noqa: E731
    assert steps(c1) == {2} and steps(c2) == {4}  # AdamW moments carried over


def test_resume_from_path(data, trained, tmp_path):
    cfg, _, ckpt = trained['retinanet']
    wd = str(tmp_path / 'run')
    train_tool.main([cfg, '--work-dir', wd, '--resume', ckpt,
                     '--cfg-options', *opts(data, max_epochs=2)])
    assert _scalar_iters(wd) == [3, 4]
    assert torch.load(osp.join(wd, 'epoch_2.pth'), map_location='cpu')['meta']['iter'] == 4


def _free_port():
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_two_process_gloo(data, tmp_path):
    """torchrun with 2 CPU processes: mmengine's pytorch launcher over gloo, sharded data."""
    wd = str(tmp_path / 'dist')
    env = dict(os.environ, OMP_NUM_THREADS='1', CUDA_VISIBLE_DEVICES='')
    env.pop('PYTHONPATH', None)  # the installed package
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
           f'--master_port={_free_port()}', osp.join(ROOT, 'tools', 'train.py'), RETINA,
           '--launcher', 'pytorch', '--work-dir', wd,
           '--cfg-options', *opts(data, batch=1), 'train_cfg.val_interval=100']
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=240)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    c = torch.load(osp.join(wd, 'epoch_1.pth'), map_location='cpu')
    # 4 images, 1 per process per iteration, 2 processes -> 2 iterations (1 process: 4)
    assert c['meta']['iter'] == 2
    logs = [f for d in os.listdir(wd) if osp.isdir(osp.join(wd, d))
            for f in [osp.join(wd, d, f'{d}.log')] if osp.isfile(f)]
    text = open(logs[0]).read()
    assert 'Distributed training: True' in text and "'backend': 'gloo'" in text


# ---------------------------------------------------------------- early, clear errors

def test_missing_coco_names_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetError) as e:
        train_tool.main([osp.join(ROOT, 'configs', 'retinanet_lsnet_t.py'),
                         '--cfg-options', 'model.backbone.init_cfg=None'])
    msg = str(e.value)
    assert "data_root 'data/coco/'" in msg and 'cocodataset.org' in msg


def _fake_coco(root):
    os.makedirs(osp.join(root, 'annotations'))
    for split in ('train2017', 'val2017'):
        os.makedirs(osp.join(root, split))
        with open(osp.join(root, 'annotations', f'instances_{split}.json'), 'w') as f:
            json.dump(dict(images=[], annotations=[], categories=[]), f)


def test_missing_annotation_file_names_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _fake_coco('data/coco')
    os.remove('data/coco/annotations/instances_val2017.json')
    torch.save({'state_dict': {}}, 'weights.pth')
    with pytest.raises(DatasetError, match='instances_val2017.json'):
        test_tool.main([osp.join(ROOT, 'configs', 'mask_rcnn_lsnet_t.py'), 'weights.pth'])


OFFLINE_URL = 'http://127.0.0.1:9/jameslahm/lsnet/resolve/main/lsnet_s.pth'  # nothing listens


def test_offline_pretrained_url_names_url_cache_and_fixes(tmp_path, monkeypatch):
    """The configs name the release URLs; offline, the error names the URL, the cache
    file the loader looks for and both fixes, before any data is read."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    _fake_coco('data/coco')
    config = osp.join(ROOT, 'configs', 'mask_rcnn_lsnet_s.py')
    with pytest.raises(CheckpointError) as e:
        train_tool.main([config, '--cfg-options',
                         f'model.backbone.init_cfg.checkpoint={OFFLINE_URL}'])
    msg = str(e.value)
    cached = str(tmp_path / 'torch_home' / 'hub' / 'checkpoints' / 'lsnet_s.pth')
    assert f'checkpoint {OFFLINE_URL!r} could not be downloaded' in msg, msg
    assert f'put it at {cached!r}' in msg, msg
    assert '--cfg-options model.backbone.init_cfg.checkpoint=PATH' in msg, msg
    assert not os.listdir(osp.dirname(cached))  # no partial file left in the cache
    # a local path that is not there: named, with where the released files are listed
    with pytest.raises(CheckpointError) as e:
        train_tool.main([config, '--cfg-options',
                         'model.backbone.init_cfg.checkpoint=pretrained/lsnet_s.pth'])
    assert str(e.value).startswith("model.backbone.init_cfg.checkpoint: checkpoint not found: "
                                   "'pretrained/lsnet_s.pth'"), str(e.value)
    assert 'docs/model_zoo.md' in str(e.value)


def test_missing_demo_data_says_how_to_generate(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetError, match='lsnet_mm.datasets.demo.coco_shapes'):
        train_tool.main([RETINA])


def test_dataset_and_model_classes_disagree(data, tmp_path):
    with pytest.raises(ConfigError) as e:
        train_tool.main([RETINA, '--work-dir', str(tmp_path), '--cfg-options', *opts(data),
                         'model.bbox_head.num_classes=80'])
    assert 'has 3 classes' in str(e.value) and 'model.bbox_head.num_classes=80' in str(e.value)


def test_checkpoint_for_other_classes_is_refused(data, trained, tmp_path):
    """tools/test.py stays strict (CheckpointCheckHook(strict=True))."""
    cfg, _, ckpt = trained['mask_rcnn']
    five = "['a','b','c','d','e']"
    with pytest.raises(CheckpointError) as e:
        test_tool.main([cfg, ckpt, '--work-dir', str(tmp_path), '--cfg-options', *opts(data),
                        'model.roi_head.bbox_head.num_classes=5',
                        'model.roi_head.mask_head.num_classes=5',
                        f'test_dataloader.dataset.metainfo.classes={five}',
                        'dataset_check=False'])  # a-e are no category of the file
    msg = str(e.value)
    assert 'different number of classes' in msg and 'implies num_classes=3' in msg


TWO = "train_dataloader.dataset.metainfo.classes=['circle','square']"
TWO_VAL = TWO.replace('train_', 'val_')  # the val set is checked against the model too


def test_test_tool_exits_2_naming_the_mismatch(data, trained, tmp_path):
    """On the command line the strict refusal is one 'error: ...' line and exit code 2."""
    cfg, _, ckpt = trained['retinanet']
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    r = subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'test.py'), cfg, ckpt,
                        '--work-dir', str(tmp_path), '--cfg-options', *opts(data),
                        'model.bbox_head.num_classes=2', TWO.replace('train_', 'test_')],
                       capture_output=True, text=True, cwd=str(tmp_path), env=env, timeout=300)
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-2000:]
    assert 'Traceback' not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith('error: checkpoint ')
    assert 'bbox_head.retina_cls.weight (27, 64, 3, 3) in the checkpoint' in r.stderr
    assert 'bbox_head.num_classes=2, the checkpoint implies num_classes=3' in r.stderr


def test_resume_is_strict(data, trained, tmp_path):
    """--resume needs the exact model (unlike load_from, which fine-tunes)."""
    cfg, _, ckpt = trained['retinanet']
    with pytest.raises(CheckpointError) as e:
        train_tool.main([cfg, '--work-dir', str(tmp_path), '--resume', ckpt,
                         '--cfg-options', *opts(data, max_epochs=2),
                         'model.bbox_head.num_classes=2', TWO, TWO_VAL])
    msg = str(e.value)
    assert msg.startswith(f'resume checkpoint {ckpt!r} was trained for a different number')
    assert 'bbox_head.num_classes=2' in msg
    assert not osp.exists(osp.join(str(tmp_path), 'epoch_2.pth'))


def test_load_from_other_classes_fine_tunes_mask_rcnn(data, trained, tmp_path, monkeypatch):
    """load_from (non-strict, as mmengine): the 3-class Mask R-CNN checkpoint starts a
    2-class run; the warning names the classifiers and the other tensors left out."""
    _, _, ckpt = trained['mask_rcnn']
    sd = torch.load(ckpt, map_location='cpu')['state_dict']
    start = record_start_weights(monkeypatch, train_tool)
    wd = str(tmp_path / 'ft')
    train_tool.main([MASK, '--work-dir', wd, '--cfg-options', *opts(data), f'load_from={ckpt}',
                     'model.roi_head.bbox_head.num_classes=2',
                     'model.roi_head.mask_head.num_classes=2', TWO, TWO_VAL])
    assert torch.load(osp.join(wd, 'epoch_1.pth'), map_location='cpu')['meta']['iter'] == 2
    (loaded,) = start
    skipped = {'roi_head.bbox_head.fc_cls', 'roi_head.bbox_head.fc_reg',
               'roi_head.mask_head.conv_logits'}
    for k, v in loaded.items():
        if k.rsplit('.', 1)[0] in skipped:
            assert v.shape != sd[k].shape, k
        else:
            assert torch.equal(v, sd[k]), k
    log = run_log(wd)
    assert 'fine-tuning on other classes' in log
    # softmax classifier: classes + background
    assert re.search(r'roi_head\.bbox_head\.fc_cls\.weight \(4, \d+\) in the checkpoint '
                     r'vs \(3, \d+\) in the model \(roi_head\.bbox_head\.num_classes=2, the '
                     r'checkpoint implies num_classes=3\)', log)
    assert re.search(r'roi_head\.mask_head\.conv_logits\.weight \(3, \d+, 1, 1\) in the '
                     r'checkpoint vs \(2, \d+, 1, 1\)', log)
    assert "also not loaded (other shape): ['roi_head.bbox_head.fc_reg.weight'" in log


def test_missing_checkpoint(data, tmp_path):
    with pytest.raises(CheckpointError, match=r"CHECKPOINT: checkpoint not found: '.*nope\.pth'"):
        test_tool.main([RETINA, str(tmp_path / 'nope.pth'), '--cfg-options', *opts(data)])


@pytest.mark.parametrize('content,error,why', [
    (b'', ImageDecodeError, 'empty file (0 bytes)'),
    (b'this is not a PNG file', ImageDecodeError, 'not an image that PIL can identify'),
    ('truncated', ImageDecodeError, 'decode')])
def test_undecodable_image_is_named(data, tmp_path, content, error, why):
    """A file whose header does not decode is named by the dataset check before training;
    one whose header decodes but whose pixels do not is named by the training pipeline's
    CheckedLoadImageFromFile (the test pipelines keep mmcv's LoadImageFromFile, which
    DetInferencer needs)."""
    bad = str(tmp_path / 'data')
    shutil.copytree(data, bad)
    victim = sorted(glob.glob(osp.join(bad, 'train', '*.png')))[1]
    if content == 'truncated':
        with open(victim, 'rb') as f:
            content = f.read()[:200]
    with open(victim, 'wb') as f:
        f.write(content)
    with pytest.raises(error) as e:
        train_tool.main([RETINA, '--work-dir', str(tmp_path / 'wd'),
                         '--cfg-options', *opts(bad), 'train_dataloader.batch_size=4'])
    assert victim in str(e.value) and why in str(e.value)
    if why != 'decode':  # stopped before the runner: nothing was written
        assert not glob.glob(osp.join(str(tmp_path / 'wd'), '**', '*.pth'), recursive=True)


def test_amp_on_cpu_is_refused(data, tmp_path):
    if torch.cuda.is_available():
        pytest.skip('CUDA present')
    with pytest.raises(ConfigError, match='--amp needs a CUDA GPU'):
        train_tool.main([RETINA, '--amp', '--cfg-options', *opts(data)])
