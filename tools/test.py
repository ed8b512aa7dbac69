"""Evaluate a checkpoint on a config's test set with mmengine's Runner (mmdet or mmseg).

    python tools/test.py configs/retinanet_lsnet_t.py checkpoints/retinanet_lsnet_t.pth
    python tools/test.py CONFIG CKPT --out preds.pkl          # also save raw predictions
    bash tools/dist_test.sh CONFIG CKPT 8                     # torchrun

The metrics come from the config's test_evaluator (mmdet: CocoMetric, bbox and segm
AP through pycocotools; mmseg: IoUMetric). ``--out`` dumps the raw predictions to a
pickle: mmdet's DumpDetResults (boxes, scores, labels, RLE masks) for mmdet
configs, mmengine's DumpResults (the data samples) otherwise. The metrics are
printed as one JSON line (``metrics: {...}``) and written to WORK_DIR/metrics.json.

The checkpoint must fit the model exactly (same keys and shapes): released mmdet 2.x
checkpoints load as they are or after tools/convert_checkpoint.py; a checkpoint for
another number of classes is refused with a message naming num_classes.
"""
import argparse
import json
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import lsnet_mm  # noqa: E402,F401 (registers LSNet modules, allow-lists checkpoint classes)
import lsnet_mm.detection  # noqa: E402,F401 (registers the checked image loader)
from lsnet_mm.checkpoint import CheckpointError  # noqa: E402
from lsnet_mm.preflight import (PreflightError, check_checkpoint_fits, check_data,  # noqa: E402
                                check_load_from, check_num_classes, setup_cpu_distributed)
from lsnet_mm.tool_config import load_tool_config, shutdown_distributed  # noqa: E402


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description='Test (and evaluate) a checkpoint')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save logs and metrics')
    parser.add_argument('--out', type=str,
                        help='dump the raw predictions to this pickle file (.pkl)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value pairs')
    parser.add_argument('--deploy', action='store_true',
                        help='switch LSNet backbones to deploy mode once the checkpoint is '
                             'loaded (BN and RepVGG branches folded: same outputs, faster)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        parser.error('--out must name a .pkl or .pickle file')
    return args


def build_cfg(args):
    cfg = load_tool_config(args.config, args.launcher, args.cfg_options, args.work_dir)
    cfg.load_from = args.checkpoint
    cfg.resume = False
    if args.deploy:
        import lsnet_mm.deploy  # noqa: F401 (registers LSNetDeployHook)
        cfg.custom_hooks = list(cfg.get('custom_hooks', None) or []) + [
            dict(type='LSNetDeployHook')]
    return cfg


def dump_metric(cfg, out):
    if cfg.get('default_scope') == 'mmdet':
        from mmdet.evaluation import DumpDetResults
        return DumpDetResults(out_file_path=out)
    from mmengine.evaluator import DumpResults
    return DumpResults(out_file_path=out)


def main(argv=None):
    args = parse_args(argv)
    cfg = build_cfg(args)
    setup_cpu_distributed(cfg, args.launcher)
    check_load_from(args.checkpoint, 'checkpoint')
    check_data(cfg, 'test')
    check_num_classes(cfg, 'test_dataloader')

    from mmengine.dist import is_main_process
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    check_checkpoint_fits(runner.model, args.checkpoint, cfg)
    if args.out is not None:
        runner.test_evaluator.metrics.append(dump_metric(cfg, args.out))
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
    try:
        main()
    except (PreflightError, CheckpointError) as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(2)
    finally:
        shutdown_distributed()
