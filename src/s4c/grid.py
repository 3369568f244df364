"""Grid arithmetic on NIfTI-style affines, free of any file format (the server imports this, not
:mod:`s4c.io`). Arrays are (Z, Y, X); an affine maps (i, j, k) = (X, Y, Z) indices to world mm."""

from __future__ import annotations

import numpy as np

from s4c.validation import check_spacing


def spacing_from_affine(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel sizes (Z, Y, X) in mm: the column norms of the affine, reversed into array order."""
    zooms = np.sqrt((np.asarray(affine, dtype=np.float64)[:3, :3] ** 2).sum(axis=0))
    return check_spacing(zooms[::-1], "affine voxel size")


def affine_from_spacing(spacing, origin=(0.0, 0.0, 0.0)) -> np.ndarray:
    """An axis-aligned RAS affine for a (Z, Y, X) spacing; ``origin`` is the world (x, y, z) of voxel 0."""
    sz, sy, sx = check_spacing(spacing)
    affine = np.diag([sx, sy, sz, 1.0])
    affine[:3, 3] = origin
    return affine


def voxel_to_world(affine: np.ndarray, zyx) -> tuple[float, float, float]:
    """World (x, y, z) mm of a (z, y, x) voxel index under a NIfTI (i, j, k) affine."""
    z, y, x = (float(v) for v in zyx)
    w = np.asarray(affine, dtype=np.float64) @ np.array([x, y, z, 1.0])
    return float(w[0]), float(w[1]), float(w[2])
