"""The package and ``s4c serve`` as an unprivileged user without a writable home, as the serving image runs
(user ``triton-server``, site-packages owned by root).

numba's ``cache=True`` raises "no locator available" at import when neither the source's __pycache__ nor
the user's cache folder can be written; the server's backend copy lives under the user's cache too. The
tests switch to ``nobody`` with ``setpriv`` (root only, as in CI) and a home that does not exist. Outside
CI they skip, saying why, where that cannot be done; under ``CI=true`` that is a failure.

The user runs this repository's venv packages through a venv of the system's Python (same minor
version) whose only content is a ``.pth`` that adds the repository venv's site-packages: the repository
venv's own interpreter may live where ``nobody`` cannot read it (pyenv under /root).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOBODY = 65534
HOME = "/nonexistent"


def _nobody(*cmd: str) -> list[str]:
    """``cmd`` as user ``nobody`` in a bare environment with HOME missing (``env`` execs it after the switch:
    setpriv alone resolves the program before it drops root, which would hide an unreadable path)."""
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "env", "-i", f"HOME={HOME}",
            "PATH=/usr/local/bin:/usr/bin:/bin", "TMPDIR=/tmp", *cmd]


def _why_not() -> str | None:
    """Why an unprivileged run cannot be set up here, or None."""
    if os.geteuid() != 0:
        return "switching to an unprivileged user needs root (CI runs as root)"
    if not shutil.which("setpriv"):
        return "setpriv (util-linux) is not installed"
    if os.path.exists(HOME):
        return f"{HOME} exists, so it is not a missing home"
    for path in (REPO / "src" / "s4c" / "__init__.py", Path(sysconfig.get_paths()["purelib"]) / "numba"):
        probe = subprocess.run(_nobody("test", "-r", str(path)), capture_output=True)
        if probe.returncode != 0:
            return f"user {NOBODY} cannot read {path}"
    return None


def _system_python() -> str | None:
    """An interpreter of this Python's minor version that user ``nobody`` can execute."""
    ver = f"{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (os.path.realpath(sys.executable), f"/usr/bin/python{ver}", f"/usr/local/bin/python{ver}"):
        if not os.path.exists(candidate):
            continue
        res = subprocess.run(_nobody(candidate, "-c", "import sys; print(sys.version_info[:2])"), capture_output=True,
                             text=True)
        if res.returncode == 0 and res.stdout.strip() == str(sys.version_info[:2]):
            return candidate
    return None


def _open_ancestors(paths) -> dict[Path, int]:
    """Give others search permission (o+x) on every folder above ``paths`` that lacks it, so that user
    ``nobody`` can reach a checkout made in a private temporary folder (``mktemp -d`` is mode 700, as a
    CI clone may be); returns the original modes, which :func:`_restore_modes` puts back. Root only."""
    import stat

    changed: dict[Path, int] = {}
    if os.geteuid() != 0:
        return changed
    for path in paths:
        for folder in Path(path).resolve().parents:
            mode = folder.stat().st_mode
            if folder not in changed and not mode & stat.S_IXOTH:
                changed[folder] = stat.S_IMODE(mode)
                os.chmod(folder, stat.S_IMODE(mode) | stat.S_IXOTH)
    return changed


def _restore_modes(changed: dict[Path, int]) -> None:
    for folder, mode in changed.items():
        os.chmod(folder, mode)


@pytest.fixture(scope="module")
def nobody_python():
    """(python, root) for user ``nobody``: a world-readable folder ``root`` with a venv that sees this
    repository's packages; removed afterwards."""
    opened = _open_ancestors([REPO / "src" / "s4c" / "__init__.py", sysconfig.get_paths()["purelib"],
                              os.path.realpath(sys.executable)])
    try:
        yield from _nobody_python()
    finally:
        _restore_modes(opened)


def _nobody_python():
    reason = _why_not()
    python = None if reason else _system_python()
    if reason is None and python is None:
        reason = f"no Python {sys.version_info.major}.{sys.version_info.minor} that user {NOBODY} can execute"
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the unprivileged checks: {reason}")
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="s4c-nobody-", dir="/tmp"))
    try:
        subprocess.run([python, "-m", "venv", "--without-pip", str(root / "venv")], check=True, capture_output=True)
        site = next((root / "venv" / "lib").glob("python3*/site-packages"))
        (site / "s4c-repo.pth").write_text(f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n")
        subprocess.run(["chmod", "-R", "a+rX", str(root)], check=True)
        yield root / "venv" / "bin" / "python", root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def as_nobody(python: Path, *args: str, **kwargs) -> subprocess.Popen | subprocess.CompletedProcess:
    """Run ``python args`` as ``nobody`` with HOME missing and a bare environment."""
    cmd = _nobody(str(python), "-s", *args)
    if kwargs.pop("background", False):
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True, **kwargs)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kwargs)


