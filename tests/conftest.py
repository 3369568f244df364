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


#: Debian packages of the test-only tools (.ci/run installs them).
TOOL_PACKAGES = {"dciodvfy": "dicom3tools", "dcm2niix": "dcm2niix", "nginx": "nginx"}


def need_tool(name: str) -> str:
    """The path of a test-only tool from Debian: skip without it, but fail in CI (CI=true)."""
    import shutil

    path = shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.access(p, os.X_OK)),
                                      None)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is missing in CI (.ci/run installs the Debian package {TOOL_PACKAGES[name]})")
        pytest.skip(f"{name} not installed (apt-get install {TOOL_PACKAGES[name]})")
    return path


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
    (so the over-limit test sends megabytes, not gigabytes). ``s4c`` has the committed mode (roi);
    :data:`FULL_MODEL` is the same pipeline model with mode full (one instance), so both modes are
    held to the library by one server."""
    import shutil

    from s4c.repository.export import export_repository
    from s4c.repository.params import DEFAULT_MAX_VOXELS
    from s4c.serving.server import MODELS, ServerConfig, TritonServer, free_ports

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
    full = repo / FULL_MODEL
    shutil.copytree(repo / "s4c", full, ignore=shutil.ignore_patterns("configs", "__pycache__"))
    text = (full / "config.pbtxt").read_text()
    mode = 'key: "mode"\n  value: {{ string_value: "{}" }}'
    for old, new in (('name: "s4c"', f'name: "{FULL_MODEL}"'), ("count: 2", "count: 1"),
                     (mode.format("roi"), mode.format("full"))):
        assert old in text, old
        text = text.replace(old, new)
    (full / "config.pbtxt").write_text(text)
    add_fault_models(repo)
    grpc, http, metrics = free_ports(3)
    config = ServerConfig(repo, grpc_port=grpc, http_port=http, metrics_port=metrics)
    server = TritonServer(config, log_path=root / "tritonserver.log", models=(*MODELS, FULL_MODEL, *FAULT_MODELS))
    server.start()
    try:
        server.wait_ready(240)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def client(triton):
    """A tritonclient gRPC client of the session's server (one per test module)."""
    grpcclient = pytest.importorskip("tritonclient.grpc")
    c = grpcclient.InferenceServerClient(triton.config.grpc_url)
    yield c
    c.close()


#: The voxel limit of the test server's pipeline models.
SERVER_MAX_VOXELS = 2_000_000
#: The test server's copy of the ``s4c`` model in full mode.
FULL_MODEL = "s4c_full"
#: The test server's models that fail on purpose: a segmenter (tests/models/segmenter_fault.py), a
#: full-mode ``s4c`` whose arterial segmenter it is, and a dual-phase model over that ``s4c``.
FAULT_SEGMENTER, FAULT_PIPELINE, FAULT_DUAL = "segmenter_fault", "s4c_fault", "s4c_dual_fault"
FAULT_MODELS = (FAULT_SEGMENTER, FAULT_PIPELINE, FAULT_DUAL)


def _edit(path: Path, *replacements: tuple[str, str]) -> None:
    text = path.read_text()
    for old, new in replacements:
        assert old in text, (path, old)
        text = text.replace(old, new)
    path.write_text(text)


def add_fault_models(repo: Path) -> None:
    """Add :data:`FAULT_MODELS` to an exported repository."""
    import json
    import shutil

    seg = repo / FAULT_SEGMENTER
    shutil.copytree(repo / "segmenter_arterial", seg, ignore=shutil.ignore_patterns("configs", "__pycache__", "*.onnx"))
    shutil.copy2(REPO / "tests" / "models" / "segmenter_fault.py", seg / "1" / "model.py")
    _edit(seg / "config.pbtxt", ('name: "segmenter_arterial"', f'name: "{FAULT_SEGMENTER}"'))
    pipe = repo / FAULT_PIPELINE
    shutil.copytree(repo / "s4c", pipe, ignore=shutil.ignore_patterns("configs", "__pycache__"))
    mode = 'key: "mode"\n  value: {{ string_value: "{}" }}'
    _edit(pipe / "config.pbtxt", ('name: "s4c"', f'name: "{FAULT_PIPELINE}"'), ("count: 2", "count: 1"),
          (mode.format("roi"), mode.format("full")),
          ('value: { string_value: "segmenter_arterial" }', f'value: {{ string_value: "{FAULT_SEGMENTER}" }}'))
    described = pipe / "1" / "segmenters.json"
    blob = json.loads(described.read_text())
    blob[FAULT_SEGMENTER] = blob["segmenter_arterial"]  # described as the arterial segmenter it stands in for
    described.write_text(json.dumps(blob, indent=2))
    dual = repo / FAULT_DUAL
    shutil.copytree(repo / "s4c_dual_phase", dual, ignore=shutil.ignore_patterns("configs", "__pycache__"))
    _edit(dual / "config.pbtxt", ('name: "s4c_dual_phase"', f'name: "{FAULT_DUAL}"'),
          ('value: { string_value: "s4c" }', f'value: {{ string_value: "{FAULT_PIPELINE}" }}'))
