"""Integration tests: the real tritonserver (session fixture ``triton``) over gRPC with tritonclient.

Served answers are held byte for byte to the in-process library on the same ONNX graphs: ``s4c``
(roi mode, the committed config: locator, then the segmenter on the region) and ``s4c_full`` (the
same model in the paper's full mode).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import FULL_MODEL, SERVER_MAX_VOXELS
from s4c import contract
from s4c.checkpoint import sha256_file
from s4c.data.phantom import generate_case
from s4c.inference.pipeline import RoiSettings, run_phase, window_count
from s4c.inference.predictor import OnnxPredictor
from s4c.io import load_nifti, save_nifti
from s4c.postprocess import fuse

pytestmark = pytest.mark.server

grpcclient = pytest.importorskip("tritonclient.grpc")
from tritonclient.utils import InferenceServerException  # noqa: E402


@pytest.fixture(scope="module")
def predictors(triton):
    """The served ONNX graphs in process: each phase's segmenter and (key 'locator') the locator."""
    repo = triton.config.repository
    return {key: OnnxPredictor(repo / name / "1" / "model.onnx", threads=1)
            for key, name in (("arterial", "segmenter_arterial"), ("venous", "segmenter_venous"),
                              ("locator", contract.LOCATOR_MODEL))}


@pytest.fixture(scope="module")
def case():
    return generate_case(11, abnormal=True, shape=(64, 96, 96), spacing=(2.5, 2.5, 2.5), case_id="srv")


def _in(name, array, dtype):
    t = grpcclient.InferInput(name, list(array.shape), dtype)
    t.set_data_from_numpy(array)
    return t


def phase_inputs(ct, spacing, phase, *, ct_dtype="INT16"):
    return [_in(contract.CT, ct, ct_dtype), _in(contract.SPACING, np.asarray(spacing, np.float32), "FP32"),
            _in(contract.PHASE, np.array([phase.encode()], dtype=np.object_), "BYTES")]


def infer_phase(client, ct, spacing, phase, model=contract.PIPELINE_MODEL):
    r = client.infer(model, phase_inputs(ct, spacing, phase), client_timeout=300)
    return r, json.loads(r.as_numpy(contract.REPORT)[0])


#: Served pipeline model -> its mode.
MODES = {contract.PIPELINE_MODEL: "roi", FULL_MODEL: "full"}


def in_process(predictors, ct, spacing, phase, mode="roi"):
    """The library on the served graphs with the served parameters (the config defaults)."""
    from s4c.repository.params import ServingParams

    p, loc, sp = predictors[phase], predictors["locator"], ServingParams()
    return run_phase(ct, spacing, p, p.spec, mode=mode, locator=(loc, loc.spec) if mode == "roi" else None,
                     roi=RoiSettings(margin_mm=sp.roi_margin_mm, stride=sp.locator_stride, batch_size=sp.batch_size),
                     stride=sp.stride, batch_size=sp.batch_size)


