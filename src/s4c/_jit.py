"""Optional numba JIT: ``jit(fn)`` compiles ``fn`` with numba, or returns None without numba.

Every jitted kernel in the package has a numpy/scipy twin that tests use as its oracle.
"""

from __future__ import annotations

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
