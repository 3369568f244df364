"""Model checkpoints: the weights plus everything inference needs to reproduce training's inputs.

A checkpoint is a ``torch.save`` dict: ``format`` (version of this layout), ``spec`` (a
:class:`ModelSpec` as a dict) and ``state_dict``.
"""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

from s4c.labels import ANY_PHASE, ARCHITECTURES, NUM_CLASSES, PHASES
from s4c.preprocessing import Normalization
from s4c.validation import check_spacing

CHECKPOINT_FORMAT = 1
ROLES = ("segmenter", "locator", "classifier")


@dataclass(frozen=True)
class ModelSpec:
    """What a trained segmenter is: architecture, phase, working grid and intensity normalisation.

    ``spacing`` is the working (Z, Y, X) spacing in mm, or None to run on the input grid as is.
    ``role`` is ``"segmenter"`` (four classes, one phase), ``"locator"`` (stage 1 of ``roi`` mode:
    pancreas set vs background at a coarse spacing; phase ``"any"`` when trained on both) or
    ``"classifier"`` (the paper's section 2.3 network on a frozen S4C segmenter of ``width``: two
    classes, one phase). ``architecture`` is the segmenter network (:data:`s4c.network.ARCHITECTURES`):
    the paper's ``s4c`` or a baseline, ``unet3d`` or ``vnet``.
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
    architecture: str = "s4c"

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {self.role!r}")
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        if self.role != "segmenter" and self.architecture != "s4c":
            raise ValueError(f"a {self.role} is an S4C network, not {self.architecture!r}")
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

    from s4c.network import PoolThreeClassifier, S4CNet, build_network

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
    if spec.role == "classifier":
        model = PoolThreeClassifier(S4CNet(width=spec.width))
    else:
        model = build_network(spec.architecture, num_classes=spec.num_classes, width=spec.width)
    model.load_state_dict(blob["state_dict"])
    model.eval()
    return model, spec


def classifier_segmenter(path: str | Path, out: str | Path) -> Path:
    """Write the frozen S4C segmenter inside a ``classifier`` checkpoint ``path`` to ``out`` as a
    segmenter checkpoint (to export and run it like any other); returns ``out``."""
    return save_classifier_segmenter(*load_checkpoint(path), out, name=Path(path).name)


def save_classifier_segmenter(model, spec: ModelSpec, out: str | Path, *, name: str = "the model") -> Path:
    """:func:`classifier_segmenter` for a classifier already loaded (``load_checkpoint``'s pair)."""
    if spec.role != "classifier":
        raise ValueError(f"{name} is a {spec.role}, not a classifier")
    return save_checkpoint(out, model.segmenter, ModelSpec.from_dict(spec.config["segmenter_spec"]))
