"""Numba kernels for the overlap vote. Each has a plain-numpy twin in ``merge.py`` used as the oracle.

The label vote packs one count per class into the lanes of one unsigned word per voxel, so adding a
patch is a single read of each label byte and a single add: ``word += 1 << (lane_bits * label)``.
The accumulator is a ring of ``R`` Z-slices: absolute slice ``z`` lives at ``z % R``.
"""

from __future__ import annotations

import numpy as np

from s4c._jit import HAVE_NUMBA, jit


def _add_label_votes(acc, patches, origins, one, lane):
    # acc: (R, Y, X) packed counts (ring over Z); patches: (n, P, P, P) uint8; origins: (n, 3) int64.
    ring = acc.shape[0]
    n = patches.shape[0]
    pz, py, px = patches.shape[1], patches.shape[2], patches.shape[3]
    for i in range(n):
        z0 = origins[i, 0]
        y0 = origins[i, 1]
        x0 = origins[i, 2]
        for a in range(pz):
            zr = (z0 + a) % ring
            for b in range(py):
                # A contiguous row slice lets LLVM vectorise the variable shifts.
                row = acc[zr, y0 + b, x0 : x0 + px]
                src = patches[i, a, b]
                for c in range(px):
                    s = lane * src[c]
                    row[c] += one << s


def _decode_label_votes(acc, z_start, lane, mask, priority, out):
    # Decide absolute slices z_start .. z_start + len(out) - 1 from the ring into out (k, Y, X) uint8,
    # and zero those ring slices for reuse. Ties go to the class that comes first in ``priority``.
    ring = acc.shape[0]
    k, ny, nx = out.shape
    npri = priority.shape[0]
    for z in range(k):
        zr = (z_start + z) % ring
        for y in range(ny):
            words = acc[zr, y]
            dst = out[z, y]
            for x in range(nx):
                word = words[x]
                best = priority[0]
                best_count = (word >> (lane * best)) & mask
                for j in range(1, npri):
                    cls = priority[j]
                    cnt = (word >> (lane * cls)) & mask
                    if cnt > best_count:
                        best = cls
                        best_count = cnt
                dst[x] = best
                words[x] = 0


add_label_votes = jit(_add_label_votes)
decode_label_votes = jit(_decode_label_votes)


def warm_up() -> None:
    """Compile the kernels for both word types once (a no-op without numba)."""
    if not HAVE_NUMBA:
        return
    for dtype in (np.uint32, np.uint64):
        acc = np.zeros((2, 2, 2), dtype=dtype)
        add_label_votes(acc, np.zeros((1, 2, 2, 2), np.uint8), np.zeros((1, 3), np.int64), dtype(1), dtype(8))
        decode_label_votes(acc, 0, dtype(8), dtype(255), np.arange(4, dtype=np.int64),
                           np.empty((2, 2, 2), np.uint8))
