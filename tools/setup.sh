#!/usr/bin/env bash
# Creates .venv/ in the project and installs the pinned, tested stack from
# requirements.txt (mmcv 2.1.0 built from source with its compiled ops), then
# lsnet_mm in editable mode. Idempotent: when nothing changed since the last
# successful run it only verifies the environment and returns in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=${LSNET_VENV:-$ROOT/.venv}
PY=${PYTHON:-python3}
STAMP=$VENV/.lsnet_mm_setup
want=$(cat requirements.txt tools/setup.sh pyproject.toml | sha256sum | cut -d' ' -f1)

verify() {
  "$VENV/bin/python" - <<'PY'
import mmcv, mmdet, mmseg, torch
from mmcv.ops import nms  # fails when mmcv was installed without its compiled ops
import lsnet_mm
print(f'lsnet-mm environment ok: torch {torch.__version__}, mmcv {mmcv.__version__}, '
      f'mmdet {mmdet.__version__}, mmseg {mmseg.__version__}')
PY
}

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && verify 2>/dev/null; then
  exit 0
fi

start=$(date +%s)
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip "$@"; }
pin() { grep -E "^$1==" requirements.txt; }

pip install -q --upgrade "pip>=24" wheel ninja
pip install -q "$(pin torch)"
# mmcv's setup.py needs pkg_resources and torch in the build environment.
pip install -q "setuptools<70"
pip install -q "$(pin numpy)" "$(pin opencv-python)" "$(pin mmengine)" addict packaging Pillow pyyaml yapf
cuda=$("$VENV/bin/python" -c 'import torch; print(torch.version.cuda or "")')
if [ -n "$cuda" ] && command -v nvcc >/dev/null; then
  echo "setup: CUDA build of torch ($cuda) and nvcc found: building mmcv with CUDA ops"
  export FORCE_CUDA=1
else
  echo "setup: CPU build of torch: building mmcv with CPU ops (pip caches the wheel)"
  export FORCE_CUDA=0
fi
MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} pip install "$(pin mmcv)" --no-build-isolation --no-deps
# torch declares setuptools>=77; restore it once mmcv is built (pkg_resources is not needed at run time).
pip install -q "setuptools>=77,<81"
pip install -q -r requirements.txt
pip install -q --no-deps --no-build-isolation -e .
verify
echo "$want" > "$STAMP"
echo "setup: done in $(( $(date +%s) - start )) s"
