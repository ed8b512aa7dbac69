"""Shared fixtures of the deploy tests: tiny generated data sets and models trained on
them for a few iterations (from PyTorch's default initialisation, whose scores vary from
box to box, unlike the heads' own near-equal initial scores), loaded configs for them,
and non-trivial BatchNorm statistics for parity checks."""
import os.path as osp

import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

from product_helpers import (
    RETINA,
    SEG,
    cached,
    det_opts,
    random_checkpoint,
    seg_opts,
    session_dir,
    tiny_ade,
    tiny_coco,
    tool,
)


def cfg_options(opts):
    """``--cfg-options`` strings as the dict ``Config.merge_from_dict`` takes (parsed by
    mmengine's ``DictAction``, as the tools parse them)."""
    import argparse

    from mmengine.config import DictAction
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(['--cfg-options', *opts]).cfg_options


def _train(name, config, opts):
    """Train ``config`` for a few iterations from a default-initialised checkpoint."""
    root = osp.join(session_dir(), name)
    start = random_checkpoint(config, osp.join(root, 'start.pth'), init_weights=False)
    torch.set_num_threads(1)
    tool('train').main([config, '--work-dir', osp.join(root, 'work'), '--cfg-options',
                        *opts, f'load_from={start}'])
    from mmengine.config import Config
    cfg = Config.fromfile(config)
    cfg.merge_from_dict(cfg_options(opts))
    last = open(osp.join(root, 'work', 'last_checkpoint')).read().strip()
    return dict(config=config, opts=opts, cfg=cfg, checkpoint=last, root=root)


@pytest.fixture(scope='session')
def trained_detector():
    """RetinaNet demo, 96 px tiny COCO shapes (4 train, 2 val), 2 iterations."""
    def make():
        data = tiny_coco(osp.join(session_dir(), 'deploy_coco'), num_train=4, num_val=2,
                         size=96)
        return _train('deploy_retinanet', RETINA, det_opts(data, val=True))
    return cached('deploy_trained_detector', make)


@pytest.fixture(scope='session')
def trained_segmentor():
    """Semantic FPN demo, tiny ADE scenes (64x48, 4 train, 2 val), 2 iterations."""
    def make():
        data = tiny_ade(osp.join(session_dir(), 'deploy_ade'))
        return _train('deploy_fpn', SEG, seg_opts(data, val=True))
    return cached('deploy_trained_segmentor', make)


@pytest.fixture
def data_statistics():
    """Give a model's BatchNorms the running statistics of random data (cumulative
    averages of two training-mode forwards), so that a wrongly exported normalisation
    changes the outputs; returns the model in eval mode."""
    def apply(model, shape=(2, 3, 96, 128)):
        g = torch.Generator().manual_seed(2)
        norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None
        model.train()
        with torch.no_grad():
            for _ in range(2):
                model(torch.randn(*shape, generator=g) * 2 + 0.5)
        return model.eval()
    return apply
