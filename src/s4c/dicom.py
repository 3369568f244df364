"""The one DICOM reader (a CT series in a folder) and the one DICOM writer (a Segmentation object).

Reading. :func:`read_series` turns a folder of classic single-frame CT images into a (Z, Y, X) array
and a NIfTI-style RAS affine on the *series grid*: the grid dcm2niix writes for the same series.
X runs along a row (the column index), Y along the rows in reverse (row ``Rows - 1`` first), Z along
the slices sorted by their position on the slice normal (never by file name or InstanceNumber). The
affine comes from ImagePositionPatient, ImageOrientationPatient and PixelSpacing, taken from DICOM's
LPS to RAS. Rescale slope and intercept are applied per slice. A series this module cannot place on
one orthogonal grid is refused with :class:`DicomSeriesError` naming the problem and the file: no
resampling is done here, so a gantry tilt is refused, not corrected.

Writing. :func:`write_ct_series` stores a volume (a phantom) as a classic CT series, for the demo
and tests. :func:`write_segmentation` writes a phase's labels as a DICOM Segmentation Storage object
(highdicom): three binary segments (pancreas, tumour, dilated duct) with SNOMED CT codes, the
algorithm's name, version and model checksum, the source series' patient and study modules, and a
reference to every source instance.

pydicom and highdicom are imported where used: the rest of the package (and the Triton stubs) runs
without them. Compressed transfer syntaxes decode through pydicom's plugins (pylibjpeg with
pylibjpeg-openjpeg, -libjpeg and -rle, or python-gdcm).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: SOP classes read as CT images; the enhanced (multi-frame) one is refused with its own message.
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"
DICOMDIR_STORAGE = "1.2.840.10008.1.3.10"
#: ImageOrientationPatient (LPS row cosine, column cosine) of an axial and a coronal series.
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)
#: Cosine tolerance for "the same orientation" between slices and for a slice normal along the stack.
ORIENTATION_TOLERANCE = 1e-4
#: Largest tolerated deviation of the slice stack from the slice normal, in degrees (gantry tilt).
MAX_TILT_DEGREES = 0.05
#: A step between neighbouring slice positions this many times the most common step is a missing slice.
GAP_FACTOR = 1.5
#: Relative spread of slice steps tolerated as rounding in ImagePositionPatient.
STEP_TOLERANCE = 0.01

#: Transfer syntax -> the package that decodes it (for a clear message when none is installed).
DECODERS = {
    "1.2.840.10008.1.2.4.90": "pylibjpeg-openjpeg (JPEG 2000 lossless), or pillow built with OpenJPEG, or python-gdcm",
    "1.2.840.10008.1.2.4.91": "pylibjpeg-openjpeg (JPEG 2000), or pillow built with OpenJPEG, or python-gdcm",
    "1.2.840.10008.1.2.4.201": "pylibjpeg-openjpeg (HTJ2K lossless)",
    "1.2.840.10008.1.2.4.202": "pylibjpeg-openjpeg (HTJ2K lossless RPCL)",
    "1.2.840.10008.1.2.4.203": "pylibjpeg-openjpeg (HTJ2K)",
    "1.2.840.10008.1.2.4.50": "pylibjpeg-libjpeg (JPEG baseline), or python-gdcm",
    "1.2.840.10008.1.2.4.51": "pylibjpeg-libjpeg (JPEG extended), or python-gdcm",
    "1.2.840.10008.1.2.4.57": "pylibjpeg-libjpeg (JPEG lossless), or python-gdcm",
    "1.2.840.10008.1.2.4.70": "pylibjpeg-libjpeg (JPEG lossless SV1), or python-gdcm",
    "1.2.840.10008.1.2.4.80": "pyjpegls or pylibjpeg-libjpeg (JPEG-LS lossless), or python-gdcm",
    "1.2.840.10008.1.2.4.81": "pyjpegls or pylibjpeg-libjpeg (JPEG-LS), or python-gdcm",
    "1.2.840.10008.1.2.5": "pylibjpeg-rle (RLE lossless), or numpy for pydicom's own decoder",
}


class DicomSeriesError(ValueError):
    """A DICOM folder that cannot be read as one CT volume; the message names the problem and file."""


@dataclass(frozen=True)
class SeriesInfo:
    """One series found in a folder."""

    uid: str
    description: str
    modality: str
    n_files: int

    def line(self) -> str:
        return f"{self.uid}  '{self.description}'  {self.modality}, {self.n_files} file(s)"


@dataclass(frozen=True)
class DicomSeries:
    """A CT series on its series grid.

    ``array`` is (Z, Y, X) Hounsfield units (int32 when slope and intercept are integers, else
    float32); ``affine`` maps (i, j, k) = (X, Y, Z) indices to RAS mm, as in the NIfTI dcm2niix writes.
    ``files`` and ``headers`` (pydicom datasets without pixel data) are the slices in Z order.
    ``notes`` say what was skipped (localizers).
    """

    array: np.ndarray
    affine: np.ndarray
    series_uid: str
    description: str
    files: tuple[Path, ...]
    headers: tuple = field(repr=False)
    notes: tuple[str, ...] = ()

    @property
    def spacing(self) -> tuple[float, float, float]:
        """(Z, Y, X) mm."""
        zooms = np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))
        return float(zooms[2]), float(zooms[1]), float(zooms[0])

    def to_frames(self, array: np.ndarray) -> np.ndarray:
        """A (Z, Y, X) array on the series grid as DICOM frames: (slice, row, column), in ``headers`` order."""
        if array.shape != self.array.shape:
            raise ValueError(f"array shape {array.shape} is not the series shape {self.array.shape}")
        return np.ascontiguousarray(array[:, ::-1, :])


def is_dicom_file(path: str | Path) -> bool:
    """True when ``path`` is a file with the DICOM Part 10 preamble ('DICM' at byte 128)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _pydicom():
    try:
        import pydicom
    except ImportError as exc:  # the core install has no DICOM packages
        raise DicomSeriesError("reading DICOM needs pydicom: pip install 's4c[dicom]'") from exc
    return pydicom


