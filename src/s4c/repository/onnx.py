"""The patch models as ONNX graphs (``s4c export onnx``): HU normalisation and argmax inside, the
checkpoint's :class:`~s4c.checkpoint.ModelSpec` in the graph's metadata, and a lint for the type rules
TensorRT builds by.

Input ``CT_PATCHES`` float32 (N, 1, 64, 64, 64) in HU; output ``LABELS`` uint8 (N, 64, 64, 64), and
optionally ``PROBABILITIES`` / ``LOGITS`` float32 (N, C, 64, 64, 64). The batch axis is dynamic; opset 17.

torch and onnx are imported inside the functions that need them: they are the export extras, and the
Python-backend stubs and the client import this package without them.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from s4c import contract
from s4c.checkpoint import ModelSpec, load_checkpoint

OPSET = 17
#: Metadata key of the graph's ModelSpec (JSON).
SPEC_KEY = "s4c_spec"

# ONNX TensorProto element types (onnx.TensorProto.<NAME>), spelt out so the lint's rule reads without onnx.
_FLOAT, _UINT8, _FLOAT16 = 1, 2, 10
_TYPE_NAMES = {1: "FLOAT", 2: "UINT8", 3: "INT8", 4: "UINT16", 5: "INT16", 6: "INT32", 7: "INT64", 9: "BOOL",
               10: "FLOAT16", 11: "DOUBLE", 16: "BFLOAT16"}
#: TensorRT's ``DataType::kUINT8`` (NvInferRuntimeBase.h, identical in releases 10.5, 10.16, 11.0 and 11.1):
#: "kUINT8 conversions are only supported for {kFLOAT, kHALF}"; and "not supported for {kINT8, kINT32,
#: kBOOL}". So a Cast into or out of UINT8 must have FLOAT or FLOAT16 on its other side.
UINT8_CAST_PEERS = (_FLOAT, _FLOAT16)


def _wrapper(model, spec: ModelSpec, outputs: tuple[str, ...]):
    import torch  # export extra

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
                    # ArgMax gives INT64; TensorRT casts to UINT8 only from FLOAT or HALF, so through FLOAT
                    # (exact: class indices are small integers).
                    result.append(torch.argmax(logits, dim=1).to(torch.float32).to(torch.uint8))
                elif name == contract.SEG_PROBABILITIES:
                    result.append(torch.softmax(logits, dim=1))
                else:
                    result.append(logits)
            return tuple(result)

    return Segmenter().eval()


def export_onnx(checkpoint: str | Path, out: str | Path, *, probabilities: bool = False,
                logits: bool = False) -> Path:
    """Export ``checkpoint`` to ``out``; returns ``out``. The graph passes the onnx checker and
    :func:`check_tensorrt_types` before it is written."""
    import onnx  # export extra
    import torch  # export extra

    model, spec = load_checkpoint(checkpoint)
    if spec.role == "classifier":
        raise ValueError(f"{Path(checkpoint).name} is a classifier (section 2.3), not a patch model: it has no "
                         f"segmenter contract to export")
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
    meta.key, meta.value = SPEC_KEY, json.dumps(spec.to_dict())
    onnx.checker.check_model(graph)
    check_tensorrt_types(graph)
    onnx.save(graph, str(out))
    return out


def read_spec(onnx_path: str | Path) -> ModelSpec:
    """The :class:`ModelSpec` stored in an exported graph's metadata; ``ValueError`` when it has none."""
    import onnx  # export extra (ONNX Runtime users have it: onnxruntime's own tools need it too)

    graph = onnx.load(str(onnx_path), load_external_data=False)
    for prop in graph.metadata_props:
        if prop.key == SPEC_KEY:
            return ModelSpec.from_dict(json.loads(prop.value))
    raise ValueError(f"{Path(onnx_path).name} carries no {SPEC_KEY} metadata; export it with s4c export onnx")


def tensorrt_type_problems(graph) -> list[str]:
    """What in an ONNX graph (a ``ModelProto`` or a path) breaks TensorRT's documented type rules, one
    line each; empty when nothing does. Checked: every Cast into or out of UINT8 has FLOAT or FLOAT16 on
    its other side (:data:`UINT8_CAST_PEERS`). Types come from ONNX shape inference; a Cast whose input
    type cannot be inferred is reported too."""
    import onnx  # export extra

    model = onnx.load(str(graph), load_external_data=False) if isinstance(graph, (str, Path)) else graph
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {t.name: t.type.tensor_type.elem_type
             for t in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output)}
    types.update({t.name: t.data_type for t in inferred.graph.initializer})
    problems = []
    for node in inferred.graph.node:
        if node.op_type != "Cast":
            continue
        to = next(a.i for a in node.attribute if a.name == "to")
        src = types.get(node.input[0], 0)
        if _UINT8 not in (to, src) or (to == _UINT8 and src == _UINT8):
            continue
        other = src if to == _UINT8 else to
        if other not in UINT8_CAST_PEERS:
            problems.append(f"Cast {node.name or node.output[0]!r}: {_TYPE_NAMES.get(src, f'type {src}')} -> "
                            f"{_TYPE_NAMES.get(to, f'type {to}')}; TensorRT converts UINT8 only from/to FLOAT or "
                            f"FLOAT16")
    return problems


def check_tensorrt_types(graph) -> None:
    """Raise ``ValueError`` listing :func:`tensorrt_type_problems` of ``graph``, if any."""
    problems = tensorrt_type_problems(graph)
    if problems:
        raise ValueError("the ONNX graph would not build in TensorRT: " + "; ".join(problems))
