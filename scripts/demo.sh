#!/usr/bin/env bash
# Main job on a fresh machine: set up .venv, write one synthetic prostate
# mpMRI study, classify it and print the table.  Needs nothing outside the repo.
#   scripts/demo.sh [OUTDIR]     (default: out/demo, ignored by git)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
scripts/setup_venv.sh
out="${1:-out/demo}"
study="$out/study"
rm -rf "$study"
mkdir -p "$out"
start=$(date +%s.%N)
.venv/bin/seqclassifier synth "$study" --studies 1 --seed 7 --quiet
# The reference labels go beside the study, not inside it: the study folder holds only DICOM.
mv "$study/labels.csv" "$out/labels.csv"
set +e
.venv/bin/seqclassifier classify "$study" --format table --out "$out/classification.txt"
code=$?
set -e
cat "$out/classification.txt"
end=$(date +%s.%N)
echo "(result also in $out/classification.txt; reference labels in $out/labels.csv; $(python3 -c "print(f'{$end-$start:.1f}')") s)" >&2
# 0 = every file classified (2 would mean some were skipped: not expected for this study).
[ "$code" -eq 0 ]
