"""Segmenter windows and seconds per case, roi mode against full mode, with the default models.

    python benchmarks/bench_roi.py --out benchmarks/results/roi_windows.json

Two inputs, both phases each, through the in-process pipeline (ONNX Runtime on the CPU, the graphs
`s4c evaluate` uses):
* a phantom case on the phantoms' own grid (96 x 128 x 128 at 2.5 mm);
* a clinical-size grid: the same generator sampled at 200 x 512 x 512 voxels of 1.0 x 0.8 x 0.8 mm
  (no labels needed: the figure is the number of windows the segmenter runs).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from s4c.data.phantom import generate_case
from s4c.evaluation.evaluate import LOCATOR, onnx_predictors
from s4c.inference.pipeline import run_case
from s4c.labels import MODES, PHASES
from s4c.models import checkpoint_path, locator_path

INPUTS = {"phantom_2.5mm": ((96, 128, 128), (2.5, 2.5, 2.5)),
          "clinical_512x512x200": ((200, 512, 512), (1.0, 0.8, 0.8))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--models", type=Path, default=None)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    ckpts = {p: checkpoint_path(p, args.models) for p in PHASES} | {LOCATOR: locator_path(args.models)}
    preds = onnx_predictors(ckpts, Path(tempfile.mkdtemp(prefix="s4c_onnx_")), threads=args.threads)
    locator = preds.pop(LOCATOR)
    results = {}
    for name, (shape, spacing) in INPUTS.items():
        case = generate_case(args.seed, abnormal=True, shape=shape, spacing=spacing, case_id=name)
        phases = {p: (getattr(case, p), spacing) for p in PHASES}
        row = {"shape_zyx": list(shape), "spacing_zyx_mm": list(spacing)}
        for mode in MODES:
            seconds = []
            for _ in range(args.repeats):
                t = time.perf_counter()
                fused, res = run_case(phases, preds, mode=mode, locator=locator)
                seconds.append(time.perf_counter() - t)
            row[mode] = {"seconds_dual_phase": float(np.median(seconds)), "fused_abnormal": bool(fused),
                         **{p: {"patches": r.patches, "locator_patches": r.locator_patches,
                                "roi_zyx": r.roi_report()["roi_zyx"], "roi_fallback": r.roi_fallback,
                                "tumor_voxels": r.decision.tumor_voxels} for p, r in res.items()}}
        row["windows_ratio_full_over_roi"] = {p: row["full"][p]["patches"] / max(1, row["roi"][p]["patches"])
                                              for p in PHASES}
        results[name] = row
        print(name, json.dumps(row), flush=True)
    import onnxruntime
    import torch

    out = {"results": results, "machine": {"processor": platform.processor() or platform.machine(),
                                           "cpus_used": args.threads, "python": platform.python_version(),
                                           "onnxruntime": onnxruntime.__version__, "torch": torch.__version__},
           "command": f"python benchmarks/bench_roi.py --out {args.out}"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
