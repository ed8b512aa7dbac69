"""A small, deterministic, COCO-format detection and instance-segmentation data set.

Real PNG files of filled shapes (three classes: circle, square, triangle) on a
textured background, each with its box and polygon mask, in mmdet's COCO layout::

    ROOT/annotations/instances_train.json   ROOT/train/000000.png ...
    ROOT/annotations/instances_val.json     ROOT/val/000000.png ...

The same arguments give byte-identical files (seeded numpy generator, lossless PNG).
Each class has its own colour family and shape; sizes, positions, rotations, colours
and backgrounds vary, objects do not overlap. Used by the demo configs
(configs/demo/) and the tests.
"""
import argparse
import hashlib
import json
import math
import os
import os.path as osp

import cv2
import numpy as np

DEMO_CLASSES = ('circle', 'square', 'triangle')
# base BGR colour per class, jittered per object
_BASE_COLOURS = {'circle': (40, 60, 220), 'square': (60, 190, 50), 'triangle': (210, 120, 30)}
_VERSION = 1


def _polygon(kind, cx, cy, r, angle):
    if kind == 'circle':
        n, r_eff = 24, r
    elif kind == 'square':
        n, r_eff = 4, r
    else:
        n, r_eff = 3, r * 1.15
    t = angle + np.arange(n) * 2 * math.pi / n
    return np.stack([cx + r_eff * np.cos(t), cy + r_eff * np.sin(t)], axis=1)


