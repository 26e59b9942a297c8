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
# A short benchmark for the record (never fails the run; SEQCLASSIFIER_BENCH=0 skips it).
if [ "$code" -eq 0 ] && [ "${SEQCLASSIFIER_BENCH:-1}" != "0" ] && [ $# -eq 0 ]; then
  .venv/bin/python Testing/benchmarks/bench_classify.py --quick \
    || echo "(benchmark: a speed target was missed or it could not run; informational only)" >&2
fi
exit "$code"
