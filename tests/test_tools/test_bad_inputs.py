"""Bad input either works or fails early with a message naming the problem:
grayscale / RGBA / 16-bit images, images smaller than the network's stride of 64,
training images without objects, missing / empty / truncated / non-image files,
corrupted checkpoints, and checkpoints carrying pickled code (never executed)."""
import io
import json
import os
import os.path as osp
import pickle
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from lsnet_mm.apis import launch
from lsnet_mm.checkpoint import CheckpointError
from lsnet_mm.utils.errors import DatasetError
from product_helpers import (
    MASK,
    RETINA,
    ROOT,
    SEG,
    cached,
    det_checkpoint,
    det_opts,
    random_checkpoint,
    seg_opts,
    session_dir,
    tiny_ade,
    tiny_coco,
    tool,
)

infer, train_tool, test_tool = tool('infer'), tool('train'), tool('test')
pytestmark = pytest.mark.usefixtures('one_thread')
# the paper's LSNet-T models, for mmdet's and mmseg's inferencers
PAPER_MASK = osp.join(ROOT, 'configs', 'mask_rcnn_lsnet_t.py')
PAPER_SEG = osp.join(ROOT, 'configs', 'fpn_lsnet_t_ade20k.py')


def paper_checkpoint(config):
    """A checkpoint of the paper config's model at PyTorch's initial weights."""
    name = osp.basename(config)[:-3]
    return cached(f'paper_{name}', lambda: random_checkpoint(
        config, osp.join(session_dir(), f'{name}_random.pth'), init_weights=False))


def paper_config(config, scale):
    """The paper config with test-time size ``scale`` (and every box of Mask R-CNN)."""
    from mmengine.config import Config
    cfg = Config.fromfile(config)
    cfg.test_dataloader.dataset.pipeline[1].scale = scale
    if cfg.default_scope == 'mmdet':
        cfg.model.test_cfg.rcnn.update(score_thr=0.0, max_per_img=10)
    return cfg


def cli_error(capsys, argv):
    """Run tools/infer.py expecting exit status 2; returns the error line."""
    with pytest.raises(SystemExit) as e:
        launch.run_tool(lambda: infer.main([str(a) for a in argv]))
    assert e.value.code == 2
    # the last line (an earlier test's logger may write a logging error before it)
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith('error: '), err
    return err


@pytest.fixture(scope='module')
def coco(tmp_path_factory):
    return tiny_coco(str(tmp_path_factory.mktemp('shapes')))


@pytest.fixture(scope='module')
def variants(coco, tmp_path_factory):
    """One picture stored as 8-bit colour, RGBA, 16-bit colour, grayscale (8 and 16 bit)
    and the grayscale as 8-bit colour."""
    d = tmp_path_factory.mktemp('variants')
    img = cv2.imread(osp.join(coco, 'val', '000000.png'))
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    alpha = np.random.default_rng(0).integers(0, 256, img.shape[:2], dtype=np.uint8)
    files = dict(rgb=img, rgba=np.dstack([img, alpha]), rgb16=img.astype(np.uint16) * 257,
                 gray=gray, gray16=gray.astype(np.uint16) * 257,
                 gray_as_rgb=cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))
    out = {}
    for name, arr in files.items():
        out[name] = str(d / f'{name}.png')
        assert cv2.imwrite(out[name], arr)
    return out


# ------------------------------------------------------------------ image formats

def test_inferencer_on_gray_rgba_16bit_matches_8bit(variants):
    """DetInferencer reads every variant as the training loader does (mmcv's
    LoadImageFromFile, color_type='color'): the same predictions as the 8-bit picture."""
    from mmdet.apis import DetInferencer
    inferencer = DetInferencer(paper_config(PAPER_MASK, (128, 128)),
                               paper_checkpoint(PAPER_MASK), device='cpu',
                               show_progress=False)
    names = list(variants)
    preds = inferencer([variants[n] for n in names])['predictions']
    preds = dict(zip(names, preds))
    for name, same_as in (('rgba', 'rgb'), ('rgb16', 'rgb'), ('gray', 'gray_as_rgb'),
                          ('gray16', 'gray_as_rgb')):
        assert len(preds[name]['scores']) == 10, name
        assert preds[name] == preds[same_as], name  # 16 bit: x * 257 -> x
    assert preds['rgb']['scores'] != preds['gray_as_rgb']['scores']  # a real comparison


