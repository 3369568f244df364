"""Checks on the tensors a request brings, before any work: each failure is an :class:`InvalidInput`
whose message names the input and the problem (Triton turns it into an INVALID_ARG error)."""

from __future__ import annotations

import numpy as np

from s4c.labels import PHASES
from s4c.validation import check_spacing


class InvalidInput(ValueError):
    """A request input is malformed; the message is safe to return to the client (no tensor contents)."""


def check_ct(ct: np.ndarray | None, max_voxels: int, name: str = "CT") -> np.ndarray:
    """A (Z, Y, X) int16 HU volume with no empty axis and at most ``max_voxels`` voxels."""
    if ct is None:
        raise InvalidInput(f"missing input {name}")
    if ct.dtype != np.int16:
        raise InvalidInput(f"{name} must be INT16 Hounsfield units, got {ct.dtype}")
    if ct.ndim != 3:
        raise InvalidInput(f"{name} must be 3-D (Z, Y, X), got shape {list(ct.shape)}")
    if 0 in ct.shape:
        raise InvalidInput(f"{name} has an empty dimension: shape {list(ct.shape)}")
    if ct.size > max_voxels:
        raise InvalidInput(f"{name} has {ct.size} voxels (shape {list(ct.shape)}), over this server's limit of "
                           f"{max_voxels}")
    return ct


def check_spacing_input(spacing: np.ndarray | None, name: str = "SPACING") -> tuple[float, float, float]:
    """Three finite, positive voxel sizes in mm (Z, Y, X)."""
    if spacing is None:
        raise InvalidInput(f"missing input {name}")
    if spacing.size != 3:
        raise InvalidInput(f"{name} must hold 3 values (Z, Y, X) in mm, got shape {list(spacing.shape)}")
    try:
        return check_spacing(spacing, name)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from exc


def decode_phase(phase: np.ndarray | None, name: str = "PHASE") -> str:
    """The phase name from a BYTES [1] tensor: 'arterial' or 'venous'."""
    if phase is None:
        raise InvalidInput(f"missing input {name}")
    if phase.size != 1:
        raise InvalidInput(f"{name} must hold one value, got {phase.size}")
    value = phase.reshape(-1)[0]
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"{name} is not UTF-8 text") from exc
    value = str(value).strip().lower()
    if value not in PHASES:
        shown = value if len(value) <= 32 else value[:32] + "..."
        raise InvalidInput(f"unknown {name} {shown!r}; expected one of {', '.join(PHASES)}")
    return value


def check_affine_input(affine: np.ndarray | None, name: str = "AFFINE") -> np.ndarray | None:
    """An optional 4x4 (i, j, k) -> world matrix, finite and non-singular; None when not sent."""
    if affine is None:
        return None
    if affine.shape != (4, 4):
        raise InvalidInput(f"{name} must be 4x4, got shape {list(affine.shape)}")
    a = np.asarray(affine, dtype=np.float64)
    if not np.isfinite(a).all() or abs(np.linalg.det(a[:3, :3])) < 1e-12:
        raise InvalidInput(f"{name} is singular or not finite")
    return a
