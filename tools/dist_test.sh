#!/usr/bin/env bash
# Multi-process evaluation with torchrun (mmengine's "pytorch" launcher).
#   bash tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py args...]
# Several machines: set NNODES, NODE_RANK (0 .. NNODES-1), MASTER_ADDR (the node of rank
# 0) and PORT on each of them, as for training (tools/dist_train.sh, which runs torchrun
# for both tools); GPUS is the number of processes per node. CHECKPOINT may be a released
# model's URL (docs/model_zoo.md).
set -euo pipefail
CONFIG=$1
CHECKPOINT=$2
GPUS=$3
shift 3
LSNET_TOOL=test exec bash "$(dirname "$0")/dist_train.sh" "$CONFIG" "$GPUS" "$CHECKPOINT" "$@"
