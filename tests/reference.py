"""Brute-force reference implementations (scipy and plain loops) used as test oracles."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial.distance import cdist


def classify_reference(labels: np.ndarray, *, min_tumor_voxels=40, min_duct_voxels=500,
                       keep_ratio=0.2, keep_distance=27.0) -> tuple[bool, int, int, np.ndarray]:
    """The paper's rule with one full-volume mask per component and all-pairs distances."""
    comp, n = ndimage.label(labels > 0, structure=np.ones((3, 3, 3), dtype=bool))
    out = labels.copy()
    if n == 0:
        return False, 0, 0, out
    sizes = np.array([np.count_nonzero(comp == i) for i in range(1, n + 1)])
    cmax = 1 + int(np.argmax(sizes))
    cmax_pts = np.argwhere(comp == cmax)
    for i in range(1, n + 1):
        if i == cmax:
            continue
        big = sizes[i - 1] > keep_ratio * sizes[cmax - 1]
        pts = np.argwhere(comp == i)
        close = cdist(pts, cmax_pts).min() < keep_distance
        if not (big or close):
            out[comp == i] = 0
    t = int(np.count_nonzero(out == 2))
    d = int(np.count_nonzero(out == 3))
    return (t >= min_tumor_voxels or d >= min_duct_voxels), t, d, out


def vote_reference(shape, origins, patches, num_classes, priority) -> np.ndarray:
    """Majority vote with one int64 count volume per class."""
    counts = np.zeros((num_classes, *shape), dtype=np.int64)
    p = patches.shape[-1]
    for (z, y, x), patch in zip(origins, patches, strict=True):
        for c in range(num_classes):
            counts[c, z : z + p, y : y + p, x : x + p] += patch == c
    best = np.full(shape, priority[0], dtype=np.uint8)
    best_count = counts[priority[0]].copy()
    for c in priority[1:]:
        better = counts[c] > best_count
        best[better] = c
        best_count = np.maximum(best_count, counts[c])
    return best
