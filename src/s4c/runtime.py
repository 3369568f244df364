"""Process-level tuning applied by the entry points (CLI, benchmarks, Triton models), never on import.

numpy asks the kernel for transparent huge pages on every large allocation (madvise). Where the
kernel's THP ``defrag`` policy is ``madvise``, each such first touch may trigger direct compaction:
measured here, allocating and touching a 210 MB array took 0.46 s with it and 0.08 s without.
S4C allocates several volume-sized arrays per request, so the entry points switch it off.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

_DEFRAG = Path("/sys/kernel/mm/transparent_hugepage/defrag")


def thp_defrag_policy() -> str | None:
    """The active THP defrag policy ('madvise', 'defer', ...) or None where it cannot be read."""
    try:
        text = _DEFRAG.read_text()
    except OSError:
        return None
    for word in text.split():
        if word.startswith("["):
            return word.strip("[]")
    return None


def disable_numpy_hugepage_madvise() -> bool:
    """Stop numpy from madvising huge pages (same as ``NUMPY_MADVISE_HUGEPAGE=0``).

    Returns the previous setting. Respects an explicit ``NUMPY_MADVISE_HUGEPAGE`` in the environment.
    """
    if "NUMPY_MADVISE_HUGEPAGE" in os.environ:
        return os.environ["NUMPY_MADVISE_HUGEPAGE"] != "0"
    legacy = int(np.__version__.split(".")[0]) < 2
    setter = getattr(np.core.multiarray, "_set_madvise_hugepage", None) if legacy else None
    if setter is None:
        try:
            from numpy._core.multiarray import _set_madvise_hugepage as setter
        except ImportError:  # pragma: no cover - a numpy without the switch
            return False
    return bool(setter(False))
