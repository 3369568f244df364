"""``s4c/1/segmenters.json``: written by ``s4c export repository`` next to the pipeline model, read by
the ``s4c`` model at load. It says what each patch model (each phase's segmenter and the locator) holds."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from s4c.checkpoint import ModelSpec

SEGMENTERS_FILE = "segmenters.json"


@dataclass(frozen=True)
class SegmenterInfo:
    """A patch model as the pipeline sees it: its Triton name, version and the model it holds."""

    name: str
    version: str
    spec: ModelSpec
    onnx_sha256: str
    checkpoint_sha256: str = ""

    def to_dict(self) -> dict:
        return {"name": self.name, "version": self.version, "onnx_sha256": self.onnx_sha256,
                "checkpoint_sha256": self.checkpoint_sha256, "width": self.spec.width, "trained": self.spec.trained,
                "git_revision": self.spec.git_revision}


def write_segmenters_file(path: str | Path, infos: Mapping[str, SegmenterInfo]) -> Path:
    """Write ``infos`` (by model name) to ``path`` as JSON; returns ``path``."""
    path = Path(path)
    blob = {name: {"version": i.version, "onnx_sha256": i.onnx_sha256, "checkpoint_sha256": i.checkpoint_sha256,
                   "spec": i.spec.to_dict()}
            for name, i in infos.items()}
    path.write_text(json.dumps(blob, indent=2, sort_keys=True) + "\n")
    return path


def read_segmenters_file(path: str | Path) -> dict[str, SegmenterInfo]:
    """The models described in ``path``; ``FileNotFoundError`` (saying how to make it) when it is missing,
    ``ValueError`` when it is not a segmenters file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `s4c export repository --out {path.parent.parent}` first")
    try:
        blob = json.loads(path.read_text())
        return {name: SegmenterInfo(name, str(d["version"]), ModelSpec.from_dict(d["spec"]), d["onnx_sha256"],
                                    d.get("checkpoint_sha256", ""))
                for name, d in blob.items()}
    except (json.JSONDecodeError, AttributeError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not a segmenters file ({type(exc).__name__}: {exc}); run `s4c export "
                         f"repository --out {path.parent.parent}` again") from exc
