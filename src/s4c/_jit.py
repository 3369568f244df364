"""Optional numba JIT: ``jit(fn)`` compiles ``fn`` with numba, or returns None without numba.

Every jitted kernel in the package has a numpy/scipy twin that tests use as its oracle.

``cache=True`` needs a writable cache folder at decoration time, or numba raises "no locator
available" on import. Its own choices are the ``__pycache__`` beside the source and the user's cache
folder; in the serving image (site-packages owned by root, the ``triton-server`` user without a
writable home) neither is, so :func:`ensure_numba_cache_dir` points ``NUMBA_CACHE_DIR`` at a private
folder under the temp directory first.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
#: Folders of the modules that jit kernels (numba's in-tree cache goes into their __pycache__).
_KERNEL_DIRS = (_PACKAGE, _PACKAGE / "inference")


def _writable(folder: Path) -> bool:
    """Whether a file can be created in ``folder`` (made if missing), as numba checks its cache path."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def _private_dir(path: Path) -> bool:
    """``path`` is, or now is, a folder of this user's only (not a link someone else planted)."""
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        st = path.lstat()
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and _writable(path)


def ensure_numba_cache_dir(environ: dict | None = None) -> str | None:
    """Set ``NUMBA_CACHE_DIR`` in ``environ`` (default ``os.environ``) when numba could not cache otherwise.

    Left alone when it is set already, or when the in-tree ``__pycache__`` folders or the user's cache
    folder (``$XDG_CACHE_HOME`` or ``~/.cache``, then ``numba``) can be written. Otherwise it becomes
    ``<tempdir>/s4c-numba-<uid>`` (a fresh temporary folder if that name is taken by someone else).
    Returns the folder it set, or None.
    """
    env = os.environ if environ is None else environ
    if env.get("NUMBA_CACHE_DIR"):
        return None
    if all(_writable(d / "__pycache__") for d in _KERNEL_DIRS):
        return None
    home_cache = env.get("XDG_CACHE_HOME") or os.path.join(env.get("HOME") or os.path.expanduser("~"), ".cache")
    if _writable(Path(home_cache) / "numba"):
        return None
    folder = Path(tempfile.gettempdir()) / f"s4c-numba-{os.getuid()}"
    if not _private_dir(folder):
        folder = Path(tempfile.mkdtemp(prefix="s4c-numba-"))
    env["NUMBA_CACHE_DIR"] = str(folder)
    return str(folder)


ensure_numba_cache_dir()  # before numba reads its configuration

try:
    import numba
except ImportError:  # pragma: no cover - numba is a declared dependency
    numba = None

HAVE_NUMBA = numba is not None


def jit(fn):
    """Compile ``fn`` in nopython mode with on-disk caching, or return None when numba is missing."""
    if numba is None:
        return None
    return numba.njit(cache=True, nogil=True, boundscheck=False)(fn)
