"""Model checkpoints: the weights plus everything inference needs to reproduce training's inputs.

A checkpoint is a ``torch.save`` dict: ``format`` (version of this layout), ``spec`` (a
:class:`ModelSpec` as a dict) and ``state_dict``.
"""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

from s4c.labels import ANY_PHASE, NUM_CLASSES, PHASES
from s4c.preprocessing import Normalization
from s4c.validation import check_spacing

CHECKPOINT_FORMAT = 1
ROLES = ("segmenter", "locator")


@dataclass(frozen=True)
class ModelSpec:
    """What a trained segmenter is: architecture, phase, working grid and intensity normalisation.

    ``spacing`` is the working (Z, Y, X) spacing in mm, or None to run on the input grid as is.
    ``role`` is ``"segmenter"`` (the S4C network, four classes, one phase) or ``"locator"`` (stage 1 of
    ``roi`` mode: pancreas set vs background at a coarse spacing; phase ``"any"`` when trained on both).
    """

    width: int
    phase: str
    num_classes: int = NUM_CLASSES
    spacing: tuple[float, float, float] | None = None
    normalization: Normalization = field(default_factory=Normalization)
    config: dict = field(default_factory=dict)
    git_revision: str = "unknown"
    trained: bool = True
    role: str = "segmenter"

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {self.role!r}")
        phases = (*PHASES, ANY_PHASE) if self.role == "locator" else PHASES
        if self.phase not in phases:
            raise ValueError(f"phase of a {self.role} must be one of {phases}, got {self.phase!r}")
        if self.spacing is not None:
            object.__setattr__(self, "spacing", check_spacing(self.spacing, "model spacing"))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["normalization"] = self.normalization.to_dict()
        d["spacing"] = None if self.spacing is None else list(self.spacing)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelSpec:
        d = dict(d)
        d["normalization"] = Normalization.from_dict(d["normalization"])
        if d.get("spacing") is not None:
            d["spacing"] = tuple(d["spacing"])
        return cls(**d)


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MB chunks (checkpoints, ONNX graphs and engines identify themselves by it)."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def git_revision(root: Path | None = None) -> str:
    """The current commit hash of the source tree, or 'unknown' outside a git checkout."""
    root = root or Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=5, check=True)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def save_checkpoint(path: str | Path, model, spec: ModelSpec) -> Path:
    """Write ``model``'s weights and ``spec`` to ``path``."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": CHECKPOINT_FORMAT, "spec": spec.to_dict(), "state_dict": model.state_dict()}, path)
    return path


def load_checkpoint(path: str | Path, map_location: str = "cpu"):
    """Load ``(model, spec)`` from ``path``; the model is in eval mode on ``map_location``."""
    import torch

    from s4c.network import S4CNet

    path = Path(path)
    try:
        blob = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise ValueError(f"cannot read checkpoint {path.name}: {exc}") from exc
    if not isinstance(blob, dict) or blob.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path.name}: not an s4c checkpoint of format {CHECKPOINT_FORMAT}")
    spec = ModelSpec.from_dict(blob["spec"])
    model = S4CNet(num_classes=spec.num_classes, width=spec.width)
    model.load_state_dict(blob["state_dict"])
    model.eval()
    return model, spec
