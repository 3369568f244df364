"""Test fixtures: a CT volume written as a classic DICOM CT series (one uncompressed file per slice),
with the geometry and header faults the reader must refuse. Test-only: the project writes DICOM SEG,
never CT images."""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: Identifying values planted in fixtures, to check that no output but the SEG carries them.
PHI = {"PatientName": "PHI^TESTPATIENT", "PatientID": "PHI-ID-73519", "PatientBirthDate": "19010203",
       "AccessionNumber": "PHIACC8841", "InstitutionName": "PHI Memorial Hospital"}

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)


def write_series(folder: Path, canon: np.ndarray, affine: np.ndarray, *, orientation=AXIAL, study_uid=None,
                 series_uid=None, description="test series", modality="CT", names="uid", slope=1.0,
                 intercept=-1024.0, phi=True, tilt_mm: float = 0.0) -> list[Path]:
    """Write ``canon`` ((Z, Y, X) HU on an axis-aligned RAS ``affine``) as a CT series whose slices are
    the planes of ``orientation`` (LPS row and column cosines). The series spans the same voxels, so
    reading it back gives ``canon`` again. ``names``: "uid" (file names unrelated to slice order) or
    "index". ``tilt_mm`` shifts each slice along the columns by that much per slice (a gantry tilt).
    Returns the files in slice order."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

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
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    frame_uid = generate_uid()
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
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        name = f"{meta.MediaStorageSOPInstanceUID}.dcm" if names == "uid" else f"slice_{s:04d}.dcm"
        ds = FileDataset(str(folder / name), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
        ds.Modality = modality
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.SeriesNumber = "20260101", "120000", "1", 3
        ds.ReferringPhysicianName, ds.PatientSex = "", "O"
        if phi:
            for k, v in PHI.items():
                setattr(ds, k, v)
        else:
            ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.AccessionNumber = "", "", "", ""
        ds.SeriesDescription = description
        ds.Manufacturer = "fixture"
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


def edit(path: Path, **attributes) -> None:
    """Set header attributes of one file in place (None deletes)."""
    import pydicom

    ds = pydicom.dcmread(path)
    for k, v in attributes.items():
        if v is None:
            if k in ds:
                delattr(ds, k)
        else:
            setattr(ds, k, v)
    ds.save_as(path)
