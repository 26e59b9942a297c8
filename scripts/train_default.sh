#!/usr/bin/env bash
# Train the shipped default model and measure its accuracy on the real studies.
#   scripts/train_default.sh [WORKDIR]
# Environment: PROSTATEX (default ../shared/data/prostatex), STUDIES (synthetic
# studies, default 48), JOBS (parallel synth writers, default nproc), DEVICE
# (auto), SC (command to run seqclassifier, default .venv/bin/seqclassifier),
# SKIP_DEFAULT=1 to only measure accuracy, SKIP_LOSO=1 to skip the two leave-one-real-study-out models.
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

# PARALLEL=1 runs the four trainings at once (a GPU machine with many cores).
bg() { if [ "${PARALLEL:-0}" = 1 ]; then "$@" & else "$@"; fi; }

# 1) the default model: all synthetic studies + both real studies, 4 folds by patient
if [ "${SKIP_DEFAULT:-0}" != 1 ]; then
  mkdir -p SeqClassifier/SeqClassifierLib/model/assets
  cmd="STUDIES=$STUDIES JOBS=$JOBS DEVICE=$DEVICE EPOCHS=$EPOCHS PATIENCE=${PATIENCE:-8} OVERSAMPLE=${OVERSAMPLE:-8} scripts/train_default.sh  # synth: seqclassifier synth <synth>/partJ --seed 1000+100J --kinds prostate neuro --prostate-extras --realism; then: seqclassifier train --labels <synth>/part*/labels.csv prostatex/labels.csv --data <synth>/part* prostatex --out SeqClassifier/SeqClassifierLib/model/assets/seqclassifier_default.json --folds 4 ${common[*]}"
  bg $SC train --labels $synth_labels "$PROSTATEX/labels.csv" --data $synth_roots "$PROSTATEX" \
     --oversample "$PROSTATEX=${OVERSAMPLE:-8}" \
     --out SeqClassifier/SeqClassifierLib/model/assets/seqclassifier_default.json --folds 4 "${common[@]}" --command-line "$cmd"
fi

# 1b) held-out folds of the default model: distance thresholds, and out-of-fold scores of the real
#     series (each predicted by the fold model that never saw its patient) apart from the synthetic ones
if [ "${SKIP_DEFAULT:-0}" != 1 ]; then
  $SC held-out --model SeqClassifier/SeqClassifierLib/model/assets/seqclassifier_default.json \
     --labels $synth_labels "$PROSTATEX/labels.csv" --data $synth_roots "$PROSTATEX" --quiet > "$work/held_out.json"
fi

# 2) leave-one-study-out on the real studies (synthetic + the other real study)
[ "${SKIP_LOSO:-0}" = 1 ] || for held in ProstateX-0000 ProstateX-0001; do
  other=$([ "$held" = ProstateX-0000 ] && echo ProstateX-0001 || echo ProstateX-0000)
  bg $SC train --labels $synth_labels "$PROSTATEX/labels.csv" --data $synth_roots "$PROSTATEX/$other" \
     --out "$work/loso_without_$held.json" --folds 4 "${common[@]}"
done
# 3) synthetic data only (SKIP_SYNTH_ONLY=1 skips it: the held-out folds of 1b already score real series unseen)
[ "${SKIP_SYNTH_ONLY:-0}" = 1 ] || bg $SC train --labels $synth_labels --data $synth_roots --out "$work/synthetic_only.json" --folds 4 "${common[@]}"
wait

echo "== leave-one-study-out =="
[ "${SKIP_LOSO:-0}" = 1 ] || for held in ProstateX-0000 ProstateX-0001; do
  $SC evaluate --models "$work/loso_without_$held.json" --labels "$PROSTATEX/labels.csv" \
     --data "$PROSTATEX/$held" --name "$held" --out "$work/report_loso_$held" --device "$DEVICE"
done
[ "${SKIP_SYNTH_ONLY:-0}" = 1 ] || echo "== synthetic only, scored on the real studies =="
[ "${SKIP_SYNTH_ONLY:-0}" = 1 ] || $SC evaluate --models "$work/synthetic_only.json" --labels "$PROSTATEX/labels.csv" --data "$PROSTATEX" \
   --name prostatex --out "$work/report_synthetic_only" --device "$DEVICE"
echo "== default model on the vendor samples (brain, never trained on) =="
$SC evaluate --models SeqClassifier/SeqClassifierLib/model/assets/seqclassifier_default.json \
   --labels "$VENDORS/labels.csv" --data "$VENDORS" --name vendors --out "$work/report_vendors" --device "$DEVICE"
echo "== shortcut audit of the default model (real + synthetic series) =="
$SC audit --models SeqClassifier/SeqClassifierLib/model/assets/seqclassifier_default.json \
   --labels $synth_labels "$PROSTATEX/labels.csv" --data $synth_roots "$PROSTATEX" --out "$work/audit.json" --into-card || true
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
