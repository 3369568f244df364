"""Framework-neutral sliding-window inference over a predictor callable (compare MONAI's inferer).

The predictor takes a float32 batch (N, 1, P, P, P) and returns either

* labels (N, P, P, P) uint8 -> merged by majority vote (:class:`~s4c.inference.merge.LabelVoter`), or
* probabilities (N, C, P, P, P) float -> merged by mean-probability vote.

Tiling (:mod:`s4c.inference.tiling`) and merging (:mod:`s4c.inference.merge`) are separate; this
module only drives them. Arrays are Z, Y, X.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from s4c.inference.merge import LabelVoter, ProbabilityVoter
from s4c.inference.tiling import extract_patches, pad_to_window, padded_shape, window_origins
from s4c.labels import DEFAULT_STRIDE, NUM_CLASSES, PATCH_SIZE
from s4c.validation import check_volume

Predictor = Callable[[np.ndarray], np.ndarray]


def _check_positive_int(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _check_output(out: object, n: int, window: int, num_classes: int) -> tuple[str, np.ndarray]:
    """Classify a predictor output as 'labels' or 'probabilities', or raise naming what is wrong.

    Value checks (label range, finiteness) are the voters' job, so they happen once.
    """
    if not isinstance(out, np.ndarray):
        raise ValueError(f"predictor must return a numpy array, got {type(out).__name__}")
    cube = (window, window, window)
    if out.ndim == 4 and out.shape == (n, *cube):
        if out.dtype != np.uint8:
            raise ValueError(f"predictor labels must be uint8, got {out.dtype}")
        return "labels", out
    if out.ndim == 5 and out.shape == (n, num_classes, *cube):
        if out.dtype.kind != "f":
            raise ValueError(f"predictor probabilities must be floating point, got {out.dtype}")
        return "probabilities", out
    raise ValueError(f"predictor returned shape {out.shape} for a batch of {n}; expected "
                     f"{(n, *cube)} labels or {(n, num_classes, *cube)} probabilities")


def sliding_window_inference(
    image: np.ndarray,
    predictor: Predictor,
    *,
    window: int = PATCH_SIZE,
    stride: int = DEFAULT_STRIDE,
    batch_size: int = 8,
    num_classes: int = NUM_CLASSES,
    pad_value: float | None = None,
    tie_priority: Sequence[int] | None = None,
    backend: str = "auto",
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Label a whole (Z, Y, X) volume by voting over overlapping ``window``-cubed patches.

    Args:
        image: (Z, Y, X) real array (any integer or float dtype; patches are cast to float32).
        predictor: see the module docstring. Every call must return the same kind of output.
        window: patch side in voxels (64 for S4C).
        stride: window step in voxels, ``1 <= stride <= window``; the last window on each axis is
            flush with the far edge.
        batch_size: patches per predictor call.
        num_classes: number of label classes.
        pad_value: value for axes shorter than ``window``, which are padded at their far end and
            cropped back afterwards; ``None`` pads with the image minimum (air in a CT).
        tie_priority: class order for breaking vote ties, first wins (default tumour > duct >
            pancreas > background for 4 classes).
        backend: majority-vote kernel, 'auto', 'numba' or 'numpy'.
        progress: optional ``callback(done_patches, total_patches)`` after each batch.

    Returns:
        (Z, Y, X) uint8 labels on the input grid. The input is never modified.
    """
    check_volume(image, "image")
    window = _check_positive_int(window, "window")
    stride = _check_positive_int(stride, "stride")
    batch_size = _check_positive_int(batch_size, "batch_size")
    num_classes = _check_positive_int(num_classes, "num_classes")
    if stride > window:
        raise ValueError(f"stride {stride} is larger than the window {window}: voxels would be skipped")
    if pad_value is None:
        pad_value = float(image.min())
    elif not np.isfinite(pad_value):
        raise ValueError(f"pad_value must be finite, got {pad_value!r}")

    padded = pad_to_window(image, window, pad_value)
    shape = padded_shape(image.shape, window)
    origins = window_origins(shape, window, stride)
    buffer = np.empty((min(batch_size, len(origins)), 1, window, window, window), dtype=np.float32)

    voter: LabelVoter | ProbabilityVoter | None = None
    kind = None
    for start in range(0, len(origins), batch_size):
        batch_origins = origins[start : start + batch_size]
        batch = extract_patches(padded, batch_origins, window, buffer)
        out_kind, out = _check_output(predictor(batch), len(batch_origins), window, num_classes)
        if voter is None:
            kind = out_kind
            if kind == "labels":
                voter = LabelVoter(shape, window, stride, num_classes=num_classes,
                                   tie_priority=tie_priority, backend=backend)
            else:
                voter = ProbabilityVoter(shape, window, num_classes=num_classes, tie_priority=tie_priority)
        elif out_kind != kind:
            raise ValueError(f"predictor switched from {kind} to {out_kind} between batches")
        voter.add(out, batch_origins)
        if progress is not None:
            progress(start + len(batch_origins), len(origins))

    assert voter is not None  # origins is never empty
    labels = voter.result()
    z, y, x = image.shape
    return labels[:z, :y, :x] if labels.shape != image.shape else labels
