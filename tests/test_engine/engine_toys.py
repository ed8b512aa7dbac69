"""A toy model, data set and metric, and an mmengine Runner of them, for the engine
tests (and their child processes): a few epochs train in well under a second."""
import logging
import os
import uuid
from contextlib import contextmanager

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from mmengine.logging import MMLogger
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn
from torch.utils.data import Dataset


class ToyModel(BaseModel):
    """y = w x + b on 2 inputs, with optional input dropout (draws torch random
    numbers) and an optional zero buffer that makes the checkpoints ``ballast`` floats
    larger."""

    def __init__(self, dropout=0.0, ballast=0):
        super().__init__()
        self.linear = nn.Linear(2, 1)
        self.dropout = nn.Dropout(dropout)
        if ballast:
            self.register_buffer('ballast', torch.zeros(ballast))

    def forward(self, inputs, targets=None, mode='tensor'):
        out = self.linear(self.dropout(torch.stack(inputs)))
        if mode == 'loss':
            return dict(loss=((out - torch.stack(targets)) ** 2).mean())
        if mode == 'predict':
            return [dict(err=float((o - t).abs().sum())) for o, t in zip(out, targets)]
        return out


class ToyData(Dataset):
    """``size`` fixed samples of a linear function; with ``augment`` each read adds
    numpy noise to the inputs (as random data augmentation does: numpy's global
    generator)."""

    def __init__(self, size=4, augment=False):
        rng = np.random.RandomState(1)
        self.x = torch.from_numpy(rng.randn(size, 2).astype(np.float32))
        self.y = self.x @ torch.tensor([[1.0], [-2.0]]) + 0.5  # learnable: the errors fall
        self.augment = augment

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        x = self.x[i]
        if self.augment:
            x = x + torch.from_numpy(np.random.normal(0, 0.1, 2).astype(np.float32))
        return dict(inputs=x, targets=self.y[i])


class LSNetToy(BaseModel):
    """A small LSNet (every kind of block) with a linear head on its last stage's mean,
    trained like ToyModel on LSNetToyData; ``predict`` also returns the outputs."""

    def __init__(self):
        super().__init__()
        from lsnet_mm import LSNet
        self.backbone = LSNet(arch=dict(embed_dims=(16, 32, 32, 48), depths=(0, 2, 0, 2)),
                              out_indices=(3,), norm_eval=False)
        self.head = nn.Linear(48, 1)

    def forward(self, inputs, targets=None, mode='tensor'):
        out = self.head(self.backbone(torch.stack(inputs))[-1].mean((2, 3)))
        if mode == 'loss':
            return dict(loss=((out - torch.stack(targets)) ** 2).mean())
        if mode == 'predict':
            return [dict(err=float((o - t).abs().sum()), out=o)
                    for o, t in zip(out, targets)]
        return out


class LSNetToyData(Dataset):
    """Two random 3x64x64 images with a target each."""

    def __init__(self):
        rng = np.random.RandomState(2)
        self.x = torch.from_numpy(rng.randn(2, 3, 64, 64).astype(np.float32))
        self.y = torch.from_numpy(rng.randn(2, 1).astype(np.float32))

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return dict(inputs=self.x[i], targets=self.y[i])


class ToyMetric(BaseMetric):
    """Mean absolute error ('mae') of the predictions; keeps the model's outputs in
    ``outputs`` when it returns them."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.outputs = []

    def process(self, data_batch, data_samples):
        self.results += [s['err'] for s in data_samples]
        self.outputs += [s['out'] for s in data_samples if 'out' in s]

    def compute_metrics(self, results):
        return dict(mae=float(np.mean(results)))


def loader(dataset, sampler='DefaultSampler'):
    return dict(dataset=dataset, batch_size=2, num_workers=0,
                sampler=dict(type=sampler, shuffle=False))


def toy_runner(work_dir, custom_hooks=(), checkpoint=None, model=None, data=None, val=False,
               sampler='DefaultSampler', **kwargs):
    """A Runner training ``model`` (a ToyModel config, built after the seeding;
    default: ``dict(type=ToyModel)``) on ToyData (2 iterations per epoch, 3 epochs, SGD)
    with ``lsnet_mm.SafeCheckpointHook`` saving every epoch (``checkpoint`` updates
    its settings); ``val``: validate after each epoch (ToyMetric); ``kwargs`` go to
    the Runner (``sampler``: of the train dataloader)."""
    ckpt = dict(type='lsnet_mm.SafeCheckpointHook', interval=1)
    ckpt.update(checkpoint or {})
    if val:
        kwargs.update(val_dataloader=loader(ToyData()), val_cfg=dict(),
                      val_evaluator=dict(type=ToyMetric))
    kwargs.setdefault('train_cfg', dict(by_epoch=True, max_epochs=3))
    kwargs.setdefault('optim_wrapper', dict(optimizer=dict(type='SGD', lr=0.01)))
    return Runner(
        model=model or dict(type=ToyModel), work_dir=str(work_dir),
        experiment_name=f'toy{uuid.uuid4().hex[:12]}',  # one logger / visualizer per run
        train_dataloader=loader(data or ToyData(), sampler),
        default_hooks=dict(checkpoint=ckpt, logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=list(custom_hooks), default_scope='mmengine',
        randomness=dict(seed=0), **kwargs)


def checkpoint_names(work_dir):
    """The .pth files in ``work_dir``, sorted."""
    return sorted(f for f in os.listdir(work_dir) if f.endswith('.pth'))


def temp_files(work_dir):
    """The temporary files of interrupted saves in ``work_dir``."""
    return sorted(f for f in os.listdir(work_dir) if f.startswith('.tmp-'))


def last_checkpoint(work_dir):
    """What ``work_dir/last_checkpoint`` says."""
    with open(os.path.join(work_dir, 'last_checkpoint')) as f:
        return f.read()


class Poison(Hook):
    """After iteration ``at`` (1-based) turn the loss ('loss') or one weight
    ('weights', as an overflowing update would) non-finite, before FiniteLossHook
    (ABOVE_NORMAL) looks at them."""

    priority = 'VERY_HIGH'

    def __init__(self, at, where):
        self.at, self.where = at, where

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 != self.at:
            return
        if self.where == 'loss':
            outputs['loss'] = outputs['loss'] * float('nan')
        else:
            with torch.no_grad():
                runner.model.linear.weight[0, 0] = float('inf')


@contextmanager
def logged_warnings():
    """The messages of the warnings logged to mmengine's current logger in the block."""
    found = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: found.append(record.getMessage())
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        yield found
    finally:
        logger.removeHandler(handler)
