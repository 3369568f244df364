"""Cohort inference at scale: a ``s4c infer --manifest`` run killed mid-cohort and resumed gives the
outputs of an uninterrupted run and redoes only what was unfinished; several --url endpoints share the
cases round robin and take over from one that is down."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from s4c.data.phantom import write_cohort
from s4c.io import load_nifti
from s4c.serving.client import PARTIAL_PREFIX, completed_case

pytestmark = pytest.mark.server
CASES = 6


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cohort")
    return write_cohort(root, n_normal=3, n_abnormal=3, seed=21, shape=(40, 64, 56), spacing=(3.0, 3.0, 3.0))


def _cmd(urls: list[str], manifest: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "s4c.cli", "infer", *(a for u in urls for a in ("--url", u)), "--manifest",
            str(manifest), "--out", str(out), "--no-progress", *extra]


def _summary(out: Path) -> list[dict]:
    with (out / "summary.csv").open() as fh:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(fh)]


def _same_outputs(a: Path, b: Path) -> None:
    assert _summary(a) == _summary(b)
    for row in _summary(a):
        ra, rb = completed_case(a / row["case_id"]), completed_case(b / row["case_id"])
        assert ra is not None and rb is not None
        assert ra["abnormal"] == rb["abnormal"]
        for phase in ("arterial", "venous"):
            assert ra["phases"][phase]["tumor_voxels"] == rb["phases"][phase]["tumor_voxels"]
            la = load_nifti(a / row["case_id"] / f"{phase}_labels.nii.gz")
            lb = load_nifti(b / row["case_id"] / f"{phase}_labels.nii.gz")
            assert np.array_equal(la.array, lb.array) and np.array_equal(la.affine, lb.affine)


def test_killed_run_resumes_to_the_same_outputs(triton, cohort, tmp_path):
    url = triton.config.grpc_url
    full = tmp_path / "full"
    res = subprocess.run(_cmd([url], cohort, full), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    part = tmp_path / "part"
    proc = subprocess.Popen(_cmd([url], cohort, part), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            done = [d for d in part.glob("case_*") if completed_case(d) is not None]
            if len(done) >= 2:
                break
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    finished = sorted(d.name for d in part.glob("case_*"))
    assert 2 <= len(finished) < CASES, finished
    # Whatever the kill interrupted is under a temporary name, never a case's own.
    assert all(completed_case(part / c) is not None for c in finished)
    stamps = {c: (part / c / "report.json").stat().st_mtime_ns for c in finished}
    res = subprocess.run(_cmd([url], cohort, part), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"{len(finished)} kept from an earlier run" in res.stdout
    assert {c: (part / c / "report.json").stat().st_mtime_ns for c in finished} == stamps  # not redone
    assert not list(part.glob(f"{PARTIAL_PREFIX}*"))
    _same_outputs(full, part)
    # --no-resume infers everything again.
    res = subprocess.run(_cmd([url], cohort, part, "--no-resume"), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0 and "kept from an earlier run" not in res.stdout
    assert all((part / c / "report.json").stat().st_mtime_ns != stamps[c] for c in finished)


def test_several_urls_round_robin_and_fail_over(triton, cohort, tmp_path):
    """Two endpoints, one of them down: every case is answered by the live one, after retries."""
    from s4c.serving.server import free_ports

    dead = f"127.0.0.1:{free_ports(1)[0]}"
    out = tmp_path / "rr"
    res = subprocess.run(_cmd([dead, triton.config.grpc_url], cohort, out, "--retries", "1", "--concurrency", "2"),
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert [r["status"] for r in _summary(out)] == ["ok"] * CASES
    res = subprocess.run(_cmd([f"{dead},{triton.config.grpc_url}"], cohort, tmp_path / "rr2", "--retries", "0"),
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    _same_outputs(out, tmp_path / "rr2")
