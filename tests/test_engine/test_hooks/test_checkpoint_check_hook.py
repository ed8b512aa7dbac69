"""CheckpointCheckHook on a toy runner's load_checkpoint (what load_from and resuming
call): strict (resume, test) refuses any difference and names a classifier trained for
another number of classes; non-strict (load_from fine-tuning) warns naming the skipped
heads; non-finite weights are refused in both modes (non-strict: those it loads)."""
import pytest
import torch
from engine_toys import logged_warnings, toy_runner
from mmengine.config import Config
from mmengine.model import BaseModel
from torch import nn

from lsnet_mm.utils.errors import CheckpointError

pytestmark = pytest.mark.usefixtures('one_thread')


class Head(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.num_classes = num_classes
        self.fc_cls = nn.Linear(2, num_classes)


class Classifier(BaseModel):
    def __init__(self, num_classes=3):
        super().__init__()
        self.linear = nn.Linear(2, 2)
        self.head = Head(num_classes)

    def forward(self, inputs, targets=None, mode='tensor'):
        return self.head.fc_cls(self.linear(torch.stack(inputs)))


def save(path, num_classes, nan_in=None):
    sd = Classifier(num_classes).state_dict()
    if nan_in:
        sd[nan_in].view(-1)[0] = float('nan')
    torch.save(dict(state_dict=sd, meta=dict(epoch=1, iter=2)), path)
    return str(path)


def load(tmp_path, path, strict, resume=False):
    """runner.load_checkpoint(path) with CheckpointCheckHook(strict); the warnings."""
    runner = toy_runner(tmp_path / 'wd', [dict(type='lsnet_mm.CheckpointCheckHook',
                                               strict=strict)],
                        model=dict(type=Classifier), cfg=Config(dict(load_from=path,
                                                                     resume=resume)))
    with logged_warnings() as warnings:
        runner.load_checkpoint(path)
    return runner, warnings


HEAD_DIFF = ('head.fc_cls.weight (5, 2) in the checkpoint vs (3, 2) in the model '
             '(head.num_classes=3, the checkpoint implies num_classes=5)')


def test_strict_refuses_other_classes_and_accepts_a_fit(tmp_path):
    five = save(tmp_path / 'five.pth', 5)
    with pytest.raises(CheckpointError) as e:
        load(tmp_path, five, strict=True)
    assert str(e.value).startswith(f'checkpoint {five!r} was trained for a different number of '
                                   f'classes than the model: {HEAD_DIFF}; '), str(e.value)
    three = save(tmp_path / 'three.pth', 3)
    runner, warnings = load(tmp_path, three, strict=True)
    want = torch.load(three)['state_dict']
    for k, v in runner.model.state_dict().items():
        assert torch.equal(v, want[k]), k  # loaded
    assert not [w for w in warnings if 'fine-tuning' in w]


def test_non_strict_warns_naming_the_skipped_heads(tmp_path):
    five = save(tmp_path / 'five.pth', 5, nan_in='head.fc_cls.weight')  # skipped: no matter
    runner, warnings = load(tmp_path, five, strict=False)
    (warning,) = [w for w in warnings if 'fine-tuning' in w]
    assert warning == (f'load_from {five!r}: fine-tuning on other classes; these classifier '
                       f'weights were trained for another number of classes and are NOT loaded '
                       f'(they keep their initialisation): {HEAD_DIFF}; head.fc_cls.bias (5,) '
                       f'in the checkpoint vs (3,) in the model (head.num_classes=3, the '
                       f'checkpoint implies num_classes=5)'), warning
    assert torch.equal(runner.model.linear.weight, torch.load(five)['state_dict']['linear.weight'])


def test_non_finite_weights_refused(tmp_path):
    bad = save(tmp_path / 'nan.pth', 3, nan_in='linear.weight')
    with pytest.raises(CheckpointError, match=r"^resume checkpoint '.*nan\.pth' holds non-finite "
                                              r'weights \(NaN or inf\) in 1 tensor: '
                                              r'linear\.weight \(1 of 4 values\)'):
        load(tmp_path, bad, strict=True, resume=True)
    with pytest.raises(CheckpointError, match=r"^load_from checkpoint '.*nan\.pth' holds "
                                              r'non-finite weights'):
        load(tmp_path, bad, strict=False)
