"""Reading a user's scan for the server, and putting the answer back on the file's own grid.

A scan (a NIfTI file or a DICOM series folder) is loaded with :func:`s4c.io.load_canonical`
(``scl_slope``/``scl_inter`` or the DICOM rescale applied), in the project's canonical frame (the
same one training and evaluation use), and converted to int16 HU, refusing values that int16 cannot
hold. Labels coming back are reoriented to the file's orientation and saved with the file's own affine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from s4c.io import CanonicalVolume, Volume, load_canonical, to_canonical

_INT16 = np.iinfo(np.int16)


class ScanError(ValueError):
    """A scan cannot be sent: the message names the file and the problem."""


@dataclass(frozen=True)
class Scan:
    """A scan ready to send: ``ct`` int16 (Z, Y, X) on the canonical grid of ``volume``
    (:func:`s4c.io.load_canonical`), with that grid's spacing and affine."""

    volume: CanonicalVolume
    ct: np.ndarray

    @property
    def name(self) -> str:
        return self.volume.name

    @property
    def spacing(self) -> tuple[float, float, float]:
        return self.volume.spacing

    @property
    def affine(self) -> np.ndarray:
        return self.volume.affine

    @property
    def source_affine(self) -> np.ndarray:
        return self.volume.source_affine

    @property
    def source_shape(self) -> tuple[int, int, int]:
        return self.volume.source_shape

    def to_file(self, array: np.ndarray) -> np.ndarray:
        """A (Z, Y, X) array on the canonical grid, reoriented to the source file's (Z, Y, X) grid."""
        return self.volume.to_source(array)

    def canonical_to_file_index(self, zyx) -> list[float]:
        """A (z, y, x) index on the canonical grid as a (z, y, x) index of the source file."""
        return self.volume.source_index(zyx)


def to_int16(array: np.ndarray, name: str) -> np.ndarray:
    """HU values as int16: integers kept, floats rounded; NaN, Inf and out-of-range values refused."""
    if array.dtype == np.int16:
        return array
    kind = array.dtype.kind
    if kind not in "iuf":
        raise ScanError(f"{name}: unsupported voxel type {array.dtype}")
    if kind == "f":
        finite = np.isfinite(array)
        if not finite.all():
            raise ScanError(f"{name}: {int(array.size - np.count_nonzero(finite))} voxels are NaN or Inf")
    lo, hi = float(array.min()), float(array.max())
    if lo < _INT16.min - 0.5 or hi > _INT16.max + 0.5:
        raise ScanError(f"{name}: values {lo:g}..{hi:g} do not fit int16 Hounsfield units "
                        f"(check scl_slope / scl_inter and the data type)")
    if kind == "f":
        return np.rint(array).astype(np.int16)
    return array.astype(np.int16)


def canonical(volume: Volume, name: str) -> Scan:
    """Reorient a loaded volume to RAS+ (:func:`s4c.io.to_canonical`) and convert it to int16."""
    try:
        canon = to_canonical(volume, name)
    except ValueError as exc:
        raise ScanError(str(exc)) from exc
    return Scan(canon, to_int16(canon.array, name))


def read_scan(path: str | Path, series: str | None = None) -> Scan:
    """Load a CT for sending, a NIfTI file or a DICOM series folder (``series``: its SeriesInstanceUID,
    for a folder holding several); raises :class:`ScanError` with a clear message on any problem."""
    path = Path(path)
    if not path.exists():
        raise ScanError(f"{path}: no such file or folder")
    try:
        volume = load_canonical(path, series=series)
    except ValueError as exc:
        raise ScanError(str(exc)) from exc
    return Scan(volume, to_int16(volume.array, volume.name))
