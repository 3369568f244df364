"""Where s4c finds its models with no flags: ``default_arterial.pt``, ``default_venous.pt`` and the
``roi`` mode locator ``default_locator.pt`` here.

A ``--models DIR`` option elsewhere points at a folder with the same two file names, and
``default_locator.pt`` for ``roi`` mode. Only paths live here (the repository export reads them);
:func:`s4c.inference.predictor.load_predictors` loads the networks.
"""

from __future__ import annotations

from pathlib import Path

from s4c.labels import PHASES

DEFAULT_DIR = Path(__file__).resolve().parent
LOCATOR_FILE = "default_locator.pt"


def checkpoint_path(phase: str, models: str | Path | None = None) -> Path:
    """Path of the checkpoint for ``phase`` in ``models`` (default: the embedded models folder)."""
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
    return Path(models or DEFAULT_DIR) / f"default_{phase}.pt"


def locator_path(models: str | Path | None = None) -> Path:
    """Path of the ``roi`` mode locator checkpoint in ``models`` (default: the embedded models folder)."""
    return Path(models or DEFAULT_DIR) / LOCATOR_FILE
