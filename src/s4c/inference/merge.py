"""Merging overlapping patch predictions into one label volume (no tiling here).

Two voters, both streaming along Z: windows arrive in Z-major order (see ``tiling.window_origins``),
and as soon as no later window can touch a slab of Z it is decided and written out. The accumulator
is a ring of ``window`` Z-slices (absolute slice ``z`` at ``z % window``), not the whole volume.

Majority vote (:class:`LabelVoter`): each voxel takes the label that most covering windows gave it.
Ties are broken by a fixed priority, by default tumour > duct > pancreas > background, a
sensitivity-first rule that is deterministic and independent of window order.

Mean-probability vote (:class:`ProbabilityVoter`): each voxel takes the class with the largest summed
probability over covering windows (the mean up to the voxel's coverage count); ties use the same
priority.

Memory: the output (1 byte per voxel of the padded volume) plus the accumulator: ``window * Y * X``
words of 4 bytes (8 when the coverage or class count needs wider lanes) for the majority vote, or
``num_classes * window * Y * X`` float32 for the mean vote. For 200 x 512 x 512 at stride 20 that is
52 MB + 67 MB, i.e. 1 + 1.28 times the label volume's bytes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from s4c.inference import _kernels
from s4c.inference.tiling import max_coverage
from s4c.labels import BACKGROUND, DUCT, PANCREAS, TUMOR

#: Tie order for the 4-class S4C labels, first wins.
S4C_TIE_PRIORITY = (TUMOR, DUCT, PANCREAS, BACKGROUND)


def default_tie_priority(num_classes: int) -> tuple[int, ...]:
    """The S4C order for 4 classes; otherwise higher labels win ties."""
    if num_classes == 4:
        return S4C_TIE_PRIORITY
    return tuple(range(num_classes - 1, -1, -1))


def _check_priority(priority: Sequence[int], num_classes: int) -> np.ndarray:
    arr = np.asarray(priority, dtype=np.int64)
    if sorted(arr.tolist()) != list(range(num_classes)):
        raise ValueError(f"tie_priority must be a permutation of 0..{num_classes - 1}, got {tuple(priority)}")
    return arr


def choose_word(num_classes: int, coverage: int) -> tuple[type, int]:
    """The unsigned word type and lane width (bits) that hold ``num_classes`` counts up to ``coverage``."""
    for lane in (8, 16, 32):
        if coverage < (1 << lane) and num_classes * lane <= 64:
            word = np.uint32 if num_classes * lane <= 32 else np.uint64
            return word, lane
    raise ValueError(f"cannot pack {num_classes} class counts up to {coverage} votes into 64 bits; "
                     f"use a larger stride or fewer classes")


def _ring_pieces(z: int, length: int, ring: int) -> list[tuple[slice, slice]]:
    """Split absolute slices ``[z, z + length)`` into at most two (ring slice, source slice) pieces."""
    start = z % ring
    first = min(length, ring - start)
    pieces = [(slice(start, start + first), slice(0, first))]
    if first < length:
        pieces.append((slice(0, length - first), slice(first, length)))
    return pieces


class _StreamingVoter:
    """Shared Z-streaming bookkeeping; subclasses own the accumulator layout."""

    def __init__(self, shape: Sequence[int], window: int, tie_priority: Sequence[int] | None,
                 num_classes: int) -> None:
        self.shape = tuple(int(n) for n in shape)
        if any(n < window for n in self.shape):
            raise ValueError(f"voter shape {self.shape} has an axis shorter than the window {window}")
        self.window = window
        self.num_classes = num_classes
        self.priority = _check_priority(tie_priority or default_tie_priority(num_classes), num_classes)
        self.out = np.empty(self.shape, dtype=np.uint8)
        self._lo = 0  # first Z index held by the accumulator
        self._done = False

    def _advance(self, z: int) -> None:
        """Decide and emit slices ``[lo, z)``: every window starting at or after ``z`` is yet to come."""
        if z < self._lo:
            raise ValueError(f"window origins must be in Z-major order; got z={z} after z={self._lo}")
        k = z - self._lo
        if k == 0:
            return
        if k > self.window:
            raise ValueError(f"windows leave Z slices {self._lo + self.window}..{z - 1} uncovered")
        self._decode(k, self.out[self._lo : z])
        self._lo = z

    def add(self, patches: np.ndarray, origins: np.ndarray) -> None:
        """Add a batch: ``patches`` shaped as the subclass expects, ``origins`` (n, 3) int64 z, y, x."""
        if self._done:
            raise RuntimeError("voter already finalised")
        origins = np.asarray(origins, dtype=np.int64)
        if origins.ndim != 2 or origins.shape[1] != 3 or len(origins) != len(patches):
            raise ValueError(f"need one (z, y, x) origin per patch, got {len(patches)} patches and origins "
                             f"of shape {origins.shape}")
        if len(origins) == 0:
            return
        lo, hi = origins.min(axis=0), origins.max(axis=0) + self.window
        if (lo < 0).any() or (hi > np.asarray(self.shape)).any():
            raise ValueError(f"window origins {lo.tolist()}..{(hi - self.window).tolist()} fall outside {self.shape}")
        self._check_patches(patches)
        start = 0
        zs = origins[:, 0]
        while start < len(origins):
            z = int(zs[start])
            stop = start + int(np.searchsorted(zs[start:], z, side="right"))
            self._advance(z)
            self._accumulate(patches[start:stop], origins[start:stop])
            start = stop

    def result(self) -> np.ndarray:
        """Decide the remaining slices and return the (Z, Y, X) uint8 labels."""
        if not self._done:
            self._advance(self.shape[0])
            self._done = True
        return self.out


class LabelVoter(_StreamingVoter):
    """Majority vote over label patches (n, P, P, P) uint8, with values in ``0..num_classes-1``.

    ``backend`` is 'numba' (JIT kernel), 'numpy' (reference) or 'auto' (numba when installed).
    """

    def __init__(self, shape: Sequence[int], window: int, stride: int, *, num_classes: int = 4,
                 tie_priority: Sequence[int] | None = None, backend: str = "auto",
                 coverage: int | None = None) -> None:
        super().__init__(shape, window, tie_priority, num_classes)
        if coverage is None:
            coverage = max_coverage(self.shape, window, stride)
        self.word, self.lane = choose_word(num_classes, coverage)
        if backend == "auto":
            backend = "numba" if _kernels.HAVE_NUMBA else "numpy"
        if backend not in ("numba", "numpy"):
            raise ValueError(f"backend must be 'auto', 'numba' or 'numpy', got {backend!r}")
        if backend == "numba" and not _kernels.HAVE_NUMBA:
            raise ValueError("backend 'numba' requested but numba is not installed")
        self.backend = backend
        self.acc = np.zeros((window, self.shape[1], self.shape[2]), dtype=self.word)
        self._one = self.word(1)
        self._lane = self.word(self.lane)
        self._mask = self.word((1 << self.lane) - 1)
        self._lut = (self._one << (self._lane * np.arange(num_classes, dtype=self.word))).astype(self.word)

    def _check_patches(self, patches: np.ndarray) -> None:
        cube = (self.window,) * 3
        if not isinstance(patches, np.ndarray) or patches.dtype != np.uint8 or patches.shape[1:] != cube:
            raise ValueError(f"label patches must be uint8 (n, {self.window}, {self.window}, {self.window}), got "
                             f"{getattr(patches, 'dtype', type(patches).__name__)} {getattr(patches, 'shape', '')}")
        top = int(patches.max())
        if top >= self.num_classes:  # would overflow into the next lane of the packed counts
            raise ValueError(f"label patches hold label {top}, outside 0..{self.num_classes - 1}")

    def _accumulate(self, patches: np.ndarray, origins: np.ndarray) -> None:
        if self.backend == "numba":
            _kernels.add_label_votes(self.acc, patches, origins, self._one, self._lane)
            return
        p = self.window
        for patch, (z, y, x) in zip(patches, origins, strict=True):
            for dst, src in _ring_pieces(int(z), p, p):
                self.acc[dst, y : y + p, x : x + p] += self._lut[patch[src]]

    def _decode(self, k: int, out: np.ndarray) -> None:
        if self.backend == "numba":
            _kernels.decode_label_votes(self.acc, self._lo, self._lane, self._mask, self.priority, out)
            return
        rows = np.arange(self._lo, self._lo + k) % self.window
        words = self.acc[rows]
        counts = [(words >> (self._lane * self.word(c))) & self._mask for c in range(self.num_classes)]
        best = np.full(out.shape, self.priority[0], dtype=np.uint8)
        best_count = counts[self.priority[0]]
        for cls in self.priority[1:]:
            better = counts[cls] > best_count
            best[better] = cls
            best_count = np.where(better, counts[cls], best_count)
        out[...] = best
        self.acc[rows] = 0


class ProbabilityVoter(_StreamingVoter):
    """Mean-probability vote over probability patches (n, C, P, P, P) float."""

    def __init__(self, shape: Sequence[int], window: int, *, num_classes: int = 4,
                 tie_priority: Sequence[int] | None = None) -> None:
        super().__init__(shape, window, tie_priority, num_classes)
        self.acc = np.zeros((num_classes, window, self.shape[1], self.shape[2]), dtype=np.float32)

    def _check_patches(self, patches: np.ndarray) -> None:
        expected = (self.num_classes,) + (self.window,) * 3
        if not isinstance(patches, np.ndarray) or patches.dtype.kind != "f" or patches.shape[1:] != expected:
            raise ValueError(f"probability patches must be float (n, {', '.join(map(str, expected))}), got "
                             f"{getattr(patches, 'dtype', type(patches).__name__)} {getattr(patches, 'shape', '')}")
        if not np.isfinite(patches).all():
            raise ValueError("probability patches contain NaN or Inf")

    def _accumulate(self, patches: np.ndarray, origins: np.ndarray) -> None:
        p = self.window
        for patch, (z, y, x) in zip(patches, origins, strict=True):
            for dst, src in _ring_pieces(int(z), p, p):
                self.acc[:, dst, y : y + p, x : x + p] += patch[:, src]

    def _decode(self, k: int, out: np.ndarray) -> None:
        rows = np.arange(self._lo, self._lo + k) % self.window
        sums = self.acc[:, rows]
        best = np.full(out.shape, self.priority[0], dtype=np.uint8)
        best_val = sums[self.priority[0]].copy()
        for cls in self.priority[1:]:
            better = sums[cls] > best_val
            best[better] = cls
            np.maximum(best_val, sums[cls], out=best_val)
        out[...] = best
        self.acc[:, rows] = 0
