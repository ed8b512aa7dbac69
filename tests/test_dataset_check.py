"""The dataset check of tools/train.py and tools/test.py (lsnet_mm.datasets.dataset_check)
and the file-naming errors of CheckedADE20KDataset, on damaged copies of generated COCO-
and ADE20K-format data: each bad input stops the run before training with exit status 2
and a message naming the file (no checkpoint written), invalid boxes are reported and
training goes on, a clean dataset passes with one line, and a second check is cached."""
import glob
import json
import os
import os.path as osp
import re
import shutil
import time

import cv2
import numpy as np
import pytest
from PIL import Image

from lsnet_mm.datasets import dataset_check
from lsnet_mm.datasets.ade20k import SegLabelError
from lsnet_mm.datasets.dataset_check import check_datasets, read_image_header
from lsnet_mm.datasets.transforms import ImageDecodeError
from lsnet_mm.utils import launch
from lsnet_mm.utils.preflight import PreflightError
from product_helpers import RETINA, SEG, det_opts, seg_opts, tiny_ade, tiny_coco, tool

train_tool, test_tool = tool('train'), tool('test')
pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def coco_src(tmp_path_factory):
    return tiny_coco(str(tmp_path_factory.mktemp('coco')))


@pytest.fixture(scope='module')
def ade_src(tmp_path_factory):
    return tiny_ade(str(tmp_path_factory.mktemp('ade')), num_train=4, num_val=3)


@pytest.fixture
def coco(coco_src, tmp_path):
    """A copy to damage."""
    return shutil.copytree(coco_src, str(tmp_path / 'coco'))


@pytest.fixture
def ade(ade_src, tmp_path):
    return shutil.copytree(ade_src, str(tmp_path / 'ade'))


def fails(capsys, tool_mod, argv):
    """Run a tool as its command does; expect exit status 2; returns the error text."""
    with pytest.raises(SystemExit) as e:
        launch.run_tool(lambda: tool_mod.main([str(a) for a in argv]))
    assert e.value.code == 2
    err = capsys.readouterr().err
    # the error line may follow a logging.lastResort message of an earlier test's logger
    # whose stream pytest has closed: look for the line, not the start of stderr
    assert 'error: dataset check failed' in err, err
    return err[err.index('error: dataset check failed'):]


def no_checkpoint(work_dir):
    return not glob.glob(osp.join(work_dir, '**', '*.pth'), recursive=True)


def train_cfg(config, work_dir, opts):
    return train_tool.build_cfg(train_tool.parse_args(
        [config, '--work-dir', str(work_dir), '--cfg-options', *opts]))


def edit_json(path, edit):
    with open(path) as f:
        data = json.load(f)
    edit(data)
    with open(path, 'w') as f:
        json.dump(data, f)
    return data


# ------------------------------------------------------------------ image headers

