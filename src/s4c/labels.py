"""Label values and the paper's fixed constants, in one place.

Every module (library, Triton backend, benchmarks) imports these names instead of repeating literals.
"""

from __future__ import annotations

BACKGROUND = 0
PANCREAS = 1
TUMOR = 2
DUCT = 3
NUM_CLASSES = 4
LABEL_NAMES = ("background", "pancreas", "tumor", "duct")
#: The "pancreas set" of the paper: normal pancreas, tumour and dilated duct.
PANCREAS_SET = (PANCREAS, TUMOR, DUCT)

PATCH_SIZE = 64
DEFAULT_STRIDE = 20

# Decision rule and component filter, section 2.2 of the paper.
MIN_TUMOR_VOXELS = 40
MIN_DUCT_VOXELS = 500
KEEP_RATIO = 0.2
KEEP_DISTANCE = 27.0

PHASES = ("arterial", "venous")
