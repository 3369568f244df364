"""Reading a user's NIfTI scan for the server, and putting the answer back on the file's own grid.

A scan is loaded with :func:`s4c.io.load_nifti` (``scl_slope``/``scl_inter`` applied), reoriented to
one canonical orientation (RAS+: the array's X, Y, Z run to the patient's right, anterior and
superior) and converted to int16 HU, refusing values that int16 cannot hold. Labels coming back are
reoriented to the file's orientation and saved with the file's own affine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from s4c.io import Volume, load_nifti, save_nifti, spacing_from_affine

_INT16 = np.iinfo(np.int16)


class ScanError(ValueError):
    """A scan cannot be sent: the message names the file and the problem."""


@dataclass(frozen=True)
class Scan:
    """A scan ready to send: ``ct`` int16 (Z, Y, X) on the canonical grid, its spacing and affine.

    ``source`` is the file as loaded; ``to_file`` reorients a canonical (Z, Y, X) array back onto it.
    """

    name: str
    ct: np.ndarray
    spacing: tuple[float, float, float]
    affine: np.ndarray
    source_affine: np.ndarray
    source_shape: tuple[int, int, int]
    _back: np.ndarray

    def to_file(self, array: np.ndarray) -> np.ndarray:
        """A (Z, Y, X) array on the canonical grid, reoriented to the source file's (Z, Y, X) grid."""
        if array.shape != self.ct.shape:
            raise ValueError(f"array shape {array.shape} is not the scan's canonical shape {self.ct.shape}")
        xyz = nib.orientations.apply_orientation(array.transpose(2, 1, 0), self._back)
        out = np.ascontiguousarray(xyz.transpose(2, 1, 0))
        assert out.shape == self.source_shape
        return out

    def canonical_to_file_index(self, zyx) -> list[float]:
        """A (z, y, x) index on the canonical grid as a (z, y, x) index of the source file."""
        z, y, x = (float(v) for v in zyx)
        world = self.affine @ np.array([x, y, z, 1.0])
        i, j, k, _ = np.linalg.solve(self.source_affine, world)
        return [float(k), float(j), float(i)]


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


#: Largest angle (radians) between voxel axes and a right angle that still counts as an orthogonal grid.
SHEAR_TOLERANCE = 1e-3


def check_orthogonal(affine: np.ndarray, name: str) -> None:
    """Refuse sheared grids (e.g. an uncorrected gantry tilt): the pipeline works on orthogonal voxels."""
    cols = np.asarray(affine, dtype=np.float64)[:3, :3]
    unit = cols / np.linalg.norm(cols, axis=0)
    off = np.abs(unit.T @ unit - np.eye(3)).max()
    if off > SHEAR_TOLERANCE:
        raise ScanError(f"{name}: the voxel axes are sheared (cosine {off:.3g} between axes); resample the series "
                        f"to an orthogonal grid first")


def canonical(volume: Volume, name: str) -> Scan:
    """Reorient a loaded volume to RAS+ and convert it to int16."""
    affine = volume.affine
    check_orthogonal(affine, name)
    xyz = volume.array.transpose(2, 1, 0)
    ornt = nib.orientations.io_orientation(affine)
    ras = nib.orientations.axcodes2ornt(("R", "A", "S"))
    forward = nib.orientations.ornt_transform(ornt, ras)
    data = nib.orientations.apply_orientation(xyz, forward)
    new_affine = affine @ nib.orientations.inv_ornt_aff(forward, xyz.shape)
    back = nib.orientations.ornt_transform(ras, ornt)
    ct = to_int16(np.ascontiguousarray(data.transpose(2, 1, 0)), name)
    return Scan(name, ct, spacing_from_affine(new_affine), new_affine, affine, tuple(volume.array.shape), back)


def read_scan(path: str | Path) -> Scan:
    """Load a NIfTI CT for sending; raises :class:`ScanError` with a clear message on any problem."""
    path = Path(path)
    if not path.exists():
        raise ScanError(f"{path}: no such file")
    try:
        volume = load_nifti(path)
    except ValueError as exc:
        raise ScanError(str(exc)) from exc
    return canonical(volume, path.name)


def save_labels(path: str | Path, scan: Scan, labels: np.ndarray) -> Path:
    """Write canonical-grid labels as a NIfTI on the scan file's own grid and affine."""
    return save_nifti(path, scan.to_file(np.asarray(labels, dtype=np.uint8)), scan.source_affine)
