"""Deploy mode for whole models: ``switch_model_to_deploy(model)``.

Tools with a ``--deploy`` flag (test, inference, benchmark) call this on the model
they built from a config (a detector, a segmentor, or a bare backbone). It converts
every :class:`~lsnet_mm.LSNet` inside in place with ``LSNet.switch_to_deploy()``;
other modules (necks, heads, other backbones) are left as they are.

With mmengine's Runner the weights are loaded inside ``runner.test()``, so the switch
must come after that: add ``dict(type='LSNetDeployHook')`` to ``custom_hooks``
(``tools/test.py --deploy`` does), which converts the model in ``before_test``.
"""
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS
from torch import nn

from .models.backbones.lsnet import LSNet


def switch_model_to_deploy(model: nn.Module, strict: bool = False) -> int:
    """Switch every LSNet backbone in ``model`` to deploy mode; return how many.

    Call it after the weights are loaded (deploy mode folds BatchNorm statistics
    into the convolutions). With ``strict=True`` a model without an LSNet raises
    ``ValueError``; otherwise it is logged and left unchanged.
    """
    found = [m for m in model.modules() if isinstance(m, LSNet)]
    for m in found:
        m.switch_to_deploy()
    if not found:
        msg = (f'--deploy: {type(model).__name__} contains no LSNet backbone; nothing to '
               f'convert (deploy mode only applies to LSNet).')
        if strict:
            raise ValueError(msg)
        print_log(msg, logger='current')
    else:
        print_log(f'deploy mode: converted {len(found)} LSNet backbone(s) for inference',
                  logger='current')
    return len(found)


@HOOKS.register_module()
class LSNetDeployHook(Hook):
    """Switches the runner's LSNet backbones to deploy mode once the checkpoint is loaded
    (``before_test``); test-time only, a training run's model is never converted."""

    priority = 'VERY_HIGH'

    def before_test(self, runner) -> None:
        switch_model_to_deploy(runner.model)
