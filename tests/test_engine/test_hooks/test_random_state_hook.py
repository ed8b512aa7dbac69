"""RandomStateHook on toy runners whose training draws random numbers as the real
ones do (dropout: torch's generator; data augmentation: numpy's) and that validate in
between: a run that crashed and resumed from its last checkpoint ends with exactly the
weights, optimizer state and learning rate of the uninterrupted run; without the hook
it does not; a run that only loads weights (load_from) is not affected."""
import pytest
import torch
from engine_toys import ToyData, ToyModel, toy_runner
from mmengine.hooks import Hook

from lsnet_mm.engine.resume import find_resume_checkpoint

pytestmark = pytest.mark.usefixtures('one_thread')

EPOCHS = dict(train_cfg=dict(by_epoch=True, max_epochs=2, val_interval=1),
              # a warm-up over iterations 1-3, x0.1 from epoch 2 on: not flat
              param_scheduler=[dict(type='LinearLR', start_factor=0.1, by_epoch=False,
                                    begin=0, end=3),
                               dict(type='MultiStepLR', milestones=[1], by_epoch=True)])
# as mmseg's iteration-based configs: an InfiniteSampler (one DataLoader iterator)
ITERS = dict(train_cfg=dict(type='IterBasedTrainLoop', max_iters=4, val_interval=2),
             checkpoint=dict(by_epoch=False, interval=2), sampler='InfiniteSampler')


class Crash(Hook):
    """Stop the run before iteration 4 (mid epoch 2: epoch 1 / iteration 2 saved)."""

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter == 3:
            raise RuntimeError('crash')


def run(work_dir, schedule, hooks=(), **kwargs):
    settings = dict(schedule, **kwargs)
    runner = toy_runner(work_dir, list(hooks), model=dict(type=ToyModel, dropout=0.5),
                        data=ToyData(augment=True), val=True,
                        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=0.05)), **settings)
    runner.train()
    return runner


def final(work_dir, name):
    ckpt = torch.load(work_dir / name)
    return ckpt['state_dict'], ckpt['optimizer'], ckpt['meta']['iter']


def assert_same(a, b):
    (sa, oa, ia), (sb, ob, ib) = a, b
    assert ia == ib == 4
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=0, msg=k)
    assert [g['lr'] for g in oa['param_groups']] == [g['lr'] for g in ob['param_groups']]
    for k, state in oa['state'].items():
        assert int(state['step']) == int(ob['state'][k]['step']) == 4  # AdamW continued
        for name in ('exp_avg', 'exp_avg_sq'):
            torch.testing.assert_close(state[name], ob['state'][k][name], rtol=0, atol=0)


def differs(a, b):
    return any(not torch.equal(a[0][k], b[0][k]) for k in a[0])


@pytest.mark.parametrize('schedule,last', [(EPOCHS, 'epoch_2.pth'), (ITERS, 'iter_4.pth')],
                         ids=['epochs', 'iterations'])
def test_resumed_run_reproduces_the_uninterrupted_one(tmp_path, schedule, last):
    hook = dict(type='lsnet_mm.RandomStateHook')
    run(tmp_path / 'full', schedule, [hook])
    want = final(tmp_path / 'full', last)
    if schedule is EPOCHS:  # warmed up, then x0.1 in epoch 2: a restarted schedule differs
        assert want[1]['param_groups'][0]['lr'] == pytest.approx(0.005)
    for name, hooks in (('resumed', [hook]), ('no_hook', [])):
        wd = tmp_path / name
        with pytest.raises(RuntimeError, match='crash'):
            run(wd, schedule, [hook, Crash()])
        start = find_resume_checkpoint(str(wd))
        assert start.endswith(('epoch_1.pth', 'iter_2.pth'))
        assert 'rng_state' in torch.load(start)['meta']
        run(wd, schedule, hooks, resume=True, load_from=start)
    assert_same(final(tmp_path / 'resumed', last), want)
    assert differs(final(tmp_path / 'no_hook', last), want)  # the hook is what makes it so


def test_load_from_keeps_the_seeded_states(tmp_path):
    """Fine-tuning from a checkpoint (load_from, no resume) starts from the seed's
    states: the checkpoint's states are for resuming only."""
    hook = dict(type='lsnet_mm.RandomStateHook')
    run(tmp_path / 'a', EPOCHS, [hook])
    start = torch.load(tmp_path / 'a' / 'epoch_1.pth')
    assert 'rng_state' in start['meta']
    del start['meta']['rng_state']
    torch.save(start, tmp_path / 'no_states.pth')
    run(tmp_path / 'with', EPOCHS, [hook], load_from=str(tmp_path / 'a' / 'epoch_1.pth'))
    run(tmp_path / 'without', EPOCHS, [hook], load_from=str(tmp_path / 'no_states.pth'))
    got, want = final(tmp_path / 'with', 'epoch_2.pth'), final(tmp_path / 'without', 'epoch_2.pth')
    for k in want[0]:
        torch.testing.assert_close(got[0][k], want[0][k], rtol=0, atol=0, msg=k)
