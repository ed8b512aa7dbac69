#!/usr/bin/env bash
# The README's main job, from a fresh clone: set up .venv (pinned stack, mmcv with
# ops), then the detection demo (RetinaNet-LSNet-T and Mask R-CNN-LSNet-T on the
# generated COCO-format shapes data) and the segmentation demo (Semantic FPN-LSNet-T
# on the generated ADE20K-layout data): generate data, train on CPU, evaluate, print
# the metrics and run times.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
.venv/bin/python tools/demo_detection.py
.venv/bin/python tools/demo_segmentation.py
