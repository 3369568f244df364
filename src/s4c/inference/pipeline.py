"""The in-process S4C pipeline for one phase and for a dual-phase case.

resample to the model's working spacing -> sliding window + vote -> labels back on the input grid
-> component filter and voxel-count rule. Arrays are Z, Y, X; spacings (Z, Y, X) mm.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from s4c.checkpoint import ModelSpec
from s4c.inference.sliding_window import AsyncPredictor, sliding_window_inference, sliding_window_inference_async
from s4c.labels import DEFAULT_STRIDE
from s4c.postprocess import Decision, classify, fuse
from s4c.preprocessing import labels_to_grid, needs_resampling, resample_image
from s4c.validation import check_spacing, check_volume


@dataclass(frozen=True)
class PhaseResult:
    """Labels (filtered, on the input grid), the decision, and per-stage seconds."""

    phase: str
    decision: Decision
    raw_labels: np.ndarray = field(repr=False)
    timings: dict


def _to_work_grid(ct: np.ndarray, spacing: Sequence[float], spec: ModelSpec) -> tuple[np.ndarray, tuple]:
    check_volume(ct, "CT")
    spacing = check_spacing(spacing)
    work = ct
    if needs_resampling(spacing, spec.spacing):
        work = resample_image(ct, spacing, spec.spacing)
    return work, spacing


def _to_input_grid(labels: np.ndarray, work: np.ndarray, ct: np.ndarray, spacing: tuple, spec: ModelSpec) -> np.ndarray:
    if work is not ct:
        labels = labels_to_grid(labels, spec.spacing, ct.shape, spacing)
    return labels


def segment(ct: np.ndarray, spacing: Sequence[float], predictor: Callable[[np.ndarray], np.ndarray],
            spec: ModelSpec, *, stride: int = DEFAULT_STRIDE, batch_size: int = 8,
            timings: dict | None = None) -> np.ndarray:
    """Voted (unfiltered) (Z, Y, X) uint8 labels for a HU volume on its own grid."""
    timings = {} if timings is None else timings
    t0 = time.perf_counter()
    work, spacing = _to_work_grid(ct, spacing, spec)
    t1 = time.perf_counter()
    labels = sliding_window_inference(work, predictor, stride=stride, batch_size=batch_size,
                                      num_classes=spec.num_classes, pad_value=spec.normalization.hu_min)
    t2 = time.perf_counter()
    labels = _to_input_grid(labels, work, ct, spacing, spec)
    timings.update(preprocess_s=t1 - t0, network_and_vote_s=t2 - t1,
                   resample_back_s=time.perf_counter() - t2)
    return labels


async def segment_async(ct: np.ndarray, spacing: Sequence[float], predictor: AsyncPredictor, spec: ModelSpec, *,
                        stride: int = DEFAULT_STRIDE, batch_size: int = 8, timings: dict | None = None,
                        **window_kwargs) -> np.ndarray:
    """:func:`segment` over an async predictor; ``window_kwargs`` go to
    :func:`~s4c.inference.sliding_window.sliding_window_inference_async` (in_flight, should_stop, ...)."""
    timings = {} if timings is None else timings
    t0 = time.perf_counter()
    work, spacing = _to_work_grid(ct, spacing, spec)
    t1 = time.perf_counter()
    labels = await sliding_window_inference_async(work, predictor, stride=stride, batch_size=batch_size,
                                                  num_classes=spec.num_classes, pad_value=spec.normalization.hu_min,
                                                  timings=timings, **window_kwargs)
    t2 = time.perf_counter()
    labels = _to_input_grid(labels, work, ct, spacing, spec)
    timings.update(preprocess_s=t1 - t0, network_and_vote_s=t2 - t1,
                   resample_back_s=time.perf_counter() - t2)
    return labels


def run_phase(ct: np.ndarray, spacing: Sequence[float], predictor: Callable[[np.ndarray], np.ndarray],
              spec: ModelSpec, *, stride: int = DEFAULT_STRIDE, batch_size: int = 8,
              **rule_kwargs) -> PhaseResult:
    """Segment and classify one phase; ``rule_kwargs`` go to :func:`s4c.postprocess.classify`."""
    timings: dict = {}
    labels = segment(ct, spacing, predictor, spec, stride=stride, batch_size=batch_size, timings=timings)
    t = time.perf_counter()
    decision = classify(labels, spacing, **rule_kwargs)
    timings["postprocess_s"] = time.perf_counter() - t
    return PhaseResult(spec.phase, decision, labels, timings)


async def run_phase_async(ct: np.ndarray, spacing: Sequence[float], predictor: AsyncPredictor, spec: ModelSpec, *,
                          stride: int = DEFAULT_STRIDE, batch_size: int = 8, window_kwargs: dict | None = None,
                          **rule_kwargs) -> PhaseResult:
    """:func:`run_phase` over an async predictor (the Triton model's BLS segmenter)."""
    timings: dict = {}
    labels = await segment_async(ct, spacing, predictor, spec, stride=stride, batch_size=batch_size,
                                 timings=timings, **(window_kwargs or {}))
    t = time.perf_counter()
    decision = classify(labels, spacing, **rule_kwargs)
    timings["postprocess_s"] = time.perf_counter() - t
    return PhaseResult(spec.phase, decision, labels, timings)


def run_case(phases: dict[str, tuple[np.ndarray, Sequence[float]]],
             predictors: dict[str, tuple[Callable[[np.ndarray], np.ndarray], ModelSpec]],
             **kwargs) -> tuple[bool, dict[str, PhaseResult]]:
    """Run every phase in ``phases`` ({'arterial': (ct, spacing), ...}) and fuse by OR."""
    missing = sorted(set(phases) - set(predictors))
    if missing:
        raise ValueError(f"no model for phase(s) {', '.join(missing)}")
    results = {name: run_phase(ct, sp, *predictors[name], **kwargs) for name, (ct, sp) in phases.items()}
    return fuse(*(r.decision for r in results.values())), results
