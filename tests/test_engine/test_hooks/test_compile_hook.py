"""LSNetCompileHook on toy runners with the config's ``compile`` setting (a recording
TorchDynamo backend: the captured graphs run as they are): test() runs a compiled
``test_step`` (mmengine compiles only ``train_step``), with the eager predictions;
train() keeps the optimizer step eager, with the eager losses; without ``compile``
nothing is compiled."""
import pytest
import torch
from engine_toys import ToyData, ToyMetric, loader, toy_runner
from mmengine.config import Config

pytestmark = pytest.mark.usefixtures('one_thread')

RECORDER = 'lsnet_engine_test_recorder'
GRAPHS = []


def _record(gm, example_inputs):
    GRAPHS.append(gm.code)
    return gm.forward


if RECORDER not in torch._dynamo.list_backends(exclude_tags=()):
    torch._dynamo.register_backend(_record, name=RECORDER)


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    GRAPHS.clear()
    yield
    torch._dynamo.reset()


def runner_with(work_dir, compile_setting, **kwargs):
    cfg = Config(dict(compile=compile_setting) if compile_setting is not None else {})
    return toy_runner(work_dir, [dict(type='lsnet_mm.LSNetCompileHook')], cfg=cfg,
                      test_dataloader=loader(ToyData()), test_cfg=dict(),
                      test_evaluator=dict(type=ToyMetric), **kwargs)


def test_test_step_compiled_with_the_config_options(tmp_path):
    eager = runner_with(tmp_path / 'e', None).test()
    assert not GRAPHS and 'mae' in eager
    runner = runner_with(tmp_path / 'c', dict(backend=RECORDER))
    compiled = runner.test()
    assert compiled == eager  # the same predictions
    assert GRAPHS and any('linear' in g for g in GRAPHS)  # the model's forward was captured
    assert getattr(runner.model.test_step, '_torchdynamo_orig_callable', None) is not None


def test_train_keeps_the_optimizer_step_eager(tmp_path):
    # paramwise_cfg: mmengine's param groups become ConfigDicts
    optim = dict(optimizer=dict(type='SGD', lr=0.01),
                 paramwise_cfg=dict(custom_keys={'linear.bias': dict(lr_mult=0.5)}))
    losses = {}
    for name, setting in (('eager', None), ('compiled', dict(backend=RECORDER))):
        runner = runner_with(tmp_path / name, setting, optim_wrapper=optim,
                             train_cfg=dict(by_epoch=True, max_epochs=2))
        runner.train()
        losses[name] = runner.message_hub.get_scalar('train/loss').data[0]
        assert getattr(runner.optim_wrapper.step, '_torchdynamo_disable', False) == (
            name == 'compiled')
        assert bool(GRAPHS) == (name == 'compiled')
    assert len(losses['eager']) == 4
    torch.testing.assert_close(torch.tensor(losses['compiled']), torch.tensor(losses['eager']))
