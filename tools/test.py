"""Evaluate a checkpoint on a config's test set with mmengine's Runner (mmdet or mmseg).

    python tools/test.py configs/retinanet_lsnet_t.py checkpoints/retinanet_lsnet_t.pth
    python tools/test.py CONFIG CKPT --out preds.pkl       # mmdet: raw predictions (pickle)
    python tools/test.py CONFIG CKPT --out preds/          # mmseg: predicted label maps (PNG)
    python tools/test.py CONFIG CKPT --show-dir vis/       # pictures of the predictions
    bash tools/dist_test.sh CONFIG CKPT 8                  # torchrun
    python tools/test.py CONFIG model.onnx --backend onnxruntime   # an exported file
    python tools/test.py CONFIG model_int8.xml --backend openvino  # (docs/deployment.md)

The flags are those of mmdet's and mmseg's tools/test.py (which also run these
configs); ``--deploy`` adds ``LSNetDeployHook`` to the config's custom_hooks;
``--compile`` sets ``compile=True`` (keeping a ``compile=dict(...)`` of options the config
or --cfg-options give) and the model's test_step is torch.compile'd after deploy. The
metrics come from the config's test_evaluator (mmdet: CocoMetric; mmseg:
IoUMetric); they are printed as one JSON line (``metrics: {...}``) and written to
WORK_DIR/metrics.json. With ``--backend`` the second argument is an end-to-end file
exported from CONFIG (float or INT8 ``.onnx``, OpenVINO ``.xml``), run in that runtime
and scored by the same evaluator (:func:`lsnet_mm.deploy.use_backend_model`).

The checkpoint must fit the model exactly (same keys and shapes): released mmdet
2.x / mmseg 0.x files load as they are or after
tools/model_converters/convert_checkpoint.py; a checkpoint for another number of
classes is refused with a message naming num_classes.
"""
import argparse
import json
import logging
import os
import os.path as osp

from mmengine.logging import print_log

import lsnet_mm  # noqa: F401 (registers LSNet modules, allow-lists checkpoint classes)
from lsnet_mm.apis import launch, preflight
from lsnet_mm.engine.hooks import CheckpointCheckHook
from lsnet_mm.utils.errors import ConfigError


def parse_args(argv=None):
    """The command line, as mmdet's and mmseg's tools/test.py take it."""
    parser = argparse.ArgumentParser(description='Test (and evaluate) a checkpoint')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file (with --backend: the exported '
                        '.onnx / .xml file)')
    parser.add_argument('--work-dir', help='the dir to save logs and metrics')
    parser.add_argument('--out', type=str,
                        help='mmdet configs: dump the raw predictions to this pickle file '
                             '(.pkl); mmseg configs: save the predicted label maps as PNG '
                             'files in this folder')
    parser.add_argument('--show-dir', help='draw the predictions and save the pictures in this '
                        'folder (under the work dir\'s timestamped folder, as mmdet/mmseg do)')
    parser.add_argument('--deploy', action='store_true',
                        help='switch LSNet backbones to deploy mode once the checkpoint is '
                             'loaded (BN and RepVGG branches folded: same outputs, faster)')
    parser.add_argument('--compile', action='store_true', help='torch.compile the model\'s '
                        'test_step (after --deploy); sets compile=True in the config unless '
                        'it holds compile options (compile=dict(...))')
    parser.add_argument('--backend', choices=('onnxruntime', 'openvino'),
                        help='CHECKPOINT is an exported end-to-end file (.onnx, OpenVINO '
                             '.xml): evaluate it in this runtime')
    parser.add_argument('--threads', type=int, default=0,
                        help='--backend: the runtime\'s threads (default: its own choice)')
    launch.add_run_args(parser)
    return launch.parse_run_args(parser, argv)


