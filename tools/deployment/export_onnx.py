"""Export an LSNet backbone or a whole detector/segmentor network to ONNX and check it.

    python tools/deployment/export_onnx.py configs/retinanet_lsnet_t.py --backbone-only \\
        --deploy --shape 800 1344 --out work_dirs/lsnet_t_backbone.onnx
    python tools/deployment/export_onnx.py configs/retinanet_lsnet_t.py --checkpoint CKPT \\
        --shape 800 1344 --out work_dirs/retinanet_lsnet_t.onnx

The graph has a fixed input shape (1, 3, H, W); export once per size. Without
``--backbone-only`` the network is exported in mmengine's tensor mode (raw head
outputs per level, no box decoding / NMS: see :mod:`lsnet_mm.apis.onnx_export`).
After exporting, onnxruntime (CPU) runs the file on a random input and the largest
difference to PyTorch is printed; ``--atol`` makes a larger one an error.
"""
import argparse

import torch

from lsnet_mm.apis import build_model_from_cfg, switch_model_to_deploy
from lsnet_mm.apis.onnx_export import TensorModeWrapper, check_onnx, export_onnx
from lsnet_mm.checkpoint import check_state_dict_fits, load_state_dict


def main(argv=None):
    p = argparse.ArgumentParser(description='Export to ONNX and verify with onnxruntime')
    p.add_argument('config', help='config file, or mmdet::path / mmseg::path')
    p.add_argument('--checkpoint', help='weights to load (default: random weights)')
    p.add_argument('--backbone-only', action='store_true')
    p.add_argument('--deploy', action='store_true', help='switch LSNet to deploy mode first')
    p.add_argument('--shape', type=int, nargs=2, default=[800, 1344], metavar=('H', 'W'))
    p.add_argument('--opset', type=int, default=17)
    p.add_argument('--out', required=True, help='the .onnx file to write')
    p.add_argument('--atol', type=float, default=1e-3,
                   help='fail when an output differs from PyTorch by more (relative to the '
                        "output's largest magnitude; default 1e-3)")
    args = p.parse_args(argv)

    model, _ = build_model_from_cfg(args.config)
    if args.checkpoint:
        # weights-only reading; the file must fit the config's model exactly
        sd = load_state_dict(args.checkpoint)
        check_state_dict_fits(model, sd, args.checkpoint)
        model.load_state_dict(sd, strict=False)  # fit checked; index buffers may be absent
    if args.deploy:
        switch_model_to_deploy(model)
    module = model.backbone if args.backbone_only else TensorModeWrapper(model)
    module.eval()
    x = torch.randn(1, 3, *args.shape)
    names = export_onnx(module, x, args.out, args.opset)
    diffs = check_onnx(module, args.out, torch.randn(1, 3, *args.shape))
    worst = max(rel for _, rel in diffs)
    print(f'wrote {args.out}: {len(names)} outputs; onnxruntime vs PyTorch: max abs diff '
          f'{max(a for a, _ in diffs):.3g}, max relative diff {worst:.3g}')
    if worst > args.atol:
        raise SystemExit(f'onnxruntime outputs differ from PyTorch by {worst:.3g} (> {args.atol})')
    return diffs


if __name__ == '__main__':
    main()
