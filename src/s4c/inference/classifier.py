"""The classification network of the paper's section 2.3 at inference: a case-level abnormal
probability from the frozen S4C segmenter's Pool3 features inside the pancreas region of interest.

The region is the box of the segmentation's pancreas set {1, 2, 3} (the filtered labels a phase's
pipeline gives) plus a margin in mm, on the segmenter's working grid; with no pancreas predicted it is
the whole volume, and the result says so. Arrays are Z, Y, X; spacings (Z, Y, X) mm.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from s4c.checkpoint import ModelSpec, load_checkpoint
from s4c.inference.roi import Box, box_slices, box_to_mm, grow_mm, largest_component_box, mm_to_box
from s4c.labels import TRAIN_ROI_MARGIN_MM
from s4c.preprocessing import needs_resampling, resample_image
from s4c.validation import check_spacing, check_volume

#: Pool3 is 1/8 resolution: a crop's extents are padded up to a multiple of this.
CROP_MULTIPLE = 8
#: Probability at or above which the classifier calls a phase abnormal.
THRESHOLD = 0.5


def pad_to_multiple(image: np.ndarray, fill: float, multiple: int = CROP_MULTIPLE) -> np.ndarray:
    """``image`` (Z, Y, X) padded at the high end of each axis to a multiple of ``multiple`` with ``fill``."""
    pad = [(0, (-n) % multiple) for n in image.shape]
    return np.pad(image, pad, constant_values=fill) if any(p for _, p in pad) else image


@dataclass(frozen=True)
class ClassifierResult:
    """A phase's classifier outcome: ``probability`` of abnormal, ``abnormal`` (>= :data:`THRESHOLD`),
    ``roi_zyx`` the box it looked at on the working grid, ``roi_fallback`` when no pancreas was
    predicted and it looked at the whole volume."""

    probability: float
    abnormal: bool
    roi_zyx: Box
    roi_fallback: bool


class ClassifierPredictor:
    """A trained :class:`~s4c.network.PoolThreeClassifier` (a ``classifier`` checkpoint) in PyTorch."""

    def __init__(self, model, spec: ModelSpec, *, margin_mm: float = TRAIN_ROI_MARGIN_MM,
                 device: str | None = None) -> None:
        import torch  # the torch extra

        if spec.role != "classifier":
            raise ValueError(f"a ClassifierPredictor needs a classifier checkpoint, got a {spec.role}")
        self.torch = torch
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.spec = spec
        self.margin_mm = float(margin_mm)

    @classmethod
    def from_checkpoint(cls, path: str | Path, **kwargs) -> ClassifierPredictor:
        model, spec = load_checkpoint(path)
        return cls(model, spec, **kwargs)

    def probability_of_crop(self, crop_hu: np.ndarray) -> float:
        """P(abnormal) of one region (Z, Y, X) in HU on the working grid, any extents."""
        x = self.spec.normalization.apply(pad_to_multiple(crop_hu, self.spec.normalization.hu_min))
        with self.torch.inference_mode():
            logits = self.model(self.torch.from_numpy(np.ascontiguousarray(x))[None, None].to(self.device))
            return float(self.torch.softmax(logits, dim=1)[0, 1])

    def __call__(self, ct: np.ndarray, spacing: Sequence[float], labels: np.ndarray) -> ClassifierResult:
        """Classify one phase: ``ct`` (Z, Y, X) HU on the input grid of ``spacing``, ``labels`` the
        phase's segmentation on the same grid."""
        check_volume(ct, "CT")
        spacing = check_spacing(spacing)
        if labels.shape != ct.shape:
            raise ValueError(f"labels {labels.shape} and CT {ct.shape} differ in shape")
        work_spacing = tuple(self.spec.spacing) if self.spec.spacing is not None else spacing
        work = resample_image(ct, spacing, work_spacing) if needs_resampling(spacing, self.spec.spacing) else ct
        box = largest_component_box(labels > 0, 0.0)  # every kept component: the filter already ran
        if box is None:
            roi: Box = tuple((0, n) for n in work.shape)  # type: ignore[assignment]
        else:
            extent = np.asarray(ct.shape, np.float64) * np.asarray(spacing)
            roi = mm_to_box(grow_mm(box_to_mm(box, spacing), self.margin_mm, extent), work_spacing, work.shape)
        p = self.probability_of_crop(np.asarray(work[box_slices(roi)], np.float32))
        return ClassifierResult(p, p >= THRESHOLD, roi, box is None)
