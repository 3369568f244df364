"""Choose the ROI margin from the locator's measured misses on a validation cohort.

    python scripts/choose_roi_margin.py --data VALIDATION_COHORT --locator default_locator.pt --out margins.json

Prints the worst recall of the reference pancreas set at each margin and the smallest margin at which
every case and phase reaches 99 % and 100 %.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from s4c.evaluation.locator import margin_study
from s4c.inference.predictor import TorchPredictor


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--locator", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--min-component-fraction", type=float, default=None,
                    help="also cover components above this share of the largest (default: largest only)")
    args = ap.parse_args()
    pred = TorchPredictor.from_checkpoint(args.locator, device="cpu")
    study = margin_study(args.data, pred, pred.spec, min_component_fraction=args.min_component_fraction)
    args.out.write_text(json.dumps(study, indent=1) + "\n")
    for m, w in zip(study["margins_mm"], study["worst_recall"], strict=True):
        print(f"margin {m:5.1f} mm: worst recall {w:.4f}")
    print({k: v for k, v in study.items() if k.startswith("margin_for") or k == "not_found"})


if __name__ == "__main__":
    main()