def _scan_folder(folder: Path) -> tuple[dict[str, list], int]:
    """Headers of every DICOM file under ``folder``, grouped by SeriesInstanceUID; and the files seen."""
    pydicom = _pydicom()
    groups: dict[str, list] = {}
    seen = 0
    files = [folder] if folder.is_file() else sorted(p for p in folder.rglob("*") if p.is_file())
    for path in files:
        seen += 1
        if not is_dicom_file(path):
            continue
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception as exc:  # pydicom raises many types for a broken header
            raise DicomSeriesError(f"{path}: cannot read the DICOM header ({exc}); the file is damaged "
                                   f"or truncated") from exc
        meta = getattr(ds, "file_meta", None)
        for keyword, meta_keyword in (("SOPClassUID", "MediaStorageSOPClassUID"),
                                      ("SOPInstanceUID", "MediaStorageSOPInstanceUID")):
            # Some de-identification tools blank the dataset's copy; the file meta holds the same UID.
            if not str(ds.get(keyword, "")) and meta is not None and str(meta.get(meta_keyword, "")):
                setattr(ds, keyword, str(meta.get(meta_keyword)))
        if str(ds.get("SOPClassUID", "")) == DICOMDIR_STORAGE:
            continue
        if "SeriesInstanceUID" not in ds:
            raise DicomSeriesError(f"{path}: a DICOM file without SeriesInstanceUID; the file is damaged or "
                                   f"truncated, or not an image")
        groups.setdefault(str(ds.SeriesInstanceUID), []).append((path, ds))
    if "" in groups:
        # Some de-identification tools blank the series and study UIDs. A DICOM SEG must name both, so
        # derive them from the instances (the same UIDs on every run) and say so.
        members = groups.pop("")
        sops = sorted(str(ds.get("SOPInstanceUID", "")) for _, ds in members)
        uid = str(pydicom.uid.generate_uid(entropy_srcs=[*sops, "series"]))
        for _, ds in members:
            ds.SeriesInstanceUID = uid
            ds.s4c_derived_uids = True
            if not str(ds.get("StudyInstanceUID", "")):
                ds.StudyInstanceUID = str(pydicom.uid.generate_uid(entropy_srcs=[*sops, "study"]))
        groups.setdefault(uid, []).extend(members)
    return groups, seen


