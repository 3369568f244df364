"""The one NIfTI load/save pair of the project, and the one canonical frame every path works in.

Arrays are returned Z, Y, X: nibabel's voxel order (i, j, k) reversed. The affine kept in a
:class:`Volume` is the file's own, which maps (i, j, k) = (X, Y, Z) indices to world millimetres, so
``save_nifti(path, vol.array, vol.affine)`` writes back the same grid it was loaded from.

Training, evaluation, the demo, the client and ``s4c classify`` read scans with
:func:`load_canonical`: the file's voxels reoriented (flips and axis swaps only, no resampling) to
RAS+, so the array's X, Y and Z run to the patient's right, anterior and superior whatever order the
file stores them in. A network therefore sees one anatomy orientation in training and in serving.
Labels go back to the file's own grid and affine with :meth:`CanonicalVolume.save`.

A scan is a NIfTI file or a folder holding a DICOM CT series (:mod:`s4c.dicom`), told apart by
content: a folder, or a file with the DICOM preamble, is read as DICOM. A series' own grid is the
one dcm2niix writes, so labels saved for it line up with dcm2niix's conversion of the same series.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.openers import ImageOpener

from s4c.dicom import DicomSeries, is_dicom_file, read_series
from s4c.grid import affine_from_spacing, spacing_from_affine, voxel_to_world

__all__ = ["MAX_NIFTI_VOXELS", "CanonicalVolume", "Volume", "affine_from_spacing", "check_orthogonal", "is_dicom",
           "load_canonical", "load_canonical_pair", "load_nifti", "save_nifti", "spacing_from_affine",
           "to_canonical", "voxel_to_world"]


@dataclass(frozen=True)
class Volume:
    """A 3-D image on a grid.

    ``array`` is (Z, Y, X); ``spacing`` is (Z, Y, X) mm; ``affine`` is the NIfTI 4x4 (i, j, k) -> world.
    """

    array: np.ndarray
    spacing: tuple[float, float, float]
    affine: np.ndarray


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


#: Largest cosine between two voxel axes that still counts as an orthogonal grid.
SHEAR_TOLERANCE = 1e-3


def check_orthogonal(affine: np.ndarray, name: str) -> None:
    """Refuse sheared grids (e.g. an uncorrected gantry tilt): the pipeline works on orthogonal voxels,
    and a sheared grid has no exact reorientation to the canonical frame."""
    cols = np.asarray(affine, dtype=np.float64)[:3, :3]
    unit = cols / np.linalg.norm(cols, axis=0)
    off = float(np.abs(unit.T @ unit - np.eye(3)).max())
    if off > SHEAR_TOLERANCE:
        raise ValueError(f"{name}: the voxel axes are sheared (cosine {off:.3g} between axes); resample the "
                         f"series to an orthogonal grid first")


@dataclass(frozen=True)
class CanonicalVolume:
    """A volume in the canonical frame (RAS+), remembering the file grid it came from.

    ``array`` is (Z, Y, X) on the canonical grid (X to the right, Y anterior, Z superior), ``spacing``
    its (Z, Y, X) mm and ``affine`` its (i, j, k) -> world map; the world coordinates of every voxel
    are those it had in the file. ``source_affine`` and ``source_shape`` are the file's own.
    """

    name: str
    array: np.ndarray
    spacing: tuple[float, float, float]
    affine: np.ndarray
    source_affine: np.ndarray
    source_shape: tuple[int, int, int]
    _back: np.ndarray
    #: The DICOM series it was read from (its grid is the source grid), or None for a NIfTI file.
    dicom: DicomSeries | None = None

    def to_source(self, array: np.ndarray) -> np.ndarray:
        """A (Z, Y, X) array on the canonical grid, reoriented onto the file's (Z, Y, X) grid."""
        if array.shape != self.array.shape:
            raise ValueError(f"{self.name}: array shape {array.shape} is not the canonical shape {self.array.shape}")
        xyz = nib.orientations.apply_orientation(array.transpose(2, 1, 0), self._back)
        out = np.ascontiguousarray(xyz.transpose(2, 1, 0))
        if out.shape != self.source_shape:  # an orientation transform only permutes and flips axes
            raise AssertionError(f"reoriented shape {out.shape} != source shape {self.source_shape}")
        return out

    def source_index(self, zyx) -> list[float]:
        """A (z, y, x) index on the canonical grid as a (z, y, x) index of the file's grid."""
        z, y, x = (float(v) for v in zyx)
        world = self.affine @ np.array([x, y, z, 1.0])
        i, j, k, _ = np.linalg.solve(self.source_affine, world)
        return [float(k), float(j), float(i)]

    def save(self, path: str | Path, array: np.ndarray) -> Path:
        """Write a canonical-grid (Z, Y, X) array as a NIfTI on the file's own grid and affine."""
        return save_nifti(path, self.to_source(np.asarray(array)), self.source_affine)


