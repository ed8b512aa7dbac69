#!/usr/bin/env bash
# Main detection job, from a fresh clone: set up .venv (pinned stack, mmcv with ops),
# generate the synthetic COCO-format data, train RetinaNet-LSNet-T and
# Mask R-CNN-LSNet-T on CPU, evaluate them and print box/mask AP and run times.
#   bash tools/run_detection_demo.sh [tools/demo_detection.py args...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
exec .venv/bin/python tools/demo_detection.py "$@"
