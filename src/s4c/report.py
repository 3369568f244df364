"""The JSON report of one phase's result, shared by the served answer (REPORT) and the written case.

Plain dicts and numbers only: the Python-backend stubs import this, and nothing here draws.
"""

from __future__ import annotations

import numpy as np

from s4c.checkpoint import ModelSpec
from s4c.grid import voxel_to_world
from s4c.inference.pipeline import PhaseResult


def phase_report(result: PhaseResult, affine: np.ndarray, spec: ModelSpec) -> dict:
    """JSON-ready summary of one phase: decision, counts, tumours (voxel and world: ``affine`` (4, 4) maps
    (i, j, k) of the input grid to world mm), mode and ROI (``mode``, ``roi_zyx`` on the input grid,
    ``patches``: segmenter windows run), timings, model."""
    d = result.decision.to_dict()
    for t in d["tumors"]:
        t["centroid_world_xyz_mm"] = list(voxel_to_world(affine, t["centroid_zyx"]))
    d.update(result.roi_report())
    d["timings_s"] = {k: round(v, 4) for k, v in result.timings.items()}
    d["model"] = {"width": spec.width, "phase": spec.phase, "trained": spec.trained,
                  "spacing": None if spec.spacing is None else list(spec.spacing),
                  "git_revision": spec.git_revision}
    return d
