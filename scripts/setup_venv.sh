#!/usr/bin/env bash
# Create (or reuse) .venv at the repository root and install SeqClassifier
# into it in editable mode.  Usage: scripts/setup_venv.sh [extra ...]
#   extra: "test" also installs the test tools.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PY --version 2>&1)" >&2
  "$PY" -m venv .venv
fi
extras="${1:-}"
spec="."
[ -n "$extras" ] && spec=".[$extras]"
stamp=".venv/.seqclassifier-installed-$extras"
if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ] && [ "$stamp" -nt .ci/constraints.txt ]; then
  echo "[setup] .venv is up to date" >&2
  exit 0
fi
echo "[setup] installing SeqClassifier ($spec) into .venv; the first time this takes a few minutes (torch)" >&2
.venv/bin/python -m pip install -q --upgrade pip >&2 || true
.venv/bin/python -m pip install -q -c .ci/constraints.txt -e "$spec" >&2
touch "$stamp"
echo "[setup] done" >&2
