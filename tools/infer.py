"""Run a detector or a segmentor on images with mmdet's or mmseg's inferencer.

    .venv/bin/python tools/infer.py data/demo_coco/val/000000.png \
        configs/demo/retinanet_lsnet_t_demo.py --weights work_dirs/demo/retinanet/epoch_8.pth
    .venv/bin/python tools/infer.py 'photos/*.jpg' configs/fpn_lsnet_t_ade20k.py \
        --weights CKPT --deploy

The flags are those of mmdet's demo/image_demo.py, plus ``--deploy`` and ``--compile``
(torch.compile of the model's test_step, after deploy). INPUTS are image
files, folders (the images directly inside) or quoted glob patterns. The config's
default_scope picks ``DetInferencer`` (mmdet) or ``MMSegInferencer`` (mmseg), and the
files are written where they write them:

* detectors: OUT_DIR/vis/IMAGE (predictions with score >= --pred-score-thr drawn),
  OUT_DIR/preds/STEM.json (labels, scores, xyxy bboxes, masks as COCO RLE: all
  predictions the model returns);
* segmentors: OUT_DIR/vis/IMAGE (class overlay), OUT_DIR/pred/00000000_pred.png ...
  (label maps, numbered in input order).

``--weights`` may be a URL: it is downloaded once, complete or not at all, into the torch
hub cache. Missing or unreadable weights, weights holding pickled code (refused: they are
read weights-only, before the inferencer is built) and undecodable images print one
``error: ...`` line and exit with status 2 (``--debug``: the traceback).
"""
import argparse
import glob
import os
import os.path as osp

import lsnet_mm  # noqa: F401 (registers LSNet modules, allow-lists checkpoint classes)
from lsnet_mm.apis import launch
from lsnet_mm.apis.preflight import prepare_checkpoint
from lsnet_mm.datasets import CheckedLoadImageFromFile
from lsnet_mm.utils.errors import ConfigError

IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif', '.tiff', '.webp')


def parse_args(argv=None):
    """The command line: mmdet's demo/image_demo.py flags, ``--deploy`` and ``--compile``.

    Args:
        argv (list[str], optional): The arguments; ``sys.argv[1:]`` if None.

    Returns:
        argparse.Namespace: The parsed arguments.
    """
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('inputs', nargs='+', help='image files, folders or glob patterns')
    parser.add_argument('model', help='config file (mmdet or mmseg)')
    parser.add_argument('--weights', required=True, help='checkpoint file or URL')
    parser.add_argument('--out-dir', default='outputs', help='output directory')
    parser.add_argument('--device', default='cpu', help='device used for inference')
    parser.add_argument('--pred-score-thr', type=float, default=0.3,
                        help='detectors: draw predictions with at least this score')
    parser.add_argument('--batch-size', type=int, default=1, help='inference batch size')
    parser.add_argument('--no-save-vis', action='store_true', help='do not save pictures')
    parser.add_argument('--no-save-pred', action='store_true', help='do not save predictions')
    parser.add_argument('--deploy', action='store_true',
                        help='switch LSNet backbones to deploy mode once the weights are '
                             'loaded (same predictions, faster)')
    parser.add_argument('--compile', action='store_true',
                        help="torch.compile the model's test_step (after --deploy), with the "
                             "config's compile=dict(...) options if it has them")
    parser.add_argument('--debug', action='store_true',
                        help=f'show the traceback of an error instead of one line (as '
                             f'{launch.DEBUG_ENV}=1)')
    args = parser.parse_args(argv)
    if args.debug:
        os.environ[launch.DEBUG_ENV] = '1'
    return args


