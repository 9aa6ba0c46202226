#!/usr/bin/env bash
# The main job on the built-in default data (called by `make demo` after set-up).
set -euo pipefail
cd "$(dirname "$0")/.."
FS=".venv/bin/fusionseg"
DATA=${DEMO_DATA:-data/synthetic}
NUM=${DEMO_NUM:-200}

$FS make-synthetic --out "$DATA" --num "$NUM" --seed 0
