#!/usr/bin/env bash
# Multi-process training with torchrun (mmengine's "pytorch" launcher).
#   bash tools/dist_train.sh CONFIG GPUS [train.py args...]
# (LSNET_TOOL=test runs tools/test.py instead: that is what tools/dist_test.sh does.)
# Several machines: set NNODES, NODE_RANK, MASTER_ADDR (and PORT) on each of them.
# Without CUDA the processes run on CPU with the gloo backend (set automatically).
set -euo pipefail
CONFIG=$1
GPUS=$2
shift 2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-$([ -x "$ROOT/.venv/bin/python" ] && echo "$ROOT/.venv/bin/python" || echo python)}

exec "$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" --node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" --master_port="$PORT" \
    "$ROOT/tools/${LSNET_TOOL:-train}.py" "$CONFIG" --launcher pytorch "$@"