def _info(uid: str, members: list) -> SeriesInfo:
    ds = members[0][1]
    return SeriesInfo(uid, str(ds.get("SeriesDescription", "")), str(ds.get("Modality", "")), len(members))


def list_series(folder: str | Path) -> list[SeriesInfo]:
    """The series in ``folder`` (searched recursively), by UID."""
    groups, _ = _scan_folder(Path(folder))
    return [_info(uid, members) for uid, members in sorted(groups.items())]


def _series_table(groups: dict[str, list]) -> str:
    return "\n".join(f"  {_info(uid, m).line()}" for uid, m in sorted(groups.items()))


def _vector(ds, keyword: str, n: int, path: Path) -> np.ndarray:
    value = ds.get(keyword)
    try:
        v = np.array([float(x) for x in value], dtype=np.float64)
    except (TypeError, ValueError):
        v = np.array([])
    if v.shape != (n,) or not np.isfinite(v).all():
        raise DicomSeriesError(f"{path.name}: {keyword} is missing or not {n} numbers ({value!r})")
    return v


def _decode(pydicom, path: Path, transfer_syntax: str) -> np.ndarray:
    try:
        ds = pydicom.dcmread(path)
        return ds.pixel_array
    except Exception as exc:
        text = str(exc)
        if transfer_syntax in DECODERS and any(w in text.lower() for w in ("plugin", "handler", "decoder",
                                                                          "missing required dependencies")):
            raise DicomSeriesError(f"{path.name}: transfer syntax {transfer_syntax} needs a decoder that is not "
                                   f"installed: {DECODERS[transfer_syntax]} ({text.splitlines()[0]})") from exc
        first = text.splitlines()[0] if text else repr(exc)
        raise DicomSeriesError(f"{path.name}: cannot decode the pixel data ({first}); the file is damaged or "
                               f"truncated") from exc


def read_series(folder: str | Path, series_uid: str | None = None, *, max_voxels: int | None = None) -> DicomSeries:
    """Read the CT series in ``folder`` (searched recursively; a single file is a one-file folder) onto
    its series grid.

    ``series_uid`` picks one series when the folder holds several; without it a folder with more than
    one series is refused with the list of them. Raises :class:`DicomSeriesError` for anything that
    is not one classic CT series on an orthogonal, gap-free grid.
    """
    folder = Path(folder)
    if not folder.exists():
        raise DicomSeriesError(f"{folder}: no such folder")
    groups, seen = _scan_folder(folder)
    if not groups:
        raise DicomSeriesError(f"{folder}: no DICOM files found ({seen} file(s) looked at; a DICOM file "
                               f"starts with the 128-byte preamble and 'DICM')")
    if series_uid is None:
        if len(groups) > 1:
            raise DicomSeriesError(f"{folder}: holds {len(groups)} series; pick one by its SeriesInstanceUID "
                                   f"(--series, --arterial-series, --venous-series):\n{_series_table(groups)}")
        series_uid = next(iter(groups))
    elif series_uid not in groups:
        raise DicomSeriesError(f"{folder}: no series {series_uid}; it holds:\n{_series_table(groups)}")
    members = groups[series_uid]
    return _assemble(folder, series_uid, members, max_voxels)


