"""lsnet_mm.datasets.verify: file probes (PIL headers, EXIF orientation as mmcv loads the
image, label maps and mmseg's label mapping), the cache (a second run builds no dataset
and opens no data file; a removed image is seen), the config's options, the heads'
num_classes check, tools/misc/verify_dataset.py, and the time on thousands of images."""
import builtins
import importlib.util
import json
import os
import os.path as osp
import re
import time

import cv2
import numpy as np
import pytest
from dataset_verify_helpers import ann, coco_config, coco_dataset, failure, run_config
from mmdet.datasets import CocoDataset
from PIL import Image

from lsnet_mm.apis.launch import run_tool
from lsnet_mm.datasets import verify
from lsnet_mm.datasets.verify import (
    ImageHeader,
    LabelMap,
    check_num_classes,
    invalid_label_values,
    probe_image,
    probe_label_map,
    verify_datasets,
)
from lsnet_mm.utils.errors import ConfigError
from product_helpers import ROOT

# ------------------------------------------------------------------ probes

def test_image_headers_and_reasons(tmp_path, coco_src):
    import mmcv
    assert probe_image(osp.join(coco_src, 'val', '000000.png')) == ImageHeader(96, 96, 1)
    img = Image.fromarray(np.zeros((30, 50, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: mmcv loads it as 30 wide, 50 high
    for name in ('rot.jpg', 'rot.png'):
        img.save(tmp_path / name, exif=exif.tobytes())
        header = probe_image(str(tmp_path / name))
        assert header == ImageHeader(50, 30, 6)
        assert mmcv.imread(str(tmp_path / name)).shape[1::-1] == header.loaded_size == (30, 50)
    img.save(tmp_path / 'plain.bmp')
    assert probe_image(str(tmp_path / 'plain.bmp')) == ImageHeader(50, 30, 1)
    png = (tmp_path / 'plain.png')
    img.save(png)
    jpg = cv2.imencode('.jpg', np.zeros((30, 50, 3), np.uint8))[1].tobytes()
    bad = {'empty.png': (b'', 'empty file (0 bytes)'),
           'text.png': (b'not an image\n', 'not an image that PIL can identify'),
           'cut.jpg': (jpg[:100], 'truncated or corrupt JPEG ('),
           'cut.png': (png.read_bytes()[:12], 'truncated or corrupt PNG (PIL cannot read its '
                                              'header)')}
    for name, (content, why) in bad.items():
        (tmp_path / name).write_bytes(content)
        assert probe_image(str(tmp_path / name)).startswith(why), name
    assert probe_image(str(tmp_path / 'missing.png')) == 'file not found'
    # a label map cut after its header: the header reads, the pixels do not
    lab = cv2.imencode('.png', np.arange(48 * 64).reshape(48, 64).astype(np.uint8) % 7)[1]
    (tmp_path / 'cut_label.png').write_bytes(lab.tobytes()[:200])
    assert isinstance(probe_image(str(tmp_path / 'cut_label.png')), ImageHeader)
    assert probe_label_map(str(tmp_path / 'cut_label.png')).startswith(
        'truncated or corrupt PNG (OSError: ')


def test_label_maps_and_mmseg_label_mapping(tmp_path):
    from mmseg.datasets.transforms import LoadAnnotations
    path = str(tmp_path / 'lab.png')
    stored = np.array([[0, 1, 2, 3], [4, 150, 151, 255]], np.uint8)
    cv2.imwrite(path, stored)
    assert probe_label_map(path) == LabelMap(4, 2, 1, (0, 1, 2, 3, 4, 150, 151, 255))
    label_map = {0: 255, 1: 0, 2: 255, 3: 1}  # keep old classes 1 and 3
    bad = invalid_label_values(probe_label_map(path).values, 2, 255, True, label_map)
    # mmseg itself: every stored value not in `bad` loads as a class or the ignore index
    loaded = LoadAnnotations(reduce_zero_label=True)(dict(
        seg_map_path=path, reduce_zero_label=True, label_map=label_map, seg_fields=[]))
    out = loaded['gt_seg_map']
    ok = (out < 2) | (out == 255)
    assert sorted(int(v) for v in stored[~ok]) == bad == [150, 151]
    cv2.imwrite(path, np.zeros((2, 4, 3), np.uint8))
    assert probe_label_map(path) == LabelMap(4, 2, 3, ())
    assert invalid_label_values([300, -1, 2], 3) == [300, -1]  # stored as 8-bit by mmseg


# ------------------------------------------------------------------ the cache and options

def test_second_run_builds_nothing_and_reads_no_data_file(coco_src, tmp_path, monkeypatch):
    cfg = coco_config(coco_src, tmp_path / 'wd')
    first = verify_datasets(cfg, 'train', quiet=True)
    assert [r['cached'] for r in first.values()] == [False, False]
    assert osp.isdir(tmp_path / '.dataset_check')  # beside the work dir
    opened, real_open = [], builtins.open

    def recording_open(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    def no_load(self):
        raise AssertionError('the dataset was loaded again')
    monkeypatch.setattr(builtins, 'open', recording_open)
    monkeypatch.setattr(CocoDataset, 'load_data_list', no_load)
    second = verify_datasets(cfg, 'train', quiet=True)
    monkeypatch.undo()
    assert second == {k: dict(v, cached=True) for k, v in first.items()}
    assert opened and not [f for f in opened if f.startswith(coco_src)], opened
    assert all(f.startswith(str(tmp_path / '.dataset_check')) for f in opened)


def test_cache_sees_a_removed_image(coco, tmp_path):
    cfg = coco_config(coco, tmp_path / 'wd', val=False)
    assert not verify_datasets(cfg, 'train', quiet=True)['train_dataloader']['cached']
    assert verify_datasets(cfg, 'train', quiet=True)['train_dataloader']['cached']
    os.remove(osp.join(coco, 'train', '000002.png'))
    assert '000002.png' in failure(lambda: verify_datasets(cfg, 'train', quiet=True))


def test_options_of_the_config(coco_src, tmp_path, monkeypatch):
    cfg = coco_config(coco_src, tmp_path / 'wd', dataset_check=False)
    monkeypatch.setattr(CocoDataset, 'load_data_list', lambda self: 1 / 0)
    assert verify_datasets(cfg, 'train') == {}  # nothing loaded
    monkeypatch.undo()
    cfg.dataset_check = dict(workers=1, cache_dir=None)
    for _ in range(2):
        assert not verify_datasets(cfg, 'train', quiet=True)['train_dataloader']['cached']
    assert not osp.exists(tmp_path / '.dataset_check')
    cfg.dataset_check = dict(cache_dir=str(tmp_path / 'elsewhere'))
    verify_datasets(cfg, 'train', quiet=True)
    assert len(os.listdir(tmp_path / 'elsewhere')) == 2  # one entry per dataset


def test_num_classes_against_the_built_datasets(coco_src, tmp_path):
    model = dict(bbox_head=dict(num_classes=80), rpn_head=dict(num_classes=1),
                 roi_head=dict(mask_head=[dict(num_classes=3)]))
    cfg = coco_config(coco_src, tmp_path / 'wd', model=model)
    with pytest.raises(ConfigError) as e:
        check_num_classes(cfg, 'train')
    assert str(e.value) == (
        'train_dataloader has 3 classes (circle, square, triangle) but the model has '
        'model.bbox_head.num_classes=80. Set num_classes=3 in the config (e.g. --cfg-options '
        'model.bbox_head.num_classes=3) or fix metainfo.classes.\n'
        'val_dataloader has 3 classes (circle, square, triangle) but the model has '
        'model.bbox_head.num_classes=80. Set num_classes=3 in the config (e.g. --cfg-options '
        'model.bbox_head.num_classes=3) or fix metainfo.classes.')
    cfg.model.bbox_head.num_classes = 3
    check_num_classes(cfg, 'train')
    # no metainfo: the dataset type's classes (COCO's 80) count
    cfg.test_dataloader = dict(dataset=coco_dataset(coco_src, 'val', metainfo=None))
    with pytest.raises(ConfigError, match='test_dataloader has 80 classes .person, bicycle'):
        check_num_classes(cfg, 'test')


# ------------------------------------------------------------------ the tool

def _tool():
    spec = importlib.util.spec_from_file_location(
        'lsnet_verify_dataset_tool', osp.join(ROOT, 'tools', 'misc', 'verify_dataset.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_verify_dataset_tool(coco, tmp_path, capsys):
    config = str(tmp_path / 'coco_cfg.py')
    cfg = coco_config(coco, tmp_path / 'wd', dataset_check=False)
    cfg.test_dataloader = dict(dataset=coco_dataset(coco, 'val', test_mode=True))
    cfg.dump(config)
    tool = _tool()
    tool.main([config, '--no-cache'])
    out = capsys.readouterr().out.splitlines()
    assert out == ['train_dataloader: 4 images, ok', 'val_dataloader: 2 images, ok',
                   'test_dataloader: 2 images, ok']
    assert not osp.exists(tmp_path / '.dataset_check')
    for cached in ('', ' (cached)'):
        tool.main([config, '--phase', 'train', '--cfg-options', 'val_cfg=None'])
        assert capsys.readouterr().out.splitlines() == [f'train_dataloader: 4 images, ok{cached}']
    open(osp.join(coco, 'val', '000001.png'), 'wb').close()
    with pytest.raises(SystemExit) as e:
        run_tool(lambda: tool.main([config, '--phase', 'test']))
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert re.search(r"^error: dataset check failed with 1 problem; test_dataloader: 1 of 2 "
                     r"images cannot be read: '.*000001.png' \(empty file \(0 bytes\)\)", err,
                     re.M), err


# ------------------------------------------------------------------ speed

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
    with open(ann(root, 'train'), 'w') as f:
        json.dump(dict(images=images, annotations=anns, categories=cats), f)
    return root


def test_check_time_on_thousands_of_images(tmp_path, monkeypatch):
    n = 3000
    root = _many_images(str(tmp_path / 'many'), n)
    cfg = run_config('mmdet', tmp_path / 'wd', coco_dataset(root, 'train'))
    pools = []

    class RecordingPool(verify.ProcessPoolExecutor):
        def __init__(self, workers, **kwargs):
            pools.append(workers)
            super().__init__(workers, **kwargs)
    monkeypatch.setattr(verify, 'ProcessPoolExecutor', RecordingPool)
    start = time.perf_counter()
    cold = verify_datasets(cfg, 'train', workers=2, quiet=True)['train_dataloader']
    cold_s = time.perf_counter() - start
    start = time.perf_counter()
    warm = verify_datasets(cfg, 'train', workers=2, quiet=True)['train_dataloader']
    warm_s = time.perf_counter() - start
    print(f'\ndataset check of {n} images: {cold_s:.3f} s cold ({1000 * cold_s / n:.3f} s per '
          f'1,000 images, {os.cpu_count()} CPUs), {warm_s:.3f} s cached '
          f'({1000 * warm_s / n:.4f} s per 1,000)')
    assert cold == dict(images=n, cached=False, warnings=[])
    assert warm == dict(images=n, cached=True, warnings=[])
    assert pools == [2]  # read by two forked processes
    assert warm_s < cold_s / 3
