"""The generic deploy walker: every layer converts itself, children before parents.

Each LSNet layer owns its deploy step, a ``switch_to_deploy()`` method beside its code
that converts it in place (as mmpretrain's RepVGG blocks do) into the form its
``deploy=True`` constructor builds: Conv-BNs fused (:func:`~.conv_bn.fuse_conv_bn`),
RepVGG mixers folded into one conv, LS convolutions' BatchNorms folded into a scale and
shift, attention scales folded into the query conv, in-place ReLUs, gates and residual
adds. :func:`reparameterize` calls it on every module of a tree that has it. The
converted layers compute what the eager layers compute in eval mode, up to float
rounding, and carry no BatchNorm statistics: they are for inference only.
"""
from torch import nn


def reparameterize(module: nn.Module) -> nn.Module:
    """Convert every layer of ``module`` that has ``switch_to_deploy()``, in place.

    Children are converted before their parents, so a parent sees converted children.

    Args:
        module (nn.Module): A module tree holding LSNet layers (in eval mode).

    Returns:
        nn.Module: ``module`` itself.
    """
    for child in module.children():
        reparameterize(child)
    if callable(getattr(module, 'switch_to_deploy', None)):
        module.switch_to_deploy()
    return module
