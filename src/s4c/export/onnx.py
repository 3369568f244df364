"""``s4c export onnx``: the segmenter as an ONNX graph with HU normalisation and argmax inside.

Input ``CT_PATCHES`` float32 (N, 1, 64, 64, 64) in HU; output ``LABELS`` uint8 (N, 64, 64, 64), and
optionally ``PROBABILITIES`` float32 (N, 4, 64, 64, 64). The batch axis is dynamic; opset 17.
The checkpoint's :class:`~s4c.checkpoint.ModelSpec` is stored in the graph's metadata as JSON.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from s4c import contract
from s4c.checkpoint import ModelSpec, load_checkpoint

OPSET = 17


def _wrapper(model, spec: ModelSpec, outputs: tuple[str, ...]):
    import torch

    lo, hi = spec.normalization.hu_min, spec.normalization.hu_max

    class Segmenter(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = model

        def forward(self, hu: torch.Tensor):
            x = (torch.clamp(hu, lo, hi) - lo) * (1.0 / (hi - lo))
            logits = self.net(x)
            result = []
            for name in outputs:
                if name == contract.SEG_LABELS:
                    result.append(torch.argmax(logits, dim=1).to(torch.uint8))
                elif name == contract.SEG_PROBABILITIES:
                    result.append(torch.softmax(logits, dim=1))
                else:
                    result.append(logits)
            return tuple(result)

    return Segmenter().eval()


def export_onnx(checkpoint: str | Path, out: str | Path, *, probabilities: bool = False,
                logits: bool = False) -> Path:
    """Export ``checkpoint`` to ``out``; returns ``out``. Checked with the onnx checker."""
    import onnx
    import torch

    model, spec = load_checkpoint(checkpoint)
    outputs = [contract.SEG_LABELS]
    if probabilities:
        outputs.append(contract.SEG_PROBABILITIES)
    if logits:
        outputs.append(contract.SEG_LOGITS)
    wrapper = _wrapper(model, spec, tuple(outputs))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    dummy = torch.zeros((2, *contract.SEG_INPUT_DIMS), dtype=torch.float32)
    axes = {name: {0: "batch"} for name in [contract.SEG_INPUT, *outputs]}
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of dynamo, but it is the one that gives a
        # plain static graph with a symbolic batch for TensorRT here.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(wrapper, (dummy,), str(out), input_names=[contract.SEG_INPUT], output_names=outputs,
                          dynamic_axes=axes, opset_version=OPSET, dynamo=False, do_constant_folding=True)
    graph = onnx.load(str(out))
    meta = graph.metadata_props.add()
    meta.key, meta.value = "s4c_spec", json.dumps(spec.to_dict())
    onnx.checker.check_model(graph)
    onnx.save(graph, str(out))
    return out


def read_spec(onnx_path: str | Path) -> ModelSpec:
    """The :class:`ModelSpec` stored in an exported graph's metadata."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False)
    for prop in graph.metadata_props:
        if prop.key == "s4c_spec":
            return ModelSpec.from_dict(json.loads(prop.value))
    raise ValueError(f"{Path(onnx_path).name} carries no s4c_spec metadata; export it with s4c export onnx")
