"""AlignResize: the paper's ADE20K test-time resize (keep ratio at 2048x512, then both
sides rounded up to a multiple of 32), registered in scope lsnet_mm and used by the ADE20K
configs' test pipelines."""
import os.path as osp

import numpy as np
import pytest
from mmengine.config import Config

import lsnet_mm  # noqa: F401
from lsnet_mm.datasets import AlignResize, align_resize_shape
from product_helpers import ROOT

# (height, width) in -> (height, width) out, worked out by hand:
# factor = min(2048 / long side, 512 / short side); side = int(side * factor + 0.5);
# then each side rounded up to a multiple of 32.
CASES = [
    ((512, 683), (512, 704)),    # ADE20K landscape: factor 1, 683 -> 704
    ((683, 512), (704, 512)),    # portrait
    ((256, 256), (512, 512)),    # upscaled x2, already aligned
    ((500, 4000), (256, 2048)),  # long side bound: factor 0.512
    ((200, 300), (512, 768)),    # factor 2.56, aligned
    ((250, 333), (512, 704)),    # factor 2.048: 333 -> 682 -> 704
    ((375, 500), (512, 704)),    # factor 1.3653: 500 -> 683 -> 704
    ((1, 4096), (32, 2048)),     # degenerate: 0.5 px -> 1 -> 32
]


@pytest.mark.parametrize('shape,expected', CASES)
def test_align_resize_sizes(shape, expected):
    h, w = shape
    img = np.random.RandomState(0).randint(0, 255, (h, w, 3)).astype(np.uint8)
    seg = (np.arange(h * w) % 7).reshape(h, w).astype(np.uint8)
    t = AlignResize(scale=(2048, 512), size_divisor=32)
    out = t(dict(img=img, gt_seg_map=seg, img_shape=(h, w), ori_shape=(h, w)))
    assert out['img'].shape == expected + (3,)
    assert out['img_shape'] == expected
    assert out['gt_seg_map'].shape == expected
    assert out['gt_seg_map'].dtype == np.uint8
    assert set(np.unique(out['gt_seg_map'])) <= set(range(7))  # nearest: no new labels
    assert out['scale_factor'] == pytest.approx((expected[1] / w, expected[0] / h))
    assert out['keep_ratio'] is True
    assert align_resize_shape(shape) == expected


def test_align_resize_other_divisor_and_scale():
    t = AlignResize(scale=(576, 144), size_divisor=32)
    out = t(dict(img=np.zeros((144, 192, 3), np.uint8)))
    assert out['img'].shape[:2] == (160, 192)  # 144 -> 160
    t = AlignResize(scale=(2048, 512), size_divisor=64)
    out = t(dict(img=np.zeros((512, 683, 3), np.uint8)))
    assert out['img'].shape[:2] == (512, 704)  # 683 -> 704 = 11 x 64
    with pytest.raises(ValueError, match='size_divisor'):
        AlignResize(scale=(2048, 512), size_divisor=0)


def test_align_resize_is_registered_and_used_by_the_test_pipeline():
    from mmengine.registry import init_default_scope
    from mmseg.registry import TRANSFORMS
    init_default_scope('mmseg')
    t = TRANSFORMS.build(dict(type='lsnet_mm.AlignResize', scale=(2048, 512), size_divisor=32))
    assert isinstance(t, AlignResize)
    for arch in 'tsb':
        cfg = Config.fromfile(osp.join(ROOT, 'configs', f'fpn_lsnet_{arch}_ade20k.py'))
        for key in ('val_dataloader', 'test_dataloader'):
            steps = [s['type'] for s in cfg[key]['dataset']['pipeline']]
            assert steps == ['LoadImageFromFile', 'lsnet_mm.AlignResize', 'LoadAnnotations',
                             'PackSegInputs'], (arch, key, steps)
            resize = cfg[key]['dataset']['pipeline'][1]
            assert tuple(resize['scale']) == (2048, 512) and resize['size_divisor'] == 32