def test_dataset_pipelines_load_gray_rgba_16bit(coco, variants, tmp_path):
    """The detection and segmentation data pipelines of the configs turn every variant
    into the 3-channel 8-bit input of the plain picture."""
    from mmengine.config import Config
    from mmengine.registry import DATASETS, init_default_scope
    names = list(variants)
    # detection: a COCO set whose images are the variants
    root = tmp_path / 'det'
    shutil.copytree(coco, root)
    with open(root / 'annotations' / 'instances_val.json') as f:
        ann = json.load(f)
    first = ann['images'][0]
    ann['images'] = [dict(first, id=i + 1, file_name=f'{n}.png') for i, n in enumerate(names)]
    ann['annotations'] = [dict(a, id=k * 100 + j, image_id=k + 1) for k in range(len(names))
                          for j, a in enumerate(x for x in ann['annotations']
                                                if x['image_id'] == first['id'])]
    with open(root / 'annotations' / 'instances_val.json', 'w') as f:
        json.dump(ann, f)
    for n in names:
        shutil.copy(variants[n], root / 'val' / f'{n}.png')
    cfg = Config.fromfile(MASK)
    init_default_scope('mmdet')
    ds_cfg = cfg.test_dataloader.dataset
    ds_cfg.update(data_root=str(root) + '/')
    det = DATASETS.build(ds_cfg)
    det_inputs = {n: det[i]['inputs'] for i, n in enumerate(names)}
    # segmentation: an ADE20K-layout set whose images are the variants (as .png)
    root = tmp_path / 'seg'
    for sub in ('images/validation', 'annotations/validation'):
        os.makedirs(root / sub)
    label = np.full(cv2.imread(variants['rgb']).shape[:2], 3, np.uint8)
    for n in names:
        shutil.copy(variants[n], root / 'images' / 'validation' / f'{n}.png')
        cv2.imwrite(str(root / 'annotations' / 'validation' / f'{n}.png'), label)
    cfg = Config.fromfile(SEG)
    init_default_scope('mmseg')
    ds_cfg = cfg.test_dataloader.dataset
    ds_cfg.update(data_root=str(root), img_suffix='.png')
    seg = DATASETS.build(ds_cfg)
    order = [osp.basename(seg.get_data_info(i)['img_path'])[:-4] for i in range(len(seg))]
    seg_inputs = {n: seg[order.index(n)]['inputs'] for n in names}
    for inputs in (det_inputs, seg_inputs):
        for name, same_as in (('rgba', 'rgb'), ('rgb16', 'rgb'), ('gray', 'gray_as_rgb'),
                              ('gray16', 'gray_as_rgb')):
            x, y = inputs[name], inputs[same_as]
            assert x.dtype == torch.uint8 and x.shape[0] == 3, name
            assert torch.equal(x, y), name


# ------------------------------------------------------------------ small images

def test_images_smaller_than_the_stride(coco, tmp_path):
    """20x12 pictures with test-time sizes that give the network a 32x32 input (stride
    64 > input): boxes within the picture, label map and pictures at the picture's size."""
    from mmdet.apis import DetInferencer
    from mmseg.apis import MMSegInferencer
    img = cv2.resize(cv2.imread(osp.join(coco, 'val', '000000.png')), (20, 12))
    path = str(tmp_path / 'small.png')
    cv2.imwrite(path, img)
    det = DetInferencer(paper_config(PAPER_MASK, (24, 24)), paper_checkpoint(PAPER_MASK),
                        device='cpu', show_progress=False)
    pred = det(path, out_dir=str(tmp_path / 'det'))['predictions'][0]
    assert pred['scores'] and all(0 <= x1 <= x2 <= 20 and 0 <= y1 <= y2 <= 12
                                  for x1, y1, x2, y2 in pred['bboxes'])
    assert cv2.imread(str(tmp_path / 'det' / 'vis' / 'small.png')).shape == (12, 20, 3)
    seg = MMSegInferencer(paper_config(PAPER_SEG, (24, 24)), paper_checkpoint(PAPER_SEG),
                          device='cpu')
    assert seg(path, out_dir=str(tmp_path / 'seg'))['predictions'].shape == (12, 20)
    assert cv2.imread(str(tmp_path / 'seg' / 'pred' / '00000000_pred.png'), -1).shape == (12, 20)
    assert cv2.imread(str(tmp_path / 'seg' / 'vis' / 'small.png')).shape == (12, 20, 3)


# ------------------------------------------------------------------ empty annotations

def _strip_annotations(root, keep_images=0):
    path = osp.join(root, 'annotations', 'instances_train.json')
    with open(path) as f:
        ann = json.load(f)
    keep = {im['id'] for im in ann['images'][:keep_images]}
    ann['annotations'] = [a for a in ann['annotations'] if a['image_id'] in keep]
    with open(path, 'w') as f:
        json.dump(ann, f)


