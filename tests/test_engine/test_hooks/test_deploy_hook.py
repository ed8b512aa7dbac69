"""LSNetDeployHook on a toy runner's test(): the backbone is converted after the
runner loaded the checkpoint, so the deploy-mode model predicts what the loaded eager
model predicts (converting before loading would fold the initial weights instead)."""
import pytest
import torch
from engine_toys import LSNetToy, LSNetToyData, ToyMetric, loader, toy_runner
from torch import nn

pytestmark = pytest.mark.usefixtures('one_thread')


def trained_checkpoint(path):
    """An LSNetToy checkpoint whose weights and BN statistics are far from init."""
    torch.manual_seed(1)
    model = LSNetToy()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), path)
    return model.eval()


def evaluate(work_dir, hooks, **kwargs):
    """runner.test() of LSNetToy on LSNetToyData: (runner, outputs)."""
    runner = toy_runner(work_dir, hooks, model=dict(type=LSNetToy),
                        test_dataloader=loader(LSNetToyData()), test_cfg=dict(),
                        test_evaluator=dict(type=ToyMetric), **kwargs)
    runner.test()
    return runner, torch.stack(runner.test_evaluator.metrics[0].outputs)


def test_converts_after_the_checkpoint_is_loaded(tmp_path):
    ckpt = str(tmp_path / 'trained.pth')
    eager = trained_checkpoint(ckpt)
    with torch.no_grad():
        want = eager(list(LSNetToyData().x))
    runner, got = evaluate(tmp_path / 'deploy', [dict(type='lsnet_mm.LSNetDeployHook')],
                         load_from=ckpt)
    assert runner.model.backbone.deploy  # converted
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)  # ... from the loaded weights
    # control: the initial weights predict something else
    _, initial = evaluate(tmp_path / 'init', [dict(type='lsnet_mm.LSNetDeployHook')])
    assert (initial - want).abs().max() > 1e-2
    # training runs are never converted
    runner = toy_runner(tmp_path / 'train', [dict(type='lsnet_mm.LSNetDeployHook')],
                        model=dict(type=LSNetToy), data=LSNetToyData(),
                        train_cfg=dict(by_epoch=True, max_epochs=1))
    runner.train()
    assert not runner.model.backbone.deploy
