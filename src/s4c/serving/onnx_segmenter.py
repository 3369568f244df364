"""The CPU form of the segmenter models: the exported ONNX graph in ONNX Runtime, inside Triton's
Python backend (the local server has no onnxruntime or TensorRT backend). Same tensors as the
TensorRT form: CT_PATCHES float32 [N, 1, 64, 64, 64] HU in, LABELS uint8 [N, 64, 64, 64] out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from s4c import contract
from s4c.runtime import disable_numpy_hugepage_madvise
from s4c.serving.errors import is_internal_id, tagged

#: The ``parameters`` the CPU form reads from its config.pbtxt (0 threads: ONNX Runtime's default).
SEGMENTER_PARAMS = ("intra_op_threads",)


def read_segmenter_params(config: dict) -> dict[str, int]:
    """The CPU form's parameters from a Triton model config dict (``json.loads(args['model_config'])``);
    ``ValueError`` for an unknown key or a value that is not an integer >= 0."""
    raw = {k: v.get("string_value", "") for k, v in (config.get("parameters") or {}).items()}
    unknown = sorted(set(raw) - set(SEGMENTER_PARAMS))
    if unknown:
        raise ValueError(f"unknown parameter(s) {', '.join(unknown)}; known: {', '.join(SEGMENTER_PARAMS)}")
    text = raw.get("intra_op_threads", "0") or "0"
    if not text.isdigit():
        raise ValueError(f"parameter intra_op_threads must be an integer >= 0, got {text!r}")
    return {"intra_op_threads": int(text)}


class OnnxSegmenterModel:
    """A ``TritonPythonModel``: one ONNX Runtime session; dynamically batched requests run as one call."""

    def initialize(self, args: dict) -> None:
        import onnxruntime as ort  # the stub's own imports: absent where this module is only read
        import triton_python_backend_utils as pb_utils

        disable_numpy_hugepage_madvise()
        self.pb_utils = pb_utils
        config = json.loads(args["model_config"])
        threads = read_segmenter_params(config)["intra_op_threads"]
        path = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        self.name = config["name"]

    def execute(self, requests: list) -> list:
        pb = self.pb_utils
        batches = [pb.get_input_tensor_by_name(r, contract.SEG_INPUT).as_numpy() for r in requests]
        sizes = [len(b) for b in batches]
        merged = batches[0] if len(batches) == 1 else np.concatenate(batches)
        try:
            labels = self.session.run([contract.SEG_LABELS], {contract.SEG_INPUT: merged})[0]
        except Exception as exc:  # one failed run fails every request batched into it
            message = f"{self.name}: ONNX Runtime failed: {type(exc).__name__}"
            # The pipeline's BLS calls get the code in the message as well (s4c.serving.errors).
            return [pb.InferenceResponse(error=pb.TritonError(
                        tagged(message, "INTERNAL", is_internal_id(r.request_id())), pb.TritonError.INTERNAL))
                    for r in requests]
        responses, start = [], 0
        for n in sizes:
            responses.append(pb.InferenceResponse(output_tensors=[pb.Tensor(contract.SEG_LABELS,
                                                                            labels[start : start + n])]))
            start += n
        return responses
