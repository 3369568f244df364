#!/usr/bin/env bash
# Second and third stages of the embedded arterial model (after scripts/train_default_models.sh); the
# embedded venous model is the first-stage one. See MODEL_CARD.md.
#
# Stage 2: the first-stage arterial model had collapsed to background, so this starts from the
# first-stage venous weights (same architecture; the pancreas features transfer) with a heavy tumour
# weight (1:5:20:10). It finds tumours but over-calls them on normal phantoms.
# Stage 3: two short warm-started runs at lr 0.005 with lighter weights, 1:5:5:5 and 1:2:2:2. The one
# kept was chosen on a separate validation cohort (seed 3, 10 + 10 cases; never the evaluation cohort):
# 1:2:2:2 found 7/10 tumours with 2/10 false calls, 1:5:5:5 7/10 with 5/10.
set -euo pipefail
cd "$(dirname "$0")/.."
S4C=.venv/bin/s4c
COMMON=(--data build/train_cohort --phase arterial --batch-size 4 --width 8 --threads 1 --checkpoint-every 50 --no-progress)
mkdir -p build/runs
[ -f build/val_cohort/manifest.csv ] || $S4C phantom --out build/val_cohort --normal 10 --abnormal 10 --seed 3
$S4C train "${COMMON[@]}" --out build/runs/ft_arterial --init build/runs/default_venous/model.pt \
  --iterations 1500 --seed 1 --class-weights 1 5 20 10 > build/runs/ft_arterial.log 2>&1
$S4C train "${COMMON[@]}" --out build/runs/ft2_arterial_w5 --init build/runs/ft_arterial/model.pt \
  --iterations 600 --seed 3 --lr 0.005 --class-weights 1 5 5 5 > build/runs/ft2_arterial_w5.log 2>&1 &
$S4C train "${COMMON[@]}" --out build/runs/ft2_arterial_w2 --init build/runs/ft_arterial/model.pt \
  --iterations 600 --seed 3 --lr 0.005 --class-weights 1 2 2 2 > build/runs/ft2_arterial_w2.log 2>&1 &
wait
cp build/runs/ft2_arterial_w2/model.pt src/s4c/models/default_arterial.pt
echo "default arterial model updated"
