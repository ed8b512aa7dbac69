"""``LSNetCompileHook``: the config's ``compile`` key (torch.compile) in training and testing."""
import torch
from mmengine.hooks import Hook
from mmengine.optim import OptimWrapper
from mmengine.registry import HOOKS


@HOOKS.register_module()
class LSNetCompileHook(Hook):
    """Make mmengine's ``compile`` setting (True, or ``torch.compile`` options) work.

    mmengine's Runner compiles ``model.train_step`` in ``train()`` when the config sets
    ``compile``, and ignores the setting in ``test()``. This hook:

    * training (``before_run``, the optimizer is built by then): keeps the optimizer
      step out of the compiled graph (``torch.compiler.disable``). TorchDynamo fails on
      the step of an optimizer whose param groups are mmengine ConfigDicts (any
      ``paramwise_cfg``), and a traced step would be recompiled whenever the scheduler
      changes the learning rate. The data preprocessing, forward, losses and backward
      stay compiled.
    * testing (``before_test``, after ``LSNetDeployHook`` (VERY_HIGH)): compiles
      ``model.test_step`` with the same options, so the deploy-mode model is compiled.

    ``tools/train.py`` and ``tools/test.py`` add it to ``custom_hooks`` when the config
    sets ``compile``; with mmdet's / mmseg's own tools, name it in ``custom_hooks``.
    """

    priority = 'LOW'

    def before_run(self, runner) -> None:
        """Run the optimizer step eagerly when training with ``compile``.

        Args:
            runner (mmengine.runner.Runner): The runner.
        """
        optim_wrapper = getattr(runner, 'optim_wrapper', None)
        if runner.cfg.get('compile') and isinstance(optim_wrapper, OptimWrapper):
            optim_wrapper.step = torch.compiler.disable(optim_wrapper.step)

    def before_test(self, runner) -> None:
        """Compile ``model.test_step`` as mmengine compiles ``train_step``.

        Args:
            runner (mmengine.runner.Runner): The runner, its checkpoint loaded.
        """
        runner._maybe_compile('test_step')
