#!/usr/bin/env bash
# Multi-process training with torchrun (mmengine's "pytorch" launcher).
#   bash tools/dist_train.sh CONFIG GPUS [train.py args...]
# (LSNET_TOOL=test runs tools/test.py instead: that is what tools/dist_test.sh does.)
# Several machines: run it on each of them with the same NNODES, MASTER_ADDR (an address
# of the node of rank 0 that the others reach) and PORT (default 29500, free on that
# node), and NODE_RANK 0 .. NNODES-1; GPUS is the number of processes per node. E.g. two
# nodes of 8 GPUs (batch 2 x 16 = 32: add --auto-scale-lr, as the COCO configs' learning
# rate is set for 16; see docs/model_zoo.md):
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 bash tools/dist_train.sh CONFIG 8 --auto-scale-lr
#   NNODES=2 NODE_RANK=1 MASTER_ADDR=10.0.0.1 bash tools/dist_train.sh CONFIG 8 --auto-scale-lr
# On a Slurm cluster, tools/slurm_train.sh starts the processes instead.
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
