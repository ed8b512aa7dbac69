"""The paper's recipe on fewer GPUs: gradient accumulation (apply_gradient_accumulation and
AccumulationParamSchedulerHook) on toy mmengine runners, k=4 against k=1 with a 4x
batch, and on the paper configs."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook, ParamSchedulerHook
from mmengine.model import BaseModel
from mmengine.runner import Runner

from lsnet_mm.apis.accumulation import ACCUMULATION_HOOK, apply_gradient_accumulation
from lsnet_mm.engine.hooks.accumulation_param_scheduler_hook import AccumulationParamSchedulerHook
from lsnet_mm.utils.errors import ConfigError

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SAMPLES = 16  # the toy data set: 16 samples, 2 features


class ToyModel(BaseModel):
    """A linear regression (no batch norm: accumulation equals a k x larger batch)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.linear = torch.nn.Linear(2, 1)

    def forward(self, inputs, targets, mode='tensor'):
        loss = ((self.linear(inputs).squeeze(1) - targets) ** 2).mean()
        return dict(loss=loss)


class ToyData(torch.utils.data.Dataset):
    def __init__(self):
        g = torch.Generator().manual_seed(1)
        self.x = torch.randn(SAMPLES, 2, generator=g)
        self.y = self.x @ torch.tensor([1.5, -2.0]) + 0.3 * torch.randn(SAMPLES, generator=g)

    def __len__(self):
        return SAMPLES

    def __getitem__(self, i):
        return dict(inputs=self.x[i], targets=self.y[i])


class OptimizerStepRecorder(Hook):
    """Records the learning rate of each iteration that changed the weights (an optimizer
    step), found from the weights themselves, not from the optimizer wrapper's counter."""
    priority = 'HIGHEST'

    def __init__(self):
        self.lrs = []

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self._lr = runner.optim_wrapper.get_lr()['lr'][0]
        self._weights = [p.detach().clone() for p in runner.model.parameters()]

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if any(not torch.equal(a, p) for a, p in zip(self._weights, runner.model.parameters())):
            self.lrs.append(self._lr)


def recipe(iter_based):
    """A toy version of the paper configs' recipe: warm-up by iterations, then steps at
    epochs (COCO) or poly decay by iterations (ADE20K); batch 4."""
    cfg = dict(
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        default_hooks=dict(param_scheduler=dict(type=ACCUMULATION_HOOK),
                           checkpoint=dict(type='CheckpointHook', interval=1000),
                           logger=dict(type='LoggerHook', interval=2)),
        auto_scale_lr=dict(enable=False, base_batch_size=4))
    if iter_based:
        cfg.update(train_cfg=dict(type='IterBasedTrainLoop', max_iters=10, val_interval=5),
                   param_scheduler=[
                       dict(type='LinearLR', start_factor=0.2, by_epoch=False, begin=0, end=5),
                       dict(type='PolyLR', eta_min=1e-4, power=0.9, by_epoch=False, begin=5,
                            end=10)])
        cfg['default_hooks']['checkpoint'].update(by_epoch=False, interval=5)
    else:
        cfg.update(train_cfg=dict(type='EpochBasedTrainLoop', max_epochs=3),
                   param_scheduler=[
                       dict(type='LinearLR', start_factor=0.2, by_epoch=False, begin=0, end=5),
                       dict(type='MultiStepLR', by_epoch=True, begin=0, end=3, milestones=[2],
                            gamma=0.1)])
    return Config(cfg)


def train(cfg, batch_size, work_dir):
    """Train the toy model; (lr of each optimizer step, final weights, the class of the
    runner's param-scheduler hook)."""
    recorder = OptimizerStepRecorder()
    # an IterBasedTrainLoop restarting a finite sampler pauses 2 s: sample endlessly
    sampler = 'InfiniteSampler' if 'max_iters' in cfg.train_cfg else 'DefaultSampler'
    runner = Runner(
        model=ToyModel(), work_dir=str(work_dir), experiment_name=osp.basename(work_dir),
        train_dataloader=dict(dataset=ToyData(), batch_size=batch_size,
                              sampler=dict(type=sampler, shuffle=False),
                              collate_fn=dict(type='default_collate')),
        custom_hooks=[recorder], default_scope='mmengine', **cfg.to_dict())
    runner.train()
    (hook,) = [h for h in runner.hooks if isinstance(h, ParamSchedulerHook)]
    return (recorder.lrs, torch.cat([p.detach().flatten() for p in runner.model.parameters()]),
            type(hook))


