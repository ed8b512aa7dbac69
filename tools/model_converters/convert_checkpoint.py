"""Convert released LSNet checkpoints for these configs (weights-only reading throughout).

Released detection (mmdet 2.28) or segmentation (mmseg 0.30) checkpoint -> mmdet 3 /
mmseg 1 file, optionally verified against a config (exits with status 2 on any missing,
unexpected or mis-shaped key):

    python tools/model_converters/convert_checkpoint.py retinanet_lsnet_t_coco.pth \
        checkpoints/retinanet_lsnet_t.pth --config configs/retinanet_lsnet_t.py

Keep only backbone and neck (to fine-tune on a data set with other classes):

    python tools/model_converters/convert_checkpoint.py IN.pth OUT.pth --keep backbone neck

Released ImageNet checkpoint -> backbone-only file (classifier dropped, attention
tables resized to the 14x14 grid); the configs' init_cfg also reads the released
file directly, so this is optional:

    python tools/model_converters/convert_checkpoint.py lsnet_t.pth \
        pretrained/lsnet_t_backbone.pth --imagenet
"""
import argparse
import os
import os.path as osp
import sys

import torch

import lsnet_mm  # noqa: F401
from lsnet_mm.checkpoint import (
    CheckpointError,
    check_state_dict_fits,
    convert_released_checkpoint,
    imagenet_to_backbone,
    load_state_dict,
)
from lsnet_mm.models.backbones.lsnet import arch_of


def convert_imagenet(src, dst):
    """Write the backbone of a released ImageNet checkpoint (tables at 14x14)."""
    sd = imagenet_to_backbone(load_state_dict(src, what='ImageNet checkpoint'))
    arch = arch_of(sd)
    if arch is None:
        raise CheckpointError(f'{src!r} is not an LSNet t/s/b ImageNet checkpoint')
    torch.save(dict(state_dict=sd, meta=dict(arch=arch, converted_from=str(src))), dst)
    print(f'{dst}: LSNet-{arch} backbone, {len(sd)} tensors')


def verify(config, path):
    """Raise unless the file at ``path`` loads into the model of ``config`` exactly."""
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    cfg = Config.fromfile(config)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    check_state_dict_fits(model, load_state_dict(path), path)
    print(f'{path} fits {config}: no missing, unexpected or mis-shaped keys')


def parse_args(argv=None):
    """The command line's arguments."""
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('src', help='released checkpoint')
    p.add_argument('dst', help='output file')
    p.add_argument('--imagenet', action='store_true',
                   help='src is an ImageNet classification checkpoint: write the backbone only')
    p.add_argument('--keep', nargs='+', metavar='MODULE',
                   help='keep only these top-level modules, e.g. backbone neck')
    p.add_argument('--config', help='verify that the result loads into this config exactly')
    return p.parse_args(argv)


def convert(args):
    """Convert (and verify) as the parsed command line says."""
    if osp.dirname(args.dst):
        os.makedirs(osp.dirname(args.dst), exist_ok=True)
    if args.imagenet:
        convert_imagenet(args.src, args.dst)
        return
    sd = convert_released_checkpoint(args.src, args.dst, keep=args.keep)
    groups = sorted({k.split('.', 1)[0] for k in sd})
    print(f'{args.dst}: {len(sd)} tensors ({", ".join(groups)})')
    if args.config:
        if args.keep:
            raise SystemExit('--config verifies complete detectors; drop --keep to use it')
        verify(args.config, args.dst)


def main(argv=None):
    """Convert as the command line says; an unreadable or unfit file exits with status 2."""
    args = parse_args(argv)
    try:
        convert(args)
    except (CheckpointError, FileNotFoundError) as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(2)


if __name__ == '__main__':
    main()
