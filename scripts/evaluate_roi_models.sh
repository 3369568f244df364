#!/usr/bin/env bash
# Held-out evaluation of the embedded default models, roi and full mode, on a phantom cohort whose
# seed (44) no choice ever looked at; then the grid-independence study, the windows benchmark and the
# real-CT figure. Results go to benchmarks/results/default_model/ and benchmarks/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
S4C=.venv/bin/s4c
PY=.venv/bin/python
EVAL=${EVAL:-build/eval_roi_cohort}
[ -f "$EVAL/manifest.csv" ] || $S4C phantom --out "$EVAL" --normal 40 --abnormal 40 --seed 44
for mode in roi full; do
  $S4C evaluate --data "$EVAL" --mode "$mode" --out "build/eval_$mode" --threads 2 --no-progress
  mkdir -p "benchmarks/results/default_model/$mode"
  cp "build/eval_$mode"/{report.json,report.md,roc.png,cases.json} "benchmarks/results/default_model/$mode/"
done
VAL=${VAL:-build/val_cohort}
[ -f "$VAL/manifest.csv" ] || $S4C phantom --out "$VAL" --normal 20 --abnormal 20 --seed 3
$PY benchmarks/grid_independence.py --data "$VAL" --cases 20 --out benchmarks/results/grid_independence.json
$PY benchmarks/bench_roi.py --out benchmarks/results/roi_windows.json
$PY benchmarks/real_ct_dsc.py --ct ../shared/data/real-ct/example_ct_sm.nii.gz \
  --seg ../shared/data/real-ct/example_seg.nii.gz --out benchmarks/results/real_ct_dsc.json
