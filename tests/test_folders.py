"""The top-level folders say what they hold, and what they hold runs: the export entry point writes a
servable repository, and each client example (plain tritonclient, no s4c import) gets its answer from
the session's real server."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("model_repository", "export", "client", "benchmarks", "tests", "scripts", "docker", "src")
CLIENT_EXAMPLES = sorted((REPO / "client").glob("*.py"))
#: What a PACS bridge may import: the standard library, numpy and tritonclient.
BRIDGE_IMPORTS = {"argparse", "json", "sys", "time", "numpy", "tritonclient"}


@pytest.mark.parametrize("folder", FOLDERS)
def test_each_top_level_folder_has_a_readme(folder):
    text = (REPO / folder / "README.md").read_text()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert lines[0] == f"# {folder}/" and len(lines) >= 3, text


def test_client_examples_use_plain_tritonclient():
    assert len(CLIENT_EXAMPLES) >= 2
    for path in CLIENT_EXAMPLES:
        tree = ast.parse(path.read_text())
        roots = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        roots |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert "s4c" not in roots and roots <= BRIDGE_IMPORTS, (path.name, sorted(roots))


def test_export_script_writes_a_servable_repository(tmp_path):
    """export/export_repository.sh (through this interpreter's s4c) into a copy of the layout without
    weights: the graphs, segmenters.json and configs are written and the repository is current."""
    from s4c import contract
    from s4c.repository.export import configured_mode, repository_is_current

    repo = tmp_path / "model_repository"
    shutil.copytree(REPO / "model_repository", repo,
                    ignore=shutil.ignore_patterns("*.onnx", "*.plan", "segmenters.json", "__pycache__"))
    env = {**os.environ, "S4C": f"{sys.executable} -m s4c.cli"}
    res = subprocess.run(["bash", str(REPO / "export" / "export_repository.sh"), str(repo), "--mode", "full"],
                         capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stderr
    for model in contract.PATCH_MODELS:
        assert (repo / model / "1" / "model.onnx").stat().st_size > 0
    assert repository_is_current(repo) and configured_mode(repo) == "full"


@pytest.mark.server
@pytest.mark.parametrize("example", [p.name for p in CLIENT_EXAMPLES])
def test_client_example_against_the_server(triton, example):
    res = subprocess.run([sys.executable, str(REPO / "client" / example), triton.config.grpc_url],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert "abnormal:" in res.stdout and "labels:" in res.stdout, res.stdout


@pytest.mark.server
def test_client_example_reports_a_refused_request(triton):
    """The bridge's error path: a request the server refuses is INVALID_ARG with the server's message,
    exit 2, not retried into a timeout."""
    res = subprocess.run([sys.executable, str(REPO / "client" / "example_phase.py"), triton.config.grpc_url,
                          "--phase", "delayed"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "INVALID_ARG" in res.stderr and "delayed" in res.stderr, res.stderr
