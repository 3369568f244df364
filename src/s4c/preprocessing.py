"""Preprocessing shared by training, in-process inference and the Triton backend.

* :class:`Normalization`: HU clipping and scaling. Its constants travel inside every checkpoint, so
  all three paths normalise identically.
* Resampling to a model's working spacing and back: images by separable linear interpolation,
  labels back onto the input grid by nearest neighbour.

Grids are voxel-centred: voxel ``i`` of an axis with spacing ``s`` covers ``[i*s, (i+1)*s)``, so the
physical extent ``n*s`` is kept (scipy's ``zoom(grid_mode=True)`` convention). Arrays are Z, Y, X.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from s4c.validation import check_spacing, check_volume

#: Relative spacing difference below which no resampling is done.
SPACING_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Normalization:
    """Clip HU to ``[hu_min, hu_max]`` and map that range linearly onto ``[0, 1]``.

    The default window covers fat to enhanced arteries, the tissues that separate pancreas,
    tumour and duct.
    """

    hu_min: float = -160.0
    hu_max: float = 300.0

    def __post_init__(self) -> None:
        if not (np.isfinite(self.hu_min) and np.isfinite(self.hu_max) and self.hu_max > self.hu_min):
            raise ValueError(f"normalisation needs finite hu_min < hu_max, got {self.hu_min}, {self.hu_max}")

    def apply(self, hu: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Normalised float32 copy of ``hu`` (any shape), or written into ``out`` when given."""
        if out is None:
            out = np.empty(hu.shape, dtype=np.float32)
        np.clip(hu, self.hu_min, self.hu_max, out=out, casting="unsafe")
        out -= np.float32(self.hu_min)
        out *= np.float32(1.0 / (self.hu_max - self.hu_min))
        return out

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Normalization:
        return cls(hu_min=float(d["hu_min"]), hu_max=float(d["hu_max"]))


def needs_resampling(spacing: Sequence[float], target: Sequence[float] | None) -> bool:
    """True unless ``target`` is None or equal to ``spacing`` within :data:`SPACING_TOLERANCE`."""
    if target is None:
        return False
    s = np.asarray(check_spacing(spacing))
    t = np.asarray(check_spacing(target, "target spacing"))
    return bool(np.any(np.abs(s - t) > SPACING_TOLERANCE * t))


def resampled_shape(shape: Sequence[int], spacing: Sequence[float], target: Sequence[float]) -> tuple[int, int, int]:
    """Shape on the ``target`` grid that keeps the physical extent: ``round(n * s / t)``, at least 1."""
    s = check_spacing(spacing)
    t = check_spacing(target, "target spacing")
    return tuple(max(1, round(n * a / b)) for n, a, b in zip(shape, s, t, strict=True))  # type: ignore[return-value]


def _source_coords(n_out: int, n_in: int, s_out: float, s_in: float) -> np.ndarray:
    """Input-axis coordinates of the output voxel centres (voxel-centred grids)."""
    return (np.arange(n_out, dtype=np.float64) + 0.5) * (s_out / s_in) - 0.5


def _resample_axis(data: np.ndarray, axis: int, n_out: int, s_in: float, s_out: float) -> np.ndarray:
    """Linear interpolation of float32 ``data`` along ``axis`` onto ``n_out`` voxel-centred samples."""
    n_in = data.shape[axis]
    coords = np.clip(_source_coords(n_out, n_in, s_out, s_in), 0, n_in - 1)
    lo = np.floor(coords).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    bshape = [1, 1, 1]
    bshape[axis] = n_out
    w = (coords - lo).astype(np.float32).reshape(bshape)
    a = np.take(data, lo, axis=axis)
    b = np.take(data, hi, axis=axis)
    b -= a
    b *= w
    a += b
    return a


#: Z slices converted to float32 at a time: bounds the working memory of a clinical-size resample.
_RESAMPLE_SLAB = 16


def resample_image(image: np.ndarray, spacing: Sequence[float], target: Sequence[float]) -> np.ndarray:
    """Resample a (Z, Y, X) image to ``target`` spacing with separable linear interpolation.

    Returns float32 of shape :func:`resampled_shape`; edge voxels are extended (no fade to zero).
    Y and X are resampled slab by slab of Z (the input is never converted to float32 as a whole), Z
    last on the in-plane result, so the extra memory is about the output's plus one slab's.
    """
    check_volume(image, "image")
    s = check_spacing(spacing)
    t = check_spacing(target, "target spacing")
    shape = resampled_shape(image.shape, s, t)
    same = [image.shape[a] == shape[a] and abs(s[a] - t[a]) <= SPACING_TOLERANCE * t[a] for a in range(3)]
    inplane = np.empty((image.shape[0], shape[1], shape[2]), dtype=np.float32)
    for z0 in range(0, image.shape[0], _RESAMPLE_SLAB):
        slab = image[z0 : z0 + _RESAMPLE_SLAB].astype(np.float32)
        for axis in (1, 2):
            if not same[axis]:
                slab = _resample_axis(slab, axis, shape[axis], s[axis], t[axis])
        inplane[z0 : z0 + _RESAMPLE_SLAB] = slab
    if same[0]:
        return inplane
    return _resample_axis(inplane, 0, shape[0], s[0], t[0])


def labels_to_grid(labels: np.ndarray, labels_spacing: Sequence[float], shape: Sequence[int],
                   spacing: Sequence[float]) -> np.ndarray:
    """Map (Z, Y, X) labels on a working grid back onto a grid of ``shape`` and ``spacing``.

    Nearest neighbour: each output voxel takes the label of the working voxel containing its centre.
    """
    src = check_spacing(labels_spacing, "labels spacing")
    dst = check_spacing(spacing)
    index = []
    for axis in range(3):
        coords = _source_coords(int(shape[axis]), labels.shape[axis], dst[axis], src[axis])
        index.append(np.clip(np.floor(coords + 0.5).astype(np.int64), 0, labels.shape[axis] - 1))
    return labels[np.ix_(*index)]
