"""Writing a case's results: label NIfTI files on each input grid, a JSON report and a PNG overview."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from s4c.checkpoint import ModelSpec
from s4c.inference.pipeline import PhaseResult
from s4c.io import save_nifti
from s4c.report import phase_report
from s4c.viz import pick_slice, render_panels


def write_case(out_dir: str | Path, abnormal: bool, results: Mapping[str, PhaseResult],
               images: Mapping[str, tuple[np.ndarray, np.ndarray, tuple[float, float, float]]],
               specs: Mapping[str, ModelSpec], reference: Mapping[str, np.ndarray] | None = None,
               extra: dict | None = None) -> dict[str, Path]:
    """Write ``labels_<phase>.nii.gz``, ``report.json`` and ``overview.png`` into ``out_dir``.

    ``images`` maps phase -> (HU array (Z, Y, X), affine, spacing). ``reference`` optionally maps
    phase -> ground-truth labels, shown beside the prediction in the PNG.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    report: dict = {"abnormal": bool(abnormal), "phases": {}}
    panels = []
    for phase, res in results.items():
        hu, affine, _ = images[phase]
        paths[f"labels_{phase}"] = save_nifti(out / f"labels_{phase}.nii.gz", res.decision.labels, affine)
        report["phases"][phase] = phase_report(res, affine, specs[phase])
        ref = None if reference is None else reference.get(phase)
        z = pick_slice(res.decision.labels, ref)
        panels.append((f"{phase} CT z={z}", hu[z], None))
        if ref is not None:
            panels.append((f"{phase} reference", hu[z], ref[z]))
        panels.append((f"{phase} S4C", hu[z], res.decision.labels[z]))
    if extra:
        report.update(extra)
    first = next(iter(images.values()))
    paths["overview"] = render_panels(panels, out / "overview.png", spacing_yx=first[2][1:],
                                      affine=first[1])
    paths["report"] = out / "report.json"
    paths["report"].write_text(json.dumps(report, indent=2) + "\n")
    return paths
