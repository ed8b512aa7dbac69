"""``LSNetDeployHook``: deploy mode at test time, once the runner has loaded the weights."""
from mmengine.hooks import Hook

from ...models.utils.deploy import switch_model_to_deploy
from ...registry import HOOKS


@HOOKS.register_module()
class LSNetDeployHook(Hook):
    """Switch the runner's LSNet backbones to deploy mode in ``before_test``.

    Name it in a config's ``custom_hooks`` (``tools/test.py --deploy`` adds it to the
    config, so the dumped config shows it). Test-time only: a training run's model
    is never converted.
    """

    priority = 'VERY_HIGH'

    def before_test(self, runner) -> None:
        """Convert the model; ``runner.test()`` has loaded the checkpoint by now."""
        switch_model_to_deploy(runner.model)
