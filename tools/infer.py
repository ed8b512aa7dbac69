"""Run a detector or a segmentor on image files and save predictions and pictures.

    python tools/infer.py CONFIG CHECKPOINT INPUTS... --out DIR [--device cpu]
                          [--score-thr 0.3] [--deploy] [--skip-bad]

INPUTS are image files, folders (their images, not recursive) or glob patterns
(quote them: 'photos/**/*.jpg'). The task comes from the config's default_scope
(mmdet or mmseg; else from the model type). For each image, named after its file:

* detectors: DIR/preds/NAME.json - xyxy boxes in pixels of the input image, scores,
  labels, class names and, for instance segmentation, COCO RLE masks (``counts`` as
  str; ``pycocotools.mask.decode`` reads them); predictions with score >= --score-thr;
* segmentors: DIR/preds/NAME.png - the predicted class index per pixel, at the image's
  size (uint8 PNG), and DIR/preds/NAME.json - class names and pixel counts;
* DIR/vis/NAME.png - the predictions drawn over the image with mmdet's
  DetLocalVisualizer (boxes, class names, scores, masks) or mmseg's
  SegLocalVisualizer (class overlay with names);

and DIR/index.json lists the inputs and their outputs. The checkpoint is read
weights-only (pickled code in the file is never run) and must fit the config's model.
Grayscale, RGBA and 16-bit images are converted like the training loader does
(3-channel 8-bit BGR); a missing, empty, truncated or undecodable image stops the
run with its name (``--skip-bad`` records it in index.json and goes on).
``--deploy`` runs the LSNet backbone in deploy mode (re-parameterised, BN folded).
"""
import argparse
import glob
import json
import os
import os.path as osp
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import lsnet_mm  # noqa: E402,F401 (registers LSNet modules, allow-lists checkpoint classes)
import lsnet_mm.detection  # noqa: E402,F401 (registers the checked image loader)
from lsnet_mm.checkpoint import CheckpointError  # noqa: E402
from lsnet_mm.detection.transforms import ImageDecodeError  # noqa: E402
from lsnet_mm.inference import TASKS, InferenceError  # noqa: E402
from lsnet_mm.preflight import PreflightError  # noqa: E402

IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp', '.ppm', '.pgm',
              '.pbm', '.jp2')


def parse_args(argv=None):
    from mmengine.config import DictAction
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config', help='model config (mmdet or mmseg)')
    p.add_argument('checkpoint', help='checkpoint file (.pth) trained with this config')
    p.add_argument('inputs', nargs='+', help='image files, folders or glob patterns')
    p.add_argument('--out', required=True, help='output folder')
    p.add_argument('--device', default='cpu', help='torch device, e.g. cpu or cuda:0')
    p.add_argument('--score-thr', type=float, default=0.3,
                   help='detectors: keep (and draw) predictions with score >= this')
    p.add_argument('--deploy', action='store_true',
                   help='switch the LSNet backbone to deploy mode (same outputs, faster)')
    p.add_argument('--skip-bad', action='store_true',
                   help='record unreadable images in index.json and go on instead of stopping')
    p.add_argument('--no-vis', action='store_true', help='write predictions only')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override config settings, key=value pairs')
    return p.parse_args(argv)


def expand_inputs(inputs):
    """Image paths from files, folders and globs, in order, without duplicates."""
    out, seen = [], set()

    def add(path):
        key = osp.abspath(path)
        if key not in seen:
            seen.add(key)
            out.append(path)

    for item in inputs:
        if osp.isdir(item):
            found = sorted(f for f in os.listdir(item)
                           if f.lower().endswith(IMAGE_EXTS) and osp.isfile(osp.join(item, f)))
            if not found:
                raise InferenceError(f'folder {item!r} holds no images ({", ".join(IMAGE_EXTS)})')
            for f in found:
                add(osp.join(item, f))
        elif osp.isfile(item):
            add(item)
        elif glob.has_magic(item):
            found = sorted(f for f in glob.glob(item, recursive=True) if osp.isfile(f))
            if not found:
                raise InferenceError(f'no file matches the pattern {item!r} (cwd {os.getcwd()!r})')
            for f in found:
                add(f)
        else:
            raise InferenceError(f'input not found: {item!r} (cwd {os.getcwd()!r}); give image '
                                 f'files, folders or quoted glob patterns')
    return out


def output_names(paths):
    """A distinct file stem per input (a/x.png and b/x.png -> x, x_1)."""
    names, used = [], set()
    for p in paths:
        stem = osp.splitext(osp.basename(p))[0] or 'image'
        name, k = stem, 0
        while name in used:
            k += 1
            name = f'{stem}_{k}'
        used.add(name)
        names.append(name)
    return names


