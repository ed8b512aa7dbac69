"""Generate the synthetic COCO-format shapes data set used by configs/demo/.

    .venv/bin/python tools/make_demo_data.py                  # -> data/demo_coco/
    .venv/bin/python tools/make_demo_data.py --root /tmp/shapes --num-train 400

Deterministic: the same arguments write byte-identical files. Without --force an
existing data set made with the same arguments is kept.
"""
import argparse
import importlib.util
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _demo_data():
    # load the generator module by path: it needs only numpy and OpenCV, not mmcv/mmdet
    spec = importlib.util.spec_from_file_location(
        'lsnet_mm_demo_data', osp.join(ROOT, 'lsnet_mm', 'detection', 'demo_data.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--root', default='data/demo_coco', help='output folder')
    p.add_argument('--num-train', type=int, default=160)
    p.add_argument('--num-val', type=int, default=40)
    p.add_argument('--size', type=int, default=256, help='image side in pixels')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--force', action='store_true', help='regenerate even if present')
    args = p.parse_args(argv)
    dd = _demo_data()
    kw = dict(num_train=args.num_train, num_val=args.num_val, size=args.size, seed=args.seed)
    files = dd.make_demo_coco(args.root, **kw) if args.force else dd.ensure_demo_coco(args.root, **kw)
    for split, path in files.items():
        print(f'{split}: {path}')
    return files


if __name__ == '__main__':
    main()