def test_training_images_without_objects(coco, tmp_path):
    root = str(tmp_path / 'data')
    shutil.copytree(coco, root)
    _strip_annotations(root)
    # mmdet's default filter drops images without objects: none left -> a clear error
    with pytest.raises(DatasetError) as e:
        train_tool.main([RETINA, '--work-dir', str(tmp_path / 'a'),
                         '--cfg-options', *det_opts(root)])
    assert 'filter_empty_gt=False' in str(e.value) and 'instances_train.json' in str(e.value)
    assert not osp.exists(tmp_path / 'a' / 'epoch_1.pth')
    # kept: they train (background only) with finite losses
    wd = str(tmp_path / 'b')
    train_tool.main([MASK, '--work-dir', wd, '--cfg-options', *det_opts(root, batch=4),
                     'train_dataloader.dataset.filter_cfg.filter_empty_gt=False'])
    rows = [json.loads(line) for d in os.listdir(wd) if osp.isdir(osp.join(wd, d))
            for line in open(osp.join(wd, d, 'vis_data', 'scalars.json'))]
    losses = [r['loss'] for r in rows if 'loss' in r]
    assert len(losses) == 1 and np.isfinite(losses).all()
    assert rows[0]['loss_mask'] == 0 and rows[0]['loss_bbox'] == 0  # no objects
    ckpt = torch.load(osp.join(wd, 'epoch_1.pth'), map_location='cpu')
    assert all(torch.isfinite(v).all() for v in ckpt['state_dict'].values()
               if v.is_floating_point())


def test_segmentation_label_maps_without_classes(tmp_path):
    """Label maps that hold only ADE20K's "other" (ignored): finite losses."""
    root = tiny_ade(str(tmp_path / 'ade'), num_train=2, num_val=1)
    ann = osp.join(root, 'annotations', 'training')
    for f in os.listdir(ann):
        cv2.imwrite(osp.join(ann, f), np.zeros_like(cv2.imread(osp.join(ann, f), 0)))
    wd = str(tmp_path / 'wd')
    train_tool.main([SEG, '--work-dir', wd, '--cfg-options', *seg_opts(root, max_iters=1)])
    rows = [json.loads(line) for d in os.listdir(wd) if osp.isdir(osp.join(wd, d))
            for line in open(osp.join(wd, d, 'vis_data', 'scalars.json'))]
    assert [r['iter'] for r in rows if 'loss' in r] == [1]
    assert all(np.isfinite(r['loss']) for r in rows if 'loss' in r)


# ------------------------------------------------------------------ damaged image files

