"""tools/model_converters/reparameterize_model.py: a deploy checkpoint that deploy=True
configs load, giving the outputs of the model converted in place; refusals as one
``error:`` line with exit status 2, and no output file."""
import copy
import os.path as osp

import pytest
import torch
from mmengine.runner import load_checkpoint

from lsnet_mm import LSNet
from lsnet_mm.apis import build_model_from_cfg, load_config
from lsnet_mm.apis.launch import run_tool
from lsnet_mm.models import switch_model_to_deploy
from model_helpers import randomize
from product_helpers import RETINA, tool

pytestmark = pytest.mark.usefixtures('one_thread')

BACKBONE_CONFIG = "model = dict(type='LSNet', arch='t', out_indices=(1, 3))\n"
META = dict(dataset_meta=dict(classes=('circle', 'square')))


@pytest.fixture(scope='module')
def converter():
    return tool('model_converters/reparameterize_model')


def convert(converter, capsys, *argv):
    """Run the tool as a command: (exit status, stdout, stderr)."""
    try:
        run_tool(lambda: converter.main([str(a) for a in argv]))
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def backbone_files(tmp_path):
    config = tmp_path / 'lsnet_t.py'
    config.write_text(BACKBONE_CONFIG)
    src = randomize(LSNet('t', out_indices=(1, 3))).eval()
    ckpt = tmp_path / 'trained.pth'
    torch.save(dict(state_dict=src.state_dict(), meta=META, optimizer={}), ckpt)
    return config, ckpt, src


def test_deploy_true_loads_the_converted_backbone(converter, capsys, tmp_path, backbone_files):
    config, ckpt, src = backbone_files
    out = tmp_path / 'deploy' / 'lsnet_t_deploy.pth'
    code, stdout, _ = convert(converter, capsys, config, ckpt, out)
    built = LSNet('t', out_indices=(1, 3), deploy=True)
    assert code == 0 and stdout.strip().splitlines()[-1] == (
        f'{out}: deploy-mode weights of 1 LSNet backbone(s), {len(built.state_dict())} tensors '
        f'(from {len(src.state_dict())}); load them with deploy=True in the backbone config')
    saved = torch.load(out, weights_only=True)
    assert set(saved) == {'state_dict', 'meta'}  # optimizer state dropped
    assert saved['meta'] == dict(META, lsnet_deploy=True, reparameterized_from=str(ckpt))
    load_checkpoint(built, str(out), strict=True)
    converted = copy.deepcopy(src).switch_to_deploy()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(built.eval()(x), converted(x)))


@pytest.mark.parametrize('case', ['deployed', 'not_lsnet', 'config_without_lsnet'])
def test_refusals(converter, capsys, tmp_path, backbone_files, case):
    config, ckpt, src = backbone_files
    if case == 'deployed':
        torch.save(dict(state_dict=copy.deepcopy(src).switch_to_deploy().state_dict()), ckpt)
        want = (f"error: {str(ckpt)!r} is already in deploy form (its BatchNorms are folded): "
                f"there is nothing to convert. Load it with deploy=True in the backbone config.")
    elif case == 'not_lsnet':
        torch.save(dict(state_dict={'conv1.weight': torch.zeros(64, 3, 7, 7)}), ckpt)
        want = (f"error: {str(ckpt)!r} holds no LSNet backbone weights under '' (no "
                f"\"patch_embed\" stem; first keys: ['conv1.weight']). Give a checkpoint of "
                f"an LSNet model trained with this config.")
    else:
        config.write_text("model = dict(type='mmdet.ResNet', depth=18)\n")
        want = (f"error: {str(config)!r} builds no LSNet backbone: only LSNet models have a "
                f"deploy mode. Give the config the checkpoint was trained with.")
    out = tmp_path / 'out.pth'
    code, _, err = convert(converter, capsys, config, ckpt, out)
    assert (code, err.strip().splitlines()[-1]) == (2, want)
    assert not out.exists() and not list(tmp_path.glob('.out.pth*'))


def test_detector_config_with_deploy_true_loads_the_converted_file(converter, capsys,
                                                                   tmp_path):
    """The demo RetinaNet: the converted file, loaded strictly by the config with
    model.backbone.deploy=True, gives the head outputs of the model converted in place."""
    model, _ = build_model_from_cfg(RETINA)
    randomize(model.backbone)
    ckpt, out = tmp_path / 'retinanet.pth', tmp_path / 'retinanet_deploy.pth'
    torch.save(dict(state_dict=model.state_dict(), meta=META), ckpt)
    assert convert(converter, capsys, RETINA, ckpt, out)[0] == 0
    cfg = load_config(RETINA)
    cfg.model.backbone.deploy = True
    built, _ = build_model_from_cfg(cfg)
    load_checkpoint(built, str(out), strict=True)
    switch_model_to_deploy(model)
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        want, got = model(x, mode='tensor'), built(x, mode='tensor')
    flat = [(a, b) for la, lb in zip(want, got) for a, b in zip(la, lb)]
    assert len(flat) == 2 * len(want[0]) and all(torch.equal(a, b) for a, b in flat)
    assert osp.getsize(out) < osp.getsize(ckpt)  # the BatchNorms are gone
