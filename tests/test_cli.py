"""The s4c command line: phantom, classify and the demo, through main() and the console script."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from s4c.cli import main
from s4c.data.cohort import read_manifest
from s4c.io import affine_from_spacing, load_nifti, save_nifti


def test_phantom_command_writes_a_cohort(tmp_path, capsys):
    out = tmp_path / "cohort"
    rc = main(["phantom", "--out", str(out), "--normal", "1", "--abnormal", "1", "--seed", "3",
               "--shape", "48", "64", "64", "--spacing", "5", "5", "5"])
    assert rc == 0
    entries = read_manifest(out)
    assert [e.abnormal for e in sorted(entries, key=lambda e: e.abnormal)] == [0, 1]
    vol = load_nifti(out / entries[0].arterial)
    assert vol.array.dtype == np.int16 and vol.array.shape == (48, 64, 64)
    assert vol.spacing == pytest.approx((5.0, 5.0, 5.0))
    assert "manifest" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--normal", "-1", "--abnormal", "1"], "count >= 0"),
        (["--normal", "x", "--abnormal", "1"], "integer"),
        (["--normal", "1", "--abnormal", "1", "--spacing", "1", "0", "1"], "spacing"),
        (["--normal", "1", "--abnormal", "1", "--spacing", "1", "nan", "1"], "spacing"),
        (["--normal", "1", "--abnormal", "1", "--shape", "0", "64", "64"], "positive"),
        (["--normal", "1", "--abnormal", "1", "--shape", "64", "64"], "expected 3"),
    ],
)
def test_phantom_command_rejects_bad_flags(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exc:
        main(["phantom", "--out", str(tmp_path), "--seed", "1", *args])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_phantom_command_library_errors_are_clean(tmp_path, capsys):
    rc = main(["phantom", "--out", str(tmp_path), "--seed", "1", "--normal", "0", "--abnormal", "0"])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("s4c phantom: error:") and "Traceback" not in err


def test_classify_command(tmp_path, capsys):
    lab = np.zeros((20, 20, 20), np.uint8)
    lab[2:18, 2:18, 2:18] = 1
    lab[5:9, 5:9, 5:9] = 2
    save_nifti(tmp_path / "l.nii.gz", lab, affine_from_spacing((1, 1, 1)))
    assert main(["classify", "--labels", str(tmp_path / "l.nii.gz")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["abnormal"] is True and report["tumor_voxels"] == 64
    save_nifti(tmp_path / "bad.nii.gz", lab.astype(np.int16) * 3, affine_from_spacing((1, 1, 1)))
    assert main(["classify", "--labels", str(tmp_path / "bad.nii.gz")]) == 2
    assert "0..3" in capsys.readouterr().err


def test_console_script_is_installed():
    exe = shutil.which("s4c") or str(__import__("pathlib").Path(sys.executable).with_name("s4c"))
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "phantom" in out.stdout and "demo" in out.stdout


def test_demo_in_process_runs_end_to_end_small(tmp_path):
    from s4c.demo import run_demo_in_process

    lines: list[str] = []
    report = run_demo_in_process(tmp_path, seed=3, shape=(64, 80, 80), spacing=(3.75, 4.0, 4.0), echo=lines.append)
    for name in ("labels_arterial.nii.gz", "labels_venous.nii.gz", "overview.png", "report.json",
                 "input/arterial.nii.gz", "input/venous_label.nii.gz"):
        assert (tmp_path / name).exists(), name
    assert set(report["phases"]) == {"arterial", "venous"}
    assert report["reference_rule"]["abnormal"] is True
    assert any(line.startswith("DECISION") for line in lines)
    labels = load_nifti(tmp_path / "labels_venous.nii.gz")
    ct = load_nifti(tmp_path / "input" / "venous.nii.gz")
    assert labels.array.shape == ct.array.shape and np.allclose(labels.affine, ct.affine)


def test_hugepage_switch_and_defrag_policy():
    import numpy as np

    from s4c.runtime import disable_numpy_hugepage_madvise, thp_defrag_policy

    disable_numpy_hugepage_madvise()
    assert disable_numpy_hugepage_madvise() is False  # second call sees it already off
    assert np.ones(10).sum() == 10
    assert thp_defrag_policy() in (None, "always", "defer", "defer+madvise", "madvise", "never")
