"""Where s4c finds its models with no flags: ``default_arterial.pt``, ``default_venous.pt`` and the
``roi`` mode locator ``default_locator.pt`` here.

A ``--models DIR`` option elsewhere points at a folder with the same two file names, and
``default_locator.pt`` for ``roi`` mode.
"""

from __future__ import annotations

from pathlib import Path

from s4c.checkpoint import ModelSpec
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


def load_locator(models: str | Path | None = None, *, device: str | None = None):
    """``(predictor, spec)`` of the locator in ``models``; ``FileNotFoundError`` when there is none."""
    from s4c.inference.predictor import TorchPredictor

    path = locator_path(models)
    if not path.exists():
        raise FileNotFoundError(f"no locator model at {path} (roi mode needs one; use --mode full without it)")
    predictor = TorchPredictor.from_checkpoint(path, device)
    return predictor, predictor.spec


def load_predictors(models: str | Path | None = None, *, phases=PHASES, allow_untrained: bool = False,
                    width: int = 8, seed: int = 0, device: str | None = None):
    """{phase: (predictor, spec)} for each phase.

    Checkpoints come from ``models`` (default: embedded). When one is missing and ``allow_untrained``
    is set, a randomly initialised network of ``width`` (seeded) stands in and its spec says
    ``trained=False``; otherwise a missing checkpoint is a ``FileNotFoundError``.
    """
    import torch

    from s4c.inference.predictor import TorchPredictor
    from s4c.network import S4CNet

    out = {}
    for phase in phases:
        path = checkpoint_path(phase, models)
        if path.exists():
            predictor = TorchPredictor.from_checkpoint(path, device)
            out[phase] = (predictor, predictor.spec)
            continue
        if not allow_untrained:
            raise FileNotFoundError(f"no {phase} model at {path}")
        torch.manual_seed(seed + PHASES.index(phase))
        spec = ModelSpec(width=width, phase=phase, trained=False, config={"source": "random init", "seed": seed})
        predictor = TorchPredictor(S4CNet(width=width).eval(), spec, device)
        out[phase] = (predictor, spec)
    return out
