"""What tools/train.py and tools/test.py share: config loading, CPU launch, tear-down."""
import os
import os.path as osp
import sys
from typing import Callable

import torch

from .preflight import PreflightError


def add_run_args(parser) -> None:
    """Add the flags mmdet's and mmseg's train.py and test.py share.

    ``--cfg-options`` (mmengine's ``DictAction``), ``--launcher`` and ``--local-rank``
    (``--local_rank`` too, as ``torch.distributed.launch`` passes it).

    Args:
        parser (argparse.ArgumentParser): The tool's parser.
    """
    from mmengine.config import DictAction
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value pairs, e.g. '
                             'train_dataloader.batch_size=4 "model.backbone.init_cfg=None"')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def parse_run_args(parser, argv=None):
    """Parse the command line and export ``LOCAL_RANK`` as mmengine expects it.

    Args:
        parser (argparse.ArgumentParser): A parser with :func:`add_run_args`' flags.
        argv (list[str], optional): The arguments; ``sys.argv[1:]`` when None.

    Returns:
        argparse.Namespace: The parsed arguments.
    """
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def load_tool_config(config, launcher='none', cfg_options=None, work_dir=None):
    """Load a config as mmdet's and mmseg's tools do.

    Args:
        config (str): The config file.
        launcher (str): The job launcher ('none', 'pytorch', 'slurm', 'mpi').
        cfg_options (dict, optional): ``--cfg-options`` to merge.
        work_dir (str, optional): ``--work-dir``; else the config's, else
            ``./work_dirs/<config name>``.

    Returns:
        mmengine.Config: The config.
    """
    from mmengine.config import Config
    cfg = Config.fromfile(config)
    cfg.launcher = launcher
    if cfg_options is not None:
        cfg.merge_from_dict(cfg_options)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config))[0])
    return cfg


def shutdown_distributed():
    """Tear down the process group a launcher set up.

    Left to interpreter exit, gloo's threads can abort the process ("terminate called
    without an active exception") after the run has finished, and torchrun then
    reports the job as failed.
    """
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()  # no rank tears down while another still talks to it
        dist.destroy_process_group()


def setup_cpu_distributed(cfg, launcher):
    """Make a multi-process run work without CUDA (gloo backend, CPU DDP).

    mmengine's launcher code calls ``torch.cuda.set_device`` and wraps the model with
    ``device_ids=[LOCAL_RANK]``; neither works on CPU. For the ``pytorch`` launcher
    (torchrun) the process group is created here with gloo through torch.distributed,
    which mmengine then uses as is, and DDP is configured with ``device_ids=None``.
    Both settings are written into the config, so the work dir's copy shows them.

    Args:
        cfg (mmengine.Config): The run's config; ``env_cfg.dist_cfg.backend`` and
            ``model_wrapper_cfg`` are set for CPU.
        launcher (str): The job launcher.
    """
    if launcher == 'none' or torch.cuda.is_available():
        return
    env_cfg = cfg.setdefault('env_cfg', {})
    dist_cfg = env_cfg.setdefault('dist_cfg', {})
    if dist_cfg.get('backend', 'nccl') != 'gloo':
        dist_cfg['backend'] = 'gloo'
    if cfg.get('model_wrapper_cfg') is None:
        cfg.model_wrapper_cfg = dict(type='MMDistributedDataParallel', device_ids=None,
                                     broadcast_buffers=False,
                                     find_unused_parameters=cfg.get('find_unused_parameters',
                                                                    False))
    if launcher != 'pytorch':
        raise PreflightError(
            f'--launcher {launcher} without CUDA is not supported (mmengine assumes GPUs for it); '
            f'on CPU use torchrun (tools/dist_train.sh, --launcher pytorch) with the gloo backend.')
    import torch.distributed as dist
    if not dist.is_initialized():
        kwargs = {}
        if dist_cfg.get('timeout') is not None:
            import datetime
            kwargs['timeout'] = datetime.timedelta(seconds=dist_cfg['timeout'])
        dist.init_process_group(backend='gloo', **kwargs)


def run_tool(main: Callable) -> None:
    """Run a tool's ``main()`` as a command: known errors become one line and exit 2.

    A :class:`~lsnet_mm.utils.preflight.PreflightError`, a
    :class:`~lsnet_mm.checkpoint.CheckpointError` or a
    :class:`~lsnet_mm.engine.hooks.NonFiniteLossError` (a diverged training run) prints
    ``error: MESSAGE`` on stderr (no traceback) and exits with status 2; the process
    group a launcher set up is torn down in any case (:func:`shutdown_distributed`).

    Args:
        main (Callable): The tool's entry point, called without arguments.
    """
    from ..checkpoint import CheckpointError
    from ..engine.hooks.finite_loss_hook import NonFiniteLossError
    try:
        main()
    except (PreflightError, CheckpointError, NonFiniteLossError) as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(2)
    finally:
        shutdown_distributed()


def use_compile_hook(cfg) -> None:
    """Name ``LSNetCompileHook`` in ``cfg.custom_hooks`` when the config sets ``compile``.

    The hook makes mmengine's ``compile`` setting work for these models (see
    :class:`~lsnet_mm.engine.hooks.LSNetCompileHook`); it is written into the config, so
    the dumped config shows it.

    Args:
        cfg (mmengine.Config): The run's config.
    """
    hooks = list(cfg.get('custom_hooks', None) or [])
    if cfg.get('compile') and not any(h.get('type') == 'LSNetCompileHook' for h in hooks):
        cfg.custom_hooks = hooks + [dict(type='LSNetCompileHook')]
