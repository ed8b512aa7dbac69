"""INT8 model of a detector or segmentor for CPUs, with its accuracy beside the float one's.

    python tools/deployment/quantize.py configs/demo/retinanet_lsnet_t_demo.py CKPT \\
        --calib data/demo_coco/train --num 160 --out work_dirs/int8/retinanet.xml
    python tools/deployment/quantize.py configs/demo/fpn_lsnet_t_demo.py CKPT \\
        --out work_dirs/int8/fpn.onnx                 # onnxruntime QDQ, calibrated on val

1. The model (CONFIG with CHECKPOINT, LSNet in deploy mode unless ``--no-deploy``) is
   exported end to end with dynamic input size (:mod:`lsnet_mm.deploy.onnx_end2end`;
   the float file is kept, ``--float-out``, default beside OUT).
2. Calibration images are read through the config's test pipeline
   (:mod:`lsnet_mm.deploy.calibration`): ``--calib DIR`` (a folder of images), ``--calib
   DATA_CONFIG`` (that config's ``--calib-split`` dataset), or by default the config's
   own ``--calib-split`` (val) dataset; at most ``--num`` (300) of them, spread evenly.
3. The float graph is quantized (:func:`lsnet_mm.deploy.quantize.quantize_onnx`): OUT
   ``*.xml``: OpenVINO NNCF post-training quantization (the main path), run by OpenVINO;
   OUT ``*.onnx``: onnxruntime static QDQ quantization, run by onnxruntime (and
   OpenVINO). Kept in float: pre- and post-processing, the small-kernel aggregation,
   softmax, constant expressions and, for onnxruntime, the layers the post-processing
   reads (the counts are printed; docs/deployment.md says why).
4. Unless ``--no-eval``: the float file and the INT8 file are evaluated on the config's
   ``--eval-split`` (val) set with the config's own evaluator (COCO box / mask AP,
   mIoU), both in the INT8 file's runtime, in this run; both and the difference are
   printed and written to WORK_DIR/quantize.json.
"""
import argparse
import json
import os
import os.path as osp

import torch
from mmengine.config import DictAction

from lsnet_mm.apis import build_model_from_cfg, launch, load_config
from lsnet_mm.deploy.backend_model import evaluate_model_file
from lsnet_mm.deploy.calibration import calibration_inputs
from lsnet_mm.deploy.onnx_export import export_end2end, prepare_for_export
from lsnet_mm.deploy.quantize import quantization_backend, quantize_onnx
from lsnet_mm.utils.errors import ConfigError


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='INT8 quantization of an end-to-end export, '
                                'evaluated beside the float model')
    p.add_argument('config', help='config file, or mmdet::path / mmseg::path')
    p.add_argument('checkpoint', help='the trained weights')
    p.add_argument('--out', required=True,
                   help='the INT8 model: FILE.xml (OpenVINO NNCF) or FILE.onnx (onnxruntime)')
    p.add_argument('--calib', metavar='DATA_CONFIG_OR_DIR',
                   help="calibration images: a folder, or a config whose --calib-split "
                        "dataset is read (default: CONFIG's)")
    p.add_argument('--calib-split', default='val', choices=['train', 'val', 'test'],
                   help='the dataset of a config --calib (default val)')
    p.add_argument('--num', type=int, default=300,
                   help='at most this many calibration images (default 300)')
    p.add_argument('--float-out', help='the float end-to-end file (default: OUT with '
                   '_float.onnx)')
    p.add_argument('--no-deploy', action='store_true',
                   help='export LSNet as trained, without deploy-mode fusion')
    p.add_argument('--preset', default='mixed', choices=['mixed', 'performance'],
                   help='mixed: asymmetric activations (default); performance: symmetric')
    p.add_argument('--no-eval', action='store_true', help='skip the accuracy evaluation')
    p.add_argument('--eval-split', default='val', choices=['val', 'test'],
                   help="the config's set the models are evaluated on (default val)")
    p.add_argument('--threads', type=int, default=0,
                   help="the runtime's threads in the evaluation (default: its own)")
    p.add_argument('--work-dir', help='evaluation logs and quantize.json (default '
                   'work_dirs/quantize/CONFIG_NAME)')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override config settings (baked into the exported graph)')
    return p.parse_args(argv)


def _metric_rows(float_metrics, int8_metrics):
    rows = []
    for key, value in float_metrics.items():
        if isinstance(value, (int, float)) and isinstance(int8_metrics.get(key), (int, float)):
            rows.append(dict(metric=key, float=value, int8=int8_metrics[key],
                             diff=int8_metrics[key] - value))
    return rows


def format_metrics(rows, runtime):
    lines = [f'| metric ({runtime}) | float | INT8 | INT8 - float |', '|---|---|---|---|']
    lines += [f"| {r['metric']} | {r['float']:.4f} | {r['int8']:.4f} | {r['diff']:+.4f} |"
              for r in rows]
    return '\n'.join(lines)


def main(argv=None):
    args = parse_args(argv)
    backend = quantization_backend(args.out)  # checks the extension and packages first
    try:
        cfg = load_config(args.config)
        data_cfg = None if args.calib is None or osp.isdir(args.calib) else load_config(
            args.calib)
    except FileNotFoundError as e:
        raise ConfigError(f'{e} (CONFIG, or --calib: a folder of images or a config)') from e
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    model = prepare_for_export(build_model_from_cfg(cfg)[0], args.checkpoint,
                               deploy=not args.no_deploy)
    inputs = calibration_inputs(cfg, args.calib if data_cfg is None else data_cfg,
                                args.calib_split, args.num)
    print(f'calibration: {len(inputs)} images through the test pipeline')

    float_path = args.float_out or osp.splitext(args.out)[0] + '_float.onnx'
    names = export_end2end(model, float_path, torch.from_numpy(inputs[0]), dynamic=True)
    print(f'wrote {float_path}: float end to end, any input size -> {", ".join(names)}')
    info = quantize_onnx(float_path, args.out, inputs, preset=args.preset)
    kept = ', '.join(f'{n} {g}' for g, n in info['kept_float'].items())
    print(f"wrote {args.out}: INT8 ({backend}, calibrated on {info['num_calibration']} "
          f'images); kept in float: {kept} nodes')
    result = dict(info, float_path=float_path, config=args.config, checkpoint=args.checkpoint)
    if args.no_eval:
        return result

    name = osp.splitext(osp.basename(args.config.split('::')[-1]))[0]
    work_dir = args.work_dir or osp.join('work_dirs', 'quantize', name)
    metrics = {}
    for kind, path in (('float', float_path), ('int8', args.out)):
        metrics[kind] = {k: (v.item() if hasattr(v, 'item') else v) for k, v in (
            evaluate_model_file(cfg, path, backend, osp.join(work_dir, kind),
                                args.eval_split, args.threads) or {}).items()}
    rows = _metric_rows(metrics['float'], metrics['int8'])
    print(f'{args.eval_split} set, {backend}:')
    print(format_metrics(rows, backend))
    result.update(metrics=metrics, comparison=rows, eval_split=args.eval_split)
    os.makedirs(work_dir, exist_ok=True)
    with open(osp.join(work_dir, 'quantize.json'), 'w') as f:
        json.dump(result, f, indent=1, default=str)
    return result


if __name__ == '__main__':
    launch.run_tool(main)
