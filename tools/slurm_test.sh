#!/usr/bin/env bash
# Evaluation on a Slurm cluster: one srun task per GPU, mmengine's "slurm" launcher (the
# interface of mmdet's and mmseg's tools/slurm_test.sh).
#   [GPUS=8] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS="..."] \
#       bash tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py args...]
# CHECKPOINT may be a released model's URL (docs/model_zoo.md). The settings are those of
# tools/slurm_train.sh, which runs srun for both tools.
set -euo pipefail
if [ $# -lt 4 ]; then
    echo "usage: bash $0 PARTITION JOB_NAME CONFIG CHECKPOINT [test.py args...]" >&2
    exit 2
fi
LSNET_TOOL=test exec bash "$(dirname "$0")/slurm_train.sh" "$@"
