"""Write the deploy-mode checkpoint of a trained LSNet model (as mmpretrain's tool does).

    python tools/model_converters/reparameterize_model.py CONFIG CHECKPOINT OUT

builds the model of CONFIG (a detector, a segmentor or a bare LSNet backbone), loads
CHECKPOINT into it exactly (released weights are upgraded in memory as they load),
switches every LSNet backbone to deploy mode (``LSNet.switch_to_deploy()``: BatchNorms
folded into the convolutions, RepVGG branches into one conv) and writes its weights, with
the checkpoint's ``meta`` (class names, palette), to OUT. Load OUT with the same config
and ``deploy=True`` in the backbone, e.g.

    python tools/test.py CONFIG OUT --cfg-options model.backbone.deploy=True

which builds the deploy form directly and gives the outputs of the converted model,
without the conversion at start-up. A checkpoint that is already in deploy form, holds no
LSNet backbone or does not fit CONFIG prints ``error: ...`` and exits with status 2;
OUT is written only on success.
"""
import argparse
import os
import os.path as osp
import tempfile

import torch

import lsnet_mm  # noqa: F401 (registers the LSNet modules, allow-lists checkpoint classes)
from lsnet_mm.apis import build_model_from_cfg
from lsnet_mm.apis.launch import run_tool
from lsnet_mm.checkpoint import extract_state_dict, load_checkpoint
from lsnet_mm.models import LSNet, switch_model_to_deploy
from lsnet_mm.models.backbones.lsnet import describe_state_dict, is_deploy_state_dict, load_weights
from lsnet_mm.utils.errors import CheckpointError, ConfigError


def parse_args(argv=None):
    """The command line's arguments."""
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('config', help='config of the model the checkpoint was trained with')
    p.add_argument('checkpoint', help='trained (or released) checkpoint, a path or URL')
    p.add_argument('out', help='where to write the deploy-mode checkpoint')
    return p.parse_args(argv)


def lsnet_backbones(model, config):
    """``(prefix, LSNet)`` of every LSNet in ``model``; the config must build them eager."""
    found = [(f'{name}.' if name else '', m) for name, m in model.named_modules()
             if isinstance(m, LSNet)]
    if not found:
        raise ConfigError(f'{config!r} builds no LSNet backbone: only LSNet models have a '
                          f'deploy mode. Give the config the checkpoint was trained with.')
    if any(m.deploy for _, m in found):
        raise ConfigError(f'{config!r} builds its LSNet backbone with deploy=True; give the '
                          f'training config (deploy=False), whose weights the checkpoint holds.')
    return found


def check_trained_lsnet(sd, prefix, path):
    """Raise unless the weights under ``prefix`` are an LSNet's in training form."""
    own = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    if describe_state_dict(own) is None:
        raise CheckpointError(
            f'{path!r} holds no LSNet backbone weights under {prefix!r} (no '
            f'"{prefix}patch_embed" stem; first keys: {list(sd)[:4]}). Give a checkpoint of '
            f'an LSNet model trained with this config.')
    if is_deploy_state_dict(own):
        raise CheckpointError(
            f'{path!r} is already in deploy form (its BatchNorms are folded): there is '
            f'nothing to convert. Load it with deploy=True in the backbone config.')


def save_atomically(obj, out):
    """torch.save to a temp file beside ``out``, renamed onto it once complete."""
    folder = osp.dirname(osp.abspath(out))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{osp.basename(out)}.', dir=folder)
    try:
        with os.fdopen(fd, 'wb') as f:
            torch.save(obj, f)
        os.replace(tmp, out)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv=None):
    """Convert as the command line says."""
    args = parse_args(argv)
    model, _ = build_model_from_cfg(args.config)
    backbones = lsnet_backbones(model, args.config)
    ckpt = load_checkpoint(args.checkpoint)
    sd = extract_state_dict(ckpt, args.checkpoint)
    for prefix, _ in backbones:
        check_trained_lsnet(sd, prefix, args.checkpoint)
    load_weights(model, sd, args.checkpoint, strict=True)
    switch_model_to_deploy(model, strict=True)
    out = model.state_dict()
    meta = dict(ckpt.get('meta') or {}, lsnet_deploy=True, reparameterized_from=args.checkpoint)
    save_atomically(dict(state_dict=out, meta=meta), args.out)
    print(f'{args.out}: deploy-mode weights of {len(backbones)} LSNet backbone(s), '
          f'{len(out)} tensors (from {len(sd)}); load them with deploy=True in the backbone '
          f'config')


if __name__ == '__main__':
    run_tool(main)
