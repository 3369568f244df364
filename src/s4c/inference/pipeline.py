"""The in-process S4C pipeline for one phase and for a dual-phase case.

Two modes (:data:`s4c.labels.MODES`):

* ``full``, the paper's: resample to the segmenter's working spacing, sliding window + vote over the
  whole volume.
* ``roi``, coarse-to-fine (the default): a locator segments the pancreas set at its own coarse
  spacing; the segmenter's sliding window then runs only inside the box of the locator's largest
  component plus a margin in mm (:mod:`s4c.inference.roi`); outside it every voxel is background.
  When the locator finds nothing the phase falls back to the whole volume and says so.

Either way the component filter and the voxel-count rule are applied on the segmenter's working grid,
the reference grid, so the decision does not depend on the input grid's voxel size; the filtered
labels are then mapped back onto the input grid (nearest neighbour). Arrays are Z, Y, X; spacings
(Z, Y, X) mm.

One implementation serves both drivers: :func:`run_phase_async` runs over async predictors (the
Triton model's BLS calls), and :func:`run_phase` runs the same code over plain callables.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from s4c.checkpoint import ModelSpec
from s4c.inference.roi import (
    Box,
    MmBox,
    box_slices,
    box_to_mm,
    expand_to_window,
    grow_mm,
    largest_component_box,
    mask_outside,
    mm_to_box,
)
from s4c.inference.sliding_window import AsyncPredictor, sliding_window_inference_async
from s4c.inference.tiling import padded_shape, window_origins
from s4c.labels import DEFAULT_STRIDE, KEEP_RATIO, LOCATOR_STRIDE, MODES, PATCH_SIZE, ROI_MARGIN_MM
from s4c.postprocess import Decision, TumorComponent, classify, fuse
from s4c.preprocessing import labels_to_grid, needs_resampling, resample_image
from s4c.validation import check_spacing, check_volume


@dataclass(frozen=True)
class PhaseResult:
    """One phase's outcome.

    ``decision.labels`` are the filtered labels on the input grid; its counts were made on the
    reference grid (``reference_spacing``). ``raw_labels`` are the voted, unfiltered labels on the
    input grid. ``roi_zyx`` is the ROI on the input grid (None in ``full`` mode or after a fall-back),
    ``patches`` the segmenter windows run, ``locator_patches`` the locator's.
    """

    phase: str
    decision: Decision
    raw_labels: np.ndarray = field(repr=False)
    timings: dict
    mode: str = "full"
    roi_zyx: Box | None = None
    roi_fallback: bool = False
    patches: int = 0
    locator_patches: int = 0
    reference_spacing: tuple[float, float, float] | None = None

    def roi_report(self) -> dict:
        """The mode, ROI and window counts as the report states them."""
        return {"mode": self.mode, "roi_zyx": None if self.roi_zyx is None else [list(b) for b in self.roi_zyx],
                "roi_fallback": self.roi_fallback, "patches": self.patches, "locator_patches": self.locator_patches}


@dataclass(frozen=True)
class RoiSettings:
    """How ``roi`` mode places its box: margin in mm, the locator's own stride and batch, and the
    fewest segmenter windows per axis (the box is grown, about its centre, to
    ``64 + (min_windows - 1) * stride`` voxels where it is smaller, so voxels still get a vote)."""

    margin_mm: float = ROI_MARGIN_MM
    stride: int = LOCATOR_STRIDE
    batch_size: int = 4
    min_windows: int = 1
    #: None: the box of the locator's largest component only. A fraction: also every component with
    #: more than that share of the largest one's voxels (default: the paper's 20 % keep ratio, since a
    #: coarse locator can split a gland in two).
    min_component_fraction: float | None = KEEP_RATIO

    def __post_init__(self) -> None:
        if not (isinstance(self.margin_mm, (int, float)) and math.isfinite(self.margin_mm) and self.margin_mm >= 0):
            raise ValueError(f"ROI margin must be a finite number of mm >= 0, got {self.margin_mm!r}")


def _as_async(predictor: Callable) -> AsyncPredictor:
    async def call(batch: np.ndarray):
        return predictor(batch)

    return call


def window_count(shape: Sequence[int], stride: int, window: int = PATCH_SIZE) -> int:
    """How many windows the sliding window runs over a volume of ``shape``."""
    return len(window_origins(padded_shape(shape, window), window, stride))


def _working_grid(ct: np.ndarray, spacing: tuple, spec: ModelSpec) -> tuple[np.ndarray, tuple]:
    if needs_resampling(spacing, spec.spacing):
        return resample_image(ct, spacing, spec.spacing), tuple(spec.spacing)
    return ct, spacing


async def locate_async(ct: np.ndarray, spacing: Sequence[float], predictor: AsyncPredictor, spec: ModelSpec, *,
                       settings: RoiSettings = RoiSettings(), window_kwargs: dict | None = None,
                       timings: dict | None = None) -> tuple[MmBox | None, int]:
    """The ROI in mm (the locator's largest pancreas-set component's box plus the margin, clipped to the
    volume), or None when the locator finds no pancreas; and the locator windows run."""
    spacing = check_spacing(spacing)
    t0 = time.perf_counter()
    work, work_spacing = _working_grid(ct, spacing, spec)
    labels = await sliding_window_inference_async(work, predictor, stride=settings.stride,
                                                  batch_size=settings.batch_size, num_classes=spec.num_classes,
                                                  pad_value=spec.normalization.hu_min, **(window_kwargs or {}))
    patches = window_count(work.shape, settings.stride)
    box = largest_component_box(labels > 0, settings.min_component_fraction)
    if timings is not None:
        timings["locator_s"] = time.perf_counter() - t0
    if box is None:
        return None, patches
    extent = np.asarray(ct.shape, dtype=np.float64) * np.asarray(spacing)
    return grow_mm(box_to_mm(box, work_spacing), settings.margin_mm, extent), patches


def locate(ct: np.ndarray, spacing: Sequence[float], predictor: Callable[[np.ndarray], np.ndarray], spec: ModelSpec,
           *, settings: RoiSettings = RoiSettings()) -> tuple[MmBox | None, int]:
    """:func:`locate_async` over a plain (synchronous) predictor, from synchronous code."""
    return asyncio.run(locate_async(ct, spacing, _as_async(predictor), spec, settings=settings))


def _box_on_grid(box: Box, spacing_from: Sequence[float], spacing_to: Sequence[float], shape_to: Sequence[int]) -> Box:
    return mm_to_box(box_to_mm(box, spacing_from), spacing_to, shape_to)


def _decision_on_input_grid(d: Decision, labels: np.ndarray, ref_spacing: tuple, spacing: tuple,
                            resampled: bool) -> Decision:
    """``d`` (made on the reference grid) with the input grid's labels, tumour centroids and boxes,
    and its thresholds stated in voxels of the reference grid, mL and mm."""
    voxel_ml = math.prod(ref_spacing) / 1000.0
    th = dict(d.thresholds)
    th.update(reference_spacing_zyx_mm=list(ref_spacing),
              min_tumor_ml=th["min_tumor_voxels"] * voxel_ml, min_duct_ml=th["min_duct_voxels"] * voxel_ml,
              keep_distance_mm_zyx=[th["keep_distance"] * s for s in ref_spacing])
    tumors = d.tumors
    if resampled:
        scale = np.asarray(ref_spacing) / np.asarray(spacing)
        tumors = tuple(
            TumorComponent(t.voxels, t.volume_ml, tuple(float(v) for v in (np.asarray(t.centroid) + 0.5) * scale - 0.5),
                           _box_on_grid(t.bbox, ref_spacing, spacing, labels.shape))
            for t in d.tumors)
    return replace(d, labels=labels, tumors=tumors, thresholds=th)


async def run_phase_async(ct: np.ndarray, spacing: Sequence[float], predictor: AsyncPredictor, spec: ModelSpec, *,
                          mode: str = "full", locator: tuple[AsyncPredictor, ModelSpec] | None = None,
                          roi: RoiSettings = RoiSettings(), stride: int = DEFAULT_STRIDE, batch_size: int = 8,
                          window_kwargs: dict | None = None, **rule_kwargs) -> PhaseResult:
    """Segment and classify one phase (module docstring); ``rule_kwargs`` go to
    :func:`s4c.postprocess.classify`, ``window_kwargs`` to the sliding window (in_flight, should_stop,
    batch_timeout_s, voter_factory). ``locator`` is required in ``roi`` mode."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "roi" and locator is None:
        raise ValueError("roi mode needs a locator model")
    check_volume(ct, "CT")
    spacing = check_spacing(spacing)
    timings: dict = {}
    window_kwargs = dict(window_kwargs or {})
    t0 = time.perf_counter()
    roi_mm, locator_patches = None, 0
    if mode == "roi":
        roi_mm, locator_patches = await locate_async(ct, spacing, *locator, settings=roi,
                                                     window_kwargs=window_kwargs, timings=timings)
    t1 = time.perf_counter()
    work, ref_spacing = _working_grid(ct, spacing, spec)
    resampled = work is not ct
    t2 = time.perf_counter()
    full_box: Box = tuple((0, n) for n in work.shape)  # type: ignore[assignment]
    box = full_box if roi_mm is None else mm_to_box(roi_mm, ref_spacing, work.shape)
    crop = expand_to_window(box, work.shape, PATCH_SIZE + (roi.min_windows - 1) * stride if roi_mm else PATCH_SIZE)
    sub = work if crop == full_box else work[box_slices(crop)]
    voted = await sliding_window_inference_async(sub, predictor, stride=stride, batch_size=batch_size,
                                                 num_classes=spec.num_classes, pad_value=spec.normalization.hu_min,
                                                 timings=timings, **window_kwargs)
    patches = window_count(sub.shape, stride)
    if sub is not work:
        full = np.zeros(work.shape, np.uint8)
        full[box_slices(crop)] = voted
        voted = mask_outside(full, box)
    t3 = time.perf_counter()
    decision = classify(voted, ref_spacing, **rule_kwargs)
    t4 = time.perf_counter()
    raw, filtered = voted, decision.labels
    if resampled:
        raw = labels_to_grid(voted, ref_spacing, ct.shape, spacing)
        filtered = labels_to_grid(filtered, ref_spacing, ct.shape, spacing)
    decision = _decision_on_input_grid(decision, filtered, ref_spacing, spacing, resampled)
    roi_in = None if roi_mm is None else _box_on_grid(box, ref_spacing, spacing, ct.shape)
    timings.update(preprocess_s=t2 - t1, network_and_vote_s=t3 - t2, postprocess_s=t4 - t3,
                   resample_back_s=time.perf_counter() - t4)
    timings.setdefault("locator_s", 0.0)
    timings["total_pipeline_s"] = time.perf_counter() - t0
    return PhaseResult(spec.phase, decision, raw, timings, mode=mode, roi_zyx=roi_in,
                       roi_fallback=mode == "roi" and roi_mm is None, patches=patches,
                       locator_patches=locator_patches, reference_spacing=ref_spacing)


