"""lsnet_mm.datasets.verify on detection datasets: mmdet's CocoDataset (COCO-format files
read raw and through the dataset) and a BaseDetDataset subclass of a format of its own,
train and val splits, each defect of issue 18 named with its file and the fix; clean data
passes with one line; warnings do not stop the run."""
import json
import math
import os
import os.path as osp
import re

import pytest
from dataset_verify_helpers import (
    SHAPES,
    ann,
    coco_config,
    coco_dataset,
    edit_json,
    failure,
    run_config,
)
from mmdet.datasets import BaseDetDataset

from lsnet_mm.datasets.verify import verify_datasets
from lsnet_mm.utils.errors import DatasetError, ImageDecodeError


def check(cfg, phase='train'):
    return verify_datasets(cfg, phase, cache_dir='')


# ------------------------------------------------------------------ clean data

def test_clean_train_and_val_pass_with_one_line(coco_src, tmp_path, capsys):
    cfg = coco_config(coco_src, tmp_path / 'wd')
    assert verify_datasets(cfg, 'train') == {
        'train_dataloader': dict(images=4, cached=False, warnings=[]),
        'val_dataloader': dict(images=2, cached=False, warnings=[])}
    out, err = capsys.readouterr()
    assert err == ''
    assert re.fullmatch(r'dataset check: train_dataloader 4 images, val_dataloader 2 images: '
                        r'ok in [\d.]+ s\n', out), out
    assert all(r['cached'] for r in verify_datasets(cfg, 'train').values())
    assert capsys.readouterr().out.rstrip().endswith(' s (cached)')


# ------------------------------------------------------------------ the raw COCO file

