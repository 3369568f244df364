"""Shared pytest fixtures and skips."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

REPO = Path(__file__).resolve().parents[1]
REAL_CT = REPO.parent / "shared" / "data" / "real-ct"

settings.register_profile("ci", max_examples=60, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=200, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def real_ct_dir() -> Path:
    """The shared real CT folder; tests that need it skip cleanly when it is absent."""
    if not (REAL_CT / "example_ct_sm.nii.gz").exists():
        pytest.skip(f"real CT not present at {REAL_CT}")
    return REAL_CT


@pytest.fixture(scope="session")
def triton(tmp_path_factory):
    """One real tritonserver for the session, on free loopback ports, serving a copy of
    model_repository/ with weights exported from the embedded models and a small voxel limit
    (so the over-limit test sends megabytes, not gigabytes)."""
    import shutil

    from s4c.export.repository import export_repository
    from s4c.serving.params import DEFAULT_MAX_VOXELS
    from s4c.serving.server import ServerConfig, TritonServer, free_ports

    root = tmp_path_factory.mktemp("triton")
    repo = root / "model_repository"
    shutil.copytree(REPO / "model_repository", repo,
                    ignore=shutil.ignore_patterns("*.onnx", "*.plan", "segmenters.json", "__pycache__", "README.md"))
    export_repository(repo)
    for model in ("s4c", "s4c_dual_phase"):
        cfg = repo / model / "config.pbtxt"
        text = cfg.read_text()
        assert 'key: "max_voxels"' in text
        cfg.write_text(text.replace(f'string_value: "{DEFAULT_MAX_VOXELS}"', f'string_value: "{SERVER_MAX_VOXELS}"'))
    grpc, http, metrics = free_ports(3)
    config = ServerConfig(repo, grpc_port=grpc, http_port=http, metrics_port=metrics)
    server = TritonServer(config, log_path=root / "tritonserver.log")
    server.start()
    try:
        server.wait_ready(240)
        yield server
    finally:
        server.stop()


#: The voxel limit of the test server's pipeline models.
SERVER_MAX_VOXELS = 2_000_000
