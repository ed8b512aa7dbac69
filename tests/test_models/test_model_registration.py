"""`custom_imports=dict(imports=['lsnet_mm'])` makes the modules buildable from mmdet and
mmseg configs (checked in a fresh interpreter, where nothing was imported before, with
the installed package: no PYTHONPATH, run outside the repository)."""
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent('''
    import sys, torch
    from mmengine.config import Config
    library = sys.argv[1]
    cfg = Config.fromfile(sys.argv[2])
    assert 'lsnet_mm' in sys.modules, 'custom_imports did not import lsnet_mm'
    if library == 'mmdet':
        from mmdet.registry import MODELS
        from mmdet.utils import register_all_modules
    else:
        from mmseg.registry import MODELS
        from mmseg.utils import register_all_modules
    register_all_modules()
    backbone = MODELS.build(cfg.backbone)
    neck = MODELS.build(cfg.neck)
    assert type(backbone).__name__ == 'LSNet' and backbone.arch == 's'
    deploy = MODELS.build(dict(cfg.backbone, deploy=True))
    assert deploy.deploy and list(deploy.state_dict()) == list(
        backbone.switch_to_deploy().state_dict())
    with torch.no_grad():
        outs = neck(backbone.eval()(torch.randn(1, 3, 128, 128)))
    # what the configs name besides the model: hooks, the DDP wrapper, transforms
    from mmengine.registry import HOOKS, MODEL_WRAPPERS, TRANSFORMS
    for name in ('SafeCheckpointHook', 'CheckpointCheckHook', 'LSNetDeployHook'):
        assert HOOKS.get(f'lsnet_mm.{name}') is not None, name
        assert name not in HOOKS.module_dict, f'{name} must not be in the root registry'
    assert MODEL_WRAPPERS.get('lsnet_mm.CPUFallbackDDP') is not None
    assert TRANSFORMS.get('lsnet_mm.CheckedLoadImageFromFile') is not None
    print('BUILT', type(neck).__name__, len(outs))
''')

CONFIG = textwrap.dedent('''
    custom_imports = dict(imports=['lsnet_mm'], allow_failed_imports=False)
    backbone = dict(type='LSNet', arch='s', out_indices=(0, 1, 2, 3))
    neck = dict(type='LSNetFPN', in_channels=[96, 192, 320, 448], out_channels=64, num_outs=4)
''')


@pytest.mark.slow  # a fresh interpreter importing mmdet / mmseg: 13-19 s each
@pytest.mark.parametrize('library', ['mmdet', 'mmseg'])
def test_build_through_custom_imports(tmp_path, library):
    cfg = tmp_path / 'cfg.py'
    cfg.write_text(CONFIG)
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    r = subprocess.run([sys.executable, '-c', SCRIPT, library, str(cfg)], capture_output=True,
                       text=True, env=env, cwd=str(tmp_path), timeout=300)
    assert 'BUILT LSNetFPN 4' in r.stdout, r.stdout + r.stderr
