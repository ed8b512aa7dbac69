#!/usr/bin/env bash
# Main segmentation job, from a fresh clone: set up .venv (pinned stack, mmcv with ops),
# generate the ADE20K-layout demo data, train Semantic FPN-LSNet-T on CPU from
# scratch, evaluate it (mIoU, mAcc, aAcc) and print the run times.
#   bash tools/run_segmentation_demo.sh [tools/demo_segmentation.py args...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
exec .venv/bin/python tools/demo_segmentation.py "$@"