def _area(poly):
    x, y = poly[:, 0], poly[:, 1]
    return float(0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def _background(rng, size):
    h = w = size
    base = rng.uniform(90, 200, size=3)
    gx = np.linspace(-1, 1, w)[None, :, None] * rng.uniform(-30, 30, size=3)
    gy = np.linspace(-1, 1, h)[:, None, None] * rng.uniform(-30, 30, size=3)
    img = base + gx + gy + rng.normal(0, 8, size=(h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _make_image(rng, size, min_objects, max_objects, min_radius, max_radius):
    img = _background(rng, size)
    objs, boxes = [], []
    n = int(rng.integers(min_objects, max_objects + 1))
    for _ in range(n):
        for _try in range(30):
            label = int(rng.integers(len(DEMO_CLASSES)))
            kind = DEMO_CLASSES[label]
            r = float(rng.uniform(min_radius, max_radius))
            margin = r * 1.2 + 2
            cx, cy = rng.uniform(margin, size - margin, size=2)
            poly = _polygon(kind, cx, cy, r, float(rng.uniform(0, 2 * math.pi)))
            poly = np.clip(poly, 0, size - 1)
            x0, y0 = poly.min(0)
            x1, y1 = poly.max(0)
            box = (x0 - 3, y0 - 3, x1 + 3, y1 + 3)
            if all(box[2] < b[0] or b[2] < box[0] or box[3] < b[1] or b[3] < box[1]
                   for b in boxes):
                break
        else:
            continue
        boxes.append(box)
        colour = np.clip(np.array(_BASE_COLOURS[kind]) + rng.integers(-25, 26, size=3), 0, 255)
        cv2.fillPoly(img, [np.round(poly * 16).astype(np.int32)], [int(c) for c in colour],
                     lineType=cv2.LINE_AA, shift=4)
        objs.append(dict(label=label, poly=poly, bbox=[float(x0), float(y0),
                                                       float(x1 - x0), float(y1 - y0)]))
    return img, objs


def make_demo_coco(root, num_train=160, num_val=40, size=256, seed=0, min_objects=1,
                   max_objects=3, min_radius=None, max_radius=None):
    """Write the data set under ``root``.

    Args:
        root (str): Output folder.
        num_train (int): Training images.
        num_val (int): Validation images.
        size (int): Image side in pixels.
        seed (int): Seed of the generator.
        min_objects (int): Fewest objects per image.
        max_objects (int): Most objects per image.
        min_radius (int, optional): Smallest object radius in pixels. Defaults to 18
            at 256 px, scaled with ``size``.
        max_radius (int, optional): Largest object radius in pixels. Defaults to 48
            at 256 px, scaled with ``size``.

    Returns:
        dict: ``{split: annotation file path}`` for 'train' and 'val'.
    """
    min_radius, max_radius = _radii(size, min_radius, max_radius)
    params = dict(num_train=num_train, num_val=num_val, size=size, seed=seed,
                  min_objects=min_objects, max_objects=max_objects, min_radius=min_radius,
                  max_radius=max_radius, version=_VERSION)
    out = {}
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    for split, count, offset in (('train', num_train, 0), ('val', num_val, 1)):
        rng = np.random.default_rng([seed, offset])
        os.makedirs(osp.join(root, split), exist_ok=True)
        images, anns = [], []
        for i in range(count):
            img, objs = _make_image(rng, size, min_objects, max_objects, min_radius, max_radius)
            name = f'{i:06d}.png'
            if not cv2.imwrite(osp.join(root, split, name), img):
                raise OSError(f'could not write {osp.join(root, split, name)}')
            images.append(dict(id=i + 1, file_name=name, width=size, height=size))
            for o in objs:
                poly = o['poly']
                anns.append(dict(
                    id=len(anns) + 1, image_id=i + 1, category_id=o['label'] + 1,
                    bbox=[round(v, 2) for v in o['bbox']], area=round(_area(poly), 2),
                    segmentation=[[round(float(v), 2) for v in poly.reshape(-1)]], iscrowd=0))
        coco = dict(info=dict(description='lsnet-mm synthetic shapes demo', **params),
                    images=images, annotations=anns,
                    categories=[dict(id=i + 1, name=c, supercategory='shape')
                                for i, c in enumerate(DEMO_CLASSES)])
        out[split] = osp.join(root, 'annotations', f'instances_{split}.json')
        with open(out[split], 'w') as f:
            json.dump(coco, f)
    with open(osp.join(root, 'READY'), 'w') as f:
        f.write(_stamp(params))
    return out


def _radii(size, min_radius, max_radius):
    """Object radii: the given ones, else 18 and 48 px scaled from 256 px to ``size``."""
    if min_radius is None:
        min_radius = max(4, round(18 * size / 256))
    if max_radius is None:
        max_radius = max(min_radius + 1, round(48 * size / 256))
    if not 0 < min_radius < max_radius < size // 2:
        raise ValueError(f'object radii {min_radius}..{max_radius} px do not fit {size} px '
                         f'images: need 0 < min_radius < max_radius < size / 2')
    return min_radius, max_radius


def _stamp(params):
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()


def ensure_demo_coco(root, **kwargs):
    """Generate the data set unless ``root`` already holds it with the same settings.

    Args:
        root (str): Output folder.
        **kwargs: Arguments of :func:`make_demo_coco`.

    Returns:
        dict: ``{split: annotation file path}``.
    """
    params = dict(num_train=160, num_val=40, size=256, seed=0, min_objects=1, max_objects=3,
                  min_radius=None, max_radius=None)
    params.update(kwargs)
    params['min_radius'], params['max_radius'] = _radii(
        params['size'], params['min_radius'], params['max_radius'])
    ready = osp.join(root, 'READY')
    if osp.isfile(ready):
        with open(ready) as f:
            if f.read().strip() == _stamp(dict(params, version=_VERSION)):
                return {s: osp.join(root, 'annotations', f'instances_{s}.json')
                        for s in ('train', 'val')}
    return make_demo_coco(root, **params)


def main(argv=None):
    """Command line: ``python -m lsnet_mm.datasets.demo.coco_shapes [--root DIR] [--force]``."""
    p = argparse.ArgumentParser(description='Generate the COCO-format shapes demo data set')
    p.add_argument('--root', default='data/demo_coco', help='output folder')
    p.add_argument('--num-train', type=int, default=160)
    p.add_argument('--num-val', type=int, default=40)
    p.add_argument('--size', type=int, default=256, help='image side in pixels')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--force', action='store_true', help='regenerate even if present')
    args = p.parse_args(argv)
    kw = dict(num_train=args.num_train, num_val=args.num_val, size=args.size, seed=args.seed)
    files = make_demo_coco(args.root, **kw) if args.force else ensure_demo_coco(args.root, **kw)
    for split, path in files.items():
        print(f'{split}: {path}')
    return files


if __name__ == '__main__':
    main()
