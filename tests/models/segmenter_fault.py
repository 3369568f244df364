"""A segmenter for the server tests that fails on purpose (copied into the test server's repository as
``segmenter_fault/1/model.py``). The batch's largest HU value picks the fault, so a test chooses it
with the CT it sends: 1111 INVALID_ARG, 2222 an unexpected exception (INTERNAL), 3333 UNAVAILABLE;
anything else is answered with background labels. Errors go through the same
:func:`s4c.serving.triton.error_response` as the real models, so BLS callers get the code tag."""

import numpy as np
import triton_python_backend_utils as pb_utils

from s4c import contract
from s4c.serving import triton
from s4c.serving.errors import BlsError

NAME = "segmenter_fault"
FAULTS = {1111: "INVALID_ARG", 2222: "INTERNAL", 3333: "UNAVAILABLE"}


class TritonPythonModel:
    def initialize(self, args):
        pass

    def execute(self, requests):
        responses = []
        for request in requests:
            batch = pb_utils.get_input_tensor_by_name(request, contract.SEG_INPUT).as_numpy()
            fault = FAULTS.get(int(batch.max()))
            if fault is None:
                labels = np.zeros((len(batch), 64, 64, 64), np.uint8)
                responses.append(pb_utils.InferenceResponse([pb_utils.Tensor(contract.SEG_LABELS, labels)]))
                continue
            # An error of a known code, or (INTERNAL) an exception the model did not expect.
            exc = RuntimeError("deliberate unexpected fault") if fault == "INTERNAL" else BlsError(
                f"deliberate {fault}", fault)
            responses.append(triton.error_response(pb_utils, exc, NAME, internal=triton.is_internal(request)))
        return responses
