"""What the ``s4c`` and ``s4c_dual_phase`` Triton models do, as library code over plain arrays.

``model.py`` only turns request tensors into arrays, awaits one of these functions and turns the
result (or the typed error) into one response. Arrays are Z, Y, X; spacings (Z, Y, X) mm.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import numpy as np

from s4c import __version__, contract
from s4c.grid import affine_from_spacing
from s4c.inference.pipeline import PhaseResult, RoiSettings, run_phase_async
from s4c.inference.sliding_window import BatchTimeout, InferenceCancelled
from s4c.labels import PHASES
from s4c.postprocess import fuse
from s4c.report import phase_report
from s4c.repository.params import ServingParams
from s4c.repository.segmenters import SEGMENTERS_FILE, SegmenterInfo
from s4c.serving.drain import ServerDraining
from s4c.serving.errors import BlsError
from s4c.serving.inputs import InvalidInput, check_affine_input, check_ct, check_spacing_input, decode_phase

#: The former name (every BLS child, not only segmenters, answers through it).
SegmenterError = BlsError

#: Exceptions a request can end with, and the Triton error code each maps to (a :class:`BlsError`
#: carries its own).
ERROR_CODES = {InvalidInput: "INVALID_ARG", InferenceCancelled: "CANCELLED", BatchTimeout: "UNAVAILABLE",
               ServerDraining: "UNAVAILABLE"}


def error_code(exc: BaseException) -> str | None:
    """The Triton error code name for a known request error, else None (an internal error)."""
    if isinstance(exc, BlsError):
        return exc.code
    for kind, code in ERROR_CODES.items():
        if isinstance(exc, kind):
            return code
    return None


@dataclass(frozen=True)
class PhaseOutput:
    """One phase's answer: the filtered labels, the decision and the REPORT dict."""

    result: PhaseResult
    report: dict

    def tensors(self) -> dict[str, np.ndarray]:
        """Output tensors of the ``s4c`` model, by name."""
        d = self.result.decision
        return {
            contract.LABELS: d.labels,
            contract.ABNORMAL: np.array([d.abnormal], dtype=bool),
            contract.TUMOR_VOXELS: np.array([d.tumor_voxels], dtype=np.int64),
            contract.DUCT_VOXELS: np.array([d.duct_voxels], dtype=np.int64),
            contract.REPORT: encode_report(self.report),
        }


def encode_report(report: dict) -> np.ndarray:
    return np.array([json.dumps(report, allow_nan=False).encode("utf-8")], dtype=np.object_)


def _described(models: Mapping[str, SegmenterInfo], name: str, what: str, role: str) -> SegmenterInfo:
    """The entry ``name`` of ``segmenters.json``, which must hold a model of ``role``."""
    if name not in models:
        raise ValueError(f"{what} {name!r} is not described in {SEGMENTERS_FILE} "
                         f"(has: {', '.join(sorted(models)) or 'nothing'})")
    info = models[name]
    if info.spec.role != role:
        raise ValueError(f"{what} {name!r} holds a {info.spec.role} model, not a {role}")
    return info