@pytest.mark.parametrize('iter_based', [False, True], ids=['epoch_loop', 'iter_loop'])
def test_lr_of_every_optimizer_step_equals_the_unaccumulated_run(iter_based, tmp_path):
    """k=4 with batch 1 takes the same optimizer steps, at the same learning rates, as k=1
    with batch 4 (warm-up and steps counted in optimizer steps), and ends at the same
    weights; mmengine's stock ParamSchedulerHook would warm up k times too fast."""
    base_lrs, base_w, hook = train(recipe(iter_based), 4, tmp_path / 'k1')
    cfg = apply_gradient_accumulation(recipe(iter_based), 4)
    lrs, w, _ = train(cfg, 1, tmp_path / 'k4')
    assert hook is AccumulationParamSchedulerHook
    steps = 12 if not iter_based else 10  # 3 epochs x 4 steps / 10 iterations
    assert len(base_lrs) == steps and lrs == base_lrs
    assert len(set(base_lrs)) >= 5  # warm-up and decay really changed the lr
    torch.testing.assert_close(w, base_w, rtol=1e-5, atol=1e-6)

    stock = apply_gradient_accumulation(recipe(iter_based), 4)
    stock.default_hooks.param_scheduler.type = 'ParamSchedulerHook'
    stock_lrs, _, hook = train(stock, 1, tmp_path / 'stock')
    assert hook is ParamSchedulerHook
    assert len(stock_lrs) == steps and stock_lrs != base_lrs


def test_config_transformation_scales_what_counts_iterations():
    cfg = apply_gradient_accumulation(recipe(iter_based=True), 4)
    assert cfg.optim_wrapper.accumulative_counts == 4
    assert cfg.default_hooks.param_scheduler.type == ACCUMULATION_HOOK
    assert (cfg.train_cfg.max_iters, cfg.train_cfg.val_interval) == (40, 20)
    assert cfg.default_hooks.checkpoint.interval == 20
    assert cfg.default_hooks.logger.interval == 8
    assert cfg.auto_scale_lr.base_batch_size == 1  # 1 GPU x 1 image x 4 = the base 4
    # the schedules stay in (optimizer) steps
    assert [s.end for s in cfg.param_scheduler] == [5, 10]
    epoch = apply_gradient_accumulation(recipe(iter_based=False), 4)
    assert epoch.train_cfg.max_epochs == 3 and epoch.default_hooks.checkpoint.interval == 1000
    assert apply_gradient_accumulation(recipe(True), 1).to_dict() == recipe(True).to_dict()


@pytest.mark.parametrize('change, k, message', [
    (dict(), 0, 'a whole number of iterations per optimizer step (1, 2, ...), got 0'),
    (dict(optim_wrapper=dict(accumulative_counts=2)), 4,
     'already accumulates gradients (optim_wrapper.accumulative_counts=2'),
    (dict(default_hooks=dict(param_scheduler=dict(type='MyHook'))), 4,
     "sets type='MyHook': use type='lsnet_mm.AccumulationParamSchedulerHook'"),
    (dict(param_scheduler=[dict(type='MultiStepLR', convert_to_iter_based=True)]), 4,
     'param_scheduler[0] set convert_to_iter_based=True'),
])
def test_config_transformation_refuses_what_cannot_follow_the_recipe(change, k, message):
    cfg = recipe(iter_based=False)
    cfg.merge_from_dict(change)
    with pytest.raises(ConfigError) as err:
        apply_gradient_accumulation(cfg, k)
    assert message in str(err.value)


PAPER = {'retinanet_lsnet_t': (16, None), 'mask_rcnn_lsnet_s': (16, None),
         'fpn_lsnet_b_ade20k': (32, (40000, 4000))}


@pytest.mark.parametrize('name', list(PAPER))
def test_paper_configs_accumulate_to_the_paper_batch(name):
    """1 GPU x the configs' images per GPU x 8 = the paper's batch; the hook is named in
    the configs themselves, so optim_wrapper.accumulative_counts alone works under mmdet's
    and mmseg's tools for the epoch-based COCO configs."""
    cfg = Config.fromfile(osp.join(ROOT, 'configs', f'{name}.py'))
    base, iters = PAPER[name]
    assert cfg.default_hooks.param_scheduler.type == ACCUMULATION_HOOK
    assert cfg.auto_scale_lr.base_batch_size == base
    assert cfg.train_dataloader.batch_size * 8 == base
    apply_gradient_accumulation(cfg, 8)
    assert cfg.optim_wrapper.accumulative_counts == 8
    assert cfg.auto_scale_lr.base_batch_size * 8 == base
    if iters:
        assert (cfg.train_cfg.max_iters, cfg.train_cfg.val_interval,
                cfg.default_hooks.checkpoint.interval) == (iters[0] * 8, iters[1] * 8,
                                                           iters[1] * 8)
        assert cfg.param_scheduler[0].end == iters[0]
    else:
        assert cfg.train_cfg.max_epochs == 12 and cfg.param_scheduler[0].end == 500

