#!/usr/bin/env bash
# Train the shipped default model and measure its accuracy on the real studies.
#   scripts/train_default.sh [WORKDIR]
# Environment: PROSTATEX (default ../shared/data/prostatex), STUDIES (synthetic
# studies, default 48), JOBS (parallel synth writers, default nproc), DEVICE
# (auto), SC (command to run seqclassifier, default .venv/bin/seqclassifier),
# SKIP_DEFAULT=1 to skip the default model, SKIP_BY_SOURCE=1 to skip leave-one-source-out; REAL=DIR adds every
# sub-folder of DIR with a labels.csv as a real source; LOSO_GROUPS (default 8) groups of sources held out.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
work="${1:-out/train}"
PROSTATEX="${PROSTATEX:-$root/../shared/data/prostatex}"
STUDIES="${STUDIES:-48}"
JOBS="${JOBS:-$(nproc)}"
DEVICE="${DEVICE:-auto}"
SC="${SC:-.venv/bin/seqclassifier}"
EPOCHS="${EPOCHS:-60}"
mkdir -p "$work"
t0=$(date +%s)
synth="$work/synth"
if [ ! -f "$synth/done" ]; then
  rm -rf "$synth"; mkdir -p "$synth"
  per=$(( (STUDIES + JOBS - 1) / JOBS ))
  start=$(date +%s)
  for j in $(seq 0 $((JOBS - 1))); do
    n=$(( STUDIES - j * per < per ? STUDIES - j * per : per ))
    [ "$n" -gt 0 ] || continue
    $SC synth "$synth/part$j" --studies "$n" --seed $((1000 + 100 * j)) --kinds prostate neuro --prostate-extras \
        --realism --quiet &
  done
  wait
  echo "synthetic training set: $STUDIES studies in $(( $(date +%s) - start )) s" >&2
  touch "$synth/done"
fi
synth_labels=$(ls "$synth"/part*/labels.csv)
synth_roots=$(ls -d "$synth"/part*)
common=(--strategy joint --backbone compact_cnn --max-epochs "$EPOCHS" --patience "${PATIENCE:-8}" --device "$DEVICE" --quiet)
VENDORS="${VENDORS:-$(dirname "$PROSTATEX")/vendors}"

# The real sources: the two shared folders and, with REAL=DIR, every sub-folder of DIR holding a labels.csv
# (the corpus of data/real_series.csv, laid out by scripts/real_corpus.py build; its DICOM stays outside the repo).
REAL="${REAL:-}"
real_roots=("$PROSTATEX" "$VENDORS")
if [ -n "$REAL" ]; then
  for d in "$REAL"/*/; do [ -f "$d/labels.csv" ] && real_roots+=("${d%/}"); done
fi
real_labels=(); over=()
for r in "${real_roots[@]}"; do real_labels+=("$r/labels.csv"); over+=("$r=${OVERSAMPLE:-8}"); done
echo "real sources: ${#real_roots[@]}" >&2
model=SeqClassifier/SeqClassifierLib/model/assets/seqclassifier_default.json

# 1) the default model: all synthetic studies + every real source, 4 folds by patient
if [ "${SKIP_DEFAULT:-0}" != 1 ]; then
  mkdir -p SeqClassifier/SeqClassifierLib/model/assets
  cmd="STUDIES=$STUDIES JOBS=$JOBS DEVICE=$DEVICE EPOCHS=$EPOCHS PATIENCE=${PATIENCE:-8} OVERSAMPLE=${OVERSAMPLE:-8} REAL=<corpus> scripts/train_default.sh  # synth: seqclassifier synth <synth>/partJ --seed 1000+100J --kinds prostate neuro --prostate-extras --realism; then: seqclassifier train --labels <synth>/part*/labels.csv <real>/*/labels.csv --data <synth>/part* <real>/* --fold-by-source <real>/* --oversample <real>/*=${OVERSAMPLE:-8} --out $model --folds 4 ${common[*]}"
  $SC train --labels $synth_labels "${real_labels[@]}" --data $synth_roots "${real_roots[@]}" \
     --fold-by-source "${real_roots[@]}" --oversample "${over[@]}" --out "$model" --folds 4 "${common[@]}" \
     --command-line "$cmd"
  # 1b) held-out folds of the default model: distance statistics, out-of-fold scores (reported only)
  $SC held-out --model "$model" --labels $synth_labels "${real_labels[@]}" --data $synth_roots "${real_roots[@]}" \
     --quiet > "$work/held_out.json"
fi

# 2) leave-one-source-out: the folds of 1) hold each real source out whole, so every real series'
#    out-of-fold prediction comes from a fold model that never saw its source; the review rule is fitted
#    on those predictions and stored in the card with the per-source table, the keyword baseline and the
#    risk-coverage curve.  LOSO_TRAIN=1 trains one model per group of sources instead (LOSO_GROUPS).
if [ "${SKIP_BY_SOURCE:-0}" != 1 ]; then
  if [ "${LOSO_TRAIN:-0}" = 1 ]; then
    how=(--real "${real_roots[@]}" --groups "${LOSO_GROUPS:-8}" --oversample "${OVERSAMPLE:-8}"
         --max-epochs "$EPOCHS" --patience "${PATIENCE:-8}" --device "$DEVICE")
  else
    how=(--model "$model")
  fi
  $SC by-source "${how[@]}" --labels $synth_labels "${real_labels[@]}" --data $synth_roots "${real_roots[@]}" \
     --out "$work/by_source" --into-card "$model"
  cp "$work/by_source/risk_coverage.png" docs/risk_coverage.png 2>/dev/null || true
fi

for r in "$PROSTATEX" "$VENDORS"; do
  echo "== default model on $(basename "$r") (in its training data: a sanity check, not a validation) =="
  $SC evaluate --models "$model" --labels "$r/labels.csv" --data "$r" --name "$(basename "$r")" \
     --out "$work/report_$(basename "$r")" --device "$DEVICE" | tail -3
done
echo "== shortcut audit of the default model (real + synthetic series) =="
$SC audit --models "$model" --labels $synth_labels "${real_labels[@]}" --data $synth_roots "${real_roots[@]}" \
   --out "$work/audit.json" --into-card || true
echo "== leave-one-protocol-family-out (synthetic, metadata branch) =="
# the protocol families that matter most (every DCE family, VFA / post-contrast, non-diffusion EPI, b0, ADC,
# calculated b, a derived map, a T2w); FAMILIES=all holds out every family (131 here: about an hour on 2 cores)
fams=(SIEMENS/dce_per_timepoint SIEMENS/dce_per_timepoint_no_timing PHILIPS/dce_per_timepoint
      PHILIPS/dce_per_timepoint_no_timing GE/dce_per_timepoint GE/dce_per_timepoint_no_timing SIEMENS/dce_4d
      GE/dce_4d_no_timing SIEMENS/t1_vfa GE/t1_vfa PHILIPS/t1_vfa SIEMENS/t1_post GE/fmri_epi GE/fmri_multiband
      GE/se_epi_fieldmap GE/dti_b0 GE/sc_colour_map GE/adc SIEMENS/dwi_calc_highb SIEMENS/t2_tra)
only=(--only "${fams[@]}"); [ "${FAMILIES:-}" = all ] && only=()
$SC families --labels $synth_labels --data $synth_roots --out "$work/families.json" --quiet --max-epochs 15 "${only[@]}" \
   --into-card SeqClassifier/SeqClassifierLib/model/assets/seqclassifier_default.json
echo "total wall time $(( $(date +%s) - t0 )) s" >&2
