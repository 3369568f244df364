"""What can be checked of the GPU image without a Docker engine: the files it copies exist, the server
flags it ends up passing are flags of the bundled tritonserver, and it runs as non-root."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from s4c.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = (REPO / "Dockerfile").read_text()


def _instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def test_copied_paths_exist():
    copies = [args for op, args in _instructions() if op == "COPY" and "--from" not in args]
    assert copies
    for args in copies:
        *sources, _dest = shlex.split(args)
        for src in sources:
            assert (REPO / src).exists(), f"Dockerfile copies {src}, which is not in the repository"


def test_base_image_is_a_pinned_ngc_tag_given_as_build_arg():
    arg = re.search(r"^ARG TRITON_IMAGE=(\S+)$", DOCKERFILE, re.M)
    assert arg and re.fullmatch(r"nvcr\.io/nvidia/tritonserver:\d{2}\.\d{2}-py3", arg.group(1))
    assert "FROM ${TRITON_IMAGE}" in DOCKERFILE


def test_runs_as_non_root_with_a_per_model_healthcheck():
    users = [args.strip() for op, args in _instructions() if op == "USER"]
    assert users and users[-1] not in ("root", "0")
    health = next(args for op, args in _instructions() if op == "HEALTHCHECK")
    assert re.search(r"/v2/models/\w+/ready", health)


def test_entrypoint_uses_real_s4c_serve_flags():
    script = (REPO / "docker" / "entrypoint.sh").read_text()
    line = script[script.index("exec s4c serve"):].replace("\\\n", " ").split("\n")[0]
    argv = [a for a in shlex.split(line)[3:] if a != "$@"]
    argv = [("key" if a.startswith("$") else a) for a in argv]
    args = build_parser().parse_args(["serve", *argv])
    assert args.form == "tensorrt" and args.build_engines


@pytest.fixture(scope="module")
def server_help() -> str:
    from s4c.serving.server import find_tritonserver, server_env

    try:
        install = find_tritonserver()
    except Exception as exc:  # the serving extras are part of requirements.txt; say so if missing
        pytest.fail(f"no tritonserver: {exc}")
    res = subprocess.run([str(install.binary), "--help"], capture_output=True, text=True, env=server_env(install),
                         timeout=60)
    return res.stdout + res.stderr


@pytest.mark.parametrize("form", [None, "tensorrt"])
def test_server_flags_are_in_the_bundled_binary_help(server_help, form, tmp_path):
    from s4c.serving.server import ServerConfig, find_tritonserver

    cmd = ServerConfig(tmp_path, config_name=form, address="0.0.0.0").command(find_tritonserver(), tmp_path)
    flags = {a.split("=", 1)[0] for a in cmd[1:]}
    assert {"--model-control-mode", "--strict-readiness", "--grpc-restricted-protocol",
            "--http-restricted-api"} <= flags
    for flag in flags:
        assert re.search(rf"^\s+{re.escape(flag)}\b", server_help, re.M), f"{flag} is not a tritonserver flag"


def test_ngc_entrypoint_is_chained_not_replaced():
    """NGC's nvidia_entrypoint.sh runs the image's entrypoint.d parts (CUDA forward compatibility among
    them) and then execs its arguments (triton-inference-server/server build.py, docker/cpu_only)."""
    entry = next(args for op, args in _instructions() if op == "ENTRYPOINT")
    argv = json.loads(entry)
    assert argv[0] == "/opt/nvidia/nvidia_entrypoint.sh" and argv[1:] == ["/usr/local/bin/s4c-entrypoint"]


def _pinned(path: Path) -> set[str]:
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(re.split(r"[\[=<>]", line, maxsplit=1)[0].lower().replace("_", "-"))
    return names


def test_runtime_image_has_what_its_start_imports():
    """The runtime stage re-exports a stale repository (s4c.repository.onnx: torch, onnx) and, on
    TensorRT >= 11, converts the graph to FP16 (onnxconverter-common) before building engines; the
    Python stubs need the package's own dependencies."""
    pinned = _pinned(REPO / "docker" / "requirements-triton.txt")
    assert {"torch", "onnx", "onnxconverter-common", "numpy", "numba", "connected-components-3d", "nibabel",
            "scipy", "tqdm"} <= pinned
    assert "onnx" in _pinned(REPO / "docker" / "requirements-export.txt")
