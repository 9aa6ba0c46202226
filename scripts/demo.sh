#!/usr/bin/env bash
# The main job on the built-in default data (called by `make demo` after set-up):
# synthetic multimodal scenes -> an AdapNet++ expert per modality (RGB, depth) -> SSMA and CMoDE
# fusion -> evaluation with sensor-failure robustness rows and a side-by-side prediction PNG.
# Each training stage runs for a wall-clock budget (configs/synthetic-pipeline.yaml), so the job takes
# about 5 minutes on any 2-core machine. Rerunning skips finished stages and resumes interrupted ones.
set -euo pipefail
cd "$(dirname "$0")/.."
FS=".venv/bin/fusionseg"
DATA=${DEMO_DATA:-data/demo-synthetic}
NUM=${DEMO_NUM:-200}
CONFIG=${DEMO_CONFIG:-configs/synthetic-pipeline.yaml}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)}

start=$(date +%s)
$FS make-synthetic --out "$DATA" --num "$NUM" --size 64x128 --seed 0
$FS train-pipeline "$CONFIG" --set "data.root=$DATA"
echo "main job finished in $(( $(date +%s) - start )) s" >&2
