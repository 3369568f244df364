"""The ``parameters`` of the pipeline models' ``config.pbtxt``, parsed and checked once at model load."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from s4c import contract
from s4c.labels import DEFAULT_STRIDE, KEEP_DISTANCE, KEEP_RATIO, MIN_DUCT_VOXELS, MIN_TUMOR_VOXELS, PATCH_SIZE

#: 512 x 512 x 1,200 voxels: a whole-body scan at 0.6 mm is below it; anything larger is refused.
DEFAULT_MAX_VOXELS = 512 * 512 * 1200


@dataclass(frozen=True)
class ServingParams:
    """Deployment settings of the ``s4c`` model (and the dual-phase model's limits)."""

    stride: int = DEFAULT_STRIDE
    batch_size: int = 8
    in_flight: int = 2
    max_voxels: int = DEFAULT_MAX_VOXELS
    min_tumor_voxels: int = MIN_TUMOR_VOXELS
    min_duct_voxels: int = MIN_DUCT_VOXELS
    keep_ratio: float = KEEP_RATIO
    keep_distance: float = KEEP_DISTANCE
    segmenter_arterial: str = contract.segmenter_model("arterial")
    segmenter_venous: str = contract.segmenter_model("venous")
    #: Seconds one segmenter batch may take before the request fails (the watchdog).
    batch_timeout_s: float = 300.0
    #: Model the dual-phase model sends each phase to.
    pipeline_model: str = contract.PIPELINE_MODEL

    def __post_init__(self) -> None:
        for name in ("stride", "batch_size", "in_flight", "max_voxels"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"parameter {name} must be a positive integer, got {v!r}")
        if self.stride > PATCH_SIZE:
            raise ValueError(f"parameter stride must be <= {PATCH_SIZE}, got {self.stride}")
        for name in ("min_tumor_voxels", "min_duct_voxels"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"parameter {name} must be a non-negative integer, got {v!r}")
        if not 0.0 <= self.keep_ratio <= 1.0:
            raise ValueError(f"parameter keep_ratio must be in [0, 1], got {self.keep_ratio}")
        for name in ("keep_distance", "batch_timeout_s"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"parameter {name} must be a finite number > 0, got {v}")

    def segmenter(self, phase: str) -> str:
        return {"arterial": self.segmenter_arterial, "venous": self.segmenter_venous}[phase]

    def rule_kwargs(self) -> dict:
        """Keyword arguments for :func:`s4c.postprocess.classify`."""
        return {"min_tumor_voxels": self.min_tumor_voxels, "min_duct_voxels": self.min_duct_voxels,
                "keep_ratio": self.keep_ratio, "keep_distance": self.keep_distance}

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_strings(cls, values: dict[str, str]) -> ServingParams:
        """Build from string values (config.pbtxt ``parameters``); unknown keys are an error."""
        types = {f.name: f.type for f in fields(cls)}
        unknown = sorted(set(values) - set(types))
        if unknown:
            raise ValueError(f"unknown parameter(s) {', '.join(unknown)}; known: {', '.join(sorted(types))}")
        kwargs: dict = {}
        for key, text in values.items():
            kind = types[key]
            try:
                kwargs[key] = int(text) if kind == "int" else float(text) if kind == "float" else str(text)
            except ValueError as exc:
                raise ValueError(f"parameter {key} must be {kind}, got {text!r}") from exc
        return cls(**kwargs)

    @classmethod
    def from_model_config(cls, config: dict) -> ServingParams:
        """Build from a Triton model config dict (``json.loads(args['model_config'])``)."""
        raw = config.get("parameters") or {}
        return cls.from_strings({k: v.get("string_value", "") for k, v in raw.items()})
