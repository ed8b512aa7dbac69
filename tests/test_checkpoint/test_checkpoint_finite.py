"""NaN and infinity in state dicts: found per tensor, described, refused by name."""
import math

import pytest
import torch

from lsnet_mm.checkpoint import check_state_dict_finite, describe_non_finite, non_finite_tensors
from lsnet_mm.utils.errors import CheckpointError


def test_non_finite_tensors_are_counted_and_named():
    sd = {'a.weight': torch.tensor([1.0, math.nan, math.inf]), 'a.bias': torch.zeros(4),
          'steps': torch.tensor(7), 'b.weight': torch.full((2, 5), -math.inf),
          'c.weight': torch.tensor([math.nan]), 'd.weight': torch.tensor([math.nan])}
    found = non_finite_tensors(sd.items())
    assert found == [('a.weight', 2, 3), ('b.weight', 10, 10), ('c.weight', 1, 1),
                     ('d.weight', 1, 1)]
    assert describe_non_finite(found) == ('4 tensors: a.weight (2 of 3 values), b.weight (10 '
                                          'of 10 values), c.weight (1 of 1 values), and 1 more')
    assert describe_non_finite(found[:1]) == '1 tensor: a.weight (2 of 3 values)'
    assert non_finite_tensors({'w': torch.ones(3), 'n': torch.tensor(1)}.items()) == []


def test_a_diverged_checkpoint_is_refused_by_name():
    check_state_dict_finite({'w': torch.ones(2)}, 'ok.pth')
    with pytest.raises(CheckpointError) as e:
        check_state_dict_finite({'w': torch.tensor([math.nan, 1.0])}, 'run/iter_8.pth',
                                'resume checkpoint')
    assert str(e.value) == (
        "resume checkpoint 'run/iter_8.pth' holds non-finite weights (NaN or inf) in 1 tensor: "
        "w (1 of 2 values); it was saved by a training run that diverged and its predictions "
        "would be meaningless. Use a checkpoint from before the divergence (see "
        "docs/robustness.md, \"Training and checkpoints\").")
