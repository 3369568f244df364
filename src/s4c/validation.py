"""Input checks shared by every public entry point; each error names the offending value."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def check_spacing(spacing: Sequence[float] | np.ndarray, name: str = "spacing") -> tuple[float, float, float]:
    """Return ``spacing`` as a (Z, Y, X) tuple of floats, or raise ``ValueError``.

    Each entry must be a finite, strictly positive number of millimetres.
    """
    try:
        values = [float(v) for v in np.asarray(spacing, dtype=np.float64).reshape(-1)]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be 3 numbers (Z, Y, X) in mm, got {spacing!r}") from exc
    if len(values) != 3:
        raise ValueError(f"{name} must have 3 entries (Z, Y, X), got {len(values)}: {spacing!r}")
    for axis, v in zip("ZYX", values, strict=True):
        if not math.isfinite(v) or v <= 0:
            raise ValueError(f"{name} along {axis} must be finite and > 0 mm, got {v!r}")
    return values[0], values[1], values[2]


def check_volume(array: np.ndarray, name: str = "volume", *, allow_float: bool = True) -> np.ndarray:
    """Check that ``array`` is a non-empty 3-D real numeric array without NaN or Inf."""
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{name} must be a numpy array, got {type(array).__name__}")
    if array.ndim != 3:
        raise ValueError(f"{name} must be 3-D (Z, Y, X), got {array.ndim}-D with shape {array.shape}")
    if 0 in array.shape:
        raise ValueError(f"{name} must not be empty, got shape {array.shape}")
    kind = array.dtype.kind
    if kind not in "iu" and not (allow_float and kind == "f"):
        raise ValueError(f"{name} has unsupported dtype {array.dtype}")
    if kind == "f" and not np.isfinite(array).all():
        n_bad = int(array.size - np.count_nonzero(np.isfinite(array)))
        raise ValueError(f"{name} contains {n_bad} NaN or Inf values")
    return array


def check_labels(labels: np.ndarray, num_classes: int = 4, name: str = "labels") -> np.ndarray:
    """Check that ``labels`` is a 3-D uint8 (Z, Y, X) array with values in ``0..num_classes-1``."""
    if not isinstance(labels, np.ndarray):
        raise ValueError(f"{name} must be a numpy array, got {type(labels).__name__}")
    if labels.dtype != np.uint8:
        raise ValueError(f"{name} must have dtype uint8, got {labels.dtype}")
    if labels.ndim != 3:
        raise ValueError(f"{name} must be 3-D (Z, Y, X), got {labels.ndim}-D with shape {labels.shape}")
    if 0 in labels.shape:
        raise ValueError(f"{name} must not be empty, got shape {labels.shape}")
    top = int(labels.max())
    if top >= num_classes:
        raise ValueError(f"{name} must hold values 0..{num_classes - 1}, found {top}")
    return labels


def as_label_volume(array: np.ndarray, name: str = "labels") -> np.ndarray:
    """A loaded label volume as uint8 after checking it holds integers 0..3 (any integer dtype)."""
    if array.dtype.kind not in "iu":
        raise ValueError(f"{name}: labels must be integers 0..3, got dtype {array.dtype}")
    lo, hi = int(array.min()), int(array.max())
    if lo < 0 or hi > 3:
        raise ValueError(f"{name}: labels must be integers 0..3, found {lo}..{hi} ({array.dtype})")
    return array.astype(np.uint8, copy=False)
