#!/usr/bin/env bash
# The committed comparison (benchmarks/results/comparison/): S4C, 3D U-Net, V-Net and the section 2.3
# classifier trained alike on one phantom cohort and evaluated by `s4c compare` on another.
#
#   TRAIN=cohort OUT=run_folder TEST=held_out_cohort bash benchmarks/run_comparison.sh
#
# On 2 cores each phase's training runs in its own process, one thread each; `s4c compare` then finds
# every run finished (run folders resume, and a finished one is reused) and evaluates. The training
# commands are the ones `s4c compare` itself would run with the flags at the end. SIGTERM to a training
# checkpoints it and ends the chain (it exits 143); the same command resumes.
set -euo pipefail
: "${TRAIN:?cohort to train on}" "${TEST:?held-out cohort}" "${OUT:?output folder}"
ITS=${ITS:-600}          # every segmenter: iterations of the roi preset (batch 4)
CLF_ITS=${CLF_ITS:-2000} # the classifier (batch 1; the paper: 20,000)
# Every segmenter's patch mix (the roi preset's --lesion-fraction / --normal-fraction); empty: the preset's.
MIX=()
[ -n "${LESION:-}" ] && MIX+=(--lesion-fraction "$LESION")
[ -n "${NORMAL:-}" ] && MIX+=(--normal-fraction "$NORMAL")
S4C=${S4C:-.venv/bin/s4c}
mkdir -p "$OUT"

chain() {
  local phase=$1 arch width
  for arch in s4c unet3d vnet; do
    width=8; [ "$arch" = vnet ] && width=4  # V-Net's 5^3 kernels: half the width for a like cost per step
    "$S4C" train --preset roi --architecture "$arch" --width "$width" --data "$TRAIN" --phase "$phase" \
      --out "$OUT/train/$arch/$phase" --iterations "$ITS" "${MIX[@]}" --threads 1 --no-progress
  done
  "$S4C" train --preset classifier --init "$OUT/train/s4c/$phase/model.pt" --data "$TRAIN" --phase "$phase" \
    --out "$OUT/train/classifier/$phase" --iterations "$CLF_ITS" --threads 1 --no-progress
}

chain arterial > "$OUT/train_arterial.log" 2>&1 &
a=$!
chain venous > "$OUT/train_venous.log" 2>&1 &
v=$!
wait "$a"
wait "$v"
"$S4C" compare --data "$TRAIN" --test "$TEST" --out "$OUT" --iterations "$ITS" --width 8 --widths vnet=4 \
  --classifier-iterations "$CLF_ITS" "${MIX[@]}" --threads 2 --no-progress
