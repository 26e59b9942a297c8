#!/usr/bin/env bash
# Set up .venv with the test tools and run the whole test suite, then the core
# tests again with pydicom 2.4.4 (the version Slicer <= 5.10 bundles).
# Real data is read from ../shared/data beside the checkout (override with
# SEQCLASSIFIER_DATA).  Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
scripts/setup_venv.sh test
export QT_QPA_PLATFORM=offscreen
# Static check that the whole code base runs on Python 3.9 (Slicer 5.8's Python): vermin
# (test extra) lists every construct, stdlib module or call newer than 3.9; any fails the run.
# SEQCLASSIFIER_VERMIN may name another vermin command (e.g. one installed aside).
vermin_cmd=(${SEQCLASSIFIER_VERMIN:-.venv/bin/vermin})
echo "[test] Python 3.9 compatibility (vermin)" >&2
if ! "${vermin_cmd[@]}" -q -t=3.9- --no-tips --violations --eval-annotations --no-parse-comments \
    SeqClassifier scripts Testing; then
  echo "error: code that needs a Python newer than 3.9 (Slicer 5.8); see the lines above" >&2
  exit 1
fi
set +e
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
code=$?
set -e
if [ "$code" -eq 5 ]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
# The core tests once more on pydicom 2.4.4 -- what Slicer <= 5.10 bundles --
# installed aside in .venv/pydicom24 and put first on the path (the venv keeps
# pydicom 3).  Only for a full run (no pytest arguments); its result counts.
if [ $# -eq 0 ]; then
  pd24="$root/.venv/pydicom24"
  if [ ! -f "$pd24/pydicom-2.4.4.dist-info/METADATA" ]; then
    echo "[test] installing pydicom 2.4.4 into $pd24" >&2
    rm -rf "$pd24"
    .venv/bin/python -m pip install -q --no-deps --target "$pd24" pydicom==2.4.4 >&2
  fi
  core=(Testing/Python/dicom/test_discovery.py Testing/Python/dicom/test_fast_path.py Testing/Python/dicom/test_vendors.py
        Testing/Python/dicom/test_slicer_db.py Testing/Python/inputs/test_features.py Testing/Python/inputs/test_image.py
        Testing/Python/inputs/test_study.py Testing/Python/model/test_default_model.py Testing/Python/app/test_cli.py)
  echo "[test] core tests with pydicom 2.4.4" >&2
  set +e
  PYTHONPATH="$pd24${PYTHONPATH:+:$PYTHONPATH}" .venv/bin/python -c \
    'import pydicom, sys; sys.exit(pydicom.__version__ != "2.4.4" and f"pydicom {pydicom.__version__} found, not 2.4.4")' \
    && PYTHONPATH="$pd24${PYTHONPATH:+:$PYTHONPATH}" .venv/bin/python -m pytest -q -p no:cacheprovider \
         -k "not both_precisions" "${core[@]}"
  code24=$?
  set -e
  [ "$code24" -eq 5 ] && code24=1
  if [ "$code24" -ne 0 ]; then
    echo "error: the core tests failed with pydicom 2.4.4 (exit $code24)" >&2
    [ "$code" -eq 0 ] && code=$code24
  fi
fi
# A short benchmark for the record (never fails the run; SEQCLASSIFIER_BENCH=0 skips it).
if [ "$code" -eq 0 ] && [ "${SEQCLASSIFIER_BENCH:-1}" != "0" ] && [ $# -eq 0 ]; then
  .venv/bin/python Testing/benchmarks/bench_classify.py --quick \
    || echo "(benchmark: a speed target was missed or it could not run; informational only)" >&2
fi
exit "$code"
