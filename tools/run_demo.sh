#!/usr/bin/env bash
# The README's main job, from a fresh clone: set up .venv (pinned stack, mmcv with
# ops), then the demos (tools/demo.py): RetinaNet-LSNet-T and Mask R-CNN-LSNet-T on the
# generated COCO-format shapes data, Semantic FPN-LSNet-T on the generated ADE20K-layout
# data: generate the data, train on CPU, evaluate; a progress bar per model, then a
# summary table. Full logs: work_dirs/demo/MODEL/{train,test}.log.
#   bash tools/run_demo.sh [tools/demo.py arguments, e.g. --models retinanet]
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
exec .venv/bin/python tools/demo.py "$@"
