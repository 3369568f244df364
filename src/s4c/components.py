"""Per-component statistics of a cc3d label image in one pass: voxel counts, boxes, centroids.

cc3d.statistics computes the same but costs several labellings' worth of time on a 200 x 512 x 512
volume; this pass skips background voxels cheaply, which is what makes :func:`classify` cheap.
"""

from __future__ import annotations

from dataclasses import dataclass

import cc3d
import numpy as np
from scipy import ndimage

from s4c._jit import HAVE_NUMBA, jit


@dataclass(frozen=True)
class ComponentStats:
    """Arrays indexed by component id (row 0 is the background and unused).

    ``counts`` (n+1,) int64; ``lo``/``hi`` (n+1, 3) int64 inclusive-exclusive box corners (z, y, x);
    ``centroids`` (n+1, 3) float64 mean voxel index, or None when not requested.
    """

    counts: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    centroids: np.ndarray | None

    def box(self, i: int) -> tuple[slice, slice, slice]:
        lo, hi = self.lo[i], self.hi[i]
        return slice(int(lo[0]), int(hi[0])), slice(int(lo[1]), int(hi[1])), slice(int(lo[2]), int(hi[2]))


def _stats_kernel(cc, n, want_centroids, counts, lo, hi, sums):
    nz, ny, nx = cc.shape
    for z in range(nz):
        for y in range(ny):
            row = cc[z, y]
            for x in range(nx):
                lab = row[x]
                if lab == 0:
                    continue
                counts[lab] += 1
                if z < lo[lab, 0]:
                    lo[lab, 0] = z
                if z >= hi[lab, 0]:
                    hi[lab, 0] = z + 1
                if y < lo[lab, 1]:
                    lo[lab, 1] = y
                if y >= hi[lab, 1]:
                    hi[lab, 1] = y + 1
                if x < lo[lab, 2]:
                    lo[lab, 2] = x
                if x >= hi[lab, 2]:
                    hi[lab, 2] = x + 1
                if want_centroids:
                    sums[lab, 0] += z
                    sums[lab, 1] += y
                    sums[lab, 2] += x


_stats_jit = jit(_stats_kernel)


def component_stats(cc: np.ndarray, n: int, *, centroids: bool = False, backend: str = "auto") -> ComponentStats:
    """Statistics of components ``1..n`` of a (Z, Y, X) integer label image ``cc``.

    ``backend`` is 'numba', 'numpy' (bincount + ndimage.find_objects, the reference) or 'auto'.
    """
    if backend == "auto":
        backend = "numba" if HAVE_NUMBA else "numpy"
    if backend == "numba":
        counts = np.zeros(n + 1, np.int64)
        lo = np.full((n + 1, 3), np.iinfo(np.int64).max, np.int64)
        hi = np.zeros((n + 1, 3), np.int64)
        sums = np.zeros((n + 1, 3) if centroids else (1, 3), np.float64)
        _stats_jit(cc, n, centroids, counts, lo, hi, sums)
        lo[0] = 0
        cent = sums / np.maximum(counts, 1)[:, None] if centroids else None
        return ComponentStats(counts, lo, hi, cent)
    if backend != "numpy":
        raise ValueError(f"backend must be 'auto', 'numba' or 'numpy', got {backend!r}")
    counts = np.bincount(cc.ravel(), minlength=n + 1).astype(np.int64)
    lo = np.zeros((n + 1, 3), np.int64)
    hi = np.zeros((n + 1, 3), np.int64)
    for i, sl in enumerate(ndimage.find_objects(cc, max_label=n), start=1):
        if sl is not None:
            lo[i] = [s.start for s in sl]
            hi[i] = [s.stop for s in sl]
    cent = None
    if centroids:
        cent = np.zeros((n + 1, 3))
        if n:
            cent[1:] = np.asarray(ndimage.center_of_mass(np.ones(cc.shape), cc, np.arange(1, n + 1)))
    return ComponentStats(counts, lo, hi, cent)


def label_components(image: np.ndarray, *, binary: bool = True) -> tuple[np.ndarray, int]:
    """26-connected components of the nonzero voxels of a (Z, Y, X) image (cc3d; ids in raster order).

    cc3d 4.1 fails on line-shaped volumes (two axes of length 1), so those are padded with one
    background voxel along the short axes first; padding at the far end keeps the raster order.
    """
    short = [a for a in range(3) if image.shape[a] == 1]
    if len(short) >= 2:
        widths = [(0, 1) if a in short else (0, 0) for a in range(3)]
        cc, n = label_components(np.pad(image, widths), binary=binary)
        return np.ascontiguousarray(cc[: image.shape[0], : image.shape[1], : image.shape[2]]), n
    return cc3d.connected_components(image, connectivity=26, binary_image=binary, return_N=True)


def _histogram_kernel(labels, counts):
    nz, ny, nx = labels.shape
    for z in range(nz):
        for y in range(ny):
            row = labels[z, y]
            for x in range(nx):
                counts[row[x]] += 1


_histogram_jit = jit(_histogram_kernel)


def label_histogram(labels: np.ndarray, num_classes: int = 4) -> np.ndarray:
    """(num_classes,) int64 voxel count of each value of a (Z, Y, X) uint8 array with values below
    ``num_classes`` (one pass; np.bincount would first widen every voxel to int64)."""
    if _histogram_jit is None or labels.ndim != 3:
        return np.bincount(labels.ravel(), minlength=num_classes).astype(np.int64)
    counts = np.zeros(256, np.int64)
    _histogram_jit(labels, counts)
    return counts[:num_classes]
