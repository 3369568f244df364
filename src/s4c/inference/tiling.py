"""Window placement and patch extraction for the sliding window (no merging here).

Windows are cubes of side ``window`` placed every ``stride`` voxels along each axis; the last window
on an axis sits flush with the far edge, so every voxel is covered at least once. Arrays are Z, Y, X.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def window_starts(length: int, window: int, stride: int) -> np.ndarray:
    """Start indices of the windows along one axis of ``length`` voxels (``length >= window``).

    ``range(0, length - window + 1, stride)`` plus ``length - window`` if the stride skips it.
    E.g. ``window_starts(512, 64, 20)`` has 24 entries, ending in ``440, 448``.
    """
    if length < window:
        raise ValueError(f"axis length {length} is shorter than the window {window}; pad it first")
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] != length - window:
        starts.append(length - window)
    return np.asarray(starts, dtype=np.int64)


def window_origins(shape: Sequence[int], window: int, stride: int) -> np.ndarray:
    """(n, 3) int64 window origins (z, y, x) over a volume of ``shape``, in Z-major (raster) order.

    Z-major order is what lets the voter finalise slabs of Z as soon as no later window touches them.
    """
    axes = [window_starts(int(n), window, stride) for n in shape]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
    return grid.reshape(-1, 3)


def max_coverage(shape: Sequence[int], window: int, stride: int) -> int:
    """The largest number of windows that cover any single voxel of ``shape``."""
    total = 1
    for n in shape:
        cover = np.zeros(int(n), dtype=np.int64)
        for s in window_starts(int(n), window, stride):
            cover[s : s + window] += 1
        total *= int(cover.max())
    return total


def padded_shape(shape: Sequence[int], window: int) -> tuple[int, int, int]:
    """``shape`` with every axis shorter than ``window`` grown to ``window``."""
    return tuple(max(int(n), window) for n in shape)  # type: ignore[return-value]


def pad_to_window(image: np.ndarray, window: int, pad_value: float) -> np.ndarray:
    """Pad axes shorter than ``window`` at their far end with ``pad_value``; returns ``image`` unchanged
    (not a copy) when no axis is short. Padding at the far end keeps voxel (0, 0, 0) in place, so
    cropping back is ``out[:Z, :Y, :X]``.
    """
    widths = [(0, max(0, window - n)) for n in image.shape]
    if not any(after for _, after in widths):
        return image
    return np.pad(image, widths, mode="constant", constant_values=pad_value)


def extract_patches(image: np.ndarray, origins: np.ndarray, window: int, out: np.ndarray) -> np.ndarray:
    """Copy the windows at ``origins`` ((n, 3) z, y, x) of ``image`` into ``out[:n, 0]`` as float32.

    ``out`` is a preallocated (N >= n, 1, window, window, window) float32 buffer, reused across
    batches so that tiling allocates nothing per batch. Returns the view ``out[:n]``.
    """
    n = len(origins)
    for i, (z, y, x) in enumerate(origins):
        np.copyto(out[i, 0], image[z : z + window, y : y + window, x : x + window], casting="unsafe")
    return out[:n]
