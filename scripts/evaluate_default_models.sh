#!/usr/bin/env bash
# Held-out evaluation of the embedded default models on a fresh phantom cohort (seed 2, not the
# training seed 1), then the FP16-graph check. Results go to benchmarks/results/default_model/.
set -euo pipefail
cd "$(dirname "$0")/.."
S4C=.venv/bin/s4c
[ -f build/eval_cohort/manifest.csv ] || $S4C phantom --out build/eval_cohort --normal 40 --abnormal 40 --seed 2
$S4C evaluate --data build/eval_cohort --out build/eval_default --threads 2 --no-progress
mkdir -p benchmarks/results/default_model
cp build/eval_default/report.json build/eval_default/report.md build/eval_default/roc.png \
   build/eval_default/cases.json benchmarks/results/default_model/
.venv/bin/python export/fp16_onnx_check.py --data build/eval_cohort --cases 4
