"""The generated ADE20K-layout demo data (lsnet_mm.datasets.demo.ade_scenes): layout,
ADE20K's class ids, determinism and the manifest that keeps existing files."""
import hashlib
import os
import os.path as osp

import cv2
import numpy as np

from lsnet_mm.datasets.demo.ade_scenes import DEMO_ADE_IDS, DEMO_CLASSES, generate


def _digest(root):
    h = hashlib.sha256()
    for d, _, files in sorted(os.walk(root)):
        for f in sorted(files):
            h.update(osp.relpath(osp.join(d, f), root).encode())
            with open(osp.join(d, f), 'rb') as fh:
                h.update(fh.read())
    return h.hexdigest()


def test_demo_data_layout_convention_and_determinism(tmp_path):
    a, b = str(tmp_path / 'a'), str(tmp_path / 'b')
    generate(a, num_train=3, num_val=2, width=96, height=72, seed=5)
    generate(b, num_train=3, num_val=2, width=96, height=72, seed=5)
    assert _digest(a) == _digest(b)  # same arguments, same bytes
    c = str(tmp_path / 'c')
    generate(c, num_train=3, num_val=2, width=96, height=72, seed=6)
    assert _digest(a) != _digest(c)

    assert sorted(os.listdir(osp.join(a, 'images', 'training'))) == [
        f'ADE_train_0000000{i}.jpg' for i in (1, 2, 3)]
    assert sorted(os.listdir(osp.join(a, 'annotations', 'validation'))) == [
        'ADE_val_00000001.png', 'ADE_val_00000002.png']
    allowed = {0} | set(DEMO_ADE_IDS.values())
    seen = set()
    for split, prefix, n in (('training', 'train', 3), ('validation', 'val', 2)):
        for i in range(1, n + 1):
            img = cv2.imread(osp.join(a, 'images', split, f'ADE_{prefix}_{i:08d}.jpg'))
            lab = cv2.imread(osp.join(a, 'annotations', split, f'ADE_{prefix}_{i:08d}.png'),
                             cv2.IMREAD_UNCHANGED)
            assert img.shape == (72, 96, 3) and lab.shape == (72, 96) and lab.dtype == np.uint8
            values = set(np.unique(lab).tolist())
            assert values <= allowed
            seen |= values
    assert len(seen - {0}) >= 4  # several classes in a handful of images

    # the ids are ADE20K's: mmseg's class names at those (1-based) ids
    from mmseg.datasets import ADE20KDataset
    names = ADE20KDataset.METAINFO['classes']
    assert all(names[DEMO_ADE_IDS[c] - 1] == c for c in DEMO_CLASSES)

    # a second call with the same arguments keeps the files (manifest check)
    mtime = os.path.getmtime(osp.join(a, 'images', 'training', 'ADE_train_00000001.jpg'))
    generate(a, num_train=3, num_val=2, width=96, height=72, seed=5)
    assert os.path.getmtime(osp.join(a, 'images', 'training', 'ADE_train_00000001.jpg')) == mtime