def to_canonical(volume: Volume, name: str = "volume") -> CanonicalVolume:
    """``volume`` reoriented to RAS+ (a view-free copy; the input is not modified). Raises
    ``ValueError`` for a sheared grid."""
    affine = np.asarray(volume.affine, dtype=np.float64)
    check_orthogonal(affine, name)
    xyz = volume.array.transpose(2, 1, 0)
    stored, ras = nib.orientations.io_orientation(affine), nib.orientations.axcodes2ornt(("R", "A", "S"))
    forward = nib.orientations.ornt_transform(stored, ras)
    data = nib.orientations.apply_orientation(xyz, forward)
    new_affine = affine @ nib.orientations.inv_ornt_aff(forward, xyz.shape)
    back = nib.orientations.ornt_transform(ras, stored)
    return CanonicalVolume(name, np.ascontiguousarray(data.transpose(2, 1, 0)), spacing_from_affine(new_affine),
                           new_affine, affine, tuple(int(n) for n in volume.array.shape), back)


def is_dicom(path: str | Path) -> bool:
    """True when ``path`` is read as DICOM: a folder, or a file with the DICOM preamble."""
    path = Path(path)
    return path.is_dir() or is_dicom_file(path)


def load_canonical(path: str | Path, *, series: str | None = None,
                   max_voxels: int = MAX_NIFTI_VOXELS) -> CanonicalVolume:
    """The one reader of scans and label maps: a NIfTI file (:func:`load_nifti`) or a DICOM CT series
    folder (:func:`s4c.dicom.read_series`; ``series`` picks a SeriesInstanceUID), then
    :func:`to_canonical`."""
    path = Path(path)
    if not is_dicom(path):
        if series is not None:
            raise ValueError(f"{path.name}: a series UID was given, but this is not a DICOM folder")
        return to_canonical(load_nifti(path, max_voxels=max_voxels), path.name)
    dicom = read_series(path, series, max_voxels=max_voxels)
    volume = Volume(dicom.array, dicom.spacing, dicom.affine)
    return replace(to_canonical(volume, path.name), dicom=dicom)


def load_canonical_pair(image_path: str | Path, label_path: str | Path,
                        name: str = "case") -> tuple[CanonicalVolume, CanonicalVolume]:
    """An image and its label map, both canonical; refuses a label map on another grid. The grids are
    compared in the canonical frame, so a DICOM series pairs with a label NIfTI of the same voxels in
    another storage order (dcm2niix's, or RAS)."""
    img, lab = load_canonical(image_path), load_canonical(label_path)
    if img.array.shape != lab.array.shape:
        raise ValueError(f"{name}: image shape {img.source_shape} != label shape {lab.source_shape}")
    if not np.allclose(img.affine, lab.affine, rtol=0, atol=1e-3):
        raise ValueError(f"{name}: the label map's affine differs from the image's (not the same grid)")
    return img, lab
