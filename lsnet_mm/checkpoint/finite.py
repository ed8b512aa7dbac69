"""NaN and infinity in checkpoints and models: found, described, refused."""
from typing import Dict, Iterable, List, Tuple

import torch

from ..utils.errors import CheckpointError


def non_finite_tensors(tensors: Iterable[Tuple[str, torch.Tensor]]) -> List[Tuple[str, int, int]]:
    """The floating-point tensors that hold NaN or infinite values.

    Args:
        tensors (Iterable[tuple[str, torch.Tensor]]): ``(name, tensor)`` pairs, e.g. a
            state dict's ``items()`` or a model's ``named_parameters()``.

    Returns:
        list[tuple[str, int, int]]: ``(name, non-finite values, all values)`` for each
        tensor with a NaN or an infinity (in the order given, per device); empty when
        all are finite.
    """
    by_device = {}  # one host sync per device, not per tensor (GPU runs)
    for name, t in tensors:
        if torch.is_tensor(t) and (t.is_floating_point() or t.is_complex()):
            by_device.setdefault(t.device, []).append((name, t.detach()))
    bad = set()
    for items in by_device.values():
        finite = torch.stack([torch.isfinite(t).all() for _, t in items]).tolist()
        bad.update(name for (name, _), ok in zip(items, finite) if not ok)
    out = []
    for items in by_device.values():
        for name, t in items:
            if name in bad:
                out.append((name, int(t.numel() - torch.isfinite(t).sum()), t.numel()))
    return out


def describe_non_finite(found: List[Tuple[str, int, int]], limit: int = 3) -> str:
    """``found`` of :func:`non_finite_tensors` as text: the first tensors and a count.

    Args:
        found (list[tuple[str, int, int]]): ``(name, non-finite, all)`` triples.
        limit (int): How many tensors to name. Defaults to 3.

    Returns:
        str: e.g. "2 tensors: backbone.x.weight (5 of 64 values), neck.y.bias (1 of 8)".
    """
    named = ', '.join(f'{n} ({bad} of {total} values)' for n, bad, total in found[:limit])
    more = f', and {len(found) - limit} more' if len(found) > limit else ''
    return f'{len(found)} tensor{"s" if len(found) != 1 else ""}: {named}{more}'


def check_state_dict_finite(sd: Dict[str, torch.Tensor], filename: str = 'checkpoint',
                            what: str = 'checkpoint') -> None:
    """Raise unless every floating-point tensor of ``sd`` is finite.

    Args:
        sd (dict): A state dict.
        filename (str): The checkpoint's name, for the message.
        what (str): How the message calls it ('checkpoint', 'resume checkpoint', ...).

    Raises:
        CheckpointError: Names the tensors holding NaN or infinite values.
    """
    found = non_finite_tensors(sd.items())
    if found:
        raise CheckpointError(
            f'{what} {filename!r} holds non-finite weights (NaN or inf) in '
            f'{describe_non_finite(found)}; it was saved by a training run that diverged '
            f'and its predictions would be meaningless. Use a checkpoint from before the '
            f'divergence (see docs/robustness.md, "Training and checkpoints").')
