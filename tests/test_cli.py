"""The s4c command line: phantom, classify and the demo, through main() and the console script."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from s4c.cli import build_parser, main
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
    for name in ("arterial_labels.nii.gz", "venous_labels.nii.gz", "overlay.png", "report.json",
                 "input/arterial.nii.gz", "input/venous_label.nii.gz"):  # the names s4c infer writes
        assert (tmp_path / name).exists(), name
    assert not list(tmp_path.glob("labels_*")) and not (tmp_path / "overview.png").exists()
    assert set(report["phases"]) == {"arterial", "venous"}
    assert report["reference_rule"]["abnormal"] is True
    assert any(line.startswith("DECISION") for line in lines)
    labels = load_nifti(tmp_path / "venous_labels.nii.gz")
    ct = load_nifti(tmp_path / "input" / "venous.nii.gz")
    assert labels.array.shape == ct.array.shape and np.allclose(labels.affine, ct.affine)


def test_hugepage_switch_and_defrag_policy(monkeypatch, tmp_path):
    import numpy as np

    from s4c import runtime

    monkeypatch.delenv("NUMPY_MADVISE_HUGEPAGE", raising=False)
    runtime.disable_numpy_hugepage_madvise()
    assert runtime.disable_numpy_hugepage_madvise() is False  # second call sees it already off
    assert np.core.multiarray._get_madvise_hugepage() is False  # numpy's own switch is off
    monkeypatch.setenv("NUMPY_MADVISE_HUGEPAGE", "1")  # an explicit setting is the user's: reported, kept
    assert runtime.disable_numpy_hugepage_madvise() is True
    fake = tmp_path / "defrag"
    fake.write_text("always defer defer+madvise [madvise] never\n")
    monkeypatch.setattr(runtime, "_DEFRAG", fake)
    assert runtime.thp_defrag_policy() == "madvise"
    monkeypatch.setattr(runtime, "_DEFRAG", tmp_path / "absent")
    assert runtime.thp_defrag_policy() is None


# One CLI convention: units in errors, one meaning per flag, one repository flag, one TLS spelling, one
# error prefix.

@pytest.mark.parametrize(("argv", "needle"), [
    (["train", "--data", "d", "--out", "o", "--lr", "abc"], "argument --lr: expected a learning rate, got 'abc'"),
    (["train", "--data", "d", "--out", "o", "--lr", "0"], "argument --lr: expected a learning rate > 0, got 0"),
    (["infer", "--out", "o", "--timeout", "soon"], "argument --timeout: expected a time in seconds, got 'soon'"),
    (["infer", "--out", "o", "--timeout", "inf"], "argument --timeout: expected a time > 0 seconds, got inf"),
    (["phantom", "--out", "o", "--normal", "1", "--abnormal", "1", "--seed", "1", "--spacing", "1", "0", "1"],
     "argument --spacing: expected a spacing > 0 mm, got 0"),
    (["train", "--data", "d", "--out", "o", "--roi-margin", "-1"],
     "argument --roi-margin: expected a distance >= 0 mm, got -1"),
    (["train", "--data", "d", "--out", "o", "--lesion-fraction", "1.5"],
     "argument --lesion-fraction: expected a fraction >= 0 and <= 1, got 1.5"),
    (["train", "--data", "d", "--out", "o", "--class-weights", "1", "1", "nan", "1"],
     "argument --class-weights: expected a class weight >= 0, got nan"),
    (["serve", "--grpc-port", "65536"], "argument --grpc-port: expected a TCP port 1-65535, got 65536"),
    (["serve", "--exit-timeout", "0"], "argument --exit-timeout: expected a whole number of seconds >= 1, got 0"),
    (["phantom", "--out", "o", "--normal", "x", "--abnormal", "1", "--seed", "1"],
     "argument --normal: expected an integer count >= 0, got 'x'"),
])
def test_each_parser_names_its_own_unit(capsys, argv, needle):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"s4c {argv[0]}: error: {needle}" in err, err
    if "--lr" in argv or "--timeout" in argv:
        assert "mm" not in err.splitlines()[-1]  # no longer the spacing parser's unit


@pytest.mark.parametrize("command", [["evaluate", "--data", "d", "--out", "o"], ["demo"]])
def test_batch_size_is_the_training_batch_only(capsys, command):
    """``--batch-size`` is the training batch (train, cv); where it meant the sliding window's batch it
    now stops with the flag to use."""
    with pytest.raises(SystemExit):
        main([*command, "--batch-size", "4"])
    assert "--batch-size is the training batch (s4c train, s4c cv); the sliding window's batch here is " \
           "--inference-batch-size" in capsys.readouterr().err
    parser = build_parser()
    assert parser.parse_args([*command, "--inference-batch-size", "4"]).inference_batch_size == 4
    assert parser.parse_args(["train", "--data", "d", "--out", "o", "--batch-size", "4"]).batch_size == 4
    cv = parser.parse_args(["cv", "--data", "d", "--out", "o", "--batch-size", "4", "--inference-batch-size", "6"])
    assert (cv.batch_size, cv.inference_batch_size) == (4, 6)
    old = parser.parse_args(["cv", "--data", "d", "--out", "o", "--eval-batch-size", "5"])  # the former name
    assert old.inference_batch_size == 5


def test_one_repository_flag_everywhere():
    parser = build_parser()
    for argv in (["serve"], ["demo"], ["infer", "--out", "o"], ["export", "repository"]):
        assert parser.parse_args([*argv, "--model-repository", "R"]).model_repository == Path("R")
        assert parser.parse_args(argv).model_repository == Path("model_repository")
    # The former spelling of export repository (in issue 3, Makefiles and images) still works.
    assert parser.parse_args(["export", "repository", "--out", "R"]).model_repository == Path("R")


def test_tls_flags_are_the_servers_spelling_with_the_old_ones_as_aliases():
    parser = build_parser()
    new = parser.parse_args(["infer", "--out", "o", "--tls", "--tls-ca", "ca.pem", "--tls-cert", "c.pem",
                             "--tls-key", "k.pem"])
    old = parser.parse_args(["infer", "--out", "o", "--ssl", "--root-cert", "ca.pem", "--cert-chain", "c.pem",
                             "--private-key", "k.pem"])
    for args in (new, old):
        assert (args.tls, args.tls_ca, args.tls_cert, args.tls_key) == (True, Path("ca.pem"), Path("c.pem"),
                                                                        Path("k.pem"))
    serve = parser.parse_args(["serve", "--tls-cert", "s.pem", "--tls-key", "s.key", "--tls-client-ca", "ca.pem"])
    assert (serve.tls_cert, serve.tls_key, serve.tls_client_ca) == (Path("s.pem"), Path("s.key"), Path("ca.pem"))


def test_tls_without_url_is_refused(tmp_path, capsys):
    ct = save_nifti(tmp_path / "ct.nii.gz", np.zeros((8, 8, 8), np.int16), np.eye(4))
    assert main(["infer", "--ct", str(ct), "--phase", "venous", "--out", str(tmp_path / "o"), "--tls"]) == 2
    assert "s4c infer: error: the TLS flags are for a running server: give its --url" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "code", "needle"), [
    (["infer", "--out", "o"], 2, "give --arterial and --venous"),  # the command's own check
    (["infer", "--ct", "absent.nii.gz", "--phase", "venous", "--url", "127.0.0.1:9", "--out", "o"], 2,
     "absent.nii.gz: no such file"),  # a library error
    (["classify", "--labels", "absent.nii.gz"], 2, "absent.nii.gz"),
    (["export", "repository", "--model-repository", "nowhere"], 2, "is not an s4c model repository"),
])
def test_one_error_prefix(tmp_path, monkeypatch, capsys, argv, code, needle):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == code
    err = capsys.readouterr().err
    assert err.startswith(f"s4c {argv[0]}: error: ") and needle in err, err
    assert "Traceback" not in err


def test_evaluate_write_cases_uses_the_one_writer(tmp_path, capsys):
    """``s4c evaluate --write-cases`` writes each case as ``s4c infer`` and the demo do: the same three
    files, labels on the input file's grid and affine, and the decision its own cases.json holds."""
    from s4c.outputs import LABELS_FILE, OVERLAY_FILE, REPORT_FILE

    data = tmp_path / "cohort"
    assert main(["phantom", "--out", str(data), "--normal", "1", "--abnormal", "1", "--seed", "5",
                 "--shape", "48", "64", "64"]) == 0
    out = tmp_path / "eval"
    assert main(["evaluate", "--data", str(data), "--out", str(out), "--write-cases", "--no-progress"]) == 0
    rows = {c["case_id"]: c for c in json.loads((out / "cases.json").read_text())}
    files = {LABELS_FILE.format(phase=p) for p in ("arterial", "venous")} | {REPORT_FILE, OVERLAY_FILE}
    for entry in read_manifest(data):
        case_dir = out / "cases" / entry.case_id
        assert {p.name for p in case_dir.iterdir()} == files
        report = json.loads((case_dir / REPORT_FILE).read_text())
        assert int(report["abnormal"]) == rows[entry.case_id]["fused_pred"]
        for phase in ("arterial", "venous"):
            lab, src = load_nifti(case_dir / LABELS_FILE.format(phase=phase)), load_nifti(entry.path(data, phase))
            assert lab.array.shape == src.array.shape and np.array_equal(lab.affine, src.affine)
            assert int(np.count_nonzero(lab.array == 2)) >= report["phases"][phase]["tumor_voxels"] >= 0
            assert report["phases"][phase]["tumor_voxels"] == rows[entry.case_id][phase]["tumor_voxels"]
