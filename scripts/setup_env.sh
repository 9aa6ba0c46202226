#!/usr/bin/env bash
# Create or reuse .venv and install fusionseg with its dependencies. Idempotent: a stamp file records
# what was installed, so a second run only checks and returns.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${FUSIONSEG_VENV:-.venv}
PY=${PYTHON:-python3}
TORCH_PIN=${FUSIONSEG_TORCH_PIN:-"torch==2.14.1 torchvision==0.29.1"}

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
WANT="$(cat pyproject.toml scripts/setup_env.sh | sha256sum | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && "$VENV/bin/python" -c "import fusionseg, torch" 2>/dev/null; then
    exit 0
fi

export PIP_DISABLE_PIP_VERSION_CHECK=1
echo "[setup] installing $TORCH_PIN" >&2
# torch first and pinned, so that no later requirement range pulls a different build.
"$VENV/bin/python" -m pip install -q $TORCH_PIN
echo "[setup] installing fusionseg and its dependencies" >&2
"$VENV/bin/python" -m pip install -q -e ".[dev,export]" $TORCH_PIN
echo "$WANT" > "$STAMP"
echo "[setup] done" >&2
