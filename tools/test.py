"""Evaluate a checkpoint on a config's test set with mmengine's Runner (mmdet or mmseg).

    python tools/test.py configs/retinanet_lsnet_t.py checkpoints/retinanet_lsnet_t.pth
    python tools/test.py CONFIG CKPT --out preds.pkl       # mmdet: raw predictions (pickle)
    python tools/test.py CONFIG CKPT --out preds/          # mmseg: predicted label maps (PNG)
    python tools/test.py CONFIG CKPT --show-dir vis/       # pictures of the predictions
    bash tools/dist_test.sh CONFIG CKPT 8                  # torchrun

The flags are those of mmdet's and mmseg's tools/test.py (which also run these
configs); ``--deploy`` adds ``LSNetDeployHook`` to the config's custom_hooks;
``--compile`` sets ``compile=True`` (keeping a ``compile=dict(...)`` of options the config
or --cfg-options give) and the model's test_step is torch.compile'd after deploy. The
metrics come from the config's test_evaluator (mmdet: CocoMetric; mmseg:
IoUMetric); they are printed as one JSON line (``metrics: {...}``) and written to
WORK_DIR/metrics.json.

The checkpoint must fit the model exactly (same keys and shapes): released mmdet
2.x / mmseg 0.x files load as they are or after
tools/model_converters/convert_checkpoint.py; a checkpoint for another number of
classes is refused with a message naming num_classes.
"""
import argparse
import json
import os
import os.path as osp
import sys

import lsnet_mm  # noqa: F401 (registers LSNet modules, allow-lists checkpoint classes)
from lsnet_mm.datasets.dataset_check import check_datasets
from lsnet_mm.engine.hooks import CheckpointCheckHook
from lsnet_mm.utils import launch, model_check, preflight
from lsnet_mm.utils.preflight import PreflightError


def parse_args(argv=None):
    """The command line, as mmdet's and mmseg's tools/test.py take it."""
    parser = argparse.ArgumentParser(description='Test (and evaluate) a checkpoint')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
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
    launch.add_run_args(parser)
    return launch.parse_run_args(parser, argv)


def trigger_visualization_hook(cfg, show_dir):
    """Turn on the config's visualization hook and save its pictures in ``show_dir``,
    as mmdet's and mmseg's test.py do."""
    hook = cfg.default_hooks.get('visualization')
    if hook is None:
        raise PreflightError('--show-dir needs default_hooks.visualization in the config '
                             '(mmdet\'s DetVisualizationHook or mmseg\'s SegVisualizationHook)')
    hook['draw'] = True
    if cfg.get('default_scope') == 'mmseg':
        cfg.visualizer['save_dir'] = show_dir
    else:
        hook['test_out_dir'] = show_dir


def build_cfg(args):
    """The config with the command line's settings merged in (all of them show in the
    config the runner dumps into the work dir)."""
    cfg = launch.load_tool_config(args.config, args.launcher, args.cfg_options, args.work_dir)
    cfg.load_from = args.checkpoint
    cfg.resume = False
    if args.show_dir:
        trigger_visualization_hook(cfg, args.show_dir)
    if args.out is not None and cfg.get('default_scope') == 'mmdet':
        if not args.out.endswith(('.pkl', '.pickle')):
            raise PreflightError('--out must name a .pkl or .pickle file for mmdet configs')
    elif args.out is not None:  # mmseg: the metric writes the label maps (mmseg's --out)
        cfg.test_evaluator['output_dir'] = args.out
        cfg.test_evaluator['keep_results'] = True
    if args.deploy:
        cfg.custom_hooks = list(cfg.get('custom_hooks', None) or []) + [
            dict(type='LSNetDeployHook')]
    if args.compile and not cfg.get('compile'):
        cfg.compile = True
    launch.use_compile_hook(cfg)
    return cfg


def main(argv=None):
    """Evaluate; returns the metrics."""
    args = parse_args(argv)
    cfg = build_cfg(args)
    launch.setup_cpu_distributed(cfg, args.launcher)
    model_check.check_model_cfg(cfg)  # neck.in_channels vs the LSNet arch
    preflight.check_load_from(args.checkpoint, 'checkpoint')
    preflight.check_data(cfg, 'test')
    preflight.check_num_classes(cfg, 'test_dataloader')
    check_datasets(cfg, 'test')  # annotation files, image headers, label map sizes, classes

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
            print('warning: the evaluator returned no metrics (mmdet does so when no '
                  'prediction passes the test score threshold)', file=sys.stderr)
        plain = {k: (v.item() if hasattr(v, 'item') else v) for k, v in (metrics or {}).items()}
        os.makedirs(cfg.work_dir, exist_ok=True)
        with open(osp.join(cfg.work_dir, 'metrics.json'), 'w') as f:
            json.dump(plain, f, indent=1, default=str)
        print('metrics: ' + json.dumps(plain, default=str), flush=True)
    return metrics


if __name__ == '__main__':
    launch.run_tool(main)
