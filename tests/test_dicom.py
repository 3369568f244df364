"""DICOM in (a CT series folder) and DICOM SEG out, checked against dcm2niix, dciodvfy and highdicom.

The real series is ../shared/data/real-ct-dicom/example_ct_dicom (20 JPEG 2000 slices, UID file
names); the fault cases are fixtures written by tests/dicom_series.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from conftest import need_tool
from dicom_series import AXIAL, CORONAL, FLIPPED, PHI, edit, write_series
from s4c.dicom import DicomSeriesError, list_series, read_series, write_segmentation
from s4c.io import is_dicom, load_canonical

pytest.importorskip("pydicom")
pytest.importorskip("highdicom")

REPO = Path(__file__).resolve().parents[1]
REAL_DICOM = REPO.parent / "shared" / "data" / "real-ct-dicom" / "example_ct_dicom"


@pytest.fixture(scope="module")
def real_series() -> Path:
    if not REAL_DICOM.is_dir():
        pytest.skip(f"real DICOM series not present at {REAL_DICOM}")
    return REAL_DICOM


def _dcm2niix(folder: Path, out: Path) -> nib.Nifti1Image:
    exe = need_tool("dcm2niix")
    out.mkdir(parents=True, exist_ok=True)
    res = subprocess.run([exe, "-z", "y", "-b", "n", "-f", "ref", "-o", str(out), str(folder)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    return nib.load(str(out / "ref.nii.gz"))


def dciodvfy_errors(path: Path) -> list[str]:
    exe = need_tool("dciodvfy")
    res = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=120)
    return [line for line in (res.stdout + res.stderr).splitlines() if line.startswith("Error")]


def _phantom(seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """A small anisotropic HU volume on an axis-aligned RAS grid (not symmetric in any axis)."""
    rng = np.random.default_rng(seed)
    canon = rng.integers(-1000, 1500, (9, 14, 11)).astype(np.float64)
    affine = np.diag([0.8, 0.7, 2.5, 1.0])
    affine[:3, 3] = (-40.0, 12.5, -300.0)
    return canon, affine


# --- reading -------------------------------------------------------------------------------------------


def test_real_series_matches_dcm2niix(real_series, tmp_path):
    ref = _dcm2niix(real_series, tmp_path / "d2n")
    s = read_series(real_series)
    assert s.array.shape == ref.shape[::-1] == (20, 512, 512)
    assert np.allclose(s.affine, ref.affine, atol=1e-4)
    # Same voxels (dcm2niix keeps the stored values with the scale in the header).
    ref_hu = np.asanyarray(ref.dataobj).transpose(2, 1, 0)
    assert np.array_equal(s.array, ref_hu)
    assert (s.array.min(), s.array.max()) == (-1024, 1839)  # RescaleIntercept -1024 applied
    assert len(s.files) == 20
    # Slices in position order along the normal, not file-name order.
    z = [float(h.ImagePositionPatient[2]) for h in s.headers]
    assert z == sorted(z) and z[0] == -804.5 and z[-1] == -766.5
    assert sorted(p.name for p in s.files) != [p.name for p in s.files]


def test_real_series_has_blank_uids_derived_and_noted(real_series):
    s = read_series(real_series)
    assert s.series_uid and all(str(h.SeriesInstanceUID) == s.series_uid for h in s.headers)
    assert all(str(h.SOPInstanceUID) == str(h.file_meta.MediaStorageSOPInstanceUID) for h in s.headers)
    assert any("no SeriesInstanceUID" in n for n in s.notes)
    # The same derived UID on every read (a SEG written twice names the same series).
    assert read_series(real_series).series_uid == s.series_uid
    assert [i.uid for i in list_series(real_series)] == [s.series_uid]


@pytest.mark.parametrize("orientation", [AXIAL, FLIPPED, CORONAL], ids=["axial", "flipped", "coronal"])
def test_series_round_trip_and_dcm2niix_grid(orientation, tmp_path):
    canon, affine = _phantom()
    write_series(tmp_path / "s", canon, affine, orientation=orientation)
    vol = load_canonical(tmp_path / "s")
    assert np.array_equal(vol.array, canon) and np.allclose(vol.affine, affine, atol=1e-5)
    assert vol.dicom is not None and vol.source_shape == vol.dicom.array.shape
    ref = _dcm2niix(tmp_path / "s", tmp_path / "d2n")
    assert vol.source_shape == ref.shape[::-1]
    assert np.allclose(vol.source_affine, ref.affine, atol=1e-4)
    assert np.array_equal(vol.dicom.array, np.asanyarray(ref.dataobj).transpose(2, 1, 0))  # HU, scaled


def test_rescale_slope_and_intercept_are_applied(tmp_path):
    canon, affine = _phantom()
    canon = canon - canon % 2  # representable with slope 2
    write_series(tmp_path / "s", canon, affine, slope=2.0, intercept=-2048.0)
    s = read_series(tmp_path / "s")
    assert s.array.dtype == np.int32
    assert np.array_equal(load_canonical(tmp_path / "s").array, canon)
    write_series(tmp_path / "f", canon, affine, slope=0.5, intercept=-1024.5)
    assert read_series(tmp_path / "f").array.dtype == np.float32


def test_file_order_and_instance_number_are_ignored(tmp_path):
    canon, affine = _phantom()
    files = write_series(tmp_path / "s", canon, affine, names="index")
    # Reverse the names: slice_0000 now holds the last slice; InstanceNumber is scrambled by the fixture.
    for f in files:
        f.rename(f.with_suffix(".tmp"))
    for i, f in enumerate(files):
        f.with_suffix(".tmp").rename(files[len(files) - 1 - i])
    assert np.array_equal(load_canonical(tmp_path / "s").array, canon)


def test_told_apart_by_content(tmp_path):
    canon, affine = _phantom()
    files = write_series(tmp_path / "s", canon, affine)
    nifti = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(canon.transpose(2, 1, 0).astype(np.int16), affine), str(nifti))
    misnamed = tmp_path / "slice.nii.gz"  # a DICOM slice with a NIfTI name is still DICOM
    shutil.copy(files[0], misnamed)
    assert is_dicom(tmp_path / "s") and is_dicom(files[0]) and is_dicom(misnamed) and not is_dicom(nifti)
    assert np.array_equal(load_canonical(nifti).array, canon)
    with pytest.raises(DicomSeriesError, match="one slice"):
        load_canonical(misnamed)
    with pytest.raises(ValueError, match="not a DICOM folder"):
        load_canonical(nifti, series="1.2.3")


# --- refusals ------------------------------------------------------------------------------------------


def test_folder_without_dicom(tmp_path):
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(DicomSeriesError, match=r"no DICOM files found \(1 file"):
        read_series(tmp_path)


def test_several_series_are_listed_and_one_can_be_picked(tmp_path):
    canon, affine = _phantom()
    write_series(tmp_path / "a", canon, affine, series_uid="1.2.826.0.1.3680043.8.498.1", description="arterial")
    write_series(tmp_path / "b", canon[:5] + 7, affine, series_uid="1.2.826.0.1.3680043.8.498.2", description="pv")
    with pytest.raises(DicomSeriesError) as err:
        read_series(tmp_path)
    msg = str(err.value)
    assert "holds 2 series" in msg and "--series" in msg
    assert "1.2.826.0.1.3680043.8.498.1  'arterial'  CT, 9 file(s)" in msg
    assert "1.2.826.0.1.3680043.8.498.2  'pv'  CT, 5 file(s)" in msg
    assert np.array_equal(read_series(tmp_path, "1.2.826.0.1.3680043.8.498.2").array.shape, (5, 14, 11))
    with pytest.raises(DicomSeriesError, match=r"no series 9\.9"):
        read_series(tmp_path, "9.9")


def test_non_ct_modality(tmp_path):
    canon, affine = _phantom()
    write_series(tmp_path, canon, affine, modality="MR")
    with pytest.raises(DicomSeriesError, match="modality MR, not CT"):
        read_series(tmp_path)


def test_missing_slice_is_named(tmp_path):
    canon, affine = _phantom()
    files = write_series(tmp_path, canon, affine)
    files[4].unlink()
    with pytest.raises(DicomSeriesError, match=r"missing slice\(s\): a gap of 5.000 mm between positions "
                                               r"-292.500 and -287.500 mm .* about 1 slice"):
        read_series(tmp_path)


def test_duplicate_positions(tmp_path):
    canon, affine = _phantom()
    files = write_series(tmp_path, canon, affine)
    edit(files[3], ImagePositionPatient=list(read_series(tmp_path).headers[2].ImagePositionPatient))
    with pytest.raises(DicomSeriesError, match=f"duplicate slice position .*{files[3].name}|duplicate slice position"):
        read_series(tmp_path)


def test_orientation_differing_between_slices(tmp_path):
    canon, affine = _phantom()
    files = write_series(tmp_path, canon, affine)
    edit(files[5], ImageOrientationPatient=[1, 0, 0, 0, 0.9950042, 0.0998334])
    with pytest.raises(DicomSeriesError, match=f"{files[5].name}: ImageOrientationPatient .* differs"):
        read_series(tmp_path)


def test_gantry_tilt_is_refused(tmp_path):
    canon, affine = _phantom()
    write_series(tmp_path, canon, affine, tilt_mm=0.3)
    with pytest.raises(DicomSeriesError, match=r"stacked 6.8\d degrees off their normal \(gantry tilt\)"):
        read_series(tmp_path)


@pytest.mark.parametrize("keyword,value", [("Rows", 13), ("PixelSpacing", ["0.7", "0.9"])])
def test_differing_matrix_or_pixel_spacing(tmp_path, keyword, value):
    canon, affine = _phantom()
    files = write_series(tmp_path, canon, affine)
    edit(files[2], **{keyword: value})
    with pytest.raises(DicomSeriesError, match=f"{keyword} differs between slices"):
        read_series(tmp_path)


def test_truncated_file_is_named(tmp_path):
    canon, affine = _phantom()
    files = write_series(tmp_path, canon, affine)
    data = files[6].read_bytes()
    files[6].write_bytes(data[: len(data) - 100])
    with pytest.raises(DicomSeriesError, match=f"{files[6].name}: .*damaged or truncated"):
        read_series(tmp_path)
    files[6].write_bytes(data[:400])  # cut inside the header
    with pytest.raises(DicomSeriesError, match=f"{files[6].name}: .*(damaged or truncated|missing)"):
        read_series(tmp_path)


HIDE_J2K_DECODERS = """
import importlib.metadata as md
import sys

