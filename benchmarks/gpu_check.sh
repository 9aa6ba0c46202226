#!/usr/bin/env bash
# The prepared GPU check (issue 17, item 5): benchmarks/gpu_check.sh OUT.md [--self-test]
# On a CUDA machine: CUDA-only tests, AMP training, torch.compile, GPU ip_basic/HHA vs CPU, model
# latency, training memory and a 2-GPU NCCL step, in under 8 minutes; writes a RESULTS.md section to
# OUT.md. Without CUDA: the CPU self-test of the same code paths. See benchmarks/gpu_check.py.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ $# -lt 1 ]]; then
    echo "usage: benchmarks/gpu_check.sh OUT.md [--self-test]" >&2
    exit 2
fi
python="${PYTHON:-}"
if [[ -z "$python" ]]; then
    if [[ -x "$root/.venv/bin/python" ]]; then python="$root/.venv/bin/python"; else python="python3"; fi
fi
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
# the whole check is budgeted to 480 s inside; the hard limit stops a hung collective or compile
exec timeout --kill-after=10 540 "$python" "$root/benchmarks/gpu_check.py" "$@"
