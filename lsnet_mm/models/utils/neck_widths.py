"""Checks that a model config's parts fit together, before anything is built.

A neck whose ``in_channels`` do not match the LSNet arch (e.g. RetinaNet-LSNet-S with the
widths of LSNet-T) otherwise fails at the first forward pass with PyTorch's conv shape
error, which names neither the neck nor the arch. Two checks cover it:

* :func:`check_neck_widths`, on the config: ``tools/train.py`` and ``tools/test.py`` call
  it before building anything;
* ``LSNetFPN`` checks the widths it receives on every forward pass (a comparison of a
  few integers) and raises the same :class:`ConfigError`, so mmdet's and mmseg's
  own tools and the inferencers name the problem too.
"""
from typing import List, Optional, Sequence, Tuple

from ...utils.errors import ConfigError
from ..backbones.lsnet import ARCH_SETTINGS


def _arch_widths():
    return {name: tuple(s['embed_dims']) for name, s in ARCH_SETTINGS.items()}


def _widths_table() -> str:
    return ', '.join(f'{n} {list(w)}' for n, w in _arch_widths().items())


def lsnet_out_channels(backbone_cfg) -> Optional[Tuple[str, List[int]]]:
    """The output widths of an LSNet backbone config.

    Args:
        backbone_cfg (dict): ``model.backbone`` of a config.

    Returns:
        tuple[str, list[int]] | None: How to call the backbone (e.g. ``"LSNet-s
        (arch='s', out_indices=(0, 1, 2, 3))"``) and the channels of its outputs; None
        when it is not an LSNet or its arch is unknown (the backbone then says so).
    """
    kind = backbone_cfg.get('type') if hasattr(backbone_cfg, 'get') else None
    name = kind if isinstance(kind, str) else getattr(kind, '__name__', '')
    if name.rsplit('.', 1)[-1] != 'LSNet':
        return None
    arch = backbone_cfg.get('arch', 't')
    out_indices = tuple(backbone_cfg.get('out_indices', (0, 1, 2, 3)))
    if isinstance(arch, str):
        dims = _arch_widths().get(arch.lower())
        label = f'LSNet-{arch.lower()}'
    else:
        dims = tuple(arch.get('embed_dims', ())) if hasattr(arch, 'get') else None
        label = 'LSNet (custom arch)'
    if not dims or any(not isinstance(i, int) or not 0 <= i < len(dims) for i in out_indices):
        return None
    return (f'{label} (arch={arch!r}, out_indices={out_indices})',
            [int(dims[i]) for i in out_indices])


def archs_with_widths(widths: Sequence[int]) -> List[str]:
    """The released LSNet archs whose stage widths include ``widths``, in order.

    Args:
        widths (Sequence[int]): Channels of some backbone outputs, finest first.

    Returns:
        list[str]: e.g. ``['s']`` for ``[96, 192, 320, 448]``; empty if none.
    """
    found = []
    for name, dims in _arch_widths().items():
        pos = [dims.index(w) if w in dims else -1 for w in widths]
        if widths and -1 not in pos and pos == sorted(set(pos)):
            found.append(name)
    return found


def neck_width_message(in_channels: Sequence[int], widths: Sequence[int],
                       backbone: Optional[str] = None) -> str:
    """The error text for a neck whose ``in_channels`` differ from its inputs' widths.

    Args:
        in_channels (Sequence[int]): The neck's ``in_channels``.
        widths (Sequence[int]): The channels of the backbone outputs it gets.
        backbone (str, optional): How to call the backbone; else named from ``widths``.

    Returns:
        str: A message naming ``neck.in_channels``, the arch, the widths it needs and
        the widths of every LSNet arch.
    """
    if backbone is None:
        archs = archs_with_widths(widths)
        backbone = (f'the backbone (LSNet arch {" or ".join(repr(a) for a in archs)})'
                    if archs else 'the backbone')
    return (f'model.neck.in_channels={list(in_channels)} does not fit {backbone}, whose '
            f'outputs have {list(widths)} channels: set model.neck.in_channels='
            f'{list(widths)} (or the backbone arch the neck was written for). Widths of '
            f'the LSNet stages 0-3 per arch: {_widths_table()}.')


def check_neck_widths(cfg) -> None:
    """Check that the config's neck takes the widths its LSNet backbone gives.

    Only LSNet backbones and necks with a list ``in_channels`` (FPN, LSNetFPN, ...) are
    checked; for a list of necks, the first one (the one fed by the backbone).

    Args:
        cfg (mmengine.Config): A tool's config (its ``model`` is checked).

    Raises:
        ConfigError: ``neck.in_channels`` differ from the backbone's output widths;
            the message names the arch and the widths it needs.
    """
    model = cfg.get('model') or {}
    backbone, neck = model.get('backbone'), model.get('neck')
    if isinstance(neck, (list, tuple)):
        neck = neck[0] if neck else None
    if not backbone or not hasattr(neck, 'get'):
        return
    in_channels = neck.get('in_channels')
    if not isinstance(in_channels, (list, tuple)):
        return
    found = lsnet_out_channels(backbone)
    if found is None:
        return
    label, widths = found
    if [int(c) for c in in_channels] != widths:
        raise ConfigError(neck_width_message(in_channels, widths, label))
