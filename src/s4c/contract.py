"""Tensor names and shapes shared by the ONNX export, TensorRT engines, Triton configs and clients.

This module is the single place these strings live; everything else imports them.
"""

from __future__ import annotations

from s4c.labels import NUM_CLASSES, PATCH_SIZE

# Segmenter (ONNX / TensorRT / Triton segmenter models). HU in, labels out: the HU window and
# scaling are inside the graph, so every runtime normalises with the checkpoint's own constants.
SEG_INPUT = "CT_PATCHES"  # float32 [N, 1, 64, 64, 64], Hounsfield units
SEG_LABELS = "LABELS"  # uint8 [N, 64, 64, 64], argmax inside the graph
SEG_PROBABILITIES = "PROBABILITIES"  # float32 [N, 4, 64, 64, 64], optional (mean-vote mode)
SEG_LOGITS = "LOGITS"  # float32 [N, 4, 64, 64, 64], optional (verification only)

SEG_INPUT_DIMS = (1, PATCH_SIZE, PATCH_SIZE, PATCH_SIZE)
SEG_LABELS_DIMS = (PATCH_SIZE, PATCH_SIZE, PATCH_SIZE)
SEG_PROBABILITIES_DIMS = (NUM_CLASSES, PATCH_SIZE, PATCH_SIZE, PATCH_SIZE)
