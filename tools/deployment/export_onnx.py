"""Export a detector, a segmentor or an LSNet backbone to ONNX and check the file.

    python tools/deployment/export_onnx.py configs/retinanet_lsnet_t.py CKPT \\
        --shape 800 1344 --deploy --out work_dirs/retinanet_lsnet_t.onnx
    python tools/deployment/export_onnx.py configs/fpn_lsnet_t_ade20k.py CKPT \\
        --shape 512 512 --dynamic --out work_dirs/fpn_lsnet_t.onnx
    python tools/deployment/export_onnx.py configs/retinanet_lsnet_t.py --backbone-only \\
        --deploy --shape 800 1344 --out work_dirs/lsnet_t_backbone.onnx

End to end (the default): input ``input`` float32 (1, 3, H, W), BGR 0-255 of an image at
the network's input size; detectors output ``dets`` (1, N, 5) and ``labels`` (1, N)
(Mask R-CNN also ``masks`` (1, N, 28, 28)), segmentors ``seg`` (1, 1, H, W); decoding,
score threshold and NMS follow the config's test_cfg (see docs/deployment.md and
:mod:`lsnet_mm.deploy.onnx_end2end`). CHECKPOINT is required (it may be omitted only with
``--backbone-only``, which exports ``model.backbone`` with random weights and outputs
``stage0``...).

After exporting, the file runs in each installed runtime (onnxruntime, OpenVINO;
``--runtime`` picks) on an image (``--image``, resized to H x W; by default a generated
street scene) and is compared with the PyTorch model's own predictions: matched
detections, largest box and score differences / label-map agreement are printed; a
mismatch, like a model the exporter does not support, is one ``error:`` line (exit
status 2). ``--dynamic`` frees the input size and checks a
second size too.
"""
import argparse

import numpy as np
import torch
from mmengine.config import DictAction

from lsnet_mm.apis import build_model_from_cfg, launch, load_config
from lsnet_mm.deploy.onnx_check import check_end2end, image_tensor, torch_predictions
from lsnet_mm.deploy.onnx_export import (
    check_onnx,
    export_backbone,
    export_end2end,
    prepare_for_export,
)
from lsnet_mm.deploy.onnx_runtime import RUNTIMES, OnnxModel, runtime_available
from lsnet_mm.utils.errors import ConfigError, ExportError


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Export to ONNX and check it against PyTorch')
    p.add_argument('config', help='config file, or mmdet::path / mmseg::path')
    p.add_argument('checkpoint', nargs='?',
                   help='weights to export (optional only with --backbone-only)')
    p.add_argument('--out', required=True, help='the .onnx file to write')
    p.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                   help='input height and width (default: the --image size, else 800 1344)')
    p.add_argument('--dynamic', action='store_true', help='free input height and width')
    p.add_argument('--backbone-only', action='store_true',
                   help='export model.backbone (raw stage outputs)')
    p.add_argument('--deploy', action='store_true',
                   help='switch LSNet to deploy mode first (fused: faster, same outputs)')
    p.add_argument('--image', help='image for tracing and the check (default: generated)')
    p.add_argument('--runtime', nargs='+', choices=RUNTIMES,
                   help='runtimes for the check (default: every installed one)')
    p.add_argument('--opset', type=int, default=17)
    p.add_argument('--atol', type=float, default=1e-3,
                   help='--backbone-only: largest allowed output difference relative to '
                        "the output's largest magnitude (default 1e-3)")
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override config settings, e.g. model.test_cfg.score_thr=0.3')
    args = p.parse_args(argv)
    if not args.checkpoint and not args.backbone_only:
        p.error('CHECKPOINT is required (it may be omitted only with --backbone-only)')
    if args.shape and min(args.shape) < 1:
        p.error('--shape must be positive')
    return args


def build_model(config, cfg_options=None):
    """The config's model (``cfg_options`` merged), random weights, eval mode, no
    pretrained file read (:func:`lsnet_mm.apis.build_model_from_cfg`)."""
    try:
        cfg = load_config(config)
    except FileNotFoundError as e:
        raise ConfigError(str(e)) from e
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return build_model_from_cfg(cfg)[0]


