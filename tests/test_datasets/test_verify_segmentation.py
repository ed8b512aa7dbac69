"""lsnet_mm.datasets.verify on segmentation datasets: CheckedADE20KDataset and mmseg's
ADE20KDataset (generated ADE20K-layout data), mmseg's BaseSegDataset and a user subclass
(label maps written here), train, val and test splits: label maps of another size,
label values outside the classes (as mmseg maps them: reduce_zero_label, label_map),
colour label maps, unreadable files, empty splits; and the file-naming errors of
CheckedADE20KDataset when the pipeline loads a damaged sample."""
import os
import os.path as osp
import re
import shutil

import cv2
import numpy as np
import pytest
from dataset_verify_helpers import DEMO_ADE, ade_dataset, failure, run_config
from mmseg.datasets import BaseSegDataset

from lsnet_mm.datasets.verify import verify_datasets
from lsnet_mm.utils.errors import DatasetError, ImageDecodeError, SegLabelError
from product_helpers import SEG, tiny_ade


@pytest.fixture(scope='module')
def ade_src(tmp_path_factory):
    return tiny_ade(str(tmp_path_factory.mktemp('ade')), num_train=4, num_val=3)


@pytest.fixture
def ade(ade_src, tmp_path):
    """A copy to damage."""
    return shutil.copytree(ade_src, str(tmp_path / 'ade'))


def _stem(split, i):
    return f'ADE_{"train" if split == "training" else "val"}_{i:08d}'


def _files(root, split, i):
    return (osp.join(root, 'images', split, f'{_stem(split, i)}.jpg'),
            osp.join(root, 'annotations', split, f'{_stem(split, i)}.png'))


def _ade_config(root, work_dir, **kwargs):
    return run_config('mmseg', work_dir, ade_dataset(root, 'training', **kwargs),
                      ade_dataset(root, 'validation', **kwargs),
                      test=ade_dataset(root, 'validation', **kwargs))


def _set_label(path, value):
    lab = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    lab[:2, :2] = value
    cv2.imwrite(path, lab)
    return sorted({int(v) for v in np.unique(lab)})


def check(cfg, phase='train'):
    return verify_datasets(cfg, phase, cache_dir='')


def test_clean_ade_passes(ade_src, tmp_path, capsys):
    assert check(_ade_config(ade_src, tmp_path / 'wd')) == {
        'train_dataloader': dict(images=4, cached=False, warnings=[]),
        'val_dataloader': dict(images=3, cached=False, warnings=[])}
    assert re.fullmatch(r'dataset check: train_dataloader 4 images, val_dataloader 3 images: '
                        r'ok in [\d.]+ s\n', capsys.readouterr().out)


def test_label_map_of_another_size(ade, tmp_path):
    img, seg = _files(ade, 'training', 2)
    cv2.imwrite(seg, cv2.resize(cv2.imread(seg, 0), (40, 30), interpolation=cv2.INTER_NEAREST))
    msg = failure(lambda: check(_ade_config(ade, tmp_path / 'wd')), SegLabelError)
    assert (f'train_dataloader: 1 of the 4 label maps do not have the size of their image '
            f'(width x height): label map {seg!r} is 40x30 but its image {img!r} is 64x48') in msg


