"""Deploy mode for whole models: :func:`switch_model_to_deploy`.

Tools with a ``--deploy`` flag (test, infer, benchmark) call it on the model they
built from a config (a detector, a segmentor or a bare backbone) once its weights
are loaded. Every :class:`~lsnet_mm.models.LSNet` inside is converted in place with
``LSNet.switch_to_deploy()``; other modules are left as they are. With mmengine's
Runner the weights are loaded inside ``runner.test()``: name
``dict(type='lsnet_mm.LSNetDeployHook')`` in ``custom_hooks`` instead
(:mod:`lsnet_mm.engine.hooks.deploy_hook`).
"""
from mmengine.logging import print_log
from torch import nn

from ...utils.errors import ConfigError
from ..backbones.lsnet import LSNet


def switch_model_to_deploy(model: nn.Module, strict: bool = False) -> int:
    """Switch every LSNet backbone in ``model`` to deploy mode.

    Args:
        model (nn.Module): A model whose weights are loaded (deploy mode folds the
            BatchNorm statistics into the convolutions).
        strict (bool): Raise when ``model`` holds no LSNet; otherwise log it and leave
            the model unchanged. Defaults to False.

    Returns:
        int: How many LSNet backbones were converted.

    Raises:
        ConfigError: ``strict`` and the model holds no LSNet backbone.
    """
    found = [m for m in model.modules() if isinstance(m, LSNet)]
    for m in found:
        m.switch_to_deploy()
    if not found:
        msg = (f'--deploy: {type(model).__name__} contains no LSNet backbone; nothing to '
               f'convert (deploy mode only applies to LSNet).')
        if strict:
            raise ConfigError(msg)
        print_log(msg, logger='current')
    else:
        print_log(f'deploy mode: converted {len(found)} LSNet backbone(s) for inference',
                  logger='current')
    return len(found)
