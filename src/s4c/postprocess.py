"""The paper's classification rules (section 2.2), applied to a (Z, Y, X) label volume.

1. Find the 26-connected components of the pancreas set {1, 2, 3}; the largest is C_max (on a size
   tie, the one whose first voxel comes first in Z, Y, X raster order).
2. Keep C_max, every component with more than ``keep_ratio`` x |C_max| voxels, and every component
   whose minimum Euclidean distance (in voxels, centre to centre) to C_max is below
   ``keep_distance``. Zero every other component.
3. The phase is abnormal if the kept tumour voxels reach ``min_tumor_voxels`` or the kept duct
   voxels reach ``min_duct_voxels``. Dual phase: abnormal if any phase is abnormal (:func:`fuse`).

Cost: one cc3d labelling and one statistics pass over the volume; everything else works inside
bounding boxes. Distances are exact: a k-d tree over C_max's boundary voxels is queried with the
boundary voxels of the components whose boxes come within ``keep_distance`` of C_max's box.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from s4c.components import component_stats, label_components, label_histogram
from s4c.labels import DUCT, KEEP_DISTANCE, KEEP_RATIO, MIN_DUCT_VOXELS, MIN_TUMOR_VOXELS, TUMOR
from s4c.validation import check_labels, check_spacing

Box = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]
_SIX = ndimage.generate_binary_structure(3, 1)


@dataclass(frozen=True)
class TumorComponent:
    """One kept 26-connected tumour component.

    ``centroid`` is (z, y, x) in voxel indices of the input grid; ``bbox`` is half-open
    ((z0, z1), (y0, y1), (x0, x1)); ``volume_ml`` is None when no spacing was given.
    """

    voxels: int
    volume_ml: float | None
    centroid: tuple[float, float, float]
    bbox: Box

    def to_dict(self) -> dict:
        return {"voxels": self.voxels, "volume_ml": self.volume_ml,
                "centroid_zyx": list(self.centroid), "bbox_zyx": [list(b) for b in self.bbox]}


@dataclass(frozen=True)
class Decision:
    """The outcome of :func:`classify` for one phase.

    ``labels`` is the filtered (Z, Y, X) uint8 copy; the caller's array is never modified.
    """

    abnormal: bool
    tumor_voxels: int
    duct_voxels: int
    labels: np.ndarray = field(repr=False)
    tumors: tuple[TumorComponent, ...]
    pancreas_voxels: int
    components: int
    components_kept: int
    thresholds: dict

    def to_dict(self) -> dict:
        """JSON-ready summary (everything except the label array)."""
        return {
            "abnormal": self.abnormal,
            "tumor_voxels": self.tumor_voxels,
            "duct_voxels": self.duct_voxels,
            "pancreas_voxels": self.pancreas_voxels,
            "components": self.components,
            "components_kept": self.components_kept,
            "tumors": [t.to_dict() for t in self.tumors],
            "thresholds": dict(self.thresholds),
        }


def _check_count(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def _grow(box: tuple[slice, slice, slice], margin: int, shape: Sequence[int]) -> tuple[slice, ...]:
    return tuple(slice(max(0, s.start - margin), min(n, s.stop + margin)) for s, n in zip(box, shape, strict=True))


def _union(boxes: Sequence[tuple[slice, slice, slice]]) -> tuple[slice, ...]:
    return tuple(slice(min(b[a].start for b in boxes), max(b[a].stop for b in boxes)) for a in range(3))


def _box_volume(box: tuple[slice, ...]) -> int:
    return math.prod(s.stop - s.start for s in box)


def _overlaps(a: tuple[slice, ...], b: tuple[slice, ...]) -> bool:
    return all(x.start < y.stop and y.start < x.stop for x, y in zip(a, b, strict=True))


def classify(
    labels: np.ndarray,
    spacing: Sequence[float] | None = None,
    *,
    min_tumor_voxels: int = MIN_TUMOR_VOXELS,
    min_duct_voxels: int = MIN_DUCT_VOXELS,
    keep_ratio: float = KEEP_RATIO,
    keep_distance: float = KEEP_DISTANCE,
) -> Decision:
    """Apply the component filter and the voxel-count rule to one phase's labels.

    Args:
        labels: (Z, Y, X) uint8 with values 0 background, 1 pancreas, 2 tumour, 3 duct.
        spacing: optional (Z, Y, X) voxel size in mm, used only for tumour volumes in mL.
        min_tumor_voxels: abnormal when at least this many tumour voxels are kept.
        min_duct_voxels: abnormal when at least this many duct voxels are kept.
        keep_ratio: keep components with strictly more than this fraction of |C_max| voxels.
        keep_distance: keep components strictly closer than this many voxels to C_max.

    Returns:
        A :class:`Decision`; its ``labels`` is a filtered copy.
    """
    check_labels(labels, 4)
    voxel_ml = None
    if spacing is not None:
        voxel_ml = math.prod(check_spacing(spacing)) / 1000.0
    min_tumor_voxels = _check_count(min_tumor_voxels, "min_tumor_voxels")
    min_duct_voxels = _check_count(min_duct_voxels, "min_duct_voxels")
    if not (isinstance(keep_ratio, (int, float, np.floating)) and 0.0 <= keep_ratio <= 1.0):
        raise ValueError(f"keep_ratio must be a number in [0, 1], got {keep_ratio!r}")
    if not (isinstance(keep_distance, (int, float, np.floating)) and math.isfinite(keep_distance)
            and keep_distance > 0):
        raise ValueError(f"keep_distance must be a finite number > 0, got {keep_distance!r}")
    thresholds = {"min_tumor_voxels": min_tumor_voxels, "min_duct_voxels": min_duct_voxels,
                  "keep_ratio": float(keep_ratio), "keep_distance": float(keep_distance)}

    # Everything happens inside the pancreas set's bounding box: on a clinical grid it is a small part
    # of the volume, and cc3d's uint32 component ids would otherwise cost 4 bytes per input voxel.
    crop = _foreground_box(labels)
    if crop is None:
        return Decision(False, 0, 0, labels.copy(), (), 0, 0, 0, thresholds)
    sub = np.ascontiguousarray(labels[crop])
    cc, n = label_components(sub)

    stats = component_stats(cc, n)
    counts = stats.counts
    boxes = [stats.box(i) for i in range(n + 1)]  # index 0 is unused
    cmax = 1 + int(np.argmax(counts[1:]))  # argmax takes the lowest id: the first in raster order

    keep = np.zeros(n + 1, dtype=bool)
    keep[1:] = counts[1:] > keep_ratio * counts[cmax]
    keep[cmax] = True

    # Only components whose box comes within keep_distance of C_max's box can be close to it.
    near = _grow(boxes[cmax], math.ceil(keep_distance), sub.shape)
    candidates = [i for i in range(1, n + 1) if not keep[i] and _overlaps(boxes[i], near)]
    if candidates:
        keep[_close_components(cc, boxes, cmax, candidates, keep_distance)] = True

    kept_ids = np.flatnonzero(keep)
    removed = np.flatnonzero(~keep[1:]) + 1
    filtered = labels.copy()
    fsub = filtered[crop]  # a view: edits land in the output
    if len(removed):
        if sum(_box_volume(boxes[i]) for i in removed) < sub.size:
            for i in removed:
                region = fsub[boxes[i]]
                region[cc[boxes[i]] == i] = 0
        else:
            fsub[~keep[cc]] = 0

    # Everything kept lies inside the union of the kept components' boxes.
    box = _union([boxes[i] for i in kept_ids])
    kept = fsub[box]
    hist = label_histogram(np.ascontiguousarray(kept))
    tumor_voxels = int(hist[TUMOR])
    duct_voxels = int(hist[DUCT])
    full_box = tuple(slice(c.start + b.start, c.start + b.stop) for c, b in zip(crop, box, strict=True))
    tumors = _tumor_components(kept == TUMOR, full_box, voxel_ml) if tumor_voxels else ()
    abnormal = tumor_voxels >= min_tumor_voxels or duct_voxels >= min_duct_voxels
    return Decision(
        abnormal=bool(abnormal), tumor_voxels=tumor_voxels, duct_voxels=duct_voxels, labels=filtered,
        tumors=tumors, pancreas_voxels=int(counts[kept_ids].sum()), components=int(n),
        components_kept=len(kept_ids), thresholds=thresholds,
    )


def _foreground_box(labels: np.ndarray) -> tuple[slice, slice, slice] | None:
    """Bounding box (slices) of the nonzero voxels, or None; per-axis maxima, no full-size temporaries."""
    zs = np.flatnonzero(labels.max(axis=(1, 2)))
    if len(zs) == 0:
        return None
    ys = np.flatnonzero(labels.max(axis=(0, 2)))
    xs = np.flatnonzero(labels.max(axis=(0, 1)))
    return slice(zs[0], zs[-1] + 1), slice(ys[0], ys[-1] + 1), slice(xs[0], xs[-1] + 1)


def _surface_points(cc: np.ndarray, box: tuple[slice, ...], label: int) -> np.ndarray:
    """(m, 3) voxel coordinates of the 6-connected boundary of component ``label`` inside ``box``.

    The voxel of a set nearest to any outside point is always on this boundary: a step towards the
    point from an interior voxel stays in the set and gets closer.
    """
    mask = cc[box] == label
    interior = ndimage.binary_erosion(mask, structure=_SIX, border_value=0)
    pts = np.argwhere(mask & ~interior)
    pts += np.array([s.start for s in box])
    return pts


def _close_components(cc: np.ndarray, boxes, cmax: int, candidates: Sequence[int], distance: float) -> np.ndarray:
    """Ids among ``candidates`` with a voxel strictly closer than ``distance`` to component ``cmax``."""
    tree = cKDTree(_surface_points(cc, boxes[cmax], cmax))
    points = [_surface_points(cc, boxes[i], i) for i in candidates]
    ids = np.repeat(np.asarray(candidates), [len(p) for p in points])
    dist, _ = tree.query(np.concatenate(points), k=1, distance_upper_bound=distance)
    return np.unique(ids[dist < distance])


def _tumor_components(mask: np.ndarray, box: tuple[slice, ...], voxel_ml: float | None) -> tuple[TumorComponent, ...]:
    """26-connected components of a tumour mask cropped at ``box``, in full-grid coordinates,
    largest first."""
    cc, n = label_components(mask)
    stats = component_stats(cc, n, centroids=True)
    offset = np.array([s.start for s in box], dtype=np.int64)
    counts = stats.counts[1:].tolist()
    cents = (stats.centroids[1:] + offset).tolist()
    lo = (stats.lo[1:] + offset).tolist()
    hi = (stats.hi[1:] + offset).tolist()
    out = [
        TumorComponent(c, None if voxel_ml is None else c * voxel_ml, tuple(m),
                       ((a[0], b[0]), (a[1], b[1]), (a[2], b[2])))
        for c, m, a, b in zip(counts, cents, lo, hi, strict=True)
    ]
    out.sort(key=lambda t: (-t.voxels, t.bbox))
    return tuple(out)


def fuse(*decisions: Decision | bool) -> bool:
    """Dual-phase fusion: abnormal if any phase is abnormal (accepts Decisions or bools)."""
    if not decisions:
        raise ValueError("fuse needs at least one phase decision")
    result = False
    for d in decisions:
        if isinstance(d, Decision):
            result |= d.abnormal
        elif isinstance(d, (bool, np.bool_)):
            result |= bool(d)
        else:
            raise ValueError(f"fuse takes Decision objects or bools, got {type(d).__name__}")
    return result
