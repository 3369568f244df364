"""NIfTI load/save round trips, on generated grids and on the shared real CT."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from s4c.data.cohort import CaseEntry, read_manifest, write_manifest
from s4c.io import affine_from_spacing, load_nifti, save_nifti, spacing_from_affine, voxel_to_world


def test_round_trip_keeps_array_affine_spacing(tmp_path):
    arr = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)  # Z, Y, X
    affine = affine_from_spacing((3.0, 0.8, 0.7), origin=(-10.0, 20.0, 5.0))
    path = save_nifti(tmp_path / "a.nii.gz", arr, affine)
    vol = load_nifti(path)
    assert vol.array.dtype == np.int16 and np.array_equal(vol.array, arr)
    assert vol.spacing == pytest.approx((3.0, 0.8, 0.7))
    assert np.allclose(vol.affine, affine)
    raw = nib.load(str(path))
    assert raw.shape == (6, 5, 4)  # nibabel order is X, Y, Z
    assert raw.header["descrip"].tobytes().strip(b"\x00") == b""
    save_nifti(tmp_path / "b.nii.gz", vol.array, vol.affine)
    again = load_nifti(tmp_path / "b.nii.gz")
    assert np.array_equal(again.array, arr) and np.allclose(again.affine, affine)


def test_oblique_affine_spacing_and_world():
    rot = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([0.5, 0.6, 2.0])
    affine[:3, 3] = [1, 2, 3]
    assert spacing_from_affine(affine) == pytest.approx((2.0, 0.6, 0.5))
    x, y, z = voxel_to_world(affine, (1, 0, 2))  # z=1, y=0, x=2
    assert (x, y, z) == pytest.approx((1.0, 2 + 1.0, 3 + 2.0))


def test_scaled_data_is_applied(tmp_path):
    img = nib.Nifti1Image(np.full((3, 3, 3), 10, np.int16), np.eye(4))
    img.header.set_slope_inter(2.0, -1024.0)
    nib.save(img, str(tmp_path / "s.nii.gz"))
    vol = load_nifti(tmp_path / "s.nii.gz")
    assert float(vol.array[0, 0, 0]) == pytest.approx(10 * 2.0 - 1024.0)


@pytest.mark.parametrize(
    ("data", "affine", "match"),
    [
        (np.zeros((3, 3, 3, 2), np.int16), np.eye(4), "3-D"),
        (np.zeros((3, 3), np.int16), np.eye(4), "3-D"),
    ],
)
def test_rejects_bad_volumes(tmp_path, data, affine, match):
    path = tmp_path / "bad.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), str(path))
    with pytest.raises(ValueError, match=match):
        load_nifti(path)


def test_rejects_zero_voxel_size(tmp_path):
    img = nib.Nifti1Image(np.zeros((3, 3, 3), np.int16), None)
    img.header.set_qform(None, code=0)
    img.header.set_sform(None, code=0)
    img.header["pixdim"][1:4] = [1.0, 0.0, 1.0]
    path = tmp_path / "zero.nii.gz"
    nib.save(img, str(path))
    with pytest.raises(ValueError, match=r"singular|voxel size"):
        load_nifti(path)
    with pytest.raises(ValueError, match="voxel size"):
        spacing_from_affine(np.diag([1.0, 0.0, 1.0, 1.0]))


def test_rejects_truncated_file(tmp_path):
    path = tmp_path / "t.nii.gz"
    save_nifti(path, np.zeros((20, 20, 20), np.int16), np.eye(4))
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(ValueError, match=r"t\.nii\.gz"):
        load_nifti(path)


def test_real_ct_loads_and_round_trips(real_ct_dir, tmp_path):
    vol = load_nifti(real_ct_dir / "example_ct_sm.nii.gz")
    assert vol.array.shape == (30, 101, 122)  # Z, Y, X of nibabel's 122 x 101 x 30
    assert vol.spacing == pytest.approx((3.0, 3.0, 3.0))
    assert nib.orientations.aff2axcodes(vol.affine) == ("R", "A", "S")
    seg = load_nifti(real_ct_dir / "example_seg.nii.gz")
    pancreas = seg.array == 7
    assert pancreas.any()
    save_nifti(tmp_path / "ct.nii.gz", vol.array, vol.affine)
    back = load_nifti(tmp_path / "ct.nii.gz")
    assert np.array_equal(back.array, vol.array) and np.allclose(back.affine, vol.affine)


def test_real_ct_int32_storage(real_ct_dir):
    vol = load_nifti(real_ct_dir / "example_ct.nii.gz")
    assert vol.array.shape == (112, 101, 122)
    assert vol.array.dtype.kind in "iu" and vol.array.min() < -1000


def test_manifest_round_trip_and_errors(tmp_path):
    e = CaseEntry("c1", "cases/c1/arterial.nii.gz", "cases/c1/arterial_label.nii.gz",
                  "cases/c1/venous.nii.gz", "", 1)
    write_manifest(tmp_path, [e])
    assert read_manifest(tmp_path) == [e]
    assert e.path(tmp_path, "venous_label") is None
    text = (tmp_path / "manifest.csv").read_text()
    assert text.splitlines()[0] == "case_id,arterial,arterial_label,venous,venous_label,abnormal"
    for bad, match in [("c1,a,,v,,2", "abnormal"), ("c1,/abs/a,,v,,1", "relative"), ("c1,../a,,v,,1", "relative"),
                       ("c1,,,v,,1", "empty arterial")]:
        (tmp_path / "manifest.csv").write_text(text.splitlines()[0] + "\n" + bad + "\n")
        with pytest.raises(ValueError, match=match):
            read_manifest(tmp_path)
    (tmp_path / "manifest.csv").write_text(text + text.splitlines()[1] + "\n")
    with pytest.raises(ValueError, match="duplicate"):
        read_manifest(tmp_path)