@pytest.mark.parametrize("model", list(MODES))
@pytest.mark.parametrize("phase", ["arterial", "venous"])
def test_phase_labels_and_decision_equal_the_library(triton, client, predictors, case, phase, model):
    ct = getattr(case, phase).astype(np.int16)
    r, report = infer_phase(client, ct, case.spacing, phase, model)
    ref = in_process(predictors, ct, case.spacing, phase, MODES[model])
    labels = r.as_numpy(contract.LABELS)
    assert labels.dtype == np.uint8 and labels.shape == ct.shape
    # A non-trivial comparison in both phases: the library finds the gland (about 3,000 voxels here).
    assert np.count_nonzero(ref.decision.labels) >= 1000, np.bincount(ref.decision.labels.ravel())
    assert labels.tobytes() == ref.decision.labels.tobytes()
    assert bool(r.as_numpy(contract.ABNORMAL)[0]) == ref.decision.abnormal
    assert int(r.as_numpy(contract.TUMOR_VOXELS)[0]) == ref.decision.tumor_voxels
    assert int(r.as_numpy(contract.DUCT_VOXELS)[0]) == ref.decision.duct_voxels
    assert report["abnormal"] == ref.decision.abnormal and report["phase"] == phase
    rule = {"min_tumor_voxels": 40, "min_duct_voxels": 500, "keep_ratio": 0.2, "keep_distance": 27.0}
    assert {k: report["thresholds"][k] for k in rule} == rule
    assert report["thresholds"] == json.loads(json.dumps(ref.decision.thresholds))  # also in mL and mm
    assert report["segmenter"]["name"] == f"segmenter_{phase}" and report["segmenter"]["version"] == "1"
    assert {"network_wait_s", "vote_s", "postprocess_s", "total_s"} <= set(report["timings_s"])
    assert report["mode"] == MODES[model] and report["patches"] == ref.patches
    assert report["roi_zyx"] == ref.roi_report()["roi_zyx"] and report["roi_fallback"] is False
    full_windows = window_count(ct.shape, 20)  # the case is on the segmenter's 2.5 mm grid
    if model == FULL_MODEL:
        assert report["roi_zyx"] is None and report["patches"] == full_windows and "locator" not in report
        return
    roi = report["roi_zyx"]
    assert len(roi) == 3 and all(isinstance(v, int) for pair in roi for v in pair)
    assert all(0 <= lo < hi <= n for (lo, hi), n in zip(roi, ct.shape, strict=True))
    assert isinstance(report["patches"], int) and 1 <= report["patches"] < full_windows
    assert report["locator_patches"] == ref.locator_patches >= 1
    assert report["locator"]["name"] == contract.LOCATOR_MODEL and report["locator"]["version"] == "1"
    locator_onnx = triton.config.repository / contract.LOCATOR_MODEL / "1" / "model.onnx"
    assert report["locator"]["onnx_sha256"] == sha256_file(locator_onnx)


