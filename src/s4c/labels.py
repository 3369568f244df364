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
#: Segmenter networks a checkpoint can name: the paper's S4C network and its baselines, 3D U-Net [3]
#: and V-Net [6] (:mod:`s4c.network`).
ARCHITECTURES = ("s4c", "unet3d", "vnet")
#: Methods of ``s4c compare``: the segmenters, and the classification network of the paper's section 2.3.
COMPARE_METHODS = (*ARCHITECTURES, "classifier")

# Coarse-to-fine ("roi" mode): a locator segments the pancreas set at a coarse spacing over the whole
# volume; the segmenter then runs only inside the box of its largest component plus a margin.
#: Working spacing (Z, Y, X) mm of the default locator.
LOCATOR_SPACING = (5.0, 5.0, 5.0)
#: Sliding-window stride of the locator, in its own voxels (a few 64^3 windows cover a clinical volume).
LOCATOR_STRIDE = 32
#: Default ROI margin in mm around the locator's box (its largest pancreas-set component and those over
#: 20 % of it): the smallest whole margin at which the default locator's box held >= 99 % of every
#: case's reference pancreas set in the larger validation cohort (seed 6, 90 cases, both phases; 31 mm
#: for every voxel) and in the first one (seed 3: 13 mm) (scripts/choose_roi_margin.py).
ROI_MARGIN_MM = 28.0
#: The margin of the box the roi training preset samples its patches in (plus jitter); it is the
#: margin the embedded segmenters were trained with, kept apart from the inference default.
TRAIN_ROI_MARGIN_MM = 20.0
#: The phase name a locator trained on both phases carries in its spec.
ANY_PHASE = "any"
MODES = ("roi", "full")
DEFAULT_MODE = "roi"
