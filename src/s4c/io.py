"""The one NIfTI load/save pair of the project.

Arrays are returned Z, Y, X: nibabel's voxel order (i, j, k) reversed. The affine kept in a
:class:`Volume` is the file's own, which maps (i, j, k) = (X, Y, Z) indices to world millimetres, so
``save_nifti(path, vol.array, vol.affine)`` writes back the same grid it was loaded from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.openers import ImageOpener

from s4c.validation import check_spacing


@dataclass(frozen=True)
class Volume:
    """A 3-D image on a grid.

    ``array`` is (Z, Y, X); ``spacing`` is (Z, Y, X) mm; ``affine`` is the NIfTI 4x4 (i, j, k) -> world.
    """

    array: np.ndarray
    spacing: tuple[float, float, float]
    affine: np.ndarray


def spacing_from_affine(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel sizes (Z, Y, X) in mm: the column norms of the affine, reversed into array order."""
    zooms = np.sqrt((np.asarray(affine, dtype=np.float64)[:3, :3] ** 2).sum(axis=0))
    return check_spacing(zooms[::-1], "affine voxel size")


def affine_from_spacing(spacing, origin=(0.0, 0.0, 0.0)) -> np.ndarray:
    """An axis-aligned RAS affine for a (Z, Y, X) spacing; ``origin`` is the world (x, y, z) of voxel 0."""
    sz, sy, sx = check_spacing(spacing)
    affine = np.diag([sx, sy, sz, 1.0])
    affine[:3, 3] = origin
    return affine


def _check_raw_voxel_size(img, path: Path) -> None:
    """Reject a zero, negative or NaN voxel size in the header as written.

    nibabel quietly replaces zero pixdims by 1 mm on load, which would give a silently wrong grid
    whenever the affine is built from pixdim (no sform).
    """
    try:
        with ImageOpener(str(path)) as fh:
            raw = img.header_class.from_fileobj(fh, check=False)
    except Exception:  # e.g. a .hdr/.img pair; nibabel's own checks apply
        return
    if int(raw.get("sform_code", 0)) > 0:
        return
    zooms = np.asarray(raw["pixdim"][1:4], dtype=np.float64)
    if not (np.isfinite(zooms).all() and (zooms > 0).all()):
        raise ValueError(f"{path.name}: header voxel size {zooms.tolist()} (x, y, z) must be finite and > 0")


#: Header shapes above this many voxels are refused before any data is read (2^30: a 1024 x 1024 x 1024
#: volume), so a corrupt or hostile header cannot make the loader allocate terabytes.
MAX_NIFTI_VOXELS = 1 << 30


def load_nifti(path: str | Path, *, max_voxels: int = MAX_NIFTI_VOXELS) -> Volume:
    """Load a 3-D NIfTI file as a (Z, Y, X) array with ``scl_slope``/``scl_inter`` applied.

    The stored dtype is kept when the scaling is the identity; otherwise nibabel returns floats.
    Raises ``ValueError`` for anything that is not a readable 3-D volume with a usable affine, and for
    a header that declares more than ``max_voxels`` voxels.
    """
    path = Path(path)
    try:
        img = nib.load(str(path))
        shape = tuple(int(n) for n in img.shape)
        if int(np.prod(shape, dtype=np.float64)) > max_voxels:
            raise ValueError(f"header declares shape {shape}, more than {max_voxels} voxels")
        if img.get_data_dtype().kind not in "iufb":
            raise ValueError(f"unsupported voxel type {img.get_data_dtype()}")
        data = np.asanyarray(img.dataobj)
    except FileNotFoundError:
        raise
    except Exception as exc:  # nibabel raises many types for corrupt files
        raise ValueError(f"cannot read NIfTI file {path.name}: {exc}") from exc
    _check_raw_voxel_size(img, path)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ValueError(f"{path.name}: expected a 3-D volume, got shape {data.shape}")
    affine = np.asarray(img.affine, dtype=np.float64)
    if not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise ValueError(f"{path.name}: affine is singular or not finite")
    spacing = spacing_from_affine(affine)
    return Volume(np.ascontiguousarray(data.transpose(2, 1, 0)), spacing, affine)


def save_nifti(path: str | Path, array: np.ndarray, affine: np.ndarray) -> Path:
    """Write a (Z, Y, X) array to ``path`` with ``affine`` ((i, j, k) -> world), keeping its dtype.

    Header text fields are left empty and no extensions are written, so no identifying text leaks.
    """
    if array.ndim != 3:
        raise ValueError(f"expected a 3-D (Z, Y, X) array, got shape {array.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(np.asarray(array).transpose(2, 1, 0), np.asarray(affine, dtype=np.float64))
    img.header.set_data_dtype(array.dtype)
    img.header.set_xyzt_units("mm", "sec")
    img.header["descrip"] = b""
    img.header["aux_file"] = b""
    img.set_qform(img.affine, code=1)
    img.set_sform(img.affine, code=1)
    # Unscaled storage: the array's values are the values on disk.
    img.header.set_slope_inter(1.0, 0.0)
    nib.save(img, str(path))
    return path


def voxel_to_world(affine: np.ndarray, zyx) -> tuple[float, float, float]:
    """World (x, y, z) mm of a (z, y, x) voxel index under a NIfTI (i, j, k) affine."""
    z, y, x = (float(v) for v in zyx)
    w = np.asarray(affine, dtype=np.float64) @ np.array([x, y, z, 1.0])
    return float(w[0]), float(w[1]), float(w[2])
