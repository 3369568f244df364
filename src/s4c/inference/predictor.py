"""Predictors: callables from a float32 HU batch (N, 1, P, P, P) to uint8 labels (N, P, P, P).

Normalisation happens here, per batch, so the sliding window can tile the raw int16 HU volume and
no float32 copy of the whole volume is ever made.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from s4c import contract
from s4c.checkpoint import ModelSpec, load_checkpoint
from s4c.labels import PHASES
from s4c.models import checkpoint_path, locator_path
from s4c.preprocessing import Normalization
from s4c.repository.onnx import read_spec


class TorchPredictor:
    """Runs an :class:`~s4c.network.S4CNet` in PyTorch and returns the per-voxel argmax."""

    def __init__(self, model, spec: ModelSpec, device: str | None = None) -> None:
        import torch  # the torch extra; the ONNX paths run without it

        self.torch = torch
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device, memory_format=torch.channels_last_3d).eval()
        self.spec = spec
        self.normalization: Normalization = spec.normalization

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | None = None) -> TorchPredictor:
        model, spec = load_checkpoint(path)
        return cls(model, spec, device)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        x = self.normalization.apply(batch)
        with self.torch.inference_mode():
            inputs = self.torch.from_numpy(x).to(self.device).contiguous(memory_format=self.torch.channels_last_3d)
            logits = self.model(inputs)
            labels = logits.argmax(dim=1).to(self.torch.uint8)
        return labels.cpu().numpy()


class OnnxPredictor:
    """Runs an exported segmenter (HU in, uint8 labels out) in ONNX Runtime."""

    def __init__(self, onnx_path: str | Path, *, threads: int | None = None,
                 providers: list[str] | None = None) -> None:
        import onnxruntime as ort  # the ONNX Runtime extra

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(onnx_path), sess_options=opts,
                                            providers=providers or ["CPUExecutionProvider"])
        self.spec = read_spec(onnx_path)
        self._input = contract.SEG_INPUT
        self._output = contract.SEG_LABELS

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([self._output], {self._input: np.ascontiguousarray(batch, dtype=np.float32)})[0]


def load_locator(models: str | Path | None = None, *, device: str | None = None):
    """``(predictor, spec)`` of the locator in ``models``; ``FileNotFoundError`` when there is none."""
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
    import torch  # the torch extra

    from s4c.network import S4CNet  # imports torch

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