def _write_json(path, obj):
    # one top-level key per line, values compact (a box per list, not a number per line)
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        f.write('{\n' + ',\n'.join(f' {json.dumps(k)}: {json.dumps(v)}' for k, v in obj.items())
                + '\n}\n')
    os.replace(tmp, path)


def run(args):
    import cv2
    import numpy as np
    from mmengine.utils import ProgressBar
    from lsnet_mm.inference import (build_pipeline, build_visualizer, det_to_dict, draw,
                                    filter_instances, init_model, predict, read_image,
                                    seg_label_map)

    import torch
    paths = expand_inputs(args.inputs)  # before the model: bad arguments fail at once
    if torch.device(args.device).type == 'cuda' and not torch.cuda.is_available():
        raise InferenceError(f'--device {args.device}: no CUDA GPU is available to this '
                             f'PyTorch ({torch.__version__}); use --device cpu')
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint not found: {args.checkpoint!r} '
                                f'(cwd {os.getcwd()!r})')
    model, cfg, scope = init_model(args.config, args.checkpoint, device=args.device,
                                   deploy=args.deploy, cfg_options=args.cfg_options)
    pipeline = build_pipeline(cfg)
    meta = model.dataset_meta
    classes = list(meta['classes'])
    vis = None if args.no_vis else build_visualizer(scope, meta)
    pred_dir, vis_dir = osp.join(args.out, 'preds'), osp.join(args.out, 'vis')
    os.makedirs(pred_dir, exist_ok=True)
    if vis is not None:
        os.makedirs(vis_dir, exist_ok=True)

    index = dict(task=TASKS[scope], config=args.config, checkpoint=args.checkpoint,
                 classes=classes, deploy=bool(args.deploy), images=[], errors=[])
    if scope == 'mmdet':
        index['score_thr'] = args.score_thr
    t0 = time.time()
    bar = ProgressBar(len(paths), file=sys.stdout)
    for i, (path, name) in enumerate(zip(paths, output_names(paths))):
        try:
            img, info = read_image(path)
        except (ImageDecodeError, FileNotFoundError) as e:
            if not args.skip_bad:
                raise
            index['errors'].append(dict(image=path, error=str(e)))
            bar.update()
            continue
        h, w = img.shape[:2]
        try:
            sample = predict(model, pipeline, img, path=path, img_id=i)
        except Exception as e:
            raise InferenceError(
                f'inference failed on {path!r} ({w}x{h} pixels, {info.get("mode", "?")}): '
                f'{type(e).__name__}: {e}') from e
        entry = dict(image=path, width=w, height=h, source=info)
        if scope == 'mmdet':
            sample = filter_instances(sample, args.score_thr)
            pred = det_to_dict(sample, classes)
            entry['num_instances'] = len(pred['labels'])
            entry['prediction'] = osp.join(pred_dir, name + '.json')
            _write_json(entry['prediction'], dict(image=path, width=w, height=h, source=info,
                                                  score_thr=args.score_thr, **pred))
        else:
            label = seg_label_map(sample)
            if label.shape != (h, w):
                raise InferenceError(f'label map of {path!r} is {label.shape}, not the image '
                                     f'size {(h, w)}: the test pipeline does not restore it')
            entry['prediction'] = osp.join(pred_dir, name + '.png')
            if not cv2.imwrite(entry['prediction'], label):
                raise OSError(f'could not write {entry["prediction"]!r}')
            ids, counts = np.unique(label, return_counts=True)
            _write_json(osp.join(pred_dir, name + '.json'), dict(
                image=path, width=w, height=h, source=info, label_map=entry['prediction'],
                classes=classes,
                class_pixels={classes[k] if k < len(classes) else str(k): int(c)
                              for k, c in zip(ids.tolist(), counts.tolist())}))
        if vis is not None:
            entry['visualization'] = osp.join(vis_dir, name + '.png')
            draw(vis, scope, img, sample, entry['visualization'])
        index['images'].append(entry)
        bar.update()
    index['seconds'] = round(time.time() - t0, 3)
    _write_json(osp.join(args.out, 'index.json'), index)
    sys.stdout.write('\n')
    done = len(index['images'])
    print(f'{done} image(s) -> {args.out} ({TASKS[scope]}; predictions in {pred_dir}'
          + (f', pictures in {vis_dir}' if vis is not None else '') + ')'
          + (f'; {len(index["errors"])} unreadable, listed in index.json' if index['errors']
             else ''))
    return index


def main(argv=None):
    return run(parse_args(argv))


if __name__ == '__main__':
    try:
        main()
    except (PreflightError, CheckpointError, ImageDecodeError, InferenceError,
            FileNotFoundError) as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(2)
