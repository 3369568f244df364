"""DICOM series through the real tritonserver with ``s4c infer``: the shared real series (one phase)
and a phantom case written as two DICOM series with planted identifiers (both phases, and a cohort
manifest of DICOM folders)."""

from __future__ import annotations

import csv
import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from dicom_series import AXIAL, FLIPPED, PHI, write_series
from s4c.data.phantom import generate_case
from s4c.io import load_canonical
from test_dicom import REAL_DICOM, REPO, _dcm2niix, dciodvfy_errors

pytestmark = pytest.mark.server
pytest.importorskip("highdicom")


def _infer(triton, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "s4c.cli", "infer", "--url", triton.config.grpc_url, *args],
                          capture_output=True, text=True, timeout=600)


def _seg_frames(seg_path: Path, headers) -> np.ndarray:
    import highdicom as hd

    seg = hd.seg.segread(seg_path)
    uids = [str(h.SOPInstanceUID) for h in headers]
    return seg, seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, combine_segments=True)


def test_real_series_end_to_end(tmp_path):
    """``s4c infer`` without --url: its own tritonserver with the repository's default limits (the
    session server's voxel limit is below the series' 5.2 M voxels)."""
    if not REAL_DICOM.is_dir():
        pytest.skip(f"real DICOM series not present at {REAL_DICOM}")
    repo = tmp_path / "model_repository"
    shutil.copytree(REPO / "model_repository", repo,
                    ignore=shutil.ignore_patterns("*.onnx", "*.plan", "segmenters.json", "__pycache__"))
    out = tmp_path / "out"
    res = subprocess.run([sys.executable, "-m", "s4c.cli", "infer", "--model-repository", str(repo), "--ct",
                          str(REAL_DICOM), "--phase", "venous", "--out", str(out)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    labels = nib.load(str(out / "venous_labels.nii.gz"))
    ref = _dcm2niix(REAL_DICOM, tmp_path / "d2n")
    assert labels.shape == ref.shape == (512, 512, 20)
    assert np.allclose(labels.affine, ref.affine, atol=1e-4)
    vol = load_canonical(REAL_DICOM)
    seg, frames = _seg_frames(out / "venous_seg.dcm", vol.dicom.headers)
    assert np.array_equal(frames, vol.dicom.to_frames(np.asanyarray(labels.dataobj).transpose(2, 1, 0)))
    refs = seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence
    assert len(refs) == 20
    assert {r.ReferencedSOPInstanceUID for r in refs} == {str(h.SOPInstanceUID) for h in vol.dicom.headers}
    report = json.loads((out / "report.json").read_text())
    src = report["phases"]["venous"]["source"]
    assert src["format"] == "dicom" and src["instances"] == 20 and src["series_instance_uid"] == vol.dicom.series_uid
    algo = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert report["phases"]["venous"]["segmenter"]["onnx_sha256"] in algo.AlgorithmParameters
    assert dciodvfy_errors(out / "venous_seg.dcm") == []


@pytest.fixture(scope="module")
def dicom_case(tmp_path_factory):
    """A phantom case as NIfTI (RAS) and as two DICOM series with identifiers planted: arterial axial
    (LPS), venous flipped (rows reversed, so the slice normal points to the feet)."""
    root = tmp_path_factory.mktemp("dicom_case")
    case = generate_case(5, abnormal=True, shape=(48, 80, 72), spacing=(3.0, 2.5, 2.5), case_id="dcm")
    from s4c.io import save_nifti

    paths = {}
    for phase in ("arterial", "venous"):
        hu = getattr(case, phase).astype(np.int16)
        paths[phase] = save_nifti(root / f"{phase}.nii.gz", hu, case.affine)
        save_nifti(root / f"{phase}_label.nii.gz", getattr(case, f"{phase}_label"), case.affine)
        write_series(root / f"{phase}_dicom", hu.astype(np.float64), case.affine, description=phase,
                     orientation=AXIAL if phase == "arterial" else FLIPPED)
    return root, case


def test_phantom_as_dicom_answers_as_nifti_and_leaks_no_identifiers(triton, dicom_case, tmp_path):
    root, _ = dicom_case
    nii, dcm = tmp_path / "nii", tmp_path / "dcm"
    res_n = _infer(triton, "--arterial", str(root / "arterial.nii.gz"), "--venous", str(root / "venous.nii.gz"),
                   "--out", str(nii))
    res_d = _infer(triton, "--arterial", str(root / "arterial_dicom"), "--venous", str(root / "venous_dicom"),
                   "--out", str(dcm))
    assert res_n.returncode == 0 and res_d.returncode == 0, res_d.stdout + res_d.stderr
    rep_n = json.loads((nii / "report.json").read_text())
    rep_d = json.loads((dcm / "report.json").read_text())
    assert rep_d["abnormal"] == rep_n["abnormal"]
    for phase in ("arterial", "venous"):
        assert rep_d["phases"][phase]["tumor_voxels"] == rep_n["phases"][phase]["tumor_voxels"]
        # The same labels in the canonical frame; on disk, each on its own input's grid.
        a = load_canonical(nii / f"{phase}_labels.nii.gz")
        b = load_canonical(dcm / f"{phase}_labels.nii.gz")
        assert np.array_equal(a.array, b.array) and np.allclose(a.affine, b.affine, atol=1e-4)
        series = load_canonical(root / f"{phase}_dicom")
        assert np.allclose(b.source_affine, series.source_affine)
        seg, frames = _seg_frames(dcm / f"{phase}_seg.dcm", series.dicom.headers)
        assert np.array_equal(frames, series.dicom.to_frames(series.to_source(b.array)))
        assert str(seg.PatientID) == PHI["PatientID"]  # the SEG carries the source's patient module
        assert dciodvfy_errors(dcm / f"{phase}_seg.dcm") == []
    texts = {"stdout": res_d.stdout.encode(), "stderr": res_d.stderr.encode(),
             "server log": triton.log_path.read_bytes()}
    for f in dcm.iterdir():
        if f.suffix != ".dcm":
            data = f.read_bytes()
            texts[f.name] = gzip.decompress(data) if f.name.endswith(".gz") else data
    for value in PHI.values():
        for name, blob in texts.items():
            assert value.encode() not in blob, f"{value!r} found in {name}"


def test_bad_series_is_refused_and_nothing_is_written(triton, dicom_case, tmp_path):
    root, _ = dicom_case
    bad = tmp_path / "bad"
    files = write_series(bad, load_canonical(root / "venous_dicom").array.astype(np.float64),
                         load_canonical(root / "venous_dicom").affine)
    files[10].unlink()
    out = tmp_path / "out"
    res = _infer(triton, "--ct", str(bad), "--phase", "venous", "--out", str(out))
    assert res.returncode == 2
    assert "missing slice(s)" in res.stderr and "s4c infer: error:" in res.stderr
    assert not out.exists()
    # Without --url no local server is even started for a bad series.
    res = subprocess.run([sys.executable, "-m", "s4c.cli", "infer", "--ct", str(bad), "--phase", "venous",
                          "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "missing slice(s)" in res.stderr and not out.exists()


def test_manifest_of_dicom_folders(triton, dicom_case, tmp_path):
    """``s4c infer --manifest`` and ``s4c evaluate`` take DICOM folders in the arterial/venous columns
    and answer as they do for the NIfTI files of the same case."""
    root, _ = dicom_case
    with (root / "manifest.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["case_id", "arterial", "arterial_label", "venous", "venous_label", "abnormal"])
        w.writerow(["nifti", "arterial.nii.gz", "arterial_label.nii.gz", "venous.nii.gz", "venous_label.nii.gz", 1])
        w.writerow(["dicom", "arterial_dicom", "arterial_label.nii.gz", "venous_dicom", "venous_label.nii.gz", 1])
    out = tmp_path / "cohort"
    res = _infer(triton, "--manifest", str(root / "manifest.csv"), "--out", str(out), "--no-progress")
    assert res.returncode == 0, res.stdout + res.stderr
    rows = {r["case_id"]: r for r in csv.DictReader((out / "summary.csv").open())}
    keys = ("status", "abnormal", "arterial_tumor_voxels", "venous_tumor_voxels")
    assert [rows["dicom"][k] for k in keys] == [rows["nifti"][k] for k in keys]
    assert (out / "dicom" / "venous_seg.dcm").exists() and not (out / "nifti" / "venous_seg.dcm").exists()
    ev = tmp_path / "eval"
    res = subprocess.run([sys.executable, "-m", "s4c.cli", "evaluate", "--data", str(root), "--out", str(ev),
                          "--threads", "1", "--no-progress"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    cases = {c["case_id"]: c for c in json.loads((ev / "cases.json").read_text())}
    for phase in ("arterial", "venous"):
        drop = ("seconds",)
        assert ({k: v for k, v in cases["dicom"][phase].items() if k not in drop}
                == {k: v for k, v in cases["nifti"][phase].items() if k not in drop})
