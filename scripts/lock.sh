#!/usr/bin/env bash
# Regenerate requirements/lock.txt (`make lock`): a fresh venv resolves the newest versions the
# registry serves for pyproject.toml's ranges, with requirements/holds.txt for deliberate holds, and
# its `pip freeze` becomes the lock. Run the tests under the new lock before committing it.
set -euo pipefail
cd "$(dirname "$0")/.."
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
FUSIONSEG_VENV="$TMP/venv" FUSIONSEG_LOCK=requirements/holds.txt bash scripts/setup_env.sh
PY="$TMP/venv/bin/python"
{
    echo "# Exact versions installed by scripts/setup_env.sh (constraints; pyproject.toml keeps ranges)."
    echo "# Regenerate with: make lock   (scripts/lock.sh; holds with reasons: requirements/holds.txt)"
    echo "# Resolved $(date -u +%Y-%m-%d) for $("$PY" -c 'import platform, sys; print(f"CPython {sys.version.split()[0]}, {platform.machine()}")')"
    "$PY" -m pip freeze --all --exclude-editable | grep -vE '^(pip)==' | LC_ALL=C sort -f
} > "$TMP/lock.txt"
mv "$TMP/lock.txt" requirements/lock.txt
echo "[lock] wrote requirements/lock.txt ($(grep -c '==' requirements/lock.txt) packages)" >&2