def expand_inputs(inputs):
    """The image files that the inputs name.

    Args:
        inputs (list[str]): Image files, folders (their images, not recursive) and glob
            patterns (``**`` recursive).

    Returns:
        list[str]: The paths in the order given, each once.
    """
    paths = []
    for item in inputs:
        if osp.isdir(item):
            found = sorted(osp.join(item, f) for f in os.listdir(item)
                           if f.lower().endswith(IMG_EXTENSIONS))
        elif osp.isfile(item):
            found = [item]
        else:
            found = sorted(f for f in glob.glob(item, recursive=True) if osp.isfile(f))
        if not found:
            raise ConfigError(f'no image found for input {item!r} (cwd {os.getcwd()!r})')
        paths += [osp.normpath(p) for p in found]
    return list(dict.fromkeys(paths))


def build_inferencer(args):
    """The inferencer of the config's library, with the weights loaded.

    Args:
        args (argparse.Namespace): The command line.

    Returns:
        tuple: ``(inferencer, scope)``: a ``DetInferencer`` and 'mmdet' or an
        ``MMSegInferencer`` and 'mmseg'.
    """
    import torch
    from mmengine.config import Config
    if torch.device(args.device).type == 'cuda' and not torch.cuda.is_available():
        raise ConfigError(f'--device {args.device}: this PyTorch ({torch.__version__}) sees no '
                          f'CUDA GPU; use --device cpu')
    if not osp.isfile(args.model):
        raise ConfigError(f'config not found: {args.model!r} (cwd {os.getcwd()!r})')
    # read weights-only now (a URL fetched into the cache first): a damaged or unsafe file
    # is named before the inferencer is built
    weights = prepare_checkpoint(args.weights, '--weights', read=True)
    cfg = Config.fromfile(args.model)
    scope = cfg.get('default_scope')
    if scope == 'mmdet':
        from mmdet.apis import DetInferencer as Inferencer
    elif scope == 'mmseg':
        from mmseg.apis import MMSegInferencer as Inferencer
    else:
        raise ConfigError(f'{args.model}: default_scope is {scope!r}, not "mmdet" or "mmseg"')
    inferencer = Inferencer(model=cfg, weights=weights, device=args.device)
    if args.deploy:
        from lsnet_mm.models import switch_model_to_deploy
        switch_model_to_deploy(inferencer.model, strict=True)
    if args.compile:  # compiles at the first batch
        options = cfg.get('compile')
        model = inferencer.model
        model.test_step = torch.compile(model.test_step,
                                        **(dict(options) if isinstance(options, dict) else {}))
    return inferencer, scope


def run(args):
    """Run the inferencer on the inputs and write its files.

    Args:
        args (argparse.Namespace): The command line.

    Returns:
        tuple: ``(inferencer, results)``, results as the inferencer returns them.
    """
    from mmengine.infer import BaseInferencer
    paths = expand_inputs(args.inputs)
    inferencer, scope = build_inferencer(args)
    try:
        if scope == 'mmdet':
            results = inferencer(paths, batch_size=args.batch_size, out_dir=args.out_dir,
                                 pred_score_thr=args.pred_score_thr,
                                 no_save_vis=args.no_save_vis, no_save_pred=args.no_save_pred)
        else:  # MMSegInferencer.__call__ saves both folders or neither: its parent's takes each
            results = BaseInferencer.__call__(
                inferencer, paths, batch_size=args.batch_size,
                img_out_dir='' if args.no_save_vis else osp.join(args.out_dir, 'vis'),
                pred_out_dir='' if args.no_save_pred else osp.join(args.out_dir, 'pred'))
    except Exception:
        loader = CheckedLoadImageFromFile()
        for path in paths:  # an ImageDecodeError names the image that failed
            loader(dict(img_path=path))
        raise
    if not (args.no_save_vis and args.no_save_pred):
        print(f'results of {len(paths)} image(s) saved in {args.out_dir}')
    return inferencer, results


def main(argv=None):
    """Command-line entry point: :func:`run` (errors raise; ``run_tool`` prints them).

    Args:
        argv (list[str], optional): The arguments; ``sys.argv[1:]`` if None.

    Returns:
        tuple: ``(inferencer, results)`` of :func:`run`.
    """
    return run(parse_args(argv))


if __name__ == '__main__':
    launch.run_tool(main)