def test_truncated_annotation_json(coco, tmp_path):
    path = ann(coco, 'train')
    with open(path, 'rb') as f:
        content = f.read()
    with open(path, 'wb') as f:
        f.write(content[:len(content) // 2])
    msg = failure(lambda: check(coco_config(coco, tmp_path / 'wd')))
    assert f'train_dataloader: annotation file {path!r} is not valid JSON' in msg
    assert re.search(rf'line 1, column \d+ \(character {len(content) // 2} of '
                     rf'{len(content) // 2}\); the file ends there, so it is truncated', msg)


def test_duplicate_image_ids_file_names_and_annotation_ids(coco, tmp_path):
    """Train: an image id listed twice; val: one file under two ids and an annotation id
    used twice (pycocotools would keep one of each): one error names all three."""
    def same_id(data):
        data['images'][1]['id'] = data['images'][0]['id']

    def shared_file_and_ann_id(data):
        data['images'][1]['file_name'] = data['images'][0]['file_name']
        data['annotations'][1]['id'] = data['annotations'][0]['id']
    edit_json(ann(coco, 'train'), same_id)
    val = edit_json(ann(coco, 'val'), shared_file_and_ann_id)
    msg = failure(lambda: check(coco_config(coco, tmp_path / 'wd')))
    train_ann, val_ann = ann(coco, 'train'), ann(coco, 'val')
    assert (f"train_dataloader: {train_ann!r} lists 1 image id more than once: id 1 for "
            f"'000000.png' and '000001.png'. pycocotools keeps one image per id") in msg
    assert (f"val_dataloader: {val_ann!r} lists 1 file under more than one image id: "
            f"'000000.png' as ids 1, 2.") in msg
    reused = val['annotations'][0]['id']
    assert (f"val_dataloader: {val_ann!r} uses 1 annotation id more than once: {reused} (2 "
            f"times). pycocotools keeps one annotation per id") in msg
    assert 'Give every annotation its own id.' in msg


def test_classes_in_another_order_than_the_file(coco, tmp_path):
    order = ('square', 'circle', 'triangle')
    cfg = coco_config(coco, tmp_path / 'wd', train_kwargs=dict(metainfo=dict(classes=order)))
    msg = failure(lambda: check(cfg))
    assert (f"train_dataloader: metainfo.classes lists the classes in another order than the "
            f"categories of {ann(coco, 'train')!r}: metainfo.classes: ['square', 'circle', "
            f"'triangle']; the file's order: ['circle', 'square', 'triangle']") in msg
    assert "label 0, the file's 'circle', would be called 'square'" in msg
    assert "The check stops rather than map the labels by name" in msg
    assert "classes=('circle', 'square', 'triangle')" in msg
    # what the message says mmdet does: the file's first category gets label 0, named
    # by the config's first class
    from mmdet.registry import DATASETS
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmdet'):
        ds = DATASETS.build(dict(cfg.train_dataloader.dataset, pipeline=[]))
    data = json.load(open(ann(coco, 'train')))
    circle = next(a for a in data['annotations'] if a['category_id'] == 1)
    sample = next(ds.get_data_info(i) for i in range(len(ds))
                  if ds.get_data_info(i)['img_id'] == circle['image_id'])
    labels = {inst['bbox_label'] for inst in sample['instances']
              if math.isclose(inst['bbox'][0], circle['bbox'][0])}
    assert [ds.metainfo['classes'][label] for label in labels] == ['square']


def test_class_name_typo_lists_both(coco, tmp_path):
    cfg = coco_config(coco, tmp_path / 'wd',
                      train_kwargs=dict(metainfo=dict(classes=('circle', 'sqare', 'triangle'))))
    msg = failure(lambda: check(cfg))
    assert "1 of the 3 names in metainfo.classes match no category of" in msg
    assert "['sqare']" in msg and "close matches: 'sqare': 'square'" in msg
    assert "metainfo.classes: ['circle', 'sqare', 'triangle']" in msg
    assert "categories of the file: ['circle', 'square', 'triangle']" in msg


def test_non_finite_and_non_numeric_box_values_are_named_as_such(coco, tmp_path):
    def damage(data):
        data['annotations'][0]['bbox'][0] = float('nan')
        data['annotations'][1]['bbox'][2] = '12'
        data['annotations'][2]['area'] = float('inf')
    data = edit_json(ann(coco, 'train'), damage)
    msg = failure(lambda: check(coco_config(coco, tmp_path / 'wd')))
    files = {im['id']: im['file_name'] for im in data['images']}
    a = data['annotations']
    assert (f"train_dataloader: {ann(coco, 'train')!r} has 3 annotations whose box values are not "
            f"finite numbers: annotation id {a[0]['id']} (image {files[a[0]['image_id']]!r}) "
            f"bbox [nan, ") in msg
    assert f": x is NaN; annotation id {a[1]['id']} (image {files[a[1]['image_id']]!r})" in msg
    assert ": width is a str; annotation id" in msg and ": area is infinite." in msg
    assert 'outside the image' not in msg.split('mmdet would drop')[0]


# ------------------------------------------------------------------ files and splits

def test_empty_train_image_and_missing_val_image(coco, tmp_path):
    empty, missing = osp.join(coco, 'train', '000002.png'), osp.join(coco, 'val', '000001.png')
    open(empty, 'wb').close()
    os.remove(missing)
    msg = failure(lambda: check(coco_config(coco, tmp_path / 'wd')), ImageDecodeError)
    assert (f"train_dataloader: 1 of 4 images cannot be read: {empty!r} (empty file (0 bytes))"
            f". Download or generate them again, or remove them from {ann(coco, 'train')!r}.") \
        in msg
    assert (f"val_dataloader: 1 of the 2 images listed in {ann(coco, 'val')!r} are missing: "
            f"{missing!r}. Check data_root and data_prefix") in msg


def test_empty_splits_name_the_filter_and_the_fix(coco, tmp_path):
    edit_json(ann(coco, 'train'), lambda d: d.update(annotations=[]))
    edit_json(ann(coco, 'val'), lambda d: d.update(images=[], annotations=[]))
    msg = failure(lambda: check(coco_config(coco, tmp_path / 'wd')))
    assert (f"train_dataloader: the dataset (data_root={coco + '/'!r} ann_file="
            f"{ann(coco, 'train')!r}) holds no sample after its filter_cfg="
            f"{{'filter_empty_gt': True}}") in msg
    assert '--cfg-options train_dataloader.dataset.filter_cfg.filter_empty_gt=False' in msg
    assert (f"val_dataloader: the dataset (data_root={coco + '/'!r} ann_file="
            f"{ann(coco, 'val')!r}) holds no sample: the annotation file lists no images") in msg
    assert 'need at least one array to concatenate' in msg


def test_missing_data_is_named_with_how_to_get_it(tmp_path):
    root = str(tmp_path / 'nowhere')
    cfg = coco_config(root, tmp_path / 'wd', dataset_check=False)
    msg = failure(lambda: check(cfg))  # files are checked even with the content check off
    assert (f"train_dataloader, val_dataloader: CocoDataset files not found: data_root "
            f"{root + '/'!r}") in msg
    assert 'COCO 2017 is expected' in msg
    cfg.data_help = 'Run make_data.sh --root {root}.'
    assert 'Run make_data.sh --root ' + root + '.' in failure(lambda: check(cfg))


def test_invalid_boxes_are_warnings(coco, tmp_path, capsys):
    def damage(data):
        anns = {a['id']: a for a in data['annotations']}
        anns[1]['bbox'][0] = 500.0  # entirely outside its 96x96 image
        anns[2]['bbox'][2] = -5.0  # negative width
        anns[3]['bbox'][0] = -20.0  # partly outside: Resize clips it
    data = edit_json(ann(coco, 'train'), damage)
    files = {im['id']: im['file_name'] for im in data['images']}
    img_of = {a['id']: files[a['image_id']] for a in data['annotations']}
    results = verify_datasets(coco_config(coco, tmp_path / 'wd'), 'train', cache_dir='')
    err = capsys.readouterr().err
    [line] = [s for s in err.splitlines() if s.startswith('warning: dataset check')]
    assert line.startswith(f"warning: dataset check: train_dataloader: {ann(coco, 'train')!r}: "
                           f"2 of the 7 boxes are invalid and left out by mmdet's CocoDataset")
    assert f'1 entirely outside the image (e.g. annotation id 1 in {img_of[1]!r}' in line
    assert f'1 with width or height < 1 px or area <= 0 (e.g. annotation id 2 in ' \
           f'{img_of[2]!r}' in line
    assert f'1 box extends more than 1 px past the image (e.g. annotation id 3 in ' \
           f'{img_of[3]!r}' in line and "the pipeline's Resize clips them" in line
    assert results['train_dataloader']['warnings'] == [line.split('train_dataloader: ', 1)[1]]
    assert results['val_dataloader']['warnings'] == []


def test_concat_dataset_names_the_faulty_part(coco, tmp_path):
    open(osp.join(coco, 'val', '000000.png'), 'wb').close()
    concat = dict(type='ConcatDataset', datasets=[coco_dataset(coco, 'train'),
                                                  coco_dataset(coco, 'val')])
    msg = failure(lambda: check(run_config('mmdet', tmp_path / 'wd', concat)), ImageDecodeError)
    assert msg.startswith('dataset check failed with 1 problem\n'
                          'train_dataloader.dataset.datasets[1]: 1 of 2 images cannot be read')


# ------------------------------------------------------------------ a dataset of its own

class BoxListDataset(BaseDetDataset):
    """A user's format: a JSON list of {id, file, width, height, boxes: [[x1,y1,x2,y2,c]]}."""

    METAINFO = dict(classes=SHAPES)

    def load_data_list(self):
        with open(self.ann_file) as f:
            rows = json.load(f)
        return [dict(img_path=osp.join(self.data_prefix['img'], r['file']), img_id=r['id'],
                     width=r['width'], height=r['height'], seg_map_path=None,
                     instances=[dict(bbox=b[:4], bbox_label=b[4], ignore_flag=0)
                                for b in r['boxes']])
                for r in rows]


def _box_list(coco, split):
    data = json.load(open(ann(coco, split)))
    rows = [dict(id=im['id'], file=im['file_name'], width=im['width'], height=im['height'],
                 boxes=[[x, y, x + w, y + h, a['category_id'] - 1]
                        for a in data['annotations'] if a['image_id'] == im['id']
                        for x, y, w, h in [a['bbox']]])
            for im in data['images']]
    path = osp.join(coco, f'{split}_boxes.json')
    with open(path, 'w') as f:
        json.dump(rows, f)
    return path, rows


def _own_config(coco, work_dir):
    def ds(split):
        return dict(type=BoxListDataset, data_root=coco, ann_file=f'{split}_boxes.json',
                    data_prefix=dict(img=f'{split}/'))
    return run_config('mmdet', work_dir, ds('train'), ds('val'))


def test_own_dataset_type_clean_and_each_defect(coco, tmp_path):
    for split in ('train', 'val'):
        _box_list(coco, split)
    cfg = _own_config(coco, tmp_path / 'wd')
    assert check(cfg) == {'train_dataloader': dict(images=4, cached=False, warnings=[]),
                          'val_dataloader': dict(images=2, cached=False, warnings=[])}
    path, rows = _box_list(coco, 'train')
    rows[3]['width'] = 80
    with open(path, 'w') as f:
        json.dump(rows, f)
    img = [osp.join(coco, 'train', r['file']) for r in rows]
    assert check(cfg)['train_dataloader']['warnings'] == [
        f"1 image differs in size from the width x height the annotations list ({img[3]!r} is "
        f"96x96, listed as 80x96): the boxes may not fit the loaded image."]
    rows[0]['boxes'][0][0] = float('nan')
    rows[1]['boxes'][0][4] = 7
    rows[2]['id'] = rows[3]['id']
    with open(path, 'w') as f:
        json.dump(rows, f)
    os.remove(osp.join(coco, 'val', '000001.png'))
    with pytest.raises(DatasetError) as e:
        check(cfg)
    msg = str(e.value)
    assert (f"train_dataloader: 1 box of the samples is not 4 finite numbers: {img[0]!r} "
            f"instance 0 bbox [nan, ") in msg and "(NaN). mmdet would train on them" in msg
    assert (f"train_dataloader: 1 box has a bbox_label outside the 3 classes (0-2): {img[1]!r} "
            f"instance 0 bbox_label 7.") in msg
    assert (f"train_dataloader: 1 image id is more than one sample: id {rows[3]['id']} for "
            f"{img[2]!r} and {img[3]!r}.") in msg
    assert f"val_dataloader: 1 of the 2 images listed in {osp.join(coco, 'val_boxes.json')!r}" \
        f" are missing: {osp.join(coco, 'val', '000001.png')!r}" in msg
    assert 'lacks fields' not in msg  # a JSON list: not read as a COCO file
