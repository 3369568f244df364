"""The ``parameters`` of the pipeline models' ``config.pbtxt``, parsed and checked once at model load
(rendered beside them by :mod:`s4c.repository.configs`)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from s4c import contract
from s4c.labels import (
    DEFAULT_MODE,
    DEFAULT_STRIDE,
    KEEP_DISTANCE,
    KEEP_RATIO,
    LOCATOR_STRIDE,
    MIN_DUCT_VOXELS,
    MIN_TUMOR_VOXELS,
    MODES,
    PATCH_SIZE,
    ROI_MARGIN_MM,
)

#: 512 x 512 x 1,200 voxels: a whole-body scan at 0.6 mm is below it; anything larger is refused.
DEFAULT_MAX_VOXELS = 512 * 512 * 1200
#: A ``parameters`` key that Triton's Python backend reads itself and the models ignore: a deployment
#: may point the stub at a packed environment (python_backend README, "Using Custom Python Execution
#: Environments"). None of the generated configs set it.
BACKEND_PARAMS = ("EXECUTION_ENV_PATH",)


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
    #: ``roi``: the locator finds the pancreas, the segmenter runs in that box; ``full``: the paper's
    #: whole-volume sliding window (no locator call).
    mode: str = DEFAULT_MODE
    #: Model the ``roi`` mode locator runs on (same patch tensors as the segmenters).
    locator: str = contract.LOCATOR_MODEL
    #: ``roi`` mode: margin in mm around the locator's largest pancreas-set component.
    roi_margin_mm: float = ROI_MARGIN_MM
    #: ``roi`` mode: the locator's sliding-window stride, in its own (coarse) voxels.
    locator_stride: int = LOCATOR_STRIDE

    def __post_init__(self) -> None:
        for name in ("stride", "batch_size", "in_flight", "max_voxels", "locator_stride"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"parameter {name} must be a positive integer, got {v!r}")
        for name in ("stride", "locator_stride"):
            if getattr(self, name) > PATCH_SIZE:
                raise ValueError(f"parameter {name} must be <= {PATCH_SIZE}, got {getattr(self, name)}")
        if self.mode not in MODES:
            raise ValueError(f"parameter mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        for name in ("segmenter_arterial", "segmenter_venous", "pipeline_model", "locator"):
            v = getattr(self, name)
            if not (isinstance(v, str) and v.strip()):
                raise ValueError(f"parameter {name} must be a model name, got {v!r}")
        v = self.roi_margin_mm
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v >= 0):
            raise ValueError(f"parameter roi_margin_mm must be a finite number of mm >= 0, got {v!r}")
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
        """Build from a Triton model config dict (``json.loads(args['model_config'])``); the Python
        backend's own keys (:data:`BACKEND_PARAMS`) are skipped."""
        raw = config.get("parameters") or {}
        return cls.from_strings({k: v.get("string_value", "") for k, v in raw.items() if k not in BACKEND_PARAMS})