_entry_points = md.entry_points


def _keep(e):
    return not str(e.value).startswith("openjpeg")


def entry_points(**kw):  # as if pylibjpeg-openjpeg were not installed
    r = _entry_points(**kw)
    if isinstance(r, dict):
        return type(r)({g: [e for e in v if _keep(e)] for g, v in r.items()})
    return md.EntryPoints([e for e in r if _keep(e)])


md.entry_points = entry_points
sys.modules["openjpeg"] = None
sys.modules["PIL"] = None  # Pillow decodes JPEG 2000 as well
from s4c.dicom import DicomSeriesError, read_series

try:
    read_series(sys.argv[1])
except DicomSeriesError as e:
    print(e)
"""


def test_missing_decoder_names_the_package(real_series, tmp_path):
    """The real series is JPEG 2000; with its decoders hidden, the error names the package."""
    script = tmp_path / "hide.py"
    script.write_text(HIDE_J2K_DECODERS)
    res = subprocess.run([sys.executable, str(script), str(real_series)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "1.2.840.10008.1.2.4.90 needs a decoder that is not installed: pylibjpeg-openjpeg" in res.stdout


def test_localizer_is_skipped_with_a_note(tmp_path):
    canon, affine = _phantom()
    files = write_series(tmp_path, canon, affine)
    scout = tmp_path / "scout.dcm"
    shutil.copy(files[0], scout)
    edit(scout, ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"], SOPInstanceUID="1.2.3.4.5",
         ImageOrientationPatient=[0, 1, 0, 0, 0, -1], Rows=11)
    s = read_series(tmp_path)
    assert s.array.shape == (9, 14, 11) and "skipped localizer image scout.dcm" in s.notes


def test_enhanced_multiframe_ct_is_refused(tmp_path):
    canon, affine = _phantom()
    files = write_series(tmp_path, canon, affine)
    edit(files[0], SOPClassUID="1.2.840.10008.5.1.4.1.1.2.1", NumberOfFrames=9)
    with pytest.raises(DicomSeriesError, match="enhanced multi-frame CT is not supported"):
        read_series(tmp_path)


# --- writing DICOM SEG ---------------------------------------------------------------------------------


def _labels(shape, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lab = np.zeros(shape, np.uint8)
    z, y, x = (n // 2 for n in shape)
    lab[max(z - 2, 0):z + 2, y - 5:y + 5, x - 4:x + 4] = 1
    lab[z, y - 2:y + 1, x - 1:x + 2] = 2
    lab[max(z - 1, 0), y + 3, x - 3:x + 3] = 3
    lab[rng.random(shape) < 0.001] = 1
    return lab


def test_seg_on_the_real_series(real_series, tmp_path):
    import highdicom as hd

    s = read_series(real_series)
    lab = _labels(s.array.shape)
    path = write_segmentation(tmp_path / "seg.dcm", s, lab, version="0.1.0", model_sha256="ab" * 32)
    seg = hd.seg.segread(path)
    uids = [str(h.SOPInstanceUID) for h in s.headers]
    frames = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, combine_segments=True)
    assert np.array_equal(frames, s.to_frames(lab))
    refs = seg.ReferencedSeriesSequence[0]
    assert refs.SeriesInstanceUID == s.series_uid
    assert sorted(r.ReferencedSOPInstanceUID for r in refs.ReferencedInstanceSequence) == sorted(uids)
    assert [(d.SegmentNumber, d.SegmentLabel, d.SegmentedPropertyTypeCodeSequence[0].CodeValue)
            for d in seg.SegmentSequence] == [(1, "pancreas", "15776009"), (2, "tumour", "108369006"),
                                              (3, "dilated pancreatic duct", "25322007")]
    algo = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert (algo.AlgorithmName, algo.AlgorithmVersion) == ("s4c", "0.1.0") and "ab" * 32 in algo.AlgorithmParameters
    assert str(seg.FrameOfReferenceUID) == str(s.headers[0].FrameOfReferenceUID)
    assert dciodvfy_errors(path) == []


def test_seg_carries_the_source_patient_and_study(tmp_path):
    import highdicom as hd

    canon, affine = _phantom()
    write_series(tmp_path / "s", canon, affine, orientation=CORONAL, study_uid="1.2.826.0.1.3680043.8.498.77")
    s = read_series(tmp_path / "s")
    path = write_segmentation(tmp_path / "seg.dcm", s, _labels(s.array.shape), version="0.1.0")
    seg = hd.seg.segread(path)
    assert str(seg.PatientName) == PHI["PatientName"] and seg.PatientID == PHI["PatientID"]
    assert seg.StudyInstanceUID == "1.2.826.0.1.3680043.8.498.77" and seg.AccessionNumber == PHI["AccessionNumber"]
    assert dciodvfy_errors(path) == []


def test_seg_refuses_labels_off_the_series_grid(tmp_path):
    canon, affine = _phantom()
    write_series(tmp_path / "s", canon, affine)
    s = read_series(tmp_path / "s")
    with pytest.raises(ValueError, match="not the series shape"):
        write_segmentation(tmp_path / "seg.dcm", s, np.zeros((3, 3, 3), np.uint8), version="0.1.0")
    assert not (tmp_path / "seg.dcm").exists()


def test_write_results_writes_seg_and_keeps_phi_out_of_the_rest(tmp_path):
    """The one writer: for a DICOM input it adds <phase>_seg.dcm; report, overlay and labels NIfTI
    carry none of the patient's identifiers."""
    from s4c.outputs import write_results

    canon, affine = _phantom()
    write_series(tmp_path / "s", canon, affine)
    vol = load_canonical(tmp_path / "s")
    lab = _labels(vol.array.shape)
    report = {"abnormal": True, "phases": {"venous": {"tumors": [], "segmenter": {"onnx_sha256": "cd" * 32}}}}
    paths = write_results(tmp_path / "out", {"venous": vol}, {"venous": lab}, report)
    assert set(paths) == {"venous_labels", "venous_seg", "report", "overlay"}
    rep = json.loads(paths["report"].read_text())["phases"]["venous"]["source"]
    assert rep["format"] == "dicom" and rep["instances"] == 9
    blobs = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir() if p.suffix != ".dcm"}
    import gzip

    blobs["labels (decompressed)"] = gzip.decompress(blobs["venous_labels.nii.gz"])
    for value in PHI.values():
        for name, blob in blobs.items():
            assert value.encode() not in blob, f"{value} in {name}"
    assert PHI["PatientID"].encode() in paths["venous_seg"].read_bytes()
    # The labels NIfTI is on the series grid, the SEG's frames equal it.
    saved = nib.load(str(paths["venous_labels"]))
    assert np.allclose(saved.affine, vol.source_affine) and saved.shape == vol.source_shape[::-1]