class PhasePipeline:
    """The ``s4c`` model's work: check the request, run the sliding window over the phase's
    segmenter (an async predictor per phase), vote, filter, classify and report. In ``roi`` mode
    the ``locator`` predictor first finds the pancreas and the segmenter runs only in that box."""

    def __init__(self, params: ServingParams, segmenters: Mapping[str, SegmenterInfo],
                 predictors: Mapping[str, Callable[[np.ndarray], Awaitable[object]]],
                 voter_factory: Callable[..., object] | None = None,
                 locator: Callable[[np.ndarray], Awaitable[object]] | None = None) -> None:
        self.params = params
        self.infos: dict[str, SegmenterInfo] = {}
        for phase in PHASES:
            info = _described(segmenters, params.segmenter(phase), f"{phase} segmenter", "segmenter")
            if info.spec.phase != phase:
                raise ValueError(f"segmenter {info.name!r} holds a {info.spec.phase} model, configured for {phase}")
            self.infos[phase] = info
        self.locator_info: SegmenterInfo | None = None
        self.locator = None
        if params.mode == "roi":
            self.locator_info = _described(segmenters, params.locator, "roi mode locator", "locator")
            if locator is None:
                raise ValueError(f"roi mode needs a predictor for the locator model {params.locator!r}")
            self.locator = (locator, self.locator_info.spec)
        self.roi = RoiSettings(margin_mm=params.roi_margin_mm, stride=params.locator_stride,
                               batch_size=params.batch_size)
        self.predictors = dict(predictors)
        self.voter_factory = voter_factory

    def check(self, ct: np.ndarray | None, spacing: np.ndarray | None, phase: np.ndarray | None,
              affine: np.ndarray | None = None) -> tuple[np.ndarray, tuple, str, np.ndarray | None]:
        """Validate request arrays; raises :class:`InvalidInput`."""
        return (check_ct(ct, self.params.max_voxels, contract.CT), check_spacing_input(spacing, contract.SPACING),
                decode_phase(phase, contract.PHASE), check_affine_input(affine, contract.AFFINE))

    async def run(self, ct: np.ndarray | None, spacing: np.ndarray | None, phase: np.ndarray | None,
                  affine: np.ndarray | None = None, *, should_stop: Callable[[], bool] | None = None) -> PhaseOutput:
        t0 = time.perf_counter()
        ct, spacing_t, phase_name, affine = self.check(ct, spacing, phase, affine)
        p = self.params
        info = self.infos[phase_name]
        result = await run_phase_async(
            ct, spacing_t, self.predictors[phase_name], info.spec, mode=p.mode, locator=self.locator, roi=self.roi,
            stride=p.stride, batch_size=p.batch_size,
            window_kwargs={"in_flight": p.in_flight, "should_stop": should_stop, "batch_timeout_s": p.batch_timeout_s,
                           "voter_factory": self.voter_factory},
            **p.rule_kwargs())
        world = affine is not None
        report = phase_report(result, affine if world else affine_from_spacing(spacing_t), info.spec)
        report["world_frame"] = "affine" if world else "spacing_only"  # no AFFINE sent: origin at voxel 0
        report["input"] = {"shape_zyx": list(ct.shape), "spacing_zyx_mm": list(spacing_t)}
        report["stride"] = p.stride
        report["segmenter"] = info.to_dict()
        if self.locator_info is not None:
            report["locator"] = {**self.locator_info.to_dict(), "stride": self.roi.stride,
                                 "margin_mm": self.roi.margin_mm}
        report["server"] = {"s4c_version": __version__, "pipeline_model": contract.PIPELINE_MODEL}
        report["timings_s"]["total_s"] = round(time.perf_counter() - t0, 4)
        report["phase"] = phase_name
        return PhaseOutput(result, report)


def fuse_reports(reports: Mapping[str, dict]) -> dict:
    """The dual-phase REPORT: each phase's report and the OR of their decisions."""
    return {"abnormal": fuse(*(bool(r["abnormal"]) for r in reports.values())), "rule": "abnormal if either phase is",
            "phases": dict(reports)}


def check_dual_inputs(arrays: Mapping[str, np.ndarray | None], max_voxels: int
                      ) -> dict[str, tuple[np.ndarray, tuple, np.ndarray | None]]:
    """Validate the dual-phase model's inputs (by tensor name); returns phase -> (ct, spacing, affine)."""
    out = {}
    for phase, (ct_name, sp_name, aff_name) in contract.DUAL_INPUTS.items():
        out[phase] = (check_ct(arrays.get(ct_name), max_voxels, ct_name),
                      check_spacing_input(arrays.get(sp_name), sp_name),
                      check_affine_input(arrays.get(aff_name), aff_name))
    return out
