"""How much margin the locator's box needs: its recall of the reference pancreas set against the
margin, per case and phase, on a labelled cohort. The default ROI margin is chosen from this on a
validation cohort (``scripts/choose_roi_margin.py``). Arrays are Z, Y, X.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from s4c.checkpoint import ModelSpec
from s4c.data.cohort import read_manifest
from s4c.inference.pipeline import RoiSettings, locate
from s4c.inference.roi import box_fraction, grow_mm, mm_to_box
from s4c.io import load_canonical
from s4c.labels import PHASES
from s4c.validation import as_label_volume

#: Margins tried, mm.
MARGINS_MM = tuple(float(m) for m in range(0, 41, 1))


def locator_recall_curve(ct: np.ndarray, spacing: Sequence[float], reference: np.ndarray,
                         predictor: Callable[[np.ndarray], np.ndarray], spec: ModelSpec, *,
                         margins_mm: Sequence[float] = MARGINS_MM, stride: int | None = None,
                         min_component_fraction: float | None = None) -> dict:
    """The locator's ROI recall of ``reference > 0`` for each margin.

    Returns ``{"found": bool, "recall": [per margin]}``; ``recall`` is all 1.0 when the locator finds
    nothing, since that phase then falls back to the whole volume.
    """
    settings = RoiSettings(margin_mm=0.0, min_component_fraction=min_component_fraction,
                           **({} if stride is None else {"stride": stride}))
    box_mm, _ = locate(ct, spacing, predictor, spec, settings=settings)
    mask = reference > 0
    if box_mm is None:
        return {"found": False, "recall": [1.0] * len(margins_mm)}
    extent = np.asarray(ct.shape, dtype=np.float64) * np.asarray(spacing)
    recall = [box_fraction(mask, mm_to_box(grow_mm(box_mm, m, extent), spacing, ct.shape)) for m in margins_mm]
    return {"found": True, "recall": recall}


def margin_study(data: str | Path, predictor: Callable[[np.ndarray], np.ndarray], spec: ModelSpec, *,
                 margins_mm: Sequence[float] = MARGINS_MM, min_recall: float = 0.99,
                 min_component_fraction: float | None = None) -> dict:
    """:func:`locator_recall_curve` over every case and phase of a labelled cohort.

    Returns per-case rows, the worst recall at each margin, and the smallest margin at which every
    case reaches ``min_recall`` and 1.0 (None where no margin tried does).
    """
    root = Path(data)
    rows = []
    for entry in read_manifest(root):
        for phase in PHASES:
            vol = load_canonical(entry.path(root, phase))
            ref = as_label_volume(load_canonical(entry.path(root, f"{phase}_label")).array, f"{entry.case_id} {phase}")
            r = locator_recall_curve(vol.array, vol.spacing, ref, predictor, spec, margins_mm=margins_mm,
                                     min_component_fraction=min_component_fraction)
            rows.append({"case_id": entry.case_id, "phase": phase, **r})
    worst = [min(r["recall"][i] for r in rows) for i in range(len(margins_mm))]

    def smallest(level: float) -> float | None:
        return next((m for m, w in zip(margins_mm, worst, strict=True) if w >= level), None)

    return {"margins_mm": list(margins_mm), "worst_recall": worst, "cases": rows,
            "not_found": sum(not r["found"] for r in rows),
            f"margin_for_recall_{min_recall}": smallest(min_recall), "margin_for_recall_1.0": smallest(1.0)}

