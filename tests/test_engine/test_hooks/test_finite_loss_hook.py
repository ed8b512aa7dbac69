"""FiniteLossHook on toy runners: the first non-finite loss (or, with check_weights,
weight) stops the run with an error naming the iteration, the learning rate and the
last (finite) checkpoint."""
import pytest
from engine_toys import Poison, checkpoint_names, toy_runner

from lsnet_mm.engine.hooks import FiniteLossHook
from lsnet_mm.utils.errors import NonFiniteLossError

pytestmark = pytest.mark.usefixtures('one_thread')


def test_names_the_iteration_and_the_last_checkpoint(tmp_path):
    runner = toy_runner(tmp_path, [dict(type='lsnet_mm.FiniteLossHook'),
                                   Poison(at=4, where='loss')])
    with pytest.raises(NonFiniteLossError) as e:
        runner.train()
    msg = str(e.value)
    assert msg.startswith('training diverged at iteration 4 (epoch 2, batch 2): the loss is '
                          'not finite (loss=nan). The last checkpoint, '
                          f'{tmp_path}/epoch_1.pth, was saved before and holds finite '
                          'weights; no checkpoint of the diverged weights was written.'), msg
    assert 'learning rate' in msg and 'lr now 0.01:' in msg
    assert checkpoint_names(tmp_path) == ['epoch_1.pth']  # stopped before the epoch-2 save


def test_weights_check(tmp_path):
    # the loss of iteration 3 is finite, the weights after its step are not
    hook = dict(type='lsnet_mm.FiniteLossHook', check_weights=True)
    runner = toy_runner(tmp_path, [hook, Poison(at=3, where='weights')])
    with pytest.raises(NonFiniteLossError, match=r'at iteration 3 .*weights are not after the '
                                                 r'optimizer step.*linear\.weight \(1 of 2'):
        runner.train()
    # without the weights check, the next loss shows it
    runner = toy_runner(tmp_path / 'b', [dict(type='lsnet_mm.FiniteLossHook'),
                                         Poison(at=3, where='weights')])
    with pytest.raises(NonFiniteLossError, match=r'at iteration 4 .*the loss is not finite'):
        runner.train()
    with pytest.raises(ValueError):
        FiniteLossHook(interval=0)


def test_non_finite_grad_norm(tmp_path):
    """With clip_grad the optimizer wrapper logs the gradient norm: an infinite one
    stops the run although the loss was finite."""
    from mmengine.hooks import Hook

    class InfGrad(Hook):  # the gradient of iteration 2 overflows
        def before_train_iter(self, runner, batch_idx, data_batch=None):
            if runner.iter + 1 == 2:
                runner.model.linear.weight.register_hook(lambda g: g * float('inf'))

    runner = toy_runner(tmp_path, [dict(type='lsnet_mm.FiniteLossHook'), InfGrad()],
                        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01),
                                           clip_grad=dict(max_norm=10.0)))
    with pytest.raises(NonFiniteLossError) as e:
        runner.train()
    assert str(e.value).startswith('training diverged at iteration 2 (epoch 1, batch 2): the '
                                   'loss was finite but the gradient norm is inf (non-finite '
                                   'gradients). No checkpoint was saved.'), str(e.value)
