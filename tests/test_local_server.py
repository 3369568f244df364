"""One command for one scan: ``s4c infer`` without ``--url`` starts its own tritonserver on free
loopback ports, serves the scans and stops it; with ``--url`` it uses a running one (the session
server). Both write the same files, the demo's names, and the same labels."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys

import numpy as np
import pytest

from s4c.data.phantom import generate_case
from s4c.io import load_nifti, save_nifti
from s4c.outputs import LABELS_FILE, OVERLAY_FILE, REPORT_FILE

pytestmark = pytest.mark.server

RESULT_FILES = {LABELS_FILE.format(phase=p) for p in ("arterial", "venous")} | {REPORT_FILE, OVERLAY_FILE}


@pytest.fixture(scope="module")
def repository(triton, tmp_path_factory):
    """The session server's exported repository without its test-only models (fewer stubs to start)."""
    import shutil

    from conftest import FAULT_MODELS, FULL_MODEL

    dest = tmp_path_factory.mktemp("local") / "model_repository"
    shutil.copytree(triton.config.repository, dest, ignore=shutil.ignore_patterns(FULL_MODEL, *FAULT_MODELS))
    return dest


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    case = generate_case(3, abnormal=True, shape=(48, 80, 72), spacing=(3.0, 2.5, 2.5), case_id="one")
    folder = tmp_path_factory.mktemp("scans")
    return {p: save_nifti(folder / f"{p}.nii.gz", getattr(case, p).astype(np.int16), case.affine)
            for p in ("arterial", "venous")}


def _infer(scans, out, *extra):
    return subprocess.run([sys.executable, "-m", "s4c.cli", "infer", "--arterial", str(scans["arterial"]),
                           "--venous", str(scans["venous"]), "--out", str(out), *extra],
                          capture_output=True, text=True, timeout=600)


def _refused(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_infer_without_url_starts_and_stops_its_own_server(triton, repository, scans, tmp_path):
    own = _infer(scans, tmp_path / "own", "--model-repository", str(repository))
    assert own.returncode == 0, own.stderr
    port = int(re.search(r"starting tritonserver on 127\.0\.0\.1:(\d+)", own.stderr).group(1))
    assert port != triton.config.grpc_port and "stopping the server" in own.stderr
    assert _refused(port)  # stopped with the command
    assert "DECISION" in own.stdout
    assert RESULT_FILES <= {p.name for p in (tmp_path / "own").iterdir()}
    assert (tmp_path / "own" / "tritonserver.log").stat().st_size > 0

    running = _infer(scans, tmp_path / "running", "--url", triton.config.grpc_url)
    assert running.returncode == 0, running.stderr
    assert "starting tritonserver" not in running.stderr
    assert {p.name for p in (tmp_path / "running").iterdir()} == RESULT_FILES
    for phase in ("arterial", "venous"):  # the same repository, so the same answer
        a, b = (load_nifti(tmp_path / d / LABELS_FILE.format(phase=phase)) for d in ("own", "running"))
        assert np.array_equal(a.array, b.array) and np.array_equal(a.affine, b.affine)
        assert np.array_equal(a.affine, load_nifti(scans[phase]).affine)
    reports = [json.loads((tmp_path / d / REPORT_FILE).read_text()) for d in ("own", "running")]
    assert reports[0]["abnormal"] == reports[1]["abnormal"]
    assert reports[0]["phases"]["venous"]["tumor_voxels"] == reports[1]["phases"]["venous"]["tumor_voxels"]


def test_infer_without_url_on_a_folder_that_is_no_repository(scans, tmp_path):
    res = _infer(scans, tmp_path / "out", "--model-repository", str(tmp_path))
    assert res.returncode == 2
    assert "s4c infer: error:" in res.stderr and "is not an s4c model repository" in res.stderr


def test_demo_through_its_own_server_writes_the_same_files(repository, tmp_path):
    """The demo's served path (make demo) uses the same local server and the same writer."""
    from s4c.demo import run_demo

    lines: list[str] = []
    report = run_demo(tmp_path, seed=3, repository=repository, shape=(48, 64, 64),
                      echo=lines.append)
    assert RESULT_FILES <= {p.name for p in tmp_path.iterdir()}
    assert set(report["phases"]) == {"arterial", "venous"} and "reference_rule" in report
    # The demo sends its phantom as two DICOM series and gets a DICOM SEG back for each.
    import highdicom as hd

    for phase in ("arterial", "venous"):
        assert report["phases"][phase]["source"]["format"] == "dicom"
        seg = hd.seg.segread(tmp_path / f"{phase}_seg.dcm")
        assert str(seg.PatientName) == "PHANTOM^DEMO" and len(seg.SegmentSequence) == 3
    assert any("_seg" in ln for ln in lines)
    port = int(next(re.search(r":(\d+)", ln).group(1) for ln in lines if ln.startswith("starting tritonserver")))
    assert _refused(port) and any(ln.startswith("DECISION") for ln in lines)


def test_a_killed_server_leaves_no_shared_memory_behind(repository, tmp_path):
    """The Python backend's stubs each hold 64 MiB regions in /dev/shm; killed with their server they
    never unlink them (seen here: 17 GiB left by killed test servers, until the OOM killer struck).
    Each server names its regions with its own prefix and stop() removes what is left."""
    import os
    import signal

    from s4c.serving.server import SHM_DIR, ServerConfig, TritonServer, free_ports

    if not SHM_DIR.is_dir():
        pytest.skip("no /dev/shm on this system")
    grpc, http, metrics = free_ports(3)
    server = TritonServer(ServerConfig(repository, grpc_port=grpc, http_port=http, metrics_port=metrics),
                          log_path=tmp_path / "tritonserver.log")
    prefix = server.config.shm_prefix
    server.start()
    try:
        server.wait_ready(240)
        regions = list(SHM_DIR.glob(f"{prefix}*"))
        assert regions, f"no /dev/shm/{prefix}* regions while the server runs"
        os.killpg(server.process.pid, signal.SIGKILL)  # a crash: nobody cleans up
        server.process.wait(30)
        assert all(p.exists() for p in regions)
    finally:
        server.stop()
    assert list(SHM_DIR.glob(f"{prefix}*")) == []
