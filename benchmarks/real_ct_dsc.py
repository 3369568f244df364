"""Pancreas DSC of the default locator and segmenters on the shared real CT (a figure, not a target).

    python benchmarks/real_ct_dsc.py --ct ../shared/data/real-ct/example_ct_sm.nii.gz \
        --seg ../shared/data/real-ct/example_seg.nii.gz --out benchmarks/results/real_ct_dsc.json

The CT is unenhanced (native phase), 3 mm, and has no PNET; its reference pancreas is label 7 of
TotalSegmentator's class map. The locator's DSC is of its labels mapped back to the CT's grid; each
segmenter's is of its pancreas set in full mode and in roi mode.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from s4c.evaluation.metrics import dsc
from s4c.inference.pipeline import run_phase
from s4c.inference.predictor import load_locator, load_predictors
from s4c.inference.sliding_window import sliding_window_inference
from s4c.io import load_nifti
from s4c.labels import LOCATOR_STRIDE, PHASES
from s4c.preprocessing import labels_to_grid, resample_image

PANCREAS_LABEL = 7


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ct", required=True, type=Path)
    ap.add_argument("--seg", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--models", type=Path, default=None)
    args = ap.parse_args()
    ct, seg = load_nifti(args.ct), load_nifti(args.seg)
    ref = seg.array == PANCREAS_LABEL
    loc_pred, loc_spec = load_locator(args.models, device="cpu")
    work = resample_image(ct.array, ct.spacing, loc_spec.spacing)
    loc = sliding_window_inference(work, loc_pred, stride=LOCATOR_STRIDE, num_classes=2,
                                   pad_value=loc_spec.normalization.hu_min)
    loc_in = labels_to_grid(loc, loc_spec.spacing, ct.array.shape, ct.spacing)
    out = {"ct": args.ct.name, "reference": f"label {PANCREAS_LABEL} of {args.seg.name}",
           "reference_voxels": int(ref.sum()), "locator_dsc": dsc(loc_in > 0, ref), "segmenter_dsc": {}}
    preds = load_predictors(args.models, device="cpu")
    for phase in PHASES:
        pred, spec = preds[phase]
        for mode in ("full", "roi"):
            res = run_phase(ct.array, ct.spacing, pred, spec, mode=mode, locator=(loc_pred, loc_spec))
            out["segmenter_dsc"][f"{phase}_{mode}"] = dsc(res.raw_labels > 0, ref)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
