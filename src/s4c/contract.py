"""Tensor names and shapes shared by the ONNX export, TensorRT engines, Triton configs and clients.

This module is the single place these strings live; everything else imports them.
"""

from __future__ import annotations

from s4c.labels import NUM_CLASSES, PATCH_SIZE, PHASES

# Segmenter (ONNX / TensorRT / Triton segmenter models, and the ``roi`` mode locator, which has the
# same tensors with 2 classes). HU in, labels out: the HU window and scaling are inside the graph, so
# every runtime normalises with the checkpoint's own constants.
SEG_INPUT = "CT_PATCHES"  # float32 [N, 1, 64, 64, 64], Hounsfield units
SEG_LABELS = "LABELS"  # uint8 [N, 64, 64, 64], argmax inside the graph
SEG_PROBABILITIES = "PROBABILITIES"  # float32 [N, 4, 64, 64, 64], optional (mean-vote mode)
SEG_LOGITS = "LOGITS"  # float32 [N, 4, 64, 64, 64], optional (verification only)

SEG_INPUT_DIMS = (1, PATCH_SIZE, PATCH_SIZE, PATCH_SIZE)
SEG_LABELS_DIMS = (PATCH_SIZE, PATCH_SIZE, PATCH_SIZE)
SEG_PROBABILITIES_DIMS = (NUM_CLASSES, PATCH_SIZE, PATCH_SIZE, PATCH_SIZE)

# ``s4c``: one phase through the whole pipeline (Python backend).
CT = "CT"  # int16 [Z, Y, X], Hounsfield units
SPACING = "SPACING"  # float32 [3], mm, Z, Y, X
PHASE = "PHASE"  # bytes [1], 'arterial' or 'venous'
AFFINE = "AFFINE"  # float64 [4, 4], optional: NIfTI (i, j, k) -> world of the volume sent
LABELS = "LABELS"  # uint8 [Z, Y, X], filtered labels on the input grid
ABNORMAL = "ABNORMAL"  # bool [1]
TUMOR_VOXELS = "TUMOR_VOXELS"  # int64 [1]
DUCT_VOXELS = "DUCT_VOXELS"  # int64 [1]
REPORT = "REPORT"  # bytes [1], JSON

# ``s4c_dual_phase``: both phases, each on its own grid, fused by OR.
ARTERIAL = "ARTERIAL"
VENOUS = "VENOUS"
ARTERIAL_SPACING = "ARTERIAL_SPACING"
VENOUS_SPACING = "VENOUS_SPACING"
ARTERIAL_AFFINE = "ARTERIAL_AFFINE"
VENOUS_AFFINE = "VENOUS_AFFINE"
LABELS_ARTERIAL = "LABELS_ARTERIAL"
LABELS_VENOUS = "LABELS_VENOUS"

#: Per-phase input and output names of the dual-phase model.
DUAL_INPUTS = {
    "arterial": (ARTERIAL, ARTERIAL_SPACING, ARTERIAL_AFFINE),
    "venous": (VENOUS, VENOUS_SPACING, VENOUS_AFFINE),
}
DUAL_LABELS = {"arterial": LABELS_ARTERIAL, "venous": LABELS_VENOUS}

# Triton's default ports (s4c serve, the image, the Kubernetes and KServe manifests).
HTTP_PORT = 8000  # HTTP/REST: health and model-ready endpoints (the probes)
GRPC_PORT = 8001  # gRPC: inference
METRICS_PORT = 8002  # Prometheus metrics (the autoscaler's queue time)

# Triton model names.
PIPELINE_MODEL = "s4c"
DUAL_PHASE_MODEL = "s4c_dual_phase"
#: The ``roi`` mode locator (pancreas set vs background at a coarse spacing): the ``s4c`` model calls it
#: over BLS before the phase's segmenter.
LOCATOR_MODEL = "locator"


def segmenter_model(phase: str) -> str:
    """Default Triton model name of a phase's segmenter."""
    return f"segmenter_{phase}"


#: Every model with the patch tensors (SEG_INPUT -> SEG_LABELS): each phase's segmenter and the locator.
#: Each is exported to ONNX and has the CPU, ``onnxruntime`` and ``tensorrt`` forms.
PATCH_MODELS = (*(segmenter_model(p) for p in PHASES), LOCATOR_MODEL)
