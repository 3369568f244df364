"""Glue between Triton's Python backend and :mod:`s4c.serving.service`.

Every function takes the ``triton_python_backend_utils`` module (``pb_utils``) as an argument, so this
module imports outside the stub and is unit-tested with a stand-in.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable, Mapping

import numpy as np

from s4c import contract
from s4c.serving.drain import INTERNAL_PREFIX
from s4c.serving.errors import CODE_NAMES, BlsError, child_error, is_internal_id, tagged
from s4c.serving.service import error_code


def input_array(pb_utils, request, name: str) -> np.ndarray | None:
    """An input as a host numpy array, or None when the request did not send it.

    Our configs leave Triton's default (FORCE_CPU_ONLY_INPUT_TENSORS=yes: inputs on the host); a
    deployment that sets it to no may hand over a GPU tensor, which is copied to the host once here
    (the volume is tiled on the host), through DLPack and torch.
    """
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return None
    if tensor.is_cpu():
        return tensor.as_numpy()
    import torch  # only a GPU deployment gets here, and its image has torch

    return torch.utils.dlpack.from_dlpack(tensor.to_dlpack()).cpu().numpy()


def output_tensors(pb_utils, arrays: Mapping[str, np.ndarray]) -> list:
    return [pb_utils.Tensor(name, np.ascontiguousarray(array)) for name, array in arrays.items()]


def is_internal(request) -> bool:
    """Whether a request is one of our own BLS calls (see :mod:`s4c.serving.errors`)."""
    return is_internal_id(request.request_id())


def error_response(pb_utils, exc: BaseException, model: str, *, internal: bool = False):
    """One error response: known request errors keep their message and code; anything else is logged
    with its traceback and answered as INTERNAL without details (which could carry request data).
    ``internal``: the request came over BLS from another of our models, so the code is also written
    into the message (:data:`s4c.serving.errors.CODE_TAG`) for a caller whose python_backend drops it."""
    code = error_code(exc)
    if code is None:
        pb_utils.Logger.log_error(f"{model}: internal error: {type(exc).__name__}\n{traceback.format_exc()}")
        message, code = f"{model}: internal error ({type(exc).__name__}); see the server log", "INTERNAL"
    else:
        message = f"{model}: {exc}"
    error = pb_utils.TritonError(tagged(message, code, internal), getattr(pb_utils.TritonError, code))
    return pb_utils.InferenceResponse(error=error)


def _code_name(pb_utils, error) -> str | None:
    """The name of ``error.code()`` among ``pb_utils.TritonError``'s constants, or None."""
    try:
        code = error.code()
    except AttributeError:  # a stub older than 23.09 has no codes
        return None
    for name in CODE_NAMES:
        if hasattr(pb_utils.TritonError, name) and getattr(pb_utils.TritonError, name) == code:
            return name
    return None


def bls_error(pb_utils, error, what: str) -> BlsError:
    """A BLS response's error as a :class:`BlsError` with the child's code and message
    (:func:`s4c.serving.errors.child_error`)."""
    return child_error(error.message(), _code_name(pb_utils, error), what)


def output_memory(pb_utils, device_id: int | None):
    """Where a BLS request asks for its outputs: host memory for a CPU instance (``device_id`` None), or
    GPU ``device_id``, the instance's own. Without it the outputs stay on the device of the model that
    produced them (python_backend README, "preferred_memory", 23.04 on), so a CPU pipeline instance
    could be handed GPU labels that the numpy voter cannot read."""
    if device_id is None:
        return pb_utils.PreferredMemory(pb_utils.TRITONSERVER_MEMORY_CPU, 0)
    if isinstance(device_id, bool) or not isinstance(device_id, int) or device_id < 0:
        raise ValueError(f"GPU device id must be an integer >= 0, got {device_id!r}")
    return pb_utils.PreferredMemory(pb_utils.TRITONSERVER_MEMORY_GPU, device_id)


def bls_segmenter(pb_utils, model_name: str, kind: str = "segmenter", device_id: int | None = None) -> Callable:
    """An async predictor that sends a (N, 1, 64, 64, 64) float32 batch to ``model_name`` over BLS
    (a phase's segmenter, or the locator: same tensors; ``kind`` names it in errors).

    The labels are asked for on the host (``device_id`` None: a CPU instance) or on GPU ``device_id``
    (:func:`output_memory`). Returns the LABELS output (N, 64, 64, 64) uint8 as numpy when it is on the
    host, or as a torch tensor on the device (DLPack, no copy).
    """
    memory = output_memory(pb_utils, device_id)

    async def predict(batch: np.ndarray):
        request = pb_utils.InferenceRequest(model_name=model_name, requested_output_names=[contract.SEG_LABELS],
                                            inputs=[pb_utils.Tensor(contract.SEG_INPUT, batch)],
                                            request_id=f"{INTERNAL_PREFIX}{kind}", preferred_memory=memory)
        response = await request.async_exec()
        if response.has_error():
            raise bls_error(pb_utils, response.error(), f"{kind} {model_name}")
        out = pb_utils.get_output_tensor_by_name(response, contract.SEG_LABELS)
        if out.is_cpu():
            return out.as_numpy()
        import torch

        return torch.utils.dlpack.from_dlpack(out.to_dlpack())

    return predict


def bls_pipeline(pb_utils, model_name: str, phase: str) -> Callable:
    """An async call of the ``s4c`` model for one phase; returns (labels, report dict)."""

    async def run(ct: np.ndarray, spacing: tuple, affine: np.ndarray | None):
        inputs = [pb_utils.Tensor(contract.CT, ct), pb_utils.Tensor(contract.SPACING, np.asarray(spacing, np.float32)),
                  pb_utils.Tensor(contract.PHASE, np.array([phase.encode()], dtype=np.object_))]
        if affine is not None:
            inputs.append(pb_utils.Tensor(contract.AFFINE, np.asarray(affine, np.float64)))
        request = pb_utils.InferenceRequest(model_name=model_name, inputs=inputs,
                                            request_id=f"{INTERNAL_PREFIX}{phase}",
                                            requested_output_names=[contract.LABELS, contract.REPORT])
        response = await request.async_exec()
        if response.has_error():
            raise bls_error(pb_utils, response.error(), phase)
        labels = pb_utils.get_output_tensor_by_name(response, contract.LABELS).as_numpy()
        report = pb_utils.get_output_tensor_by_name(response, contract.REPORT).as_numpy().reshape(-1)[0]
        return labels, json.loads(report)

    return run
