"""A small, deterministic, generated segmentation dataset in ADE20K's layout.

It lets the segmentation pipeline (configs, tools, metric) run end to end without
the real ADE20K download::

    ROOT/images/training/ADE_train_00000001.jpg      RGB street-like scenes
    ROOT/images/validation/ADE_val_00000001.jpg
    ROOT/annotations/training/ADE_train_00000001.png  uint8 label maps
    ROOT/annotations/validation/ADE_val_00000001.png

The label maps follow ADE20K's convention exactly: 0 is "other" (ignored after
mmseg's ``reduce_zero_label``) and 1..150 are ADE20K's class ids. Only six ids
occur, drawn as simple shapes with class-specific colours and textures:
wall (1, brick facades), sky (3, gradient), tree (5, blotchy crowns and trunks),
road (7, grey asphalt with lane marks), grass (10, noisy green), person (13,
ellipse bodies with heads, warm or purple clothes). Small "other" patches (0)
exercise the ignore label.
A config selects these classes with ``metainfo=dict(classes=DEMO_CLASSES)``;
mmseg then maps the ADE ids to 0..5 and every other id to the ignore index.

Same arguments, same files: every image is drawn from its own seeded generator.

Command line::

    python -m lsnet_mm.datasets.demo.ade_scenes --root data/demo_ade/ADEChallengeData2016
"""
import argparse
import json
import os
import os.path as osp

import cv2
import numpy as np

#: ADE20K class names (as in mmseg's ADE20KDataset) of the classes drawn, in ADE order.
DEMO_CLASSES = ('wall', 'sky', 'tree', 'road', 'grass', 'person')
#: Their ADE20K ids (1-based, as stored in ADE20K's annotation PNGs).
DEMO_ADE_IDS = dict(wall=1, sky=3, tree=5, road=7, grass=10, person=13)
OTHER = 0  # ADE20K's "other" label, ignored by mmseg (reduce_zero_label)

MANIFEST = 'lsnet_demo_manifest.json'
SPLITS = (('training', 'train'), ('validation', 'val'))