@pytest.mark.parametrize('dataset_type', ['lsnet_mm.CheckedADE20KDataset', 'ADE20KDataset'])
def test_label_values_outside_the_classes_in_train_val_and_test(ade, tmp_path, dataset_type):
    """ADE20K maps store 0 (ignored) and the ids 1-150; reduce_zero_label and the label_map
    of the six demo classes map every other id to the ignore index, so 151 and 200 are the
    values no class or ignore index comes from."""
    train_seg, val_seg = _files(ade, 'training', 1)[1], _files(ade, 'validation', 3)[1]
    train_values, val_values = _set_label(train_seg, 200), _set_label(val_seg, 151)
    cfg = _ade_config(ade, tmp_path / 'wd', type=dataset_type)
    msg = failure(lambda: check(cfg), SegLabelError)
    assert (f'train_dataloader: 1 of the 4 label maps hold values outside the 6 classes of this '
            f'dataset: {train_seg!r} holds value(s) [200] (values in the file: '
            f'{train_values})') in msg
    assert (f'val_dataloader: 1 of the 3 label maps hold values outside the 6 classes of this '
            f'dataset: {val_seg!r} holds value(s) [151] (values in the file: {val_values})') in msg
    assert ('With 6 classes, ignore index 255, reduce_zero_label=True and the label_map of '
            'metainfo.classes, the valid values as stored are 0-150, 255.') in msg
    assert '"Target N is out of bounds"' in msg and 'a wrong mIoU' in msg
    test_msg = failure(lambda: check(cfg, 'test'), SegLabelError)
    assert test_msg.startswith(f'dataset check failed with 1 problem\ntest_dataloader: 1 of '
                               f'the 3 label maps hold values outside the 6 classes of this '
                               f'dataset: {val_seg!r}')


def test_unreadable_ade_files(ade, tmp_path):
    empty, _ = _files(ade, 'validation', 1)
    _, text = _files(ade, 'validation', 2)
    open(empty, 'wb').close()
    with open(text, 'w') as f:
        f.write('not a label map\n')
    msg = failure(lambda: check(_ade_config(ade, tmp_path / 'wd')), ImageDecodeError)
    assert f'val_dataloader: 1 of 3 images cannot be read: {empty!r} (empty file (0 bytes))' \
        in msg
    assert (f'val_dataloader: 1 of 3 label maps cannot be read: {text!r} (not an image that PIL '
            f'can identify)') in msg


def test_colour_label_map(ade, tmp_path):
    _, seg = _files(ade, 'training', 3)
    cv2.imwrite(seg, cv2.cvtColor(cv2.imread(seg, 0), cv2.COLOR_GRAY2BGR))
    msg = failure(lambda: check(_ade_config(ade, tmp_path / 'wd')), SegLabelError)
    assert (f'train_dataloader: 1 of the 4 label maps are colour (multi-channel) images, not '
            f'maps of class indices: {seg!r} has 3 channels.') in msg


def test_missing_ade_folder_is_a_dataset_error(tmp_path):
    missing = str(tmp_path / 'nowhere')
    from mmengine.registry import DefaultScope
    from mmseg.registry import DATASETS
    with DefaultScope.overwrite_default_scope('mmseg'), pytest.raises(DatasetError) as e:
        DATASETS.build(ade_dataset(missing, 'validation'))
    assert osp.join(missing, 'images/validation') in str(e.value)
    assert 'ADEChallengeData2016.zip' in str(e.value)
    msg = failure(lambda: check(_ade_config(missing, tmp_path / 'wd')))
    assert f'CheckedADE20KDataset files not found: data_root {missing!r}' in msg
    assert 'ADEChallengeData2016.zip' in msg


# ------------------------------------------------------------------ mmseg's BaseSegDataset

def _write_pairs(root, split, labels, img_suffix='.jpg', seg_suffix='.png'):
    """One 16x12 image per label array, named 0000, 0001, ..."""
    os.makedirs(osp.join(root, 'img', split), exist_ok=True)
    os.makedirs(osp.join(root, 'ann', split), exist_ok=True)
    for i, lab in enumerate(labels):
        img = np.full((12, 16, 3), 40 * i, np.uint8)
        cv2.imwrite(osp.join(root, 'img', split, f'{i:04d}{img_suffix}'), img)
        cv2.imwrite(osp.join(root, 'ann', split, f'{i:04d}{seg_suffix}'), lab)
    return root


def _label(*values):
    lab = np.zeros((12, 16), np.uint8)
    for k, v in enumerate(values):
        lab[k] = v
    return lab


def _base_seg(root, split, **kwargs):
    ds = dict(type='BaseSegDataset', data_root=root, metainfo=dict(classes=('a', 'b', 'c')),
              data_prefix=dict(img_path=f'img/{split}', seg_map_path=f'ann/{split}'))
    ds.update(kwargs)
    return ds