def run_phase(ct: np.ndarray, spacing: Sequence[float], predictor: Callable[[np.ndarray], np.ndarray],
              spec: ModelSpec, *, mode: str = "full", locator: tuple[Callable, ModelSpec] | None = None,
              **kwargs) -> PhaseResult:
    """:func:`run_phase_async` over plain (synchronous) predictors, from synchronous code."""
    loc = None if locator is None else (_as_async(locator[0]), locator[1])
    return asyncio.run(run_phase_async(ct, spacing, _as_async(predictor), spec, mode=mode, locator=loc, **kwargs))


def run_case(phases: dict[str, tuple[np.ndarray, Sequence[float]]],
             predictors: dict[str, tuple[Callable[[np.ndarray], np.ndarray], ModelSpec]],
             **kwargs) -> tuple[bool, dict[str, PhaseResult]]:
    """Run every phase in ``phases`` ({'arterial': (ct, spacing), ...}) and fuse by OR; ``kwargs`` go
    to :func:`run_phase` (mode, locator, ...)."""
    missing = sorted(set(phases) - set(predictors))
    if missing:
        raise ValueError(f"no model for phase(s) {', '.join(missing)}")
    results = {name: run_phase(ct, sp, *predictors[name], **kwargs) for name, (ct, sp) in phases.items()}
    return fuse(*(r.decision for r in results.values())), results