def test_training_reads_dicom_folders_in_a_manifest(tmp_path):
    """``s4c train`` reads a cohort through the same loader: a DICOM folder in the arterial/venous
    columns gives the training arrays of the NIfTI file of the same case."""
    from s4c.data.phantom import generate_case
    from s4c.io import save_nifti
    from s4c.training.data import load_cohort

    case = generate_case(2, abnormal=True, shape=(40, 64, 56), spacing=(2.5, 2.5, 2.5), case_id="t")
    rows = ["case_id,arterial,arterial_label,venous,venous_label,abnormal"]
    for kind in ("nifti", "dicom"):
        for phase in ("arterial", "venous"):
            hu = getattr(case, phase).astype(np.int16)
            if kind == "nifti":
                save_nifti(tmp_path / f"{phase}.nii.gz", hu, case.affine)
            else:
                write_series(tmp_path / f"{phase}_dicom", hu.astype(np.float64), case.affine)
            save_nifti(tmp_path / f"{phase}_label.nii.gz", getattr(case, f"{phase}_label"), case.affine)
        img = {"nifti": "{p}.nii.gz", "dicom": "{p}_dicom"}[kind]
        rows.append(f"{kind},{img.format(p='arterial')},arterial_label.nii.gz,{img.format(p='venous')},"
                    f"venous_label.nii.gz,1")
    (tmp_path / "manifest.csv").write_text("\n".join(rows) + "\n")
    for phase in ("arterial", "venous"):
        got = {c.case_id: c for c in load_cohort(tmp_path, phase)}
        assert np.array_equal(got["dicom"].image, got["nifti"].image)
        assert np.array_equal(got["dicom"].labels, got["nifti"].labels)


