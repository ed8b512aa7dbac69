#!/usr/bin/env bash
# The README's test command: set up (idempotent) and run the CPU test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
exec .venv/bin/python -m pytest tests -q -p no:cacheprovider "$@"
