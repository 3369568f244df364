"""Test fixtures: a CT volume as a DICOM series (:func:`s4c.dicom.write_ct_series`) with identifiers
planted, and in-place header edits for the faults the reader must refuse."""

from __future__ import annotations

from pathlib import Path

from s4c.dicom import AXIAL, CORONAL, write_ct_series

#: Identifying values planted in fixtures, to check that no output but the SEG carries them.
PHI = {"PatientName": "PHI^TESTPATIENT", "PatientID": "PHI-ID-73519", "PatientBirthDate": "19010203",
       "AccessionNumber": "PHIACC8841", "InstitutionName": "PHI Memorial Hospital"}
#: Rows running anterior (reversed against AXIAL), so the slice normal points to the feet.
FLIPPED = (1.0, 0.0, 0.0, 0.0, -1.0, 0.0)

__all__ = ["AXIAL", "CORONAL", "FLIPPED", "PHI", "edit", "write_series"]


def write_series(folder: Path, canon, affine, *, phi: bool = True, description: str = "test series",
                 **kwargs) -> list[Path]:
    """:func:`s4c.dicom.write_ct_series` with :data:`PHI` planted (``phi``)."""
    return write_ct_series(folder, canon, affine, patient=PHI if phi else None, description=description, **kwargs)


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
