"""Triton Python-backend model ``s4c_dual_phase``: arterial and venous scans of one patient.

The two phases are separate acquisitions, each on its own grid. Both go to the ``s4c`` model over
async BLS at the same time; the answer is each phase's labels, the OR of the two decisions and a
report with both phases.
"""

import asyncio
import json

import numpy as np
import triton_python_backend_utils as pb_utils

from s4c import contract
from s4c.labels import PHASES
from s4c.repository.params import ServingParams
from s4c.runtime import disable_numpy_hugepage_madvise
from s4c.serving import triton
from s4c.serving.drain import InflightTracker
from s4c.serving.service import check_dual_inputs, encode_report, fuse_reports


class TritonPythonModel:
    def initialize(self, args):
        disable_numpy_hugepage_madvise()
        self.inflight = InflightTracker()  # lets `s4c serve` drain before shutdown
        config = json.loads(args["model_config"])
        self.name = config["name"]  # errors name the model that answered (a deployment may rename it)
        self.params = ServingParams.from_model_config(config)
        self.phases = {p: triton.bls_pipeline(pb_utils, self.params.pipeline_model, p) for p in PHASES}

    async def execute(self, requests):
        return [await self._respond(request) for request in requests]

    async def _respond(self, request):
        names = [name for phase in PHASES for name in contract.DUAL_INPUTS[phase]]
        try:
            with self.inflight.track(request.request_id()):
                inputs = check_dual_inputs({n: triton.input_array(pb_utils, request, n) for n in names},
                                           self.params.max_voxels)
                answers = await asyncio.gather(*(self.phases[p](*inputs[p]) for p in PHASES))
        except Exception as exc:
            return triton.error_response(pb_utils, exc, self.name)
        report = fuse_reports({p: a[1] for p, a in zip(PHASES, answers, strict=True)})
        arrays = {contract.DUAL_LABELS[p]: a[0] for p, a in zip(PHASES, answers, strict=True)}
        arrays[contract.ABNORMAL] = np.array([report["abnormal"]], dtype=bool)
        arrays[contract.REPORT] = encode_report(report)
        return pb_utils.InferenceResponse(output_tensors=triton.output_tensors(pb_utils, arrays))
