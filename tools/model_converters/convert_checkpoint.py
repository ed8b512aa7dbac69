"""Convert released LSNet checkpoints for these configs (weights-only reading throughout).

The released files load as they are (by path or URL: the LSNet layers upgrade their
attention tables in memory); this tool writes the upgraded form as a file.

Released detection (mmdet 2.28) or segmentation (mmseg 0.30) checkpoint -> mmdet 3 /
mmseg 1 file, optionally verified against a config:

    python tools/model_converters/convert_checkpoint.py retinanet_lsnet_t_coco.pth \
        checkpoints/retinanet_lsnet_t.pth --config configs/retinanet_lsnet_t.py

Keep only backbone and neck (to fine-tune on a data set with other classes):

    python tools/model_converters/convert_checkpoint.py IN.pth OUT.pth --keep backbone neck

Released ImageNet checkpoint -> backbone-only file (classifier dropped, attention
tables resized to the 14x14 grid); the configs' init_cfg also reads the released
file directly, so this is optional:

    python tools/model_converters/convert_checkpoint.py lsnet_t.pth \
        pretrained/lsnet_t_backbone.pth --imagenet

SRC may be a local path or an http(s) URL. The output is written only when the
conversion (and, with --config, the check) succeeds: a temporary file in the output's
folder is renamed to DST at the end. A file that cannot be read or does not fit prints
``error: ...`` and exits with status 2, leaving no output behind.
"""
import argparse
import os
import os.path as osp
import tempfile

import torch

from lsnet_mm.apis import build_model_from_cfg
from lsnet_mm.apis.launch import run_tool
from lsnet_mm.checkpoint import convert_released_checkpoint, imagenet_to_backbone, load_state_dict
from lsnet_mm.models.backbones.lsnet import arch_of
from lsnet_mm.models.utils.checkpoint_fit import check_state_dict_fits
from lsnet_mm.utils.errors import CheckpointError, ConfigError


def convert_imagenet(src):
    """The backbone of a released ImageNet checkpoint (tables at 14x14) as a checkpoint."""
    sd = imagenet_to_backbone(load_state_dict(src, what='ImageNet checkpoint'))
    arch = arch_of(sd)
    if arch is None:
        raise CheckpointError(f'{src!r} is not an LSNet t/s/b ImageNet checkpoint')
    return dict(state_dict=sd, meta=dict(arch=arch, converted_from=str(src)))


def verify(config, sd, dst):
    """Raise unless ``sd`` loads into the model of ``config`` exactly."""
    model, _ = build_model_from_cfg(config)
    check_state_dict_fits(model, sd, dst, 'converted checkpoint')


def parse_args(argv=None):
    """The command line's arguments."""
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('src', help='released checkpoint (path or URL)')
    p.add_argument('dst', help='output file')
    p.add_argument('--imagenet', action='store_true',
                   help='src is an ImageNet classification checkpoint: write the backbone only')
    p.add_argument('--keep', nargs='+', metavar='MODULE',
                   help='keep only these top-level modules, e.g. backbone neck')
    p.add_argument('--config', help='verify that the result loads into this config exactly')
    return p.parse_args(argv)


def save_if_valid(ckpt, args):
    """Write ``ckpt`` to ``args.dst`` through a temporary file, after the --config check."""
    folder = osp.dirname(osp.abspath(args.dst))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f'.{osp.basename(args.dst)}.', suffix='.tmp')
    try:
        with os.fdopen(fd, 'wb') as f:
            torch.save(ckpt, f)
        if args.config:
            verify(args.config, ckpt['state_dict'], args.dst)
        os.replace(tmp, args.dst)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)


def main(argv=None):
    """Convert (and verify) as the command line says."""
    args = parse_args(argv)
    if args.config and args.keep:
        raise ConfigError('--config verifies complete models; drop --keep to use it')
    if args.imagenet:
        ckpt = convert_imagenet(args.src)
    else:
        ckpt = convert_released_checkpoint(args.src, keep=args.keep)
    save_if_valid(ckpt, args)
    sd = ckpt['state_dict']
    if args.imagenet:
        print(f'{args.dst}: LSNet-{ckpt["meta"]["arch"]} backbone, {len(sd)} tensors')
    else:
        groups = sorted({k.split('.', 1)[0] for k in sd})
        print(f'{args.dst}: {len(sd)} tensors ({", ".join(groups)})')
    if args.config:
        print(f'{args.dst} fits {args.config}: no missing, unexpected or mis-shaped keys')


if __name__ == '__main__':
    run_tool(main)