def trigger_visualization_hook(cfg, show_dir):
    """Turn on the config's visualization hook and save its pictures in ``show_dir``,
    as mmdet's and mmseg's test.py do."""
    hook = cfg.default_hooks.get('visualization')
    if hook is None:
        raise ConfigError('--show-dir needs default_hooks.visualization in the config '
                             '(mmdet\'s DetVisualizationHook or mmseg\'s SegVisualizationHook)')
    hook['draw'] = True
    if cfg.get('default_scope') == 'mmseg':
        cfg.visualizer['save_dir'] = show_dir
    else:
        hook['test_out_dir'] = show_dir


def use_exported_file(cfg, args):
    """With ``--backend``, make the config's model the exported file CHECKPOINT names
    (``load_from`` cleared: nothing is read as a torch checkpoint); an exported file
    given without ``--backend`` is refused."""
    if args.backend is None:
        if args.checkpoint.lower().endswith(('.onnx', '.xml')):
            raise ConfigError(f'{args.checkpoint} is an exported model, not a PyTorch '
                              f'checkpoint: evaluate it with --backend onnxruntime or '
                              f'--backend openvino')
        return
    if args.deploy or args.compile:
        raise ConfigError('--deploy and --compile change the PyTorch model: leave them out '
                          'with --backend (export with tools/deployment/export_onnx.py)')
    from lsnet_mm.deploy import use_backend_model
    use_backend_model(cfg, args.checkpoint, args.backend, args.threads)


def build_cfg(args):
    """The config with the command line's settings merged in (all of them show in the
    config the runner dumps into the work dir)."""
    cfg = launch.load_tool_config(args.config, args.launcher, args.cfg_options, args.work_dir)
    cfg.load_from = args.checkpoint
    cfg.resume = False
    use_exported_file(cfg, args)
    if args.show_dir:
        trigger_visualization_hook(cfg, args.show_dir)
    if args.out is not None and cfg.get('default_scope') == 'mmdet':
        if not args.out.endswith(('.pkl', '.pickle')):
            raise ConfigError('--out must name a .pkl or .pickle file for mmdet configs')
    elif args.out is not None:  # mmseg: the metric writes the label maps (mmseg's --out)
        cfg.test_evaluator['output_dir'] = args.out
        cfg.test_evaluator['keep_results'] = True
    if args.deploy:
        cfg.custom_hooks = list(cfg.get('custom_hooks', None) or []) + [
            dict(type='lsnet_mm.LSNetDeployHook')]
    if args.compile and not cfg.get('compile'):
        cfg.compile = True
    launch.use_compile_hook(cfg)
    return cfg


def main(argv=None):
    """Evaluate; returns the metrics."""
    args = parse_args(argv)
    cfg = build_cfg(args)
    launch.setup_cpu_distributed(cfg, args.launcher)
    mmdet_out = args.out is not None and cfg.get('default_scope') == 'mmdet'
    preflight.check_before_run(cfg, 'test', outputs=[(args.out, '--out', mmdet_out),
                                        (args.show_dir, '--show-dir', False)])

    from mmengine.dist import is_main_process
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    runner.register_hook(CheckpointCheckHook(strict=True))
    if args.out is not None and cfg.get('default_scope') == 'mmdet':
        from mmdet.evaluation import DumpDetResults
        runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=args.out))
    metrics = runner.test()
    if is_main_process():
        if not metrics:
            print_log('warning: the evaluator returned no metrics (mmdet does so when no '
                      'prediction passes the test score threshold)', logger='current',
                      level=logging.WARNING)
        plain = {k: (v.item() if hasattr(v, 'item') else v) for k, v in (metrics or {}).items()}
        os.makedirs(cfg.work_dir, exist_ok=True)
        with open(osp.join(cfg.work_dir, 'metrics.json'), 'w') as f:
            json.dump(plain, f, indent=1, default=str)
        print('metrics: ' + json.dumps(plain, default=str), flush=True)
    return metrics


if __name__ == '__main__':
    launch.run_tool(main)