def _smooth_noise(rng, h, w, cell):
    """Low-frequency noise in [-1, 1]: a coarse random grid upsampled bilinearly."""
    gh, gw = max(2, h // cell + 2), max(2, w // cell + 2)
    grid = rng.uniform(-1, 1, (gh, gw)).astype(np.float32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_LINEAR)


def _textures(rng, h, w):
    """One full-frame RGB texture (float32, 0..255) per demo class, colours jittered."""
    yy = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    tex = {}
    # sky: smooth vertical gradient, bluer at the top
    top = np.array([rng.uniform(60, 110), rng.uniform(130, 175), rng.uniform(215, 255)])
    bottom = np.array([rng.uniform(165, 215), rng.uniform(200, 230), rng.uniform(235, 255)])
    sky = top + (bottom - top) * yy + rng.normal(0, 2, (h, w, 1))
    tex['sky'] = np.broadcast_to(sky, (h, w, 3))
    # wall: bricks with grey mortar lines, alternate rows offset by half a brick
    brick = np.array([rng.uniform(140, 190), rng.uniform(60, 100), rng.uniform(40, 75)])
    bh, bw = int(rng.integers(7, 11)), int(rng.integers(16, 24))
    ys, xs = np.mgrid[0:h, 0:w]
    row = ys // bh
    mortar = (ys % bh == 0) | (((xs + (row % 2) * (bw // 2)) % bw) == 0)
    wall = np.where(mortar[..., None], np.array([185., 180., 170.]), brick)
    tex['wall'] = wall + rng.normal(0, 7, (h, w, 1))
    # tree: dark green crowns with blotchy low-frequency variation
    leaf = np.array([rng.uniform(25, 60), rng.uniform(85, 125), rng.uniform(20, 50)])
    tex['tree'] = leaf + 35 * _smooth_noise(rng, h, w, 6)[..., None] \
        + rng.normal(0, 6, (h, w, 1))
    # road: grey asphalt, fine grain
    g = rng.uniform(80, 120)
    tex['road'] = np.array([g, g, g + rng.uniform(-6, 6)]) + rng.normal(0, 9, (h, w, 1))
    # grass: bright, very noisy green with vertical streaks
    grass = np.array([rng.uniform(70, 115), rng.uniform(150, 195), rng.uniform(45, 80)])
    streak = cv2.resize(rng.uniform(-1, 1, (max(2, h // 10), w)).astype(np.float32), (w, h))
    tex['grass'] = grass + 18 * streak[..., None] + rng.normal(0, 14, (h, w, 3))
    # person: clothes of a saturated warm or purple colour (never sky-blue or
    # grass-green), shading from left to right
    hue = rng.uniform(0, 30) if rng.random() < 0.6 else rng.uniform(135, 175)
    cloth = cv2.cvtColor(np.uint8([[[hue, rng.uniform(170, 255), rng.uniform(150, 230)]]]),
                         cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)
    xx = np.linspace(-1, 1, w, dtype=np.float32)[None, :, None]
    tex['person'] = cloth + 20 * xx + rng.normal(0, 4, (h, w, 1))
    return {k: np.clip(np.asarray(v, np.float32), 0, 255) for k, v in tex.items()}


def draw_sample(seed, width=192, height=144):
    """(RGB uint8 image, uint8 ADE20K label map) of one generated scene."""
    rng = np.random.default_rng(seed)
    h, w = height, width
    ids = DEMO_ADE_IDS
    label = np.zeros((h, w), np.uint8)
    # upper part: sky; lower part: grass and road split by a slanted border
    horizon = int(h * rng.uniform(0.3, 0.55))
    label[:horizon] = ids['sky']
    x0, x1 = rng.uniform(0.2, 0.8, 2) * w
    ys, xs = np.mgrid[0:h, 0:w]
    border = x0 + (x1 - x0) * (ys - horizon) / max(1, h - horizon)
    road_left = rng.random() < 0.5
    ground = ys >= horizon
    is_road = (xs < border) if road_left else (xs >= border)
    label[ground & is_road] = ids['road']
    label[ground & ~is_road] = ids['grass']
    # buildings (brick walls) standing on the horizon
    for _ in range(int(rng.integers(0, 3))):
        bw_, bh_ = int(rng.uniform(0.15, 0.35) * w), int(rng.uniform(0.5, 1.0) * horizon)
        bx = int(rng.uniform(0, w - bw_))
        label[max(0, horizon - bh_):horizon + 2, bx:bx + bw_] = ids['wall']
    # trees: trunk and crown, standing on the ground
    for _ in range(int(rng.integers(1, 3))):
        cx = int(rng.uniform(0.05, 0.95) * w)
        base = int(rng.uniform(horizon + 4, h - 2))
        r = int(rng.uniform(0.06, 0.14) * h * (0.6 + base / h))
        tw = max(2, r // 3)
        label[max(0, base - 2 * r):base, max(0, cx - tw // 2):cx + tw // 2 + 1] = ids['tree']
        cv2.circle(label, (cx, base - 2 * r), r, int(ids['tree']), -1, lineType=cv2.LINE_8)
    # people: an ellipse body and a round head
    for _ in range(int(rng.integers(0, 3))):
        cx = int(rng.uniform(0.05, 0.95) * w)
        feet = int(rng.uniform(horizon + 6, h))
        s = rng.uniform(0.12, 0.2) * h * (0.5 + feet / h)
        ax, ay = max(3, int(s * 0.4)), max(4, int(s))
        cy = feet - ay
        cv2.ellipse(label, (cx, cy), (ax, ay), 0, 0, 360, int(ids['person']), -1,
                    lineType=cv2.LINE_8)
        cv2.circle(label, (cx, cy - ay - max(2, ax) + 1), max(2, ax), int(ids['person']), -1,
                   lineType=cv2.LINE_8)
    # lane marks on the road (labelled road, like in ADE20K)
    lane_y = int(rng.uniform(horizon, h))
    # "other": small patches of arbitrary colour that mmseg ignores
    n_other = int(rng.integers(0, 3))
    others = []
    for _ in range(n_other):
        ow, oh = int(rng.uniform(0.04, 0.1) * w), int(rng.uniform(0.04, 0.1) * h)
        ox, oy = int(rng.uniform(0, w - ow)), int(rng.uniform(0, h - oh))
        label[oy:oy + oh, ox:ox + ow] = OTHER
        others.append((ox, oy, ow, oh, rng.uniform(0, 255, 3)))

    tex = _textures(rng, h, w)
    img = np.zeros((h, w, 3), np.float32)
    for name, ade_id in ids.items():
        m = label == ade_id
        img[m] = tex[name][m]
    road = label == ids['road']
    dash = (np.abs(ys - lane_y) <= 1) & ((xs // 10) % 2 == 0) & road
    img[dash] = (235, 235, 225)
    for ox, oy, ow, oh, color in others:
        img[oy:oy + oh, ox:ox + ow] = color
    return np.clip(img + 0.5, 0, 255).astype(np.uint8), label


def generate(out_dir, num_train=48, num_val=16, width=192, height=144, seed=0,
             overwrite=False):
    """Write the dataset under ``out_dir`` (the ADEChallengeData2016 root).

    Skips the work when ``out_dir`` already holds a dataset made with the same
    arguments (unless ``overwrite``). Returns ``out_dir``.
    """
    params = dict(num_train=num_train, num_val=num_val, width=width, height=height,
                  seed=seed, classes=list(DEMO_CLASSES), version=2)
    manifest = osp.join(out_dir, MANIFEST)
    if not overwrite and osp.isfile(manifest):
        with open(manifest) as f:
            if json.load(f) == params and all(
                    len(os.listdir(osp.join(out_dir, kind, split))) == n
                    for kind in ('images', 'annotations')
                    for (split, _), n in zip(SPLITS, (num_train, num_val))):
                return out_dir
    for split, prefix in SPLITS:
        n = num_train if split == 'training' else num_val
        img_dir = osp.join(out_dir, 'images', split)
        ann_dir = osp.join(out_dir, 'annotations', split)
        for d in (img_dir, ann_dir):
            os.makedirs(d, exist_ok=True)
            for old in os.listdir(d):  # stale files of another size of dataset
                if old.startswith(f'ADE_{prefix}_'):
                    os.remove(osp.join(d, old))
        for i in range(n):
            # disjoint seeds per split and per image
            img, label = draw_sample(seed * 1_000_003 + (0 if split == 'training' else 500_000) + i,
                                     width, height)
            stem = f'ADE_{prefix}_{i + 1:08d}'
            cv2.imwrite(osp.join(img_dir, stem + '.jpg'), img[..., ::-1],
                        [cv2.IMWRITE_JPEG_QUALITY, 92])
            cv2.imwrite(osp.join(ann_dir, stem + '.png'), label)
    with open(manifest, 'w') as f:
        json.dump(params, f, indent=1)
    return out_dir


def main(argv=None):
    """Command line: ``python -m lsnet_mm.datasets.demo.ade_scenes [--root DIR] [--force]``.

    ``--root`` and ``--force`` are the flags of the COCO generator
    (:mod:`lsnet_mm.datasets.demo.coco_shapes`); ``--out`` and ``--overwrite`` are kept as
    their aliases.
    """
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--root', '--out', dest='root', default='data/demo_ade/ADEChallengeData2016',
                   help='dataset root to write (default: %(default)s); --out is an alias')
    p.add_argument('--num-train', type=int, default=48)
    p.add_argument('--num-val', type=int, default=16)
    p.add_argument('--width', type=int, default=192)
    p.add_argument('--height', type=int, default=144)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--force', '--overwrite', dest='force', action='store_true',
                   help='rewrite even if a dataset with the same arguments exists '
                        '(--overwrite is an alias)')
    a = p.parse_args(argv)
    generate(a.root, a.num_train, a.num_val, a.width, a.height, a.seed, a.force)
    print(f'demo ADE20K-layout dataset: {a.num_train} training and {a.num_val} validation '
          f'images ({a.width}x{a.height}) in {a.root}')


if __name__ == '__main__':
    main()
