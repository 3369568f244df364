"""Writing a case's results: one writer and one set of file names for the demo (served and in
process), ``s4c infer`` and ``s4c evaluate --write-cases``.

``out/<phase>_labels.nii.gz`` for each phase, on the input file's own grid and affine (for a DICOM
series, the grid dcm2niix writes for it); ``out/<phase>_seg.dcm``, a DICOM Segmentation of the
phase's labels, when that phase's input was a DICOM series; ``out/report.json``;
``out/overlay.png``: axial, coronal and sagittal slices through each phase's largest tumour
(pancreas blue, tumour red, duct green).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from s4c import __version__
from s4c.dicom import write_segmentation
from s4c.io import CanonicalVolume
from s4c.viz import render_tumour_views

#: The result files of a case (``LABELS_FILE.format(phase=...)``).
LABELS_FILE = "{phase}_labels.nii.gz"
SEG_FILE = "{phase}_seg.dcm"
REPORT_FILE = "report.json"
OVERLAY_FILE = "overlay.png"


def labels_file(phase: str) -> str:
    """The file name of a phase's labels."""
    return LABELS_FILE.format(phase=phase)


def write_results(out: str | Path, scans: Mapping[str, CanonicalVolume], labels: Mapping[str, np.ndarray],
                  report: Mapping) -> dict[str, Path]:
    """Write a case's results into ``out``; returns ``{"<phase>_labels", "report", "overlay"}`` paths,
    and ``"<phase>_seg"`` for a phase read from a DICOM series.

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
        phase_labels = np.asarray(labels[phase], dtype=np.uint8)
        paths[f"{phase}_labels"] = scan.save(out / labels_file(phase), phase_labels)
        rep = report["phases"][phase]
        if scan.dicom is not None:
            sha = str(rep.get("segmenter", {}).get("onnx_sha256", ""))
            paths[f"{phase}_seg"] = write_segmentation(out / SEG_FILE.format(phase=phase), scan.dicom,
                                                       scan.to_source(phase_labels), version=__version__,
                                                       model_sha256=sha)
            # Identifies the series, never the patient: no name, ID, birth date, accession or institution.
            rep["source"] = {"format": "dicom", "series_instance_uid": scan.dicom.series_uid,
                             "instances": len(scan.dicom.files), "notes": list(scan.dicom.notes)}
        else:
            rep["source"] = {"format": "nifti"}
        rep["grid"] = ("tumour centroid_zyx is on the canonical RAS grid; centroid_zyx_input is the same point "
                       "as an index of the input file")
        for t in rep.get("tumors", []):
            t["centroid_zyx_input"] = [round(v, 3) for v in scan.source_index(t["centroid_zyx"])]
    paths["report"] = out / REPORT_FILE
    paths["report"].write_text(json.dumps(report, indent=2) + "\n")
    paths["overlay"] = render_tumour_views({p: (s.array, labels[p], s.spacing) for p, s in scans.items()},
                                           out / OVERLAY_FILE)
    return paths
