"""What the tools share: command-line flags, config loading, CPU launch, one-line errors.

Every tool runs its ``main`` through :func:`run_tool`: an
:class:`~lsnet_mm.utils.errors.LSNetError` (anything a user can cause: a bad setting,
a missing or damaged file, a diverged run) prints ``error: MESSAGE`` as one line on
stderr and exits with status 2; ``--debug`` (train/test) or ``LSNET_DEBUG=1`` (any tool)
shows the traceback instead.
"""
import os
import os.path as osp
import sys
from typing import Callable

import torch

from ..utils.errors import ConfigError, LSNetError

#: Environment variable that makes :func:`run_tool` show tracebacks (as ``--debug``).
DEBUG_ENV = 'LSNET_DEBUG'


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
    parser.add_argument('--debug', action='store_true',
                        help=f'show the traceback of an error instead of one line (as '
                             f'{DEBUG_ENV}=1)')


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
    if getattr(args, 'debug', False):
        os.environ[DEBUG_ENV] = '1'
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

    Raises:
        ConfigError: The config file is not there.
    """
    from mmengine.config import Config
    if not osp.isfile(config):
        raise ConfigError(f'config file not found: {config!r} (cwd {os.getcwd()!r}); the '
                          f'paper configs are in configs/, the demo ones in configs/demo/.')
    cfg = Config.fromfile(config)
    cfg.launcher = launcher
    if cfg_options is not None:
        cfg.merge_from_dict(cfg_options)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config))[0])
    return cfg


def shutdown_distributed(barrier: bool = True) -> None:
    """Tear down the process group a launcher set up.

    Left to interpreter exit, gloo's threads can abort the process ("terminate called
    without an active exception") after the run has finished, and torchrun then
    reports the job as failed.

    Args:
        barrier (bool): Wait for the other processes first (a normal end). False after
            an error, when the others may never reach the barrier.
    """
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        if barrier:
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
        raise ConfigError(
            f'--launcher {launcher} without CUDA is not supported (mmengine assumes GPUs for it); '
            f'on CPU use torchrun (tools/dist_train.sh, --launcher pytorch) with the gloo backend.')
    import torch.distributed as dist
    if not dist.is_initialized():
        kwargs = {}
        if dist_cfg.get('timeout') is not None:
            import datetime
            kwargs['timeout'] = datetime.timedelta(seconds=dist_cfg['timeout'])
        dist.init_process_group(backend='gloo', **kwargs)


def error_line(error: BaseException) -> str:
    """An error's message as the one line a tool prints.

    Args:
        error (BaseException): The error.

    Returns:
        str: ``'error: MESSAGE'``, the lines of a multi-line message joined by ``'; '``.
    """
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    return 'error: ' + ('; '.join(lines) or type(error).__name__)


def run_tool(main: Callable) -> None:
    """Run a tool's ``main()`` as a command: a user's error is one line and exit status 2.

    Any :class:`~lsnet_mm.utils.errors.LSNetError` prints :func:`error_line` on stderr
    (no traceback unless ``--debug`` / ``LSNET_DEBUG=1``) and exits with status 2; other
    exceptions are bugs and propagate. The process group a launcher set up is torn down
    in any case (:func:`shutdown_distributed`).

    Args:
        main (Callable): The tool's entry point, called without arguments.
    """
    try:
        main()
    except LSNetError as e:
        shutdown_distributed(barrier=False)
        if os.environ.get(DEBUG_ENV) == '1':
            raise
        print(error_line(e), file=sys.stderr, flush=True)
        sys.exit(2)
    except BaseException:
        shutdown_distributed(barrier=False)
        raise
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
    if cfg.get('compile') and not any(h.get('type') == 'lsnet_mm.LSNetCompileHook' for h in hooks):
        cfg.custom_hooks = hooks + [dict(type='lsnet_mm.LSNetCompileHook')]
