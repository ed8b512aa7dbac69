#!/usr/bin/env bash
# Multi-process evaluation with torchrun (mmengine's "pytorch" launcher).
#   bash tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py args...]
# Several machines: set NNODES, NODE_RANK, MASTER_ADDR (and PORT) on each of them
# (tools/dist_train.sh runs torchrun for both tools).
set -euo pipefail
CONFIG=$1
CHECKPOINT=$2
GPUS=$3
shift 3
LSNET_TOOL=test exec bash "$(dirname "$0")/dist_train.sh" "$CONFIG" "$GPUS" "$CHECKPOINT" "$@"
