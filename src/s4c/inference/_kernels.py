"""Numba kernels for the overlap vote. Each has a plain-numpy twin in ``merge.py`` used as the oracle.

The label vote packs one count per class into the lanes of one unsigned word per voxel, so adding a
patch is a single read of each label byte and a single add: ``word += 1 << (lane_bits * label)``.
"""

from __future__ import annotations

import numpy as np

try:
    import numba
except ImportError:  # pragma: no cover - numba is a declared dependency; numpy path still works
    numba = None

HAVE_NUMBA = numba is not None


def _jit(fn):
    if numba is None:
        return None
    return numba.njit(cache=True, nogil=True, boundscheck=False)(fn)


def _add_label_votes(acc, patches, origins, z_offset, one, lane):
    # acc: (B, Y, X) packed counts; patches: (n, P, P, P) uint8; origins: (n, 3) int64.
    n = patches.shape[0]
    pz, py, px = patches.shape[1], patches.shape[2], patches.shape[3]
    for i in range(n):
        z0 = origins[i, 0] - z_offset
        y0 = origins[i, 1]
        x0 = origins[i, 2]
        for a in range(pz):
            for b in range(py):
                row = acc[z0 + a, y0 + b]
                src = patches[i, a, b]
                for c in range(px):
                    row[x0 + c] += one << (lane * src[c])


def _decode_label_votes(acc, lane, mask, priority, out):
    # acc: (k, Y, X) packed counts -> out: (k, Y, X) uint8, the class with most votes; ties go to
    # the class that comes first in ``priority``.
    k, ny, nx = acc.shape
    npri = priority.shape[0]
    for z in range(k):
        for y in range(ny):
            for x in range(nx):
                word = acc[z, y, x]
                best = priority[0]
                best_count = (word >> (lane * best)) & mask
                for j in range(1, npri):
                    cls = priority[j]
                    cnt = (word >> (lane * cls)) & mask
                    if cnt > best_count:
                        best = cls
                        best_count = cnt
                out[z, y, x] = best


add_label_votes = _jit(_add_label_votes)
decode_label_votes = _jit(_decode_label_votes)


def warm_up() -> None:
    """Compile the kernels for both word types once (a no-op without numba)."""
    if numba is None:
        return
    for dtype in (np.uint32, np.uint64):
        acc = np.zeros((2, 2, 2), dtype=dtype)
        add_label_votes(acc, np.zeros((1, 2, 2, 2), np.uint8), np.zeros((1, 3), np.int64), 0,
                        dtype(1), dtype(8))
        decode_label_votes(acc, dtype(8), dtype(255), np.arange(4, dtype=np.int64),
                           np.empty((2, 2, 2), np.uint8))
