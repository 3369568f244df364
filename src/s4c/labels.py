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

# Coarse-to-fine ("roi" mode): a locator segments the pancreas set at a coarse spacing over the whole
# volume; the segmenter then runs only inside the box of its largest component plus a margin.
#: Working spacing (Z, Y, X) mm of the default locator.
LOCATOR_SPACING = (5.0, 5.0, 5.0)
#: Sliding-window stride of the locator, in its own voxels (a few 64^3 windows cover a clinical volume).
LOCATOR_STRIDE = 32
#: Default ROI margin in mm around the locator's largest pancreas-set component: the smallest whole
#: margin at which the default locator's box held every reference pancreas-set voxel of every case of
#: the validation cohort (18 mm; 13 mm for 99 %), rounded up (scripts/choose_roi_margin.py).
ROI_MARGIN_MM = 20.0
#: The phase name a locator trained on both phases carries in its spec.
ANY_PHASE = "any"
MODES = ("roi", "full")
DEFAULT_MODE = "roi"
