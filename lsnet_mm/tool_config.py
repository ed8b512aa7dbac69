"""Config loading shared by tools/train.py and tools/test.py, as mmdet's and mmseg's tools do it."""
import os.path as osp


def load_tool_config(config, launcher='none', cfg_options=None, work_dir=None):
    """The config file with --cfg-options merged, the launcher set and a work dir chosen
    (--work-dir, else the config's, else ./work_dirs/<config name>)."""
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
    """Tear down the process group a launcher set up. Left to interpreter exit, gloo's
    threads can abort the process ("terminate called without an active exception")
    after the run has finished, and torchrun then reports the job as failed."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()  # no rank tears down while another still talks to it
        dist.destroy_process_group()