def _damaged(tmp_path, coco):
    good = osp.join(coco, 'val', '000000.png')
    with open(good, 'rb') as f:
        png = f.read()
    jpg = cv2.imencode('.jpg', cv2.imread(good))[1].tobytes()
    files = {'empty.png': b'', 'text.png': b'not an image at all\n',
             'truncated.png': png[:len(png) // 2], 'truncated.jpg': jpg[:len(jpg) // 2]}
    out = {}
    for name, content in files.items():
        out[name] = str(tmp_path / name)
        with open(out[name], 'wb') as f:
            f.write(content)
    return good, out


def test_damaged_images_are_named(coco, tmp_path, capsys):
    """tools/infer.py: exit status 2 and an error naming the image that failed."""
    _, bad = _damaged(tmp_path, coco)
    for name, path in bad.items():
        err = cli_error(capsys, [path, PAPER_MASK, '--weights',
                                 paper_checkpoint(PAPER_MASK), '--out-dir', tmp_path / 'o'])
        assert path in err and 'could not decode image' in err, name


def test_bad_input_arguments(tmp_path, capsys):
    empty = tmp_path / 'no_images'
    empty.mkdir()
    (empty / 'notes.txt').write_text('x')
    for arg in (tmp_path / 'missing.png', empty, tmp_path / '*.jpg'):
        err = cli_error(capsys, [arg, PAPER_MASK, '--weights', paper_checkpoint(PAPER_MASK)])
        assert 'no image found' in err and str(arg) in err


# ------------------------------------------------------------------ checkpoints

def _corrupted_checkpoints(tmp_path):
    with open(det_checkpoint(), 'rb') as f:
        good = f.read()
    files = {'truncated.pth': good[:len(good) // 3], 'empty.pth': b'',
             'random.pth': np.random.default_rng(0).bytes(4096)}
    out = {}
    for name, content in files.items():
        out[name] = str(tmp_path / name)
        with open(out[name], 'wb') as f:
            f.write(content)
    out['a_list.pth'] = str(tmp_path / 'a_list.pth')
    torch.save([torch.zeros(1)], out['a_list.pth'])
    return out


def test_corrupted_checkpoints_are_named(coco, tmp_path, capsys):
    img = osp.join(coco, 'val', '000000.png')
    for name, path in _corrupted_checkpoints(tmp_path).items():
        err = cli_error(capsys, [img, PAPER_MASK, '--weights', path, '--out-dir', tmp_path / 'o'])
        assert err.startswith(f'error: checkpoint {path!r}'), (name, err)


def test_test_tool_names_a_corrupted_checkpoint(coco, tmp_path):
    path = _corrupted_checkpoints(tmp_path)['truncated.pth']
    with pytest.raises(CheckpointError, match=path.replace('.', r'\.')):
        test_tool.main([MASK, path, '--work-dir', str(tmp_path / 'w'),
                        '--cfg-options', *det_opts(coco)])


class _Evil:
    """Unpickling this runs code: it creates the marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f'open({self.marker!r}, "w").write("pwned")',))


def _malicious(tmp_path, marker):
    """A real checkpoint of the model with a code-running object inside, in torch's zip
    format and in the legacy (plain pickle) format."""
    sd = torch.load(det_checkpoint(), map_location='cpu')
    sd['meta']['note'] = _Evil(marker)
    zip_path = str(tmp_path / 'evil_zip.pth')
    torch.save(sd, zip_path)
    legacy = str(tmp_path / 'evil_legacy.pth')
    torch.save(sd, legacy, _use_new_zipfile_serialization=False)
    raw = str(tmp_path / 'evil_pickle.pth')
    with open(raw, 'wb') as f:
        pickle.dump(sd, f)
    return [zip_path, legacy, raw]


def test_checkpoint_code_is_never_executed(coco, tmp_path, capsys):
    marker = str(tmp_path / 'PWNED')
    img = osp.join(coco, 'val', '000000.png')
    for path in _malicious(tmp_path, marker):
        # tools/infer.py: mmengine's loader in the inferencer refuses it, then
        # lsnet_mm.checkpoint names the file
        err = cli_error(capsys, [img, PAPER_MASK, '--weights', path,
                                 '--out-dir', tmp_path / 'o'])
        assert err.startswith(f'error: checkpoint {path!r}'), err
        # (a plain pickle of protocol > 2 is refused as "not a PyTorch checkpoint")
        assert 'allow-list' in err or path.endswith('evil_pickle.pth'), err
        assert not osp.exists(marker)
        # mmengine's own loader (the runner's load_from/resume) reads weights-only too
        from mmengine.runner.checkpoint import _load_checkpoint
        with pytest.raises(Exception):
            _load_checkpoint(path, map_location='cpu')
        assert not osp.exists(marker)
    # the command line: exit status 2 and an error naming the file, no traceback
    r = subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'infer.py'), img, PAPER_MASK,
                        '--weights', str(tmp_path / 'evil_zip.pth'),
                        '--out-dir', str(tmp_path / 'cli')],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    assert any(line.startswith('error: checkpoint') and 'evil_zip.pth' in line
               for line in r.stderr.splitlines()), r.stderr[-2000:]
    assert 'Traceback' not in r.stderr
    assert not osp.exists(marker)
    # control: the marker code does run when unpickled without the allow-list
    with open(tmp_path / 'evil_pickle.pth', 'rb') as f:
        pickle.load(f)
    assert osp.exists(marker)


def test_test_and_train_tools_refuse_checkpoint_code(coco, tmp_path):
    marker = str(tmp_path / 'PWNED')
    evil = _malicious(tmp_path, marker)[0]
    # --resume with the malicious file as the last checkpoint: refused, not run
    wd = tmp_path / 'resume'
    wd.mkdir()
    shutil.copy(evil, wd / 'epoch_1.pth')
    (wd / 'last_checkpoint').write_text(str(wd / 'epoch_1.pth'))
    with pytest.raises(CheckpointError, match='allow-list'):
        train_tool.main([MASK, '--work-dir', str(wd), '--resume', '--cfg-options',
                         *det_opts(coco)])
    assert not osp.exists(marker)
    with pytest.raises(CheckpointError, match='allow-list'):
        test_tool.main([MASK, evil, '--work-dir', str(tmp_path / 'w'),
                        '--cfg-options', *det_opts(coco)])
    assert not osp.exists(marker)


def test_torch_load_default_is_weights_only(tmp_path):
    marker = str(tmp_path / 'PWNED')
    buf = io.BytesIO()
    torch.save({'x': _Evil(marker)}, buf)
    buf.seek(0)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(buf)
    assert not osp.exists(marker)
