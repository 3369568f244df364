"""The demo: one generated dual-phase phantom case through the whole in-process S4C pipeline.

phantom -> NIfTI on disk -> load -> network -> sliding window -> vote -> classify -> fuse ->
labels NIfTI + report.json + overview.png.
"""

from __future__ import annotations

import time
from pathlib import Path

from s4c.data.phantom import generate_case
from s4c.inference.pipeline import run_case
from s4c.io import load_nifti, save_nifti
from s4c.labels import DEFAULT_STRIDE, PHASES
from s4c.models import load_predictors
from s4c.outputs import write_case
from s4c.postprocess import classify, fuse


def run_demo(out: str | Path, *, seed: int = 7, models: str | Path | None = None, stride: int = DEFAULT_STRIDE,
             batch_size: int = 8, shape=(96, 128, 128), spacing=(2.5, 2.5, 2.5), echo=print) -> dict:
    """Run the demo into ``out`` and return the report dict (also written to ``out/report.json``)."""
    out = Path(out)
    case = generate_case(seed, abnormal=True, shape=shape, spacing=spacing, case_id="demo")
    inputs = {}
    for phase in PHASES:
        inputs[phase] = save_nifti(out / "input" / f"{phase}.nii.gz", getattr(case, phase), case.affine)
        save_nifti(out / "input" / f"{phase}_label.nii.gz", getattr(case, f"{phase}_label"), case.affine)
    tumor = case.meta.get("tumor", {})
    echo(f"phantom case (seed {seed}): PNET in the {tumor.get('location', '?')}, "
         f"{tumor.get('diameter_mm', float('nan')):.0f} mm, pattern {tumor.get('pattern', '?')}, "
         f"duct {'yes' if case.meta.get('duct', {}).get('present') else 'no'}; written to {out / 'input'}")

    predictors = load_predictors(models, allow_untrained=True)
    untrained = [p for p, (_, spec) in predictors.items() if not spec.trained]
    if untrained:
        echo("WARNING: no trained model found for " + ", ".join(untrained) + "; using a randomly initialised "
             "network, so the network's labels and decision below are meaningless. The pipeline still runs "
             "end to end.")

    volumes = {p: load_nifti(path) for p, path in inputs.items()}
    t = time.perf_counter()
    abnormal, results = run_case({p: (v.array, v.spacing) for p, v in volumes.items()}, predictors,
                                 stride=stride, batch_size=batch_size)
    seconds = time.perf_counter() - t

    reference = {p: getattr(case, f"{p}_label") for p in PHASES}
    ref_decisions = {p: classify(lab, case.spacing) for p, lab in reference.items()}
    report_extra = {
        "input": {"kind": "phantom", "seed": seed, "shape_zyx": list(shape), "spacing_zyx": list(case.spacing)},
        "reference_rule": {"abnormal": fuse(*ref_decisions.values()),
                           **{p: d.to_dict() for p, d in ref_decisions.items()}},
        "seconds_total": round(seconds, 3), "stride": stride,
    }
    paths = write_case(out, abnormal, results,
                       {p: (v.array, v.affine, v.spacing) for p, v in volumes.items()},
                       {p: spec for p, (_, spec) in predictors.items()}, reference, report_extra)

    for p in PHASES:
        d, r = results[p].decision, ref_decisions[p]
        echo(f"{p:9s} network: abnormal={d.abnormal!s:5s} tumour={d.tumor_voxels:6d} duct={d.duct_voxels:6d} "
             f"| rule on reference labels: abnormal={r.abnormal!s:5s} tumour={r.tumor_voxels:6d} "
             f"duct={r.duct_voxels:6d}")
    echo(f"DECISION (either phase abnormal): {'ABNORMAL' if abnormal else 'normal'}"
         f"{'  [untrained network]' if untrained else ''}; reference labels give "
         f"{'ABNORMAL' if report_extra['reference_rule']['abnormal'] else 'normal'}")
    echo(f"pipeline time {seconds:.1f} s for both phases (stride {stride})")
    for name, path in paths.items():
        echo(f"  {name:16s} {path}")
    import json

    return json.loads(paths["report"].read_text())
