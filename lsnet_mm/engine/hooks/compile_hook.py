"""``LSNetCompileHook``: the config's ``compile`` key (torch.compile) in training and testing."""
from typing import Optional

import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.optim import OptimWrapper

from ...registry import HOOKS


def _compile_options(cfg) -> Optional[dict]:
    """The ``torch.compile`` options of a config's ``compile`` key (None if off).

    mmengine's setting: ``compile=True`` (default options) or a dict of
    ``torch.compile`` arguments (``backend``, ``mode``, ...).

    Args:
        cfg (mmengine.config.Config): The runner's config.

    Returns:
        dict | None: The keyword arguments for ``torch.compile``; None when the config
        does not ask for compilation.
    """
    setting = cfg.get('compile')
    if not setting:
        return None
    return {} if setting is True else dict(setting)


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
      ``model.test_step`` with the same options (``torch.compile`` on the model's
      bound method, as mmengine compiles ``train_step``), so the deploy-mode model is
      compiled.

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
        if _compile_options(runner.cfg) is not None and isinstance(optim_wrapper, OptimWrapper):
            optim_wrapper.step = torch.compiler.disable(optim_wrapper.step)

    def before_test(self, runner) -> None:
        """Compile ``model.test_step`` as mmengine compiles ``train_step``.

        Args:
            runner (mmengine.runner.Runner): The runner, its checkpoint loaded.
        """
        options = _compile_options(runner.cfg)
        if options is not None:
            model = runner.model
            model.test_step = torch.compile(model.test_step, **options)
            print_log(f'LSNetCompileHook: model.test_step compiled (torch.compile options '
                      f'{options}); the first batches are slow.', logger='current')
