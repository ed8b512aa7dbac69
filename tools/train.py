"""Train a model from an mmdet or mmseg config with mmengine's Runner.

The config's ``default_scope`` ('mmdet' or 'mmseg') decides which library builds
the model, datasets and metrics; this script is the same for both.

    python tools/train.py configs/retinanet_lsnet_t.py
    python tools/train.py CONFIG --work-dir work_dirs/x --resume            # latest in work dir
    python tools/train.py CONFIG --resume work_dirs/x/epoch_4.pth
    bash tools/dist_train.sh CONFIG 8 [--amp] [--auto-scale-lr]             # torchrun

Before the runner starts it checks (and names what is wrong and how to fix it): the
dataset files, the pretrained weights named by the model's init_cfg, ``load_from``,
and that the heads' num_classes match the dataset classes.
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import lsnet_mm  # noqa: E402,F401 (registers LSNet modules, allow-lists checkpoint classes)
import lsnet_mm.detection  # noqa: E402,F401 (registers the checked image loader)
from lsnet_mm.checkpoint import CheckpointError  # noqa: E402
from lsnet_mm.preflight import (PreflightError, check_checkpoint_fits, check_data,  # noqa: E402
                                check_dataset_not_empty, check_load_from, check_num_classes,
                                check_pretrained, setup_cpu_distributed)
from lsnet_mm.safe_checkpoint import find_resume_checkpoint, use_safe_checkpoint_hook  # noqa: E402
from lsnet_mm.tool_config import load_tool_config, shutdown_distributed  # noqa: E402


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description='Train a detector or a segmentor')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument('--amp', action='store_true', default=False,
                        help='enable automatic mixed precision training (CUDA only)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the learning rate by (GPUs x batch per GPU) / '
                             'auto_scale_lr.base_batch_size')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from the given checkpoint, or, without a path, from the '
                             'latest checkpoint in the work dir')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value pairs, e.g. '
                             'train_dataloader.batch_size=4 "model.backbone.init_cfg=None"')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    # torch.distributed.launch passes --local-rank (torch >= 2.0) or --local_rank
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def build_cfg(args):
    cfg = load_tool_config(args.config, args.launcher, args.cfg_options, args.work_dir)

    if args.amp:
        import torch
        if not torch.cuda.is_available():
            raise PreflightError('--amp needs a CUDA GPU (mmengine\'s AmpOptimWrapper); drop '
                                 '--amp to train in float32 on CPU.')
        if cfg.optim_wrapper.get('type') == 'AmpOptimWrapper':
            print('AMP training is already enabled in the config.')
        else:
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')

    if args.auto_scale_lr:
        if 'base_batch_size' in cfg.get('auto_scale_lr', {}):
            cfg.auto_scale_lr.enable = True
        else:
            raise PreflightError('--auto-scale-lr needs auto_scale_lr=dict(base_batch_size=N) '
                                 'in the config (the batch size its learning rate is set for).')

    # checkpoints written atomically, old ones deleted only after (a kill while saving
    # keeps the last good one); --resume takes the newest checkpoint that loads
    use_safe_checkpoint_hook(cfg)
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = find_resume_checkpoint(cfg.work_dir)
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    return cfg


def preflight(cfg, launcher):
    setup_cpu_distributed(cfg, launcher)
    check_data(cfg, 'train')
    check_pretrained(cfg)
    check_num_classes(cfg, 'train_dataloader')
    check_load_from(cfg.get('load_from'), 'resume checkpoint' if cfg.get('resume')
                    else 'load_from checkpoint')


def main(argv=None):
    args = parse_args(argv)
    cfg = build_cfg(args)
    preflight(cfg, args.launcher)

    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    check_dataset_not_empty(runner, 'train')
    if cfg.get('load_from'):
        check_checkpoint_fits(runner.model, cfg.load_from, cfg,
                              what='resume checkpoint' if cfg.get('resume') else 'load_from')
    return runner.train()


if __name__ == '__main__':
    try:
        main()
    except (PreflightError, CheckpointError) as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(2)
    finally:
        shutdown_distributed()