def test_base_seg_dataset_values_and_empty_split(tmp_path):
    root = _write_pairs(str(tmp_path / 'd'), 'train', [_label(1, 2, 255), _label(2, 3)])
    os.makedirs(osp.join(root, 'img', 'val'))
    os.makedirs(osp.join(root, 'ann', 'val'))
    cfg = run_config('mmseg', tmp_path / 'wd', _base_seg(root, 'train'), _base_seg(root, 'val'))
    msg = failure(lambda: check(cfg))
    seg = osp.join(root, 'ann', 'train', '0001.png')
    assert (f'train_dataloader: 1 of the 2 label maps hold values outside the 3 classes of this '
            f'dataset: {seg!r} holds value(s) [3] (values in the file: [0, 2, 3]). With 3 '
            f'classes, ignore index 255, reduce_zero_label=False, the valid values as stored are '
            f'0-2, 255.') in msg
    assert (f"val_dataloader: the dataset (data_root={root!r}) holds no sample: the annotation "
            f"file lists no images or no .jpg file is in {osp.join(root, 'img/val')!r}") in msg
    # reduce_zero_label: stored 1-3 are the classes 0-2, 0 is ignored, so 3 is valid
    cfg.train_dataloader.dataset.reduce_zero_label = True
    cfg.val_cfg = None
    assert check(cfg) == {'train_dataloader': dict(images=2, cached=False, warnings=[])}


class RoadSceneDataset(BaseSegDataset):
    """A user's layout: PNG images, '_label.png' maps, a split file."""

    METAINFO = dict(classes=('background', 'road', 'car'), palette=[[0, 0, 0], [128, 64, 128],
                                                                    [0, 0, 142]])

    def __init__(self, **kwargs):
        super().__init__(img_suffix='.png', seg_map_suffix='_label.png', **kwargs)


def test_user_subclass_with_label_map_and_split_file(tmp_path):
    root = _write_pairs(str(tmp_path / 'r'), 'val', [_label(1, 2), _label(0, 3), _label(2)],
                        img_suffix='.png', seg_suffix='_label.png')
    with open(osp.join(root, 'val.txt'), 'w') as f:
        f.write('0000\n0001\n0002\n0002\n')
    ds = dict(type=RoadSceneDataset, data_root=root, ann_file='val.txt',
              metainfo=dict(classes=('road', 'car')),  # label_map {0: 255, 1: 0, 2: 1}
              data_prefix=dict(img_path='img/val', seg_map_path='ann/val'))
    cfg = run_config('mmseg', tmp_path / 'wd', ds, test=ds)
    msg = failure(lambda: check(cfg, 'test'), SegLabelError)
    seg = osp.join(root, 'ann', 'val', '0001_label.png')
    assert (f'test_dataloader: 1 of the 4 label maps hold values outside the 2 classes of this '
            f'dataset: {seg!r} holds value(s) [3] (values in the file: [0, 3])') in msg
    assert 'and the label_map of metainfo.classes, the valid values as stored are 0-2, 255' in msg
    cv2.imwrite(seg, _label(0, 2))
    img = osp.join(root, 'img', 'val', '0002.png')
    assert check(cfg, 'test')['test_dataloader'] == dict(images=4, cached=False, warnings=[
        f"1 image is listed more than once ({img!r} (2 times)): sampled that many times as "
        f"often."])


# ------------------------------------------------------------------ the dataset itself

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
    empty, text = _files(ade, split, 1)[0], _files(ade, split, 2)[1]
    open(empty, 'wb').close()
    with open(text, 'w') as f:
        f.write('not a label map\n')
    seg = _files(ade, split, 3)[1]
    cv2.imwrite(seg, cv2.resize(cv2.imread(seg, 0), (40, 30), interpolation=cv2.INTER_NEAREST))
    bad = _files(ade, split, 4 if split == 'training' else 2)[1]
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
    if split == 'training':
        cv2.imwrite(bad, np.full((48, 64), 200, np.uint8))
        with pytest.raises(SegLabelError, match=re.escape(
                f'label map {bad!r} holds value(s) [200] outside the {len(DEMO_ADE)} classes of '
                f'this dataset (values in the file: [200])')):
            ds[index[_stem(split, 4)]]
