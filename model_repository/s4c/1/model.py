"""Triton Python-backend model ``s4c``: one phase through the whole S4C pipeline.

In ``roi`` mode (the config's ``mode`` parameter) the locator model first finds the pancreas over
BLS. Tiles the CT (or that region of it) into 64^3 patches, sends them to the phase's segmenter over
async BLS (``in_flight`` batches outstanding), votes on the overlaps, filters components and applies
the voxel-count rule.
The work is :class:`s4c.serving.service.PhasePipeline`; this file only moves tensors.
"""

import json
from functools import partial
from pathlib import Path

import triton_python_backend_utils as pb_utils

from s4c import contract
from s4c.inference.merge_torch import TorchLabelVoter
from s4c.labels import PHASES
from s4c.repository.params import ServingParams
from s4c.repository.segmenters import SEGMENTERS_FILE, read_segmenters_file
from s4c.runtime import disable_numpy_hugepage_madvise
from s4c.serving import triton
from s4c.serving.drain import InflightTracker
from s4c.serving.service import PhasePipeline


class TritonPythonModel:
    def initialize(self, args):
        disable_numpy_hugepage_madvise()
        self.inflight = InflightTracker()  # lets `s4c serve` drain before shutdown
        config = json.loads(args["model_config"])
        self.name = config["name"]  # errors name the model that answered (a deployment may rename it)
        params = ServingParams.from_model_config(config)
        segmenters = read_segmenters_file(Path(args["model_repository"]) / args["model_version"] / SEGMENTERS_FILE)
        # A GPU instance asks for the labels on its own device and votes there; a CPU one asks for host memory.
        device_id = int(args["model_instance_device_id"]) if args.get("model_instance_kind") == "GPU" else None
        voter_factory = None
        if device_id is not None:
            voter_factory = partial(TorchLabelVoter, device=f"cuda:{device_id}")
        predictors = {p: triton.bls_segmenter(pb_utils, params.segmenter(p), device_id=device_id) for p in PHASES}
        locator = (triton.bls_segmenter(pb_utils, params.locator, "locator", device_id=device_id)
                   if params.mode == "roi" else None)
        self.pipeline = PhasePipeline(params, segmenters, predictors, voter_factory, locator)

    async def execute(self, requests):
        return [await self._respond(request) for request in requests]

    async def _respond(self, request):
        def get(name):
            return triton.input_array(pb_utils, request, name)

        try:
            with self.inflight.track(request.request_id()):
                out = await self.pipeline.run(get(contract.CT), get(contract.SPACING), get(contract.PHASE),
                                              get(contract.AFFINE), should_stop=request.is_cancelled)
        except Exception as exc:
            # A call from s4c_dual_phase gets the code in the message too (s4c.serving.errors).
            return triton.error_response(pb_utils, exc, self.name, internal=triton.is_internal(request))
        return pb_utils.InferenceResponse(output_tensors=triton.output_tensors(pb_utils, out.tensors()))
