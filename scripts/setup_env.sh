#!/usr/bin/env bash
# Create or reuse .venv and install fusionseg with its dependencies at the exact versions of
# requirements/lock.txt (the versions the test suite was last green with; pyproject.toml keeps
# ranges for users elsewhere). Idempotent: a stamp file records what was installed, so a second run
# only checks and returns.
#
# Environment:
#   FUSIONSEG_VENV       venv folder (default .venv)
#   FUSIONSEG_LOCK       constraints file (default requirements/lock.txt); "none" resolves the newest
#                        versions the registry serves for pyproject's ranges (make test-newest)
#   FUSIONSEG_TORCH_PIN  torch/torchvision requirement (default the build on this machine's disk); a
#                        different pin drops torch, torchvision and their CUDA wheels from the lock
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${FUSIONSEG_VENV:-.venv}
PY=${PYTHON:-python3}
DEFAULT_TORCH_PIN="torch==2.14.1 torchvision==0.29.1"
TORCH_PIN=${FUSIONSEG_TORCH_PIN:-$DEFAULT_TORCH_PIN}
LOCK=${FUSIONSEG_LOCK:-requirements/lock.txt}

# open3d links against libusb-1.0 at import time.
if ! ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0'; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        echo "[setup] installing libusb-1.0-0 (needed by open3d)" >&2
        apt-get install -y -q libusb-1.0-0 >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q libusb-1.0-0 >/dev/null; }
    else
        echo "[setup] open3d needs libusb-1.0; run as root: apt-get install -y libusb-1.0-0" >&2
    fi
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating $VENV" >&2
    "$PY" -m venv "$VENV"
fi

STAMP="$VENV/.fusionseg-installed"
LOCK_TEXT=""
[ "$LOCK" != "none" ] && LOCK_TEXT="$(cat "$LOCK")"
WANT="$( { cat pyproject.toml scripts/setup_env.sh; echo "$LOCK $TORCH_PIN"; echo "$LOCK_TEXT"; } \
    | sha256sum | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && "$VENV/bin/python" -c "import fusionseg, torch" 2>/dev/null; then
    exit 0
fi

export PIP_DISABLE_PIP_VERSION_CHECK=1
if [ "$LOCK" != "none" ]; then
    CONSTRAINTS="$(pwd)/$LOCK"
    if [ "$TORCH_PIN" != "$DEFAULT_TORCH_PIN" ]; then  # another torch build: its own CUDA wheels
        CONSTRAINTS="$(mktemp)"
        grep -viE '^(torch|torchvision|triton|nvidia-[a-z0-9-]+|cuda-[a-z-]+)==' "$LOCK" > "$CONSTRAINTS"
    fi
    # PIP_CONSTRAINT (not -c) so that the isolated build of fusionseg itself uses the locked setuptools
    export PIP_CONSTRAINT="$CONSTRAINTS"
    echo "[setup] installing the versions of $LOCK" >&2
else
    echo "[setup] no lock: installing the newest versions the registry serves" >&2
fi
echo "[setup] installing $TORCH_PIN" >&2
# torch first and pinned, so that no later requirement range pulls a different build.
"$VENV/bin/python" -m pip install -q $TORCH_PIN
echo "[setup] installing fusionseg and its dependencies" >&2
"$VENV/bin/python" -m pip install -q -e ".[dev,export]" $TORCH_PIN
echo "$WANT" > "$STAMP"
echo "[setup] done" >&2