@pytest.mark.parametrize("shape", [(40, 64, 65), (64, 64, 64), (65, 41, 64)])
def test_odd_shapes(client, predictors, case, shape):
    # Crops of the phantom through its pancreas, padded with air where the phantom is smaller.
    ct = np.full(shape, -1000, np.int16)
    src = case.venous.astype(np.int16)
    z0, y0, x0 = (max(0, (s - n) // 2) for s, n in zip(src.shape, shape, strict=True))
    crop = src[z0 : z0 + shape[0], y0 : y0 + shape[1], x0 : x0 + shape[2]]
    ct[: crop.shape[0], : crop.shape[1], : crop.shape[2]] = crop
    r, _ = infer_phase(client, ct, (2.5, 2.5, 2.5), "venous")
    ref = in_process(predictors, ct, (2.5, 2.5, 2.5), "venous")
    assert r.as_numpy(contract.LABELS).shape == shape
    assert r.as_numpy(contract.LABELS).tobytes() == ref.decision.labels.tobytes()


def test_dual_phase_different_shapes_and_spacings(client, predictors, case):
    arterial = case.arterial.astype(np.int16)
    venous = case.venous.astype(np.int16)[4:60, 10:90, 3:93]  # another acquisition: other extent ...
    sp = {"arterial": (2.5, 2.5, 2.5), "venous": (3.0, 2.0, 2.25)}  # ... and another grid
    cts = {"arterial": arterial, "venous": venous}
    inputs = []
    for phase in ("arterial", "venous"):
        ct_name, sp_name, _ = contract.DUAL_INPUTS[phase]
        inputs += [_in(ct_name, cts[phase], "INT16"), _in(sp_name, np.asarray(sp[phase], np.float32), "FP32")]
    r = client.infer(contract.DUAL_PHASE_MODEL, inputs, client_timeout=300)
    report = json.loads(r.as_numpy(contract.REPORT)[0])
    refs = {p: in_process(predictors, cts[p], sp[p], p) for p in cts}
    for phase in cts:
        labels = r.as_numpy(contract.DUAL_LABELS[phase])
        assert labels.shape == cts[phase].shape
        assert labels.tobytes() == refs[phase].decision.labels.tobytes()
        assert report["phases"][phase]["abnormal"] == refs[phase].decision.abnormal
        assert report["phases"][phase]["input"]["spacing_zyx_mm"] == list(sp[phase])
        assert {k: report["phases"][phase][k] for k in refs[phase].roi_report()} == refs[phase].roi_report()
        assert report["phases"][phase]["mode"] == "roi" and report["phases"][phase]["locator"]["name"] == "locator"
    expected = fuse(*(refs[p].decision for p in cts))
    assert bool(r.as_numpy(contract.ABNORMAL)[0]) == expected == report["abnormal"]


def _small():
    return np.full((48, 64, 64), -100, dtype=np.int16)


BAD_PHASE_REQUESTS = {
    "wrong dtype": (lambda: phase_inputs(_small().astype(np.float32), (2.5,) * 3, "venous", ct_dtype="FP32"),
                    "CT"),
    "wrong rank": (lambda: phase_inputs(np.zeros((64, 64), np.int16), (2.5,) * 3, "venous"), "CT"),
    "empty dimension": (lambda: phase_inputs(np.zeros((0, 64, 64), np.int16), (2.5,) * 3, "venous"), "empty"),
    "over the voxel limit": (lambda: phase_inputs(np.zeros((130, 130, 130), np.int16), (2.5,) * 3, "venous"),
                             str(SERVER_MAX_VOXELS)),
    "missing input": (lambda: phase_inputs(_small(), (2.5,) * 3, "venous")[::2], "SPACING"),
    "NaN spacing": (lambda: phase_inputs(_small(), (2.5, float("nan"), 2.5), "venous"), "SPACING"),
    "non-positive spacing": (lambda: phase_inputs(_small(), (2.5, 0.0, -1.0), "venous"), "SPACING"),
    "unknown phase": (lambda: phase_inputs(_small(), (2.5,) * 3, "delayed"), "delayed"),
    "spacing of 2 values": (lambda: [*phase_inputs(_small(), (2.5,) * 3, "venous")[::2],
                                     _in(contract.SPACING, np.ones(2, np.float32), "FP32")], "SPACING"),
}


@pytest.mark.parametrize("name", list(BAD_PHASE_REQUESTS))
def test_bad_input_is_invalid_arg_and_server_keeps_serving(client, name):
    make, needle = BAD_PHASE_REQUESTS[name]
    with pytest.raises(InferenceServerException) as err:
        client.infer(contract.PIPELINE_MODEL, make(), client_timeout=120)
    assert "INVALID_ARG" in str(err.value.status()), (name, err.value.status(), err.value.message())
    assert needle in err.value.message(), (name, err.value.message())
    r, _ = infer_phase(client, _small(), (2.5, 2.5, 2.5), "venous")
    assert r.as_numpy(contract.LABELS).shape == (48, 64, 64)
    assert client.is_model_ready(contract.PIPELINE_MODEL)


@pytest.mark.parametrize(("problem", "needle"), [("missing VENOUS", "VENOUS"),
                                                 ("NaN ARTERIAL_SPACING", "ARTERIAL_SPACING"),
                                                 ("VENOUS over the limit", str(SERVER_MAX_VOXELS))])
def test_dual_phase_bad_input(client, problem, needle):
    ct, sp = _small(), np.full(3, 2.5, np.float32)
    arrays = {"ARTERIAL": ct, "VENOUS": ct, "ARTERIAL_SPACING": sp, "VENOUS_SPACING": sp}
    if problem == "missing VENOUS":
        del arrays["VENOUS"]
    elif problem.startswith("NaN"):
        arrays["ARTERIAL_SPACING"] = np.array([2.5, np.nan, 2.5], np.float32)
    else:
        arrays["VENOUS"] = np.zeros((130, 130, 130), np.int16)
    inputs = [_in(n, a, "INT16" if a.dtype == np.int16 else "FP32") for n, a in arrays.items()]
    with pytest.raises(InferenceServerException) as err:
        client.infer(contract.DUAL_PHASE_MODEL, inputs, client_timeout=120)
    assert "INVALID_ARG" in str(err.value.status()), err.value.message()
    assert needle in err.value.message(), err.value.message()
    assert client.is_model_ready(contract.DUAL_PHASE_MODEL)


def test_client_cli_writes_labels_on_the_input_grid(triton, predictors, tmp_path):
    case = generate_case(5, abnormal=True, shape=(48, 80, 72), spacing=(3.0, 2.5, 2.5), case_id="cli")
    # A non-canonical file: X and Y axes flipped (LPS-like), with an origin.
    affine = case.affine.copy()
    affine[0, 0], affine[1, 1] = -affine[0, 0], -affine[1, 1]
    affine[:3, 3] = (120.0, 95.0, -40.0)
    paths = {}
    for phase in ("arterial", "venous"):
        paths[phase] = save_nifti(tmp_path / f"{phase}.nii.gz", getattr(case, phase).astype(np.int16), affine)
    out = tmp_path / "out"
    res = subprocess.run([sys.executable, "-m", "s4c.cli", "infer", "--url", triton.config.grpc_url,
                          "--arterial", str(paths["arterial"]), "--venous", str(paths["venous"]), "--out", str(out)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert "DECISION" in res.stdout
    report = json.loads((out / "report.json").read_text())
    assert set(report["phases"]) == {"arterial", "venous"}
    assert (out / "overlay.png").stat().st_size > 0
    for phase in ("arterial", "venous"):
        lab = load_nifti(out / f"{phase}_labels.nii.gz")
        src = load_nifti(paths[phase])
        assert lab.array.shape == src.array.shape
        assert np.array_equal(lab.affine, src.affine)
        # The labels are where the library puts them on the same anatomy: run it on the canonical
        # (flipped back) array and flip its labels onto the file grid.
        canonical = src.array[:, ::-1, ::-1]
        ref = in_process(predictors, np.ascontiguousarray(canonical), src.spacing, phase).decision.labels
        assert np.array_equal(lab.array, ref[:, ::-1, ::-1])


def test_admin_protocols_need_the_key(triton, client):
    """Model config (an admin protocol) is refused without the key and served with it; inference and
    health stay open."""
    from s4c.serving.server import grpc_admin_header

    with pytest.raises(InferenceServerException, match="restricted"):
        client.get_model_config(contract.PIPELINE_MODEL)
    with pytest.raises(InferenceServerException, match="restricted"):
        client.get_inference_statistics(contract.PIPELINE_MODEL)
    cfg = client.get_model_config(contract.PIPELINE_MODEL, headers={grpc_admin_header(): triton.config.admin_key})
    assert cfg.config.name == contract.PIPELINE_MODEL
    assert client.is_server_live() and client.is_model_ready(contract.PIPELINE_MODEL)
    assert client.get_model_metadata(contract.PIPELINE_MODEL).name == contract.PIPELINE_MODEL


def test_server_listens_on_loopback_only(triton):
    import socket

    assert triton.config.address == "127.0.0.1"
    addrs = {a[4][0] for a in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)} - {"127.0.0.1"}
    for addr in addrs:
        with socket.socket() as s:
            s.settimeout(1)
            assert s.connect_ex((addr, triton.config.grpc_port)) != 0, f"gRPC port reachable on {addr}"


def test_real_ct_through_the_client(triton, real_ct_dir, tmp_path):
    """A real CT (int32 storage, 3 mm, so the server resamples to the model grid) comes back on its own
    grid and affine, with a report; one phase through the ``s4c`` model."""
    src_path = real_ct_dir / "example_ct.nii.gz"
    out = tmp_path / "real"
    res = subprocess.run([sys.executable, "-m", "s4c.cli", "infer", "--url", triton.config.grpc_url, "--ct",
                          str(src_path), "--phase", "venous", "--out", str(out)], capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr
    lab, src = load_nifti(out / "venous_labels.nii.gz"), load_nifti(src_path)
    assert lab.array.shape == src.array.shape and np.array_equal(lab.affine, src.affine)
    report = json.loads((out / "report.json").read_text())["phases"]["venous"]
    assert report["input"]["spacing_zyx_mm"] == [3.0, 3.0, 3.0] and report["world_frame"] == "affine"
    assert "example_ct" not in (out / "report.json").read_text()  # no file names in the report


def _self_signed(tmp_path):
    """A private CA and a server certificate for 127.0.0.1, made with the openssl CLI."""
    import shutil

    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    ca_key, ca, key, csr, cert = (tmp_path / n for n in ("ca.key", "ca.pem", "server.key", "server.csr",
                                                          "server.pem"))
    ext = tmp_path / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run = lambda *a: subprocess.run(["openssl", *a], check=True, capture_output=True)  # noqa: E731
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca), "-days", "2",
        "-subj", "/CN=s4c-test-ca")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-out", str(cert),
        "-days", "2", "-extfile", str(ext))
    return ca, cert, key


def test_tls_between_client_and_server(triton, tmp_path):
    from s4c.serving.server import ServerConfig, TritonServer, free_ports

    ca, cert, key = _self_signed(tmp_path)
    grpc, http, metrics = free_ports(3)
    cfg = ServerConfig(triton.config.repository, grpc_port=grpc, http_port=http, metrics_port=metrics,
                       tls_cert=cert, tls_key=key)
    ct = save_nifti(tmp_path / "ct.nii.gz", np.full((48, 64, 64), -100, np.int16), np.diag([2.5, 2.5, 2.5, 1.0]))
    base = [sys.executable, "-m", "s4c.cli", "infer", "--url", cfg.grpc_url, "--ct", str(ct), "--phase", "venous",
            "--retries", "0", "--timeout", "60"]
    with TritonServer(cfg, log_path=tmp_path / "tls.log", models=("s4c", "segmenter_venous")):
        # The server's spelling (s4c serve --tls-*), then the former client flags, which stay as aliases.
        for name, flags in (("ok", ["--tls", "--tls-ca", str(ca)]), ("old", ["--ssl", "--root-cert", str(ca)])):
            ok = subprocess.run([*base, "--out", str(tmp_path / name), *flags], capture_output=True, text=True,
                                timeout=300)
            assert ok.returncode == 0, ok.stderr
            assert (tmp_path / name / "venous_labels.nii.gz").exists()
        plain = subprocess.run([*base, "--out", str(tmp_path / "plain")], capture_output=True, text=True, timeout=300)
        assert plain.returncode == 3, plain.stdout + plain.stderr
        assert "s4c infer: error: cannot reach the S4C server" in plain.stderr


def test_client_cohort_mode(triton, tmp_path):
    """--manifest with --concurrency: one folder per case and a summary table; a broken case is a row
    with its error, not the end of the run."""
    import csv

    cohort = tmp_path / "cohort"
    res = subprocess.run([sys.executable, "-m", "s4c.cli", "phantom", "--out", str(cohort), "--normal", "1",
                          "--abnormal", "1", "--seed", "4", "--shape", "48", "64", "64"], capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    rows = list(csv.DictReader((cohort / "manifest.csv").open()))
    broken = cohort / rows[1]["venous"]
    broken.write_bytes(broken.read_bytes()[:50])
    out = tmp_path / "out"
    res = subprocess.run([sys.executable, "-m", "s4c.cli", "infer", "--url", triton.config.grpc_url, "--manifest",
                          str(cohort / "manifest.csv"), "--concurrency", "2", "--out", str(out), "--no-progress"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 1, res.stdout + res.stderr  # one case failed
    summary = list(csv.DictReader((out / "summary.csv").open()))
    assert [r["case_id"] for r in summary] == [r["case_id"] for r in rows]
    assert summary[0]["status"] == "ok" and summary[1]["status"] == "error" and "cannot read" in summary[1]["error"]
    assert (out / rows[0]["case_id"] / "arterial_labels.nii.gz").exists()
    assert (out / rows[0]["case_id"] / "report.json").exists()
