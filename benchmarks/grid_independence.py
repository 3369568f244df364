"""Grid independence of the decision: a phantom cohort resampled to finer grids (CT trilinear, labels
nearest) must get the same fused decision as on its own grid, in both modes.

    python benchmarks/grid_independence.py --data COHORT --out benchmarks/results/grid_independence.json \
        [--models DIR] [--spacings 1.25 0.8] [--cases N]

The rules are applied on the segmenter's working grid (the reference grid), so the voxel counts behind
a decision do not grow with the input resolution. Records, per target spacing and mode, the share of
cases whose fused decision equals the native-grid one, and every case's tumour counts.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from s4c.data.cohort import read_manifest
from s4c.evaluation.evaluate import LOCATOR, onnx_predictors
from s4c.inference.pipeline import run_case
from s4c.io import load_canonical
from s4c.labels import MODES, PHASES, ROI_MARGIN_MM
from s4c.models import checkpoint_path, locator_path
from s4c.preprocessing import resample_image


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--models", type=Path, default=None)
    ap.add_argument("--spacings", type=float, nargs="+", default=[1.25, 0.8])
    ap.add_argument("--cases", type=int, default=None, help="first N cases of the manifest")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    args = ap.parse_args()
    ckpts = {p: checkpoint_path(p, args.models) for p in PHASES} | {LOCATOR: locator_path(args.models)}
    preds = onnx_predictors(ckpts, Path(tempfile.mkdtemp(prefix="s4c_onnx_")), threads=args.threads)
    locator = preds.pop(LOCATOR)
    entries = read_manifest(args.data)[: args.cases]
    rows = []
    t0 = time.perf_counter()
    for e in entries:
        vols = {p: load_canonical(e.path(Path(args.data), p)) for p in PHASES}
        row = {"case_id": e.case_id, "abnormal": e.abnormal}
        for target in [None, *args.spacings]:
            phases = {}
            for p, v in vols.items():
                if target is None:
                    phases[p] = (v.array, v.spacing)
                else:
                    sp = (target,) * 3
                    phases[p] = (np.rint(resample_image(v.array, v.spacing, sp)).astype(np.int16), sp)
            key = "native" if target is None else f"{target:g}mm"
            for mode in args.modes:
                fused, res = run_case(phases, preds, mode=mode, locator=locator)
                row[f"{key}_{mode}"] = {"fused": bool(fused), **{p: {"abnormal": r.decision.abnormal,
                                                                      "tumor_voxels": r.decision.tumor_voxels,
                                                                      "patches": r.patches}
                                                                   for p, r in res.items()}}
        rows.append(row)
        print(e.case_id, {k: v["fused"] for k, v in row.items() if isinstance(v, dict)}, flush=True)
        _write(args, rows, time.perf_counter() - t0)  # after every case, so a cut-short run keeps its cases
    print(json.dumps(_write(args, rows, time.perf_counter() - t0)["agreement"], indent=1))


def _write(args, rows: list[dict], seconds: float) -> dict:
    agreement = {}
    for target in args.spacings:
        for mode in args.modes:
            same = [r[f"{target:g}mm_{mode}"]["fused"] == r[f"native_{mode}"]["fused"] for r in rows]
            agreement[f"{target:g}mm_{mode}"] = {"agree": int(sum(same)), "cases": len(same),
                                                 "fraction": float(np.mean(same))}
    out = {"data": str(args.data), "models": str(args.models or "embedded default"), "spacings_mm": args.spacings,
           "roi_margin_mm": ROI_MARGIN_MM,
           "agreement": agreement, "seconds": seconds, "machine": platform.processor() or platform.machine(),
           "command": "python benchmarks/grid_independence.py " + " ".join(sys.argv[1:]), "cases": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()
