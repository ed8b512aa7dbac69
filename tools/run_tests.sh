#!/usr/bin/env bash
# The README's test command: set up (idempotent) and run the CPU test suite, one pytest-xdist
# worker per core (each with one compute thread, see tests/conftest.py). Extra arguments go
# to pytest, e.g. `-m "not slow"` or `-n 0` (serial).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
exec .venv/bin/python -m pytest tests -q -p no:cacheprovider -n auto --durations=15 "$@"
