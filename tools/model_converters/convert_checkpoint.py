"""Convert released LSNet checkpoints for these configs (weights-only reading throughout).

Released detection checkpoint (mmdet 2.28) -> mmdet 3 file, optionally verified
against a config (exits non-zero on any missing, unexpected or mis-shaped key):

    python tools/convert_checkpoint.py retinanet_lsnet_t_coco.pth checkpoints/retinanet_lsnet_t.pth \
        --config configs/retinanet_lsnet_t.py

Keep only backbone and neck (to fine-tune on a data set with other classes):

    python tools/convert_checkpoint.py IN.pth OUT.pth --keep backbone neck

Released ImageNet checkpoint -> backbone-only file (classifier dropped, attention
tables resized to the 14x14 grid); the configs' init_cfg also reads the released
file directly, so this is optional:

    python tools/convert_checkpoint.py lsnet_t.pth pretrained/lsnet_t_backbone.pth --imagenet
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import torch  # noqa: E402

import lsnet_mm  # noqa: E402,F401
from lsnet_mm.checkpoint import CheckpointError, extract_state_dict, imagenet_to_backbone, \
    load_checkpoint_file  # noqa: E402
from lsnet_mm.detection.convert import convert_mmdet2_checkpoint  # noqa: E402
from lsnet_mm.preflight import PreflightError, check_checkpoint_fits  # noqa: E402


def convert_imagenet(src, dst):
    from lsnet_mm.models.backbones.lsnet import arch_of
    sd = imagenet_to_backbone(extract_state_dict(load_checkpoint_file(src, what='ImageNet '
                                                                      'checkpoint'), src))
    arch = arch_of(sd)
    if arch is None:
        raise CheckpointError(f'{src!r} is not an LSNet t/s/b ImageNet checkpoint')
    torch.save(dict(state_dict=sd, meta=dict(arch=arch, converted_from=str(src))), dst)
    print(f'{dst}: LSNet-{arch} backbone, {len(sd)} tensors')


def verify(config, path):
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    cfg = Config.fromfile(config)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    check_checkpoint_fits(model, path, cfg)
    print(f'{path} fits {config}: no missing, unexpected or mis-shaped keys')


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('src', help='released checkpoint')
    p.add_argument('dst', help='output file')
    p.add_argument('--imagenet', action='store_true',
                   help='src is an ImageNet classification checkpoint: write the backbone only')
    p.add_argument('--keep', nargs='+', metavar='MODULE',
                   help='keep only these top-level modules, e.g. backbone neck')
    p.add_argument('--config', help='verify that the result loads into this config exactly')
    args = p.parse_args(argv)
    if osp.dirname(args.dst):
        os.makedirs(osp.dirname(args.dst), exist_ok=True)
    if args.imagenet:
        convert_imagenet(args.src, args.dst)
        return
    sd = convert_mmdet2_checkpoint(args.src, args.dst, keep=args.keep)
    groups = sorted({k.split('.', 1)[0] for k in sd})
    print(f'{args.dst}: {len(sd)} tensors ({", ".join(groups)})')
    if args.config:
        if args.keep:
            raise SystemExit('--config verifies complete detectors; drop --keep to use it')
        verify(args.config, args.dst)


if __name__ == '__main__':
    try:
        main()
    except (CheckpointError, PreflightError, FileNotFoundError) as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(2)
