"""The server's environment and caches, without starting it: library and program search paths for the
nvidia-pytriton wheel and for an NGC image, numba's cache folder, and the backend cache's fallback."""

from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path

import pytest

from s4c import _jit
from s4c.serving.server import TritonInstall, cache_root, server_env

LIBDIR = sysconfig.get_config_var("LIBDIR")
BINDIR = str(Path(sys.executable).parent)
#: What an NGC image's entrypoint leaves (CUDA forward compatibility first).
NGC = {"LD_LIBRARY_PATH": "/usr/local/cuda/compat/lib:/usr/local/nvidia/lib64",
       "PATH": "/opt/tritonserver/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
       "NUMBA_CACHE_DIR": "/tmp/numba"}


def _install(wheel: bool) -> TritonInstall:
    base = Path("/opt/tritonserver")
    return TritonInstall(base / "bin" / "tritonserver", base / "backends" / "python",
                         Path("/w/stub") if wheel else None, (Path("/w/libs"),) if wheel else (),
                         "wheel" if wheel else "system")


def test_an_ngc_image_keeps_its_library_path_first():
    env = server_env(_install(wheel=False), NGC)
    paths = env["LD_LIBRARY_PATH"].split(os.pathsep)
    assert paths[:2] == ["/usr/local/cuda/compat/lib", "/usr/local/nvidia/lib64"]
    assert paths[2:] == ([LIBDIR] if LIBDIR else [])  # appended, never ahead of the compat libraries
    path = env["PATH"].split(os.pathsep)
    assert path[-7:] == NGC["PATH"].split(os.pathsep)  # the image's order kept
    assert path[0] == BINDIR or BINDIR in NGC["PATH"].split(os.pathsep)


def test_an_ngc_image_without_a_library_path_gets_no_empty_entry():
    env = server_env(_install(wheel=False), {"PATH": BINDIR, "NUMBA_CACHE_DIR": "/tmp/numba"})
    assert env["PATH"] == BINDIR  # already there: unchanged
    assert env.get("LD_LIBRARY_PATH", "x").split(os.pathsep) == ([LIBDIR] if LIBDIR else ["x"])
    assert "" not in env.get("LD_LIBRARY_PATH", "x").split(os.pathsep)


def test_the_wheel_puts_its_libraries_and_this_interpreter_first():
    env = server_env(_install(wheel=True), {**NGC, "PATH": f"/usr/bin:{BINDIR}"})
    paths = env["LD_LIBRARY_PATH"].split(os.pathsep)
    assert paths[0] == "/w/libs" and paths[-2:] == ["/usr/local/cuda/compat/lib", "/usr/local/nvidia/lib64"]
    if LIBDIR:
        assert paths[1] == LIBDIR
    assert env["PATH"].split(os.pathsep) == [BINDIR, "/usr/bin"]  # first, and once
    assert env["OMP_NUM_THREADS"] == "1"


@pytest.fixture
def unwritable_caches(monkeypatch, tmp_path):
    """numba's own cache folders are not writable; the temp directory is ``tmp_path``."""
    real = _jit._writable
    monkeypatch.setattr(_jit, "_writable", lambda folder: str(folder).startswith(str(tmp_path)) and real(folder))
    monkeypatch.setattr(_jit.tempfile, "tempdir", str(tmp_path))
    return tmp_path


def test_numba_cache_dir_is_set_only_where_numba_could_not_cache(unwritable_caches):
    env = {"HOME": "/nonexistent"}
    folder = _jit.ensure_numba_cache_dir(env)
    assert folder == env["NUMBA_CACHE_DIR"] == str(unwritable_caches / f"s4c-numba-{os.getuid()}")
    assert Path(folder).is_dir() and (Path(folder).stat().st_mode & 0o777) == 0o700
    assert _jit.ensure_numba_cache_dir(env) is None  # set already: kept
    assert _jit.ensure_numba_cache_dir({"HOME": "/nonexistent", "NUMBA_CACHE_DIR": "/x"}) is None
    home = unwritable_caches / "home"
    assert _jit.ensure_numba_cache_dir({"HOME": str(home)}) is None  # a writable ~/.cache/numba will do
    assert (home / ".cache" / "numba").is_dir()


def test_numba_cache_dir_is_not_a_folder_someone_else_planted(unwritable_caches):
    target = unwritable_caches / "elsewhere"
    target.mkdir()
    (unwritable_caches / f"s4c-numba-{os.getuid()}").symlink_to(target)
    env = {"HOME": "/nonexistent"}
    folder = Path(_jit.ensure_numba_cache_dir(env))
    assert folder.parent == unwritable_caches and folder.name.startswith("s4c-numba-") and not folder.is_symlink()
    assert folder.name != f"s4c-numba-{os.getuid()}"


def test_the_backend_cache_falls_back_when_home_cannot_be_written(tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    assert cache_root({"S4C_CACHE": "/srv/cache"}) == Path("/srv/cache")
    assert cache_root({"HOME": str(tmp_path / "h")}) == tmp_path / "h" / ".cache" / "s4c"
    blocked = tmp_path / "file"
    blocked.write_text("a file where a home folder should be")  # so mkdir fails, even for root
    assert cache_root({"HOME": str(blocked)}) == tmp_path / f"s4c-cache-{os.getuid()}"
