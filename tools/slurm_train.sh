#!/usr/bin/env bash
# Training on a Slurm cluster: one srun task per GPU, mmengine's "slurm" launcher (the
# interface of mmdet's and mmseg's tools/slurm_train.sh).
#   [GPUS=16] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS="--time=48:00:00"] \
#       bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py args...]
# GPUS is the total (default 8), spread over nodes of GPUS_PER_NODE (default: GPUS, at
# most 8). mmengine takes each process's rank and the world size from Slurm
# (SLURM_PROCID, SLURM_NTASKS), the master address from the first node of the job
# (SLURM_NODELIST) and the port from MASTER_PORT (default 29500: set another one for a
# second job on the same nodes). The batch is GPUS x the config's images per GPU: add
# --auto-scale-lr when it is not the paper's (docs/model_zoo.md).
# The nodes run $PYTHON (default: this checkout's .venv/bin/python, so the checkout must
# be on a file system the nodes share).
# (LSNET_TOOL=test runs tools/test.py CONFIG CHECKPOINT: that is what slurm_test.sh does.)
set -euo pipefail
if [ $# -lt 4 ]; then
    echo "usage: bash $0 PARTITION JOB_NAME CONFIG WORK_DIR [train.py args...]" >&2
    exit 2
fi
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
FOURTH=$4  # WORK_DIR, or the CHECKPOINT for tools/test.py
shift 4
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-$((GPUS < 8 ? GPUS : 8))}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-}
TOOL=${LSNET_TOOL:-train}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-$([ -x "$ROOT/.venv/bin/python" ] && echo "$ROOT/.venv/bin/python" || echo python)}
if [ "$TOOL" = test ]; then
    TOOL_ARGS=("$CONFIG" "$FOURTH")
else
    TOOL_ARGS=("$CONFIG" "--work-dir=$FOURTH")
fi

# SRUN_ARGS may hold several options: split on spaces on purpose
# shellcheck disable=SC2086
exec srun -p "$PARTITION" --job-name="$JOB_NAME" \
    --gres=gpu:"$GPUS_PER_NODE" --ntasks="$GPUS" --ntasks-per-node="$GPUS_PER_NODE" \
    --cpus-per-task="$CPUS_PER_TASK" --kill-on-bad-exit=1 $SRUN_ARGS \
    "$PYTHON" -u "$ROOT/tools/$TOOL.py" "${TOOL_ARGS[@]}" --launcher=slurm "$@"
