"""Writing a case's results: one writer and one set of file names for the demo (served and in
process), ``s4c infer`` and ``s4c evaluate --write-cases``.

``out/<phase>_labels.nii.gz`` for each phase, on the input file's own grid and affine;
``out/report.json``; ``out/overlay.png``: axial, coronal and sagittal slices through each phase's
largest tumour (pancreas blue, tumour red, duct green).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from s4c.io import CanonicalVolume
from s4c.viz import render_tumour_views

#: The result files of a case (``LABELS_FILE.format(phase=...)``).
LABELS_FILE = "{phase}_labels.nii.gz"
REPORT_FILE = "report.json"
OVERLAY_FILE = "overlay.png"


def labels_file(phase: str) -> str:
    """The file name of a phase's labels."""
    return LABELS_FILE.format(phase=phase)


def write_results(out: str | Path, scans: Mapping[str, CanonicalVolume], labels: Mapping[str, np.ndarray],
                  report: Mapping) -> dict[str, Path]:
    """Write a case's results into ``out``; returns ``{"<phase>_labels", "report", "overlay"}`` paths.

    ``scans`` are each phase's volume as read (:func:`s4c.io.load_canonical`; a client
    :class:`s4c.serving.scans.Scan` passes its ``volume``); ``labels`` its labels on that canonical grid
    (what the server answers), written back on the file's grid and affine. ``report`` is
    ``{"abnormal", "phases": {phase: ...}, ...}``; each tumour gets ``centroid_zyx_input``, its centroid
    as an index of the input file.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = json.loads(json.dumps(report))  # a copy: the caller's dict is not changed
    paths: dict[str, Path] = {}
    for phase, scan in scans.items():
        paths[f"{phase}_labels"] = scan.save(out / labels_file(phase), np.asarray(labels[phase], dtype=np.uint8))
        rep = report["phases"][phase]
        rep["grid"] = ("tumour centroid_zyx is on the canonical RAS grid; centroid_zyx_input is the same point "
                       "as an index of the input file")
        for t in rep.get("tumors", []):
            t["centroid_zyx_input"] = [round(v, 3) for v in scan.source_index(t["centroid_zyx"])]
    paths["report"] = out / REPORT_FILE
    paths["report"].write_text(json.dumps(report, indent=2) + "\n")
    paths["overlay"] = render_tumour_views({p: (s.array, labels[p], s.spacing) for p, s in scans.items()},
                                           out / OVERLAY_FILE)
    return paths