IMPORTS = """
import importlib.util, json, os, sys, types
import numpy as np
assert not os.access(os.environ["HOME"], os.W_OK)
sys.modules["triton_python_backend_utils"] = types.ModuleType("triton_python_backend_utils")
import s4c.components, s4c.inference.merge, s4c.repository.export, s4c.serving.server, s4c.serving.triton
for model in ("s4c", "s4c_dual_phase", "segmenter_venous", "locator"):
    path = os.path.join({repo!r}, "model_repository", model, "1", "model.py")
    spec = importlib.util.spec_from_file_location("stub_" + model, path)
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
voter = s4c.inference.merge.LabelVoter((64, 64, 70), 64, 6, backend="numba")  # a jitted, cached kernel
voter.add(np.ones((2, 64, 64, 64), np.uint8), np.array([[0, 0, 0], [0, 0, 6]]))
print(json.dumps({{"cache": os.environ.get("NUMBA_CACHE_DIR"), "sum": int(voter.result().sum()),
                  "files": sorted(os.listdir(os.environ["NUMBA_CACHE_DIR"]))}}))
"""


def test_package_and_stubs_import_as_a_user_without_a_home(nobody_python):
    python, _ = nobody_python
    res = as_nobody(python, "-c", IMPORTS.format(repo=str(REPO)))
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["sum"] == 64 * 64 * 70 and out["cache"] and Path(out["cache"]).name == f"s4c-numba-{NOBODY}"
    assert out["files"], "numba wrote no cache"
    res = as_nobody(python, "-c", "import sys; from s4c.cli import main; sys.exit(main(['serve', '--help']))")
    assert res.returncode == 0 and "--model-repository" in res.stdout, res.stderr[-2000:]


def test_without_the_fallback_numba_fails_there(nobody_python):
    """The premise: with NUMBA_CACHE_DIR not set by s4c, importing a cached kernel fails for this user."""
    python, _ = nobody_python
    code = ("import s4c._jit as j; j.ensure_numba_cache_dir = lambda *a: None\n"
            "import os; os.environ.pop('NUMBA_CACHE_DIR', None)\n"
            "import numba\n@numba.njit(cache=True)\ndef f(x):\n    return x\n")
    res = as_nobody(python, "-c", code, cwd="/")
    assert res.returncode != 0 and "no locator available" in res.stderr


@pytest.mark.server
def test_s4c_serve_reaches_ready_as_a_user_without_a_home(nobody_python):
    from s4c.repository.export import export_repository
    from s4c.serving.server import MODELS, free_ports

    python, root = nobody_python
    repo = root / "model_repository"
    shutil.copytree(REPO / "model_repository", repo,
                    ignore=shutil.ignore_patterns("*.onnx", "*.plan", "segmenters.json", "__pycache__"))
    export_repository(repo)  # current: serve will not write into it
    subprocess.run(["chmod", "-R", "a+rX", str(root)], check=True)
    grpc, http, metrics = free_ports(3)
    proc = as_nobody(python, "-u", "-c", "import sys; from s4c.cli import main; sys.exit(main(sys.argv[1:]))",
                     "serve", "--model-repository", str(repo), "--grpc-port", str(grpc), "--http-port", str(http),
                     "--metrics-port", str(metrics), "--exit-timeout", "5", background=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None and not any(x.startswith("ready:") for x in lines):
            time.sleep(0.5)
        assert any(x.startswith("ready:") for x in lines), f"not ready (exit {proc.poll()}):\n{''.join(lines)[-3000:]}"
        for m in MODELS:  # and so says the server, model by model
            with urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/models/{m}/ready", timeout=5) as r:
                assert r.status == 200, m
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        reader.join(10)
    out = "".join(lines)
    assert proc.returncode == 0 and "stopped (exit code 0)" in out, out[-3000:]
    assert f"s4c-cache-{NOBODY}" in "".join(os.listdir("/tmp"))  # the backend copy went to the fallback cache