def read_image(path, shape):
    """(H, W, 3) uint8 BGR: the file resized to ``shape`` or a generated scene."""
    import mmcv
    if path:
        img = mmcv.imread(path)
        if img is None:
            raise ConfigError(f'--image {path}: cannot read the image (missing, or not an '
                              f'image file): give a JPEG or PNG file')
        return img if shape is None else mmcv.imresize(img, (shape[1], shape[0]))
    from lsnet_mm.datasets.demo.ade_scenes import draw_sample
    h, w = shape or (800, 1344)
    return np.ascontiguousarray(draw_sample(0, w, h)[0][:, :, ::-1])


def _describe(res):
    if 'agreement' in res:
        return f"label maps agree on {res['agreement']:.4%} of the pixels"
    text = (f"{res['matched']} of {res['num_torch']} PyTorch detections matched "
            f"(ONNX: {res['num_onnx']}), max box diff {res['max_box_diff']:.3g} px, "
            f"max score diff {res['max_score_diff']:.3g}")
    if res['min_mask_iou'] is not None:
        text += f", min mask IoU {res['min_mask_iou']:.4f}"
    return text


def check_backbone(model, args, runtimes):
    shape = args.shape or [800, 1344]
    results = {}
    for rt in runtimes:
        diffs = check_onnx(model.backbone, args.out, torch.randn(1, 3, *shape), runtime=rt)
        worst = max(rel for _, rel in diffs)
        print(f'{rt} vs PyTorch ({len(diffs)} outputs, random input): max abs diff '
              f'{max(a for a, _ in diffs):.3g}, max relative diff {worst:.3g}')
        if worst > args.atol:
            raise ExportError(f'{args.out}: {rt} outputs differ from PyTorch by {worst:.3g} '
                              f'(> --atol {args.atol}): the export does not reproduce this '
                              f'backbone')
        results[rt] = diffs
    return results


def main(argv=None):
    args = parse_args(argv)
    # weights-only reading; the file must fit the config's model exactly
    model = prepare_for_export(build_model(args.config, args.cfg_options), args.checkpoint,
                               args.deploy)
    runtimes = args.runtime or [rt for rt in RUNTIMES if runtime_available(rt)]
    if args.backbone_only:
        names = export_backbone(model.backbone, args.out, (1, 3, *(args.shape or [800, 1344])),
                                args.opset, dynamic=args.dynamic)
        print(f'wrote {args.out}: backbone, outputs {", ".join(names)}')
        return dict(names=names, checks=check_backbone(model, args, runtimes), model=model)

    image = read_image(args.image, args.shape)
    names = export_end2end(model, args.out, image_tensor(image), args.opset, args.dynamic)
    h, w = image.shape[:2]
    print(f'wrote {args.out}: input (1, 3, {"H" if args.dynamic else h}, '
          f'{"W" if args.dynamic else w}) BGR 0-255 -> {", ".join(names)}')
    images = [image]
    if args.dynamic:  # a second size: the graph must not hold the traced one
        import mmcv
        images.append(mmcv.imresize(image, (max(32, w * 3 // 4), max(32, h * 3 // 4))))
    checks, failed, refs = [], [], [None] * len(images)
    for rt in runtimes:
        onnx_model = OnnxModel(args.out, rt)  # loaded (compiled) once for every image
        for i, img in enumerate(images):
            refs[i] = refs[i] or torch_predictions(model, img)  # PyTorch once per image
            res = check_end2end(model, onnx_model, img, reference=refs[i])
            checks.append(dict(res, shape=list(img.shape[:2])))
            status = 'OK' if res['ok'] else 'MISMATCH'
            print(f"{rt} {res['version']} vs PyTorch at {img.shape[0]}x{img.shape[1]}: "
                  f'{_describe(res)}: {status}')
            if not res['ok']:
                failed.append(rt)
            if res.get('num_torch') == 0:
                print('  note: nothing to compare: the model detects nothing in this image '
                      '(try --image, or a lower score_thr with --cfg-options)')
    if not runtimes:
        print('no runtime installed (pip install onnxruntime / openvino): not checked')
    if failed:
        raise ExportError(f'{args.out}: results differ from PyTorch in {", ".join(failed)} '
                          f'(see the lines above): the export does not reproduce this model')
    return dict(names=names, checks=checks, model=model)


if __name__ == '__main__':
    launch.run_tool(main)