def _assemble(folder: Path, uid: str, members: list, max_voxels: int | None) -> DicomSeries:
    pydicom = _pydicom()
    first = members[0][1]
    modality = str(first.get("Modality", ""))
    if modality != "CT":
        raise DicomSeriesError(f"{folder}: series {uid} is modality {modality or '(none)'}, not CT")
    notes: list[str] = []
    if getattr(first, "s4c_derived_uids", False):
        notes.append(f"the series has no SeriesInstanceUID (blanked by de-identification?); derived {uid} "
                     f"from its SOP instance UIDs, and a StudyInstanceUID likewise where blank")
    slices = []
    for path, ds in members:
        sop = str(ds.get("SOPClassUID", ""))
        if sop == ENHANCED_CT_IMAGE_STORAGE or int(ds.get("NumberOfFrames", 1) or 1) > 1:
            raise DicomSeriesError(f"{path.name}: enhanced multi-frame CT is not supported; export the series "
                                   f"as classic CT images (one file per slice)")
        if str(ds.get("Modality", "")) != "CT":
            raise DicomSeriesError(f"{path.name}: modality {ds.get('Modality')!s}, not CT, in series {uid}")
        if "LOCALIZER" in [str(v).upper() for v in (ds.get("ImageType") or [])]:
            notes.append(f"skipped localizer image {path.name}")
            continue
        if int(ds.get("SamplesPerPixel", 1)) != 1:
            raise DicomSeriesError(f"{path.name}: {ds.SamplesPerPixel} samples per pixel; CT is one")
        slices.append((path, ds))
    if not slices:
        raise DicomSeriesError(f"{folder}: series {uid} holds only localizer images")
    if len(slices) < 2:
        raise DicomSeriesError(f"{folder}: series {uid} has one slice; a volume needs at least two")

    orient = [_vector(ds, "ImageOrientationPatient", 6, p) for p, ds in slices]
    # The orientation most slices share is the stack's; name a slice that differs from it.
    agree = [sum(np.abs(o - other).max() <= ORIENTATION_TOLERANCE for other in orient) for o in orient]
    ref = orient[int(np.argmax(agree))]
    odd = [(p, o) for (p, _), o in zip(slices, orient, strict=True) if np.abs(o - ref).max() > ORIENTATION_TOLERANCE]
    if odd:
        p, o = odd[0]
        raise DicomSeriesError(f"{p.name}: ImageOrientationPatient {o.tolist()} differs from the series' "
                               f"{ref.tolist()} ({len(odd)} of {len(slices)} slices differ); the slices are not one "
                               f"stack")
    for keyword in ("Rows", "Columns", "PixelSpacing"):
        values = {str(ds.get(keyword)) for _, ds in slices}
        if len(values) > 1:
            raise DicomSeriesError(f"{folder}: {keyword} differs between slices of series {uid}: "
                                   f"{', '.join(sorted(values))}")
    rowcos, colcos = ref[:3], ref[3:]
    if abs(float(rowcos @ colcos)) > 1e-3 or not np.allclose([np.linalg.norm(rowcos), np.linalg.norm(colcos)], 1,
                                                              atol=1e-3):
        raise DicomSeriesError(f"{slices[0][0].name}: ImageOrientationPatient {ref.tolist()} is not two "
                               f"orthonormal directions")
    normal = np.cross(rowcos, colcos)
    positions = np.array([_vector(ds, "ImagePositionPatient", 3, p) for p, ds in slices])
    depth = positions @ normal
    order = np.argsort(depth, kind="stable")
    depth, positions = depth[order], positions[order]
    slices = [slices[i] for i in order]
    names = [p.name for p, _ in slices]

    steps = np.diff(depth)
    dup = np.flatnonzero(steps < 1e-3)
    if dup.size:
        i = int(dup[0])
        raise DicomSeriesError(f"{folder}: duplicate slice position {depth[i]:.3f} mm along the normal in "
                               f"{names[i]} and {names[i + 1]} ({dup.size} duplicate(s)); one acquisition "
                               f"per series is expected")
    step = float(np.median(steps))
    gaps = np.flatnonzero(steps > GAP_FACTOR * step)
    if gaps.size:
        i = int(gaps[0])
        missing = round(float(steps[i]) / step) - 1
        raise DicomSeriesError(f"{folder}: missing slice(s): a gap of {steps[i]:.3f} mm between positions "
                               f"{depth[i]:.3f} and {depth[i + 1]:.3f} mm ({names[i]} and {names[i + 1]}) where "
                               f"the series steps {step:.3f} mm; about {missing} slice(s) missing "
                               f"({gaps.size} gap(s) in all)")
    if np.abs(steps - step).max() > STEP_TOLERANCE * step:
        raise DicomSeriesError(f"{folder}: uneven slice spacing ({steps.min():.3f} to {steps.max():.3f} mm); "
                               f"resample the series to even slices first")
    stack = (positions[-1] - positions[0]) / (len(slices) - 1)
    tilt = math.degrees(math.acos(min(1.0, abs(float(stack @ normal)) / float(np.linalg.norm(stack)))))
    if tilt > MAX_TILT_DEGREES:
        raise DicomSeriesError(f"{folder}: the slices are stacked {tilt:.2f} degrees off their normal (gantry "
                               f"tilt); this reader does not resample: correct the tilt first (e.g. dcm2niix)")

    rows, cols = int(slices[0][1].Rows), int(slices[0][1].Columns)
    if max_voxels is not None and rows * cols * len(slices) > max_voxels:
        raise DicomSeriesError(f"{folder}: {len(slices)} x {rows} x {cols} voxels, more than {max_voxels}")
    dr, dc = (float(v) for v in _vector(slices[0][1], "PixelSpacing", 2, slices[0][0]))
    if not (dr > 0 and dc > 0):
        raise DicomSeriesError(f"{names[0]}: PixelSpacing {dr}, {dc} must be > 0")

    volume = None
    integral = True
    for z, (path, ds) in enumerate(slices):
        pixels = _decode(pydicom, path, str(ds.file_meta.get("TransferSyntaxUID", "")))
        if pixels.shape != (rows, cols):
            raise DicomSeriesError(f"{path.name}: pixel data shape {pixels.shape}, expected ({rows}, {cols})")
        slope = float(ds.get("RescaleSlope", 1) or 1)
        intercept = float(ds.get("RescaleIntercept", 0) or 0)
        integral = integral and slope.is_integer() and intercept.is_integer()
        if volume is None:
            volume = np.empty((len(slices), rows, cols), np.float64)
        volume[z] = pixels.astype(np.float64) * slope + intercept
    assert volume is not None
    dtype = np.int32 if integral and np.abs(volume).max() < 2**31 else np.float32
    array = np.ascontiguousarray(volume[:, ::-1, :].astype(dtype))

    # LPS (DICOM) -> RAS; j runs along the rows reversed, so voxel (0, 0, 0) is row Rows - 1 of slice 0.
    lps_to_ras = np.diag([-1.0, -1.0, 1.0])
    affine = np.eye(4)
    affine[:3, 0] = lps_to_ras @ (rowcos * dc)
    affine[:3, 1] = lps_to_ras @ (-colcos * dr)
    affine[:3, 2] = lps_to_ras @ stack
    affine[:3, 3] = lps_to_ras @ (positions[0] + (rows - 1) * dr * colcos)
    headers = tuple(ds for _, ds in slices)
    return DicomSeries(array, affine, uid, str(first.get("SeriesDescription", "")),
                       tuple(p for p, _ in slices), headers, tuple(notes))


