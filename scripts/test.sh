#!/usr/bin/env bash
# Set up .venv with the test tools and run the whole test suite.
# Real data is read from ../shared/data beside the checkout (override with
# SEQCLASSIFIER_DATA).  Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
scripts/setup_venv.sh test
export QT_QPA_PLATFORM=offscreen
set +e
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
code=$?
set -e
if [ "$code" -eq 5 ]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
exit "$code"
