#!/usr/bin/env bash
# Second stage of the embedded default models (after scripts/train_default_models.sh): warm-started
# runs with a heavier tumour weight (1:5:20:10). The first-stage arterial model had collapsed to
# background, so its second stage starts from the first-stage venous weights (same architecture;
# the pancreas features transfer, the arterial enhancement is learnt in this stage). Same phantom
# cohort, width 8, batch 4, one thread per run. See MODEL_CARD.md.
set -euo pipefail
cd "$(dirname "$0")/.."
S4C=.venv/bin/s4c
mkdir -p build/runs
$S4C train --data build/train_cohort --phase arterial --out build/runs/ft_arterial --init src/s4c/models/default_venous.pt \
  --iterations "${ITER_ARTERIAL:-1500}" --batch-size 4 --width 8 --seed 1 --threads 1 --checkpoint-every 50 \
  --no-progress --class-weights 1 5 20 10 > build/runs/ft_arterial.log 2>&1 &
$S4C train --data build/train_cohort --phase venous --out build/runs/ft_venous --init src/s4c/models/default_venous.pt \
  --iterations "${ITER_VENOUS:-1000}" --batch-size 4 --width 8 --seed 2 --threads 1 --checkpoint-every 50 \
  --no-progress --class-weights 1 5 20 10 > build/runs/ft_venous.log 2>&1 &
wait
for phase in arterial venous; do
  cp "build/runs/ft_$phase/model.pt" "src/s4c/models/default_$phase.pt"
done
echo "default models updated"