def test_image_headers(tmp_path, coco_src):
    png = osp.join(coco_src, 'val', '000000.png')
    assert read_image_header(png) == (96, 96, 1)
    img = Image.fromarray(np.zeros((30, 50, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: mmcv loads it as 30 wide, 50 high
    img.save(tmp_path / 'rot.jpg', exif=exif.tobytes())
    img.save(tmp_path / 'plain.bmp')
    header = read_image_header(str(tmp_path / 'rot.jpg'))
    assert header == (50, 30, 6)
    import mmcv
    assert mmcv.imread(str(tmp_path / 'rot.jpg')).shape[:2][::-1] == \
        dataset_check.loaded_size(header)
    assert read_image_header(str(tmp_path / 'plain.bmp')) == (50, 30, 1)
    jpg = cv2.imencode('.jpg', cv2.imread(png))[1].tobytes()
    bad = {'empty.png': (b'', 'empty file'), 'text.png': (b'not an image\n', 'not an image'),
           'cut.jpg': (jpg[:100], 'truncated JPEG'), 'cut.png': (b'\x89PNG\r\n\x1a\n', 'PNG')}
    for name, (content, why) in bad.items():
        (tmp_path / name).write_bytes(content)
        assert why in dataset_check.unreadable(str(tmp_path / name)), name
    assert dataset_check.unreadable(str(tmp_path / 'missing.png')) == 'file not found'


# ------------------------------------------------------------------ COCO format

def test_truncated_annotation_json(coco, tmp_path, capsys):
    ann = osp.join(coco, 'annotations', 'instances_train.json')
    with open(ann, 'rb') as f:
        content = f.read()
    with open(ann, 'wb') as f:
        f.write(content[:len(content) // 2])
    wd = str(tmp_path / 'wd')
    err = fails(capsys, train_tool, [RETINA, '--work-dir', wd, '--cfg-options', *det_opts(coco)])
    assert f'annotation file {ann!r} is not valid JSON' in err
    assert re.search(rf'line 1, column \d+ \(character {len(content) // 2} of '
                     rf'{len(content) // 2}\); the file ends there, so it is truncated', err)
    assert no_checkpoint(wd)


def test_missing_val_image_is_named_before_training(coco, tmp_path, capsys):
    missing = osp.join(coco, 'val', '000001.png')
    os.remove(missing)
    wd = str(tmp_path / 'wd')
    err = fails(capsys, train_tool, [RETINA, '--work-dir', wd, '--cfg-options',
                                     *det_opts(coco, val=True)])
    ann = osp.join(coco, 'annotations', 'instances_val.json')
    assert f'val_dataloader: 1 of the 2 images listed in {ann!r} are missing' in err, err
    assert repr(missing) in err and 'data_prefix.img' in err
    assert no_checkpoint(wd) and not glob.glob(osp.join(wd, '*', '*.log'))  # no run started


def test_unreadable_test_image_is_named_before_evaluation(coco, tmp_path, capsys):
    empty = osp.join(coco, 'val', '000000.png')
    open(empty, 'wb').close()
    ckpt = tmp_path / 'any.pth'  # the check comes before the checkpoint is read
    ckpt.write_bytes(b'x')
    err = fails(capsys, test_tool, [RETINA, ckpt, '--work-dir', tmp_path / 'wd',
                                    '--cfg-options', *det_opts(coco)])
    assert f"test_dataloader: 1 of 2 images cannot be read: {empty!r} (empty file (0 bytes))" \
        in err
    assert not osp.exists(tmp_path / 'wd' / 'metrics.json')


def test_class_name_typo_lists_both(coco, tmp_path):
    opts = det_opts(coco) + ['train_dataloader.dataset.metainfo.classes=(circle,sqare,triangle)']
    with pytest.raises(PreflightError) as e:
        train_tool.main([RETINA, '--work-dir', str(tmp_path / 'wd'), '--cfg-options', *opts])
    msg = str(e.value)
    assert "1 of the 3 names in metainfo.classes match no category of" in msg
    assert "['sqare']" in msg and "close matches: 'sqare': 'square'" in msg
    assert "metainfo.classes: ['circle', 'sqare', 'triangle']" in msg
    assert "categories of the file: ['circle', 'square', 'triangle']" in msg
    assert no_checkpoint(str(tmp_path / 'wd'))


def test_invalid_boxes_are_reported_and_training_goes_on(coco, tmp_path, capsys):
    ann = osp.join(coco, 'annotations', 'instances_train.json')

    def damage(data):
        anns = {a['id']: a for a in data['annotations']}
        anns[1]['bbox'][0] = 500.0  # entirely outside its 96x96 image
        anns[2]['bbox'][2] = -5.0  # negative width
        anns[3]['bbox'][0] = -20.0  # partly outside: Resize clips it
    data = edit_json(ann, damage)
    files = {im['id']: im['file_name'] for im in data['images']}
    img_of = {a['id']: files[a['image_id']] for a in data['annotations']}
    wd = str(tmp_path / 'wd')
    train_tool.main([RETINA, '--work-dir', wd, '--cfg-options', *det_opts(coco, batch=4)])
    err = capsys.readouterr().err
    line = [s for s in err.splitlines() if s.startswith('warning: dataset check')]
    assert len(line) == 1, err
    line = line[0]
    assert "2 of the 7 boxes are invalid and left out by mmdet's CocoDataset" in line, line
    assert f'1 entirely outside the image (e.g. annotation id 1 in {img_of[1]!r}' in line
    assert f'1 with width or height < 1 px or area <= 0 (e.g. annotation id 2 in ' \
           f'{img_of[2]!r}' in line
    assert f'1 box extends more than 1 px past the image (e.g. annotation id 3 in ' \
           f'{img_of[3]!r}' in line and "the pipeline's Resize clips them" in line
    assert osp.isfile(osp.join(wd, 'epoch_1.pth'))  # trained


# ------------------------------------------------------------------ ADE20K layout

def test_label_map_of_another_size(ade, tmp_path, capsys):
    seg = osp.join(ade, 'annotations', 'training', 'ADE_train_00000002.png')
    img = osp.join(ade, 'images', 'training', 'ADE_train_00000002.jpg')
    cv2.imwrite(seg, cv2.resize(cv2.imread(seg, 0), (40, 30), interpolation=cv2.INTER_NEAREST))
    wd = str(tmp_path / 'wd')
    err = fails(capsys, train_tool, [SEG, '--work-dir', wd, '--cfg-options', *seg_opts(ade)])
    assert (f'train_dataloader: 1 of the 4 label maps do not have the size of their image '
            f'(width x height): label map {seg!r} is 40x30 but its image {img!r} is 64x48') in err
    assert no_checkpoint(wd)


def _stem(split, i):
    return f'ADE_{"train" if split == "training" else "val"}_{i:08d}'


def _damage_ade(ade, split):
    """Image 1: an empty file; label map 2: a text file."""
    empty = osp.join(ade, 'images', split, f'{_stem(split, 1)}.jpg')
    text = osp.join(ade, 'annotations', split, f'{_stem(split, 2)}.png')
    open(empty, 'wb').close()
    with open(text, 'w') as f:
        f.write('not a label map\n')
    return empty, text


def test_unreadable_ade_files_are_named_before_training(ade, tmp_path, capsys):
    empty, text = _damage_ade(ade, 'validation')
    wd = str(tmp_path / 'wd')
    err = fails(capsys, train_tool, [SEG, '--work-dir', wd, '--cfg-options', *seg_opts(ade)])
    assert f'val_dataloader: 1 of 3 images cannot be read: {empty!r} (empty file' in err
    assert f'val_dataloader: 1 of 3 label maps cannot be read: {text!r} (not an image' in err
    assert no_checkpoint(wd)


def _seg_dataset(root, key):
    from mmengine.config import Config
    from mmengine.registry import DATASETS, init_default_scope
    cfg = Config.fromfile(SEG)
    cfg[key].dataset.data_root = root
    init_default_scope('mmseg')
    ds = DATASETS.build(cfg[key].dataset)
    index = {osp.basename(ds.get_data_info(i)['img_path'])[:-4]: i for i in range(len(ds))}
    return ds, index


@pytest.mark.parametrize('split,key', [('training', 'train_dataloader'),
                                       ('validation', 'val_dataloader')])
def test_pipeline_errors_name_the_file(ade, split, key):
    """Without the check (mmseg's own tools): mmcv's LoadImageFromFile and mmseg's
    LoadAnnotations fail with OpenCV / PIL errors; the dataset names the file."""
    empty, text = _damage_ade(ade, split)
    seg = osp.join(ade, 'annotations', split, f'{_stem(split, 3)}.png')
    cv2.imwrite(seg, cv2.resize(cv2.imread(seg, 0), (40, 30), interpolation=cv2.INTER_NEAREST))
    # (mmseg's keep-ratio resizes would stretch this label map to its image's shape)
    ds, index = _seg_dataset(ade, key)
    with pytest.raises(ImageDecodeError, match=f'could not load the image {re.escape(repr(empty))}'
                       r'.*empty file \(0 bytes\); the pipeline failed with'):
        ds[index[_stem(split, 1)]]
    with pytest.raises(ImageDecodeError, match=f'could not load the label map '
                       f'{re.escape(repr(text))}.*not an image'):
        ds[index[_stem(split, 2)]]
    with pytest.raises(SegLabelError, match=f'label map {re.escape(repr(seg))} is 40x30 but '
                       f'its image .* is 64x48'):
        ds[index[_stem(split, 3)]]


# ------------------------------------------------------------------ clean data, cache, speed

def test_clean_datasets_pass_with_one_line(coco_src, ade_src, tmp_path, capsys):
    for config, opts in ((RETINA, det_opts(coco_src, val=True)), (SEG, seg_opts(ade_src))):
        capsys.readouterr()
        cfg = train_cfg(config, tmp_path / 'wd', opts)
        results = check_datasets(cfg, 'train')
        out, err = capsys.readouterr()
        assert [r['report'] for r in results.values()] == ['', '']
        assert 'dataset check' not in err
        lines = [s for s in out.splitlines() if 'dataset check' in s]
        assert len(lines) == 1 and re.fullmatch(
            r'dataset check: train_dataloader 4 images, val_dataloader [23] images: ok in '
            r'[\d.]+ s', lines[0]), out
        assert all(r['cached'] for r in check_datasets(cfg, 'train', quiet=True).values())


def test_cache_sees_a_removed_image(coco, tmp_path):
    cfg = train_cfg(RETINA, tmp_path / 'wd', det_opts(coco))
    assert not check_datasets(cfg, quiet=True)['train_dataloader']['cached']
    assert check_datasets(cfg, quiet=True)['train_dataloader']['cached']
    assert osp.isdir(tmp_path / '.dataset_check')  # beside the work dir
    os.remove(osp.join(coco, 'train', '000002.png'))
    with pytest.raises(PreflightError, match='000002.png'):
        check_datasets(cfg, quiet=True)


def _many_images(root, n):
    """A COCO-format set of ``n`` small PNG images with one box each."""
    os.makedirs(osp.join(root, 'train'))
    os.makedirs(osp.join(root, 'annotations'))
    rng = np.random.default_rng(0)
    pngs = [cv2.imencode('.png', rng.integers(0, 255, (48, 64, 3), np.uint8))[1].tobytes()
            for _ in range(8)]
    images, anns = [], []
    for i in range(n):
        name = f'{i:06d}.png'
        with open(osp.join(root, 'train', name), 'wb') as f:
            f.write(pngs[i % 8])
        images.append(dict(id=i, file_name=name, width=64, height=48))
        anns.append(dict(id=i + 1, image_id=i, bbox=[4.0, 4.0, 20.0, 16.0], area=320.0,
                         category_id=1 + i % 3, iscrowd=0))
    cats = [dict(id=k + 1, name=c) for k, c in enumerate(('circle', 'square', 'triangle'))]
    with open(osp.join(root, 'annotations', 'instances_train.json'), 'w') as f:
        json.dump(dict(images=images, annotations=anns, categories=cats), f)
    return root


def test_check_time_on_thousands_of_images(tmp_path):
    n = 3000
    root = _many_images(str(tmp_path / 'many'), n)
    cfg = train_cfg(RETINA, tmp_path / 'wd', det_opts(root))
    start = time.perf_counter()
    cold = check_datasets(cfg, quiet=True)['train_dataloader']
    cold_s = time.perf_counter() - start
    start = time.perf_counter()
    warm = check_datasets(cfg, quiet=True)['train_dataloader']
    warm_s = time.perf_counter() - start
    print(f'\ndataset check of {n} images: {cold_s:.3f} s cold ({1000 * cold_s / n:.3f} s per '
          f'1,000 images, {os.cpu_count()} CPUs), {warm_s:.3f} s cached '
          f'({1000 * warm_s / n:.4f} s per 1,000)')
    assert cold == dict(images=n, cached=False, report='')
    assert warm == dict(images=n, cached=True, report='')
    assert n >= dataset_check.POOL_MIN_IMAGES  # read by the process pool
    assert warm_s < cold_s / 3
