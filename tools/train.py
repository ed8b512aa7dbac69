"""Train a model from an mmdet or mmseg config with mmengine's Runner.

The config's ``default_scope`` ('mmdet' or 'mmseg') decides which library builds
the model, datasets and metrics; this script is the same for both.

    python tools/train.py configs/retinanet_lsnet_t.py
    python tools/train.py CONFIG --work-dir work_dirs/x --resume            # latest in work dir
    python tools/train.py CONFIG --resume work_dirs/x/epoch_4.pth
    bash tools/dist_train.sh CONFIG 8 [--amp] [--auto-scale-lr]             # torchrun

Before the runner starts, :func:`lsnet_mm.apis.preflight.check_before_run` checks the
config, the output folder, the checkpoints (URLs are downloaded into the cache) and the
datasets, and names what is wrong and how to fix it. Only one training run may use a
work dir at a time. ``load_from`` loads non-strictly, as in mmengine, with a warning
naming any head trained for another number of classes (fine-tuning); ``--resume`` needs a
checkpoint that fits exactly. The configs run unchanged under mmdet's and mmseg's own
tools/train.py as well.
"""
import argparse

from mmengine.logging import print_log

import lsnet_mm  # noqa: F401 (registers LSNet modules, allow-lists checkpoint classes)
from lsnet_mm.apis import launch, preflight
from lsnet_mm.apis.accumulation import apply_gradient_accumulation
from lsnet_mm.engine.hooks import CheckpointCheckHook
from lsnet_mm.engine.resume import find_resume_checkpoint
from lsnet_mm.engine.work_dir_lock import acquire_work_dir_lock
from lsnet_mm.utils.errors import ConfigError


def parse_args(argv=None):
    """The command line, as mmdet's and mmseg's tools/train.py take it."""
    parser = argparse.ArgumentParser(description='Train a detector or a segmentor')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument('--amp', action='store_true', default=False,
                        help='enable automatic mixed precision training (CUDA only)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the learning rate by (GPUs x batch per GPU) / '
                             'auto_scale_lr.base_batch_size')
    parser.add_argument('--accumulate', type=int, default=1, metavar='K',
                        help='accumulate the gradients of K iterations per optimizer step '
                             '(the schedule counted in optimizer steps): the paper\'s batch on '
                             'fewer GPUs, see docs/model_zoo.md')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from the given checkpoint, or, without a path, from the '
                             'latest checkpoint in the work dir')
    launch.add_run_args(parser)
    return launch.parse_run_args(parser, argv)


def build_cfg(args):
    """The config with the command line's settings merged in (all of them show in the
    config the runner dumps into the work dir)."""
    cfg = launch.load_tool_config(args.config, args.launcher, args.cfg_options, args.work_dir)
    apply_gradient_accumulation(cfg, args.accumulate)  # K=1 changes nothing

    if args.amp:
        import torch
        if not torch.cuda.is_available():
            raise ConfigError('--amp needs a CUDA GPU (mmengine\'s AmpOptimWrapper); drop '
                                 '--amp to train in float32 on CPU.')
        if cfg.optim_wrapper.get('type') == 'AmpOptimWrapper':
            print_log('AMP training is already enabled in the config.', logger='current')
        else:
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')

    if args.auto_scale_lr:
        if 'base_batch_size' in cfg.get('auto_scale_lr', {}):
            cfg.auto_scale_lr.enable = True
        else:
            raise ConfigError('--auto-scale-lr needs auto_scale_lr=dict(base_batch_size=N) '
                                 'in the config (the batch size its learning rate is set for).')

    launch.use_compile_hook(cfg)  # compile=True: optimizer step outside the graph
    # --resume without a path takes the newest checkpoint that loads
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = find_resume_checkpoint(cfg.work_dir)
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    return cfg


def main(argv=None):
    """Train; returns the trained model."""
    args = parse_args(argv)
    cfg = build_cfg(args)
    launch.setup_cpu_distributed(cfg, args.launcher)
    preflight.check_before_run(cfg, 'train')

    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    if cfg.get('load_from'):
        # resuming needs the exact model; load_from loads non-strictly as in mmengine and
        # warns about heads trained for another number of classes (fine-tuning)
        runner.register_hook(CheckpointCheckHook(strict=bool(cfg.get('resume'))))
    with acquire_work_dir_lock(cfg.work_dir):  # one training run per work dir
        return runner.train()


if __name__ == '__main__':
    launch.run_tool(main)