def test_infer_cli_reads_the_series_first(tmp_path, capsys):
    """``s4c infer`` reads the scans before it connects: notes go to stderr, a bad series exits 2 with
    its message, and neither writes into --out."""
    from s4c.cli import main

    canon, affine = _phantom()
    files = write_series(tmp_path / "s", canon, affine)
    scout = tmp_path / "s" / "scout.dcm"
    shutil.copy(files[0], scout)
    edit(scout, ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"], SOPInstanceUID="1.2.3.4.5")
    out = tmp_path / "out"
    code = main(["infer", "--url", "127.0.0.1:9", "--retries", "0", "--timeout", "2", "--ct", str(tmp_path / "s"),
                 "--phase", "venous", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 3 and "note: venous: skipped localizer image scout.dcm" in err
    files[3].unlink()
    code = main(["infer", "--url", "127.0.0.1:9", "--ct", str(tmp_path / "s"), "--phase", "venous", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "s4c infer: error:" in err and "missing slice(s)" in err
    assert main(["infer", "--url", "127.0.0.1:9", "--arterial-series", "1.2", "--ct", str(tmp_path / "s"),
                 "--phase", "venous", "--out", str(out)]) == 2
    assert "--arterial-series picks a series of the DICOM folder given with --arterial" in capsys.readouterr().err
    assert not out.exists()


def test_faults_built_from_the_real_series(real_series, tmp_path):
    """The same refusals on copies of the real (JPEG 2000) series: a slice removed, a slice twice, a
    file cut short."""
    s = read_series(real_series)
    gap = tmp_path / "gap"
    shutil.copytree(real_series, gap)
    (gap / s.files[7].name).unlink()
    with pytest.raises(DicomSeriesError, match=r"a gap of 4.000 mm between positions -792.500 and -788.500 mm"):
        read_series(gap)
    dup = tmp_path / "dup"
    shutil.copytree(real_series, dup)
    shutil.copy(dup / s.files[3].name, dup / "copy_of_slice")
    edit(dup / "copy_of_slice", SOPInstanceUID="1.2.826.0.1.3680043.8.498.4242")
    with pytest.raises(DicomSeriesError, match=r"duplicate slice position -798.500 mm"):
        read_series(dup)
    cut = tmp_path / "cut"
    shutil.copytree(real_series, cut)
    victim = cut / s.files[12].name
    victim.write_bytes(victim.read_bytes()[:-5000])
    with pytest.raises(DicomSeriesError, match=f"{victim.name}: .*damaged or truncated"):
        read_series(cut)