def derived_uid(*keys: object) -> str:
    """A UID derived from ``keys`` (the same on every call): for phantoms written reproducibly."""
    _pydicom()
    from pydicom.uid import generate_uid

    return str(generate_uid(entropy_srcs=[str(k) for k in keys]))


def write_ct_series(folder: str | Path, canon: np.ndarray, affine: np.ndarray, *, orientation=AXIAL,
                    patient: Mapping[str, str] | None = None, uid_seed: str | None = None,
                    study_uid: str | None = None, series_uid: str | None = None, description: str = "",
                    modality: str = "CT", names: str = "uid", slope: float = 1.0, intercept: float = -1024.0,
                    tilt_mm: float = 0.0) -> list[Path]:
    """Write ``canon`` ((Z, Y, X) HU on an axis-aligned RAS ``affine``) as a classic CT series, one
    uncompressed file per slice, whose slices are the planes of ``orientation`` (LPS row and column
    cosines): the phantoms as a scanner would store them. Reading it back gives ``canon`` again.

    ``patient``: Patient/Study attributes to set (PatientName, PatientID, ...; empty by default).
    ``uid_seed``: derive every UID from it (the same files on every run); else random UIDs.
    ``names``: "uid" (file names unrelated to slice order) or "index". ``tilt_mm`` shifts each slice
    along the columns by that much per slice (a gantry tilt, for tests). Returns the files in slice
    order.
    """
    _pydicom()
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian
    from pydicom.uid import generate_uid as _generate_uid

    def generate_uid(*key) -> str:
        return _generate_uid(entropy_srcs=[uid_seed, *map(str, key)]) if uid_seed is not None else _generate_uid()

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ras_to_lps = np.diag([-1.0, -1.0, 1.0])
    rowcos = np.asarray(orientation[:3], dtype=np.float64)
    colcos = np.asarray(orientation[3:], dtype=np.float64)
    normal = np.cross(rowcos, colcos)
    inv = np.linalg.inv(affine)
    # Canonical voxel axes in LPS world, and the voxel size along each DICOM direction.
    steps = {}
    for name, d in (("col", rowcos), ("row", colcos), ("slice", normal)):
        ras = ras_to_lps @ d  # LPS direction -> RAS direction (the same diagonal flip)
        idx = inv[:3, :3] @ ras  # index step per mm along d, in (i, j, k)
        axis = int(np.argmax(np.abs(idx)))
        steps[name] = (axis, 1.0 / abs(idx[axis]), int(np.sign(idx[axis])))
    shape_ijk = canon.shape[::-1]
    n = {k: shape_ijk[a] for k, (a, _, _) in steps.items()}
    # Voxel (0, 0, 0) of the series: the canonical corner where every DICOM index starts.
    corner = np.array([0 if steps[k][2] > 0 else shape_ijk[steps[k][0]] - 1 for k in ("col", "row", "slice")])
    start_ijk = np.zeros(3)
    for k, c in zip(("col", "row", "slice"), corner, strict=True):
        start_ijk[steps[k][0]] = c
    start_lps = ras_to_lps @ (affine @ np.array([*start_ijk, 1.0]))[:3]
    xyz = canon.transpose(2, 1, 0)
    study_uid = study_uid or generate_uid("study")
    series_uid = series_uid or generate_uid("series")
    frame_uid = generate_uid("frame")
    files = []
    for s in range(n["slice"]):
        sl = [slice(None)] * 3
        sl[steps["slice"][0]] = corner[2] + steps["slice"][2] * s
        plane = xyz[tuple(sl)]  # the two remaining axes, in i, j, k order
        rest = [a for a in range(3) if a != steps["slice"][0]]
        # Arrange as (row, col) with each index running the DICOM way.
        order = [rest.index(steps["row"][0]), rest.index(steps["col"][0])]
        plane = plane.transpose(order)
        if steps["row"][2] < 0:
            plane = plane[::-1]
        if steps["col"][2] < 0:
            plane = plane[:, ::-1]
        stored = np.rint((plane - intercept) / slope).astype(np.uint16)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid("instance", s)
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        name = f"{meta.MediaStorageSOPInstanceUID}.dcm" if names == "uid" else f"slice_{s:04d}.dcm"
        ds = FileDataset(str(folder / name), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
        ds.Modality = modality
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.SeriesNumber = "20260101", "120000", "1", 3
        ds.ReferringPhysicianName, ds.PatientSex = "", "O"
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.AccessionNumber = "", "", "", ""
        for k, v in (patient or {}).items():
            setattr(ds, k, v)
        ds.SeriesDescription = description
        ds.Manufacturer = "s4c phantom"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.InstanceNumber = int((s * 7919) % 1000) + 1  # deliberately not the slice order
        pos = start_lps + s * steps["slice"][1] * normal + s * tilt_mm * colcos
        ds.ImagePositionPatient = [f"{v:.6f}" for v in pos]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in orientation]
        ds.PixelSpacing = [f"{steps['row'][1]:.6f}", f"{steps['col'][1]:.6f}"]
        ds.SliceThickness = f"{steps['slice'][1]:.6f}"
        ds.Rows, ds.Columns = stored.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = f"{slope:g}", f"{intercept:g}", "HU"
        ds.KVP = "120"
        ds.PixelData = np.ascontiguousarray(stored).tobytes()
        ds.save_as(folder / name, enforce_file_format=True)
        files.append(folder / name)
    return files


