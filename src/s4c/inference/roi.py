"""Region-of-interest arithmetic for coarse-to-fine (``roi``) inference. Arrays are Z, Y, X.

Boxes are half-open voxel boxes ``((z0, z1), (y0, y1), (x0, x1))`` on one grid, or physical boxes
``(lo_mm, hi_mm)`` (each a length-3 float array) in the frame where voxel ``i`` of an axis with spacing
``s`` covers ``[i * s, (i + 1) * s)``; the same voxel-centred convention as
:mod:`s4c.preprocessing`, so a box in mm means the same region on every grid of one volume.

The ROI of a phase is the box of the locator's largest pancreas-set component, grown by a margin in
mm on each side and clipped to the volume; the segmenter's windows then tile that box (grown to at
least one window per axis where it is smaller than a window).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from s4c.components import component_stats, label_components
from s4c.validation import check_spacing

Box = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]
MmBox = tuple[np.ndarray, np.ndarray]

# Rounding slack when a physical edge falls on a voxel edge (k * s computed in floating point).
_EPS = 1e-6


def largest_component_box(mask: np.ndarray, min_fraction: float | None = None) -> Box | None:
    """Box of the largest 26-connected component of a boolean (Z, Y, X) ``mask``, or None if empty.

    On a size tie the component whose first voxel comes first in raster order wins, as for C_max in
    :func:`s4c.postprocess.classify`. With ``min_fraction``, the box also covers every component with
    more than that fraction of the largest one's voxels (a gland the locator split in two).
    """
    if mask.ndim != 3:
        raise ValueError(f"mask must be 3-D (Z, Y, X), got shape {mask.shape}")
    if min_fraction is not None and not 0.0 <= min_fraction <= 1.0:
        raise ValueError(f"min_fraction must be in [0, 1] or None, got {min_fraction!r}")
    if not mask.any():
        return None
    cc, n = label_components(np.ascontiguousarray(mask, dtype=np.uint8))
    stats = component_stats(cc, n)
    best = 1 + int(np.argmax(stats.counts[1:]))
    ids = [best]
    if min_fraction is not None:
        ids = [i for i in range(1, n + 1) if i == best or stats.counts[i] > min_fraction * stats.counts[best]]
    lo = stats.lo[ids].min(axis=0)
    hi = stats.hi[ids].max(axis=0)
    return tuple((int(a), int(b)) for a, b in zip(lo, hi, strict=True))  # type: ignore[return-value]


def box_to_mm(box: Box, spacing: Sequence[float]) -> MmBox:
    """The physical extent ``(lo_mm, hi_mm)`` of a voxel box on a grid of ``spacing``."""
    s = np.asarray(check_spacing(spacing), dtype=np.float64)
    lo = np.array([b[0] for b in box], dtype=np.float64)
    hi = np.array([b[1] for b in box], dtype=np.float64)
    return lo * s, hi * s


def grow_mm(box_mm: MmBox, margin_mm: float, extent_mm: Sequence[float]) -> MmBox:
    """``box_mm`` grown by ``margin_mm`` on each of its six sides and clipped to ``[0, extent_mm]``."""
    if not (np.isfinite(margin_mm) and margin_mm >= 0):
        raise ValueError(f"ROI margin must be a finite number of mm >= 0, got {margin_mm!r}")
    ext = np.asarray(extent_mm, dtype=np.float64)
    return np.clip(box_mm[0] - margin_mm, 0.0, ext), np.clip(box_mm[1] + margin_mm, 0.0, ext)


def mm_to_box(box_mm: MmBox, spacing: Sequence[float], shape: Sequence[int]) -> Box:
    """The smallest voxel box of a grid (``spacing``, ``shape``) whose voxels cover ``box_mm``.

    Every voxel that overlaps the physical box is in it; at least one voxel per axis, clipped to the
    grid.
    """
    s = np.asarray(check_spacing(spacing), dtype=np.float64)
    out = []
    for a in range(3):
        n = int(shape[a])
        i0 = int(np.floor(box_mm[0][a] / s[a] + _EPS))
        i1 = int(np.ceil(box_mm[1][a] / s[a] - _EPS))
        i0 = min(max(i0, 0), n - 1)
        i1 = min(max(i1, i0 + 1), n)
        out.append((i0, i1))
    return tuple(out)  # type: ignore[return-value]


def expand_to_window(box: Box, shape: Sequence[int], window: int) -> Box:
    """``box`` grown, about its centre, to at least ``window`` voxels on each axis where the volume
    allows (shifted inwards at the volume's edges; the whole axis when it is shorter than ``window``).

    The grown box is what the sliding window tiles: a box smaller than a window still gets one whole
    window of real context instead of padding.
    """
    out = []
    for (a, b), n in zip(box, shape, strict=True):
        n = int(n)
        if not 0 <= a < b <= n:
            raise ValueError(f"box {box} does not lie inside a volume of shape {tuple(shape)}")
        if b - a < window:
            if n <= window:
                a, b = 0, n
            else:
                a = min(max(a - (window - (b - a)) // 2, 0), n - window)
                b = a + window
        out.append((a, b))
    return tuple(out)  # type: ignore[return-value]


def box_slices(box: Box) -> tuple[slice, slice, slice]:
    """``box`` as a tuple of slices, for indexing."""
    return tuple(slice(a, b) for a, b in box)  # type: ignore[return-value]


def mask_outside(labels: np.ndarray, box: Box) -> np.ndarray:
    """A copy of ``labels`` with every voxel outside ``box`` set to 0 (background)."""
    out = np.zeros_like(labels)
    sl = box_slices(box)
    out[sl] = labels[sl]
    return out


def box_fraction(mask: np.ndarray, box: Box) -> float:
    """The fraction of ``mask``'s voxels that lie inside ``box`` (1.0 for an empty mask): the
    locator's recall of a reference pancreas set."""
    total = int(np.count_nonzero(mask))
    if total == 0:
        return 1.0
    return int(np.count_nonzero(mask[box_slices(box)])) / total