#: The segments of a label map, by label value: (label, description, category, type, anatomic region).
def _segment_codes():
    from pydicom.sr.codedict import codes

    return (
        (1, "pancreas", codes.SCT.AnatomicalStructure, codes.SCT.Pancreas, None),
        (2, "tumour", codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Neoplasm, codes.SCT.Pancreas),
        (3, "dilated pancreatic duct", codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Dilatation,
         codes.SCT.PancreaticDuct),
    )


def write_segmentation(path: str | Path, series: DicomSeries, labels: np.ndarray, *, version: str,
                       model_sha256: str = "", series_number: int = 900) -> Path:
    """Write ``labels`` ((Z, Y, X) uint8 on ``series``' grid: 1 pancreas, 2 tumour, 3 duct) as a DICOM
    Segmentation Storage object referencing every instance of ``series``.

    The object carries the source's patient and study modules, as the standard requires; ``version``
    and ``model_sha256`` identify the algorithm.
    """
    try:
        import highdicom as hd
        from pydicom.sr.codedict import codes
    except ImportError as exc:
        raise DicomSeriesError("writing DICOM SEG needs highdicom: pip install 's4c[dicom]'") from exc
    pydicom = _pydicom()
    labels = np.asarray(labels)
    frames = series.to_frames(labels)
    algorithm = hd.AlgorithmIdentificationSequence(
        name="s4c", family=codes.cid7162.ArtificialIntelligence, version=version[:64],
        parameters={"model_sha256": model_sha256} if model_sha256 else None)
    descriptions = []
    for number, (value, label, category, kind, region) in enumerate(_segment_codes(), start=1):
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=number, segment_label=label, segmented_property_category=category,
            segmented_property_type=kind, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm, anatomic_regions=[region] if region is not None else None))
        assert number == value  # segment number n is label value n
    # Source datasets with pixel data: highdicom reads their image attributes.
    sources = [pydicom.dcmread(p) for p in series.files]
    for src, header in zip(sources, series.headers, strict=True):
        # The UIDs as read (a blank one filled from the file meta, or derived; see read_series's notes).
        for keyword in ("SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID"):
            setattr(src, keyword, header.get(keyword))
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=frames.astype(np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=descriptions,
        series_instance_uid=hd.UID(), series_number=series_number, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer="s4c", manufacturer_model_name="s4c", software_versions=version[:64],
        device_serial_number="0", series_description="s4c segmentation", omit_empty_frames=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(path)
    return path
