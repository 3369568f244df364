"""Training data: cohort loading for one phase, stratified case-level folds, patch sampling and
augmentation. Arrays are Z, Y, X.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from s4c.data.cohort import CaseEntry, read_manifest
from s4c.data.phantom import PHANTOM_JSON
from s4c.io import load_canonical_pair
from s4c.labels import ANY_PHASE, DUCT, PANCREAS, PATCH_SIZE, PHASES, TUMOR
from s4c.preprocessing import labels_to_grid, needs_resampling, resample_image
from s4c.validation import as_label_volume

#: Patch sampling mix: centred on a tumour/duct voxel (when the case has one), on any pancreas-set
#: voxel, or anywhere. Lesions are tiny next to the volume, so they are oversampled.
SAMPLING = {"lesion": 1 / 3, "pancreas": 1 / 3, "random": 1 / 3}
#: The ROI segmenter's mix: centred on a lesion voxel, or anywhere inside the case's region of interest
#: (the pancreas set's box plus a jittered margin, as the locator's box plus margin is at inference).
#: Normal cases only ever give "roi" patches: their whole gland is the hard negative.
ROI_SAMPLING = {"lesion": 0.4, "roi": 0.6}
#: The locator's mix: its patch covers most of a coarse volume, so anywhere, or on the pancreas set.
LOCATOR_SAMPLING = {"pancreas": 0.5, "random": 0.5}
SAMPLINGS = {"paper": SAMPLING, "roi": ROI_SAMPLING, "locator": LOCATOR_SAMPLING}


@dataclass
class TrainingCase:
    """One phase of one case on the working grid: HU int16 image and uint8 labels, (Z, Y, X)."""

    case_id: str
    abnormal: int
    image: np.ndarray
    labels: np.ndarray
    lesion_idx: np.ndarray  # flat indices of tumour/duct voxels
    pancreas_idx: np.ndarray  # flat indices of pancreas-set voxels
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    relabelled: bool = False  # an invisible tumour was relabelled as gland (see relabel_tumor_as_gland)
    _box: tuple | None = field(default=None, init=False, repr=False, compare=False)

    def pancreas_box(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Half-open (lo, hi) voxel corners (z, y, x) of the pancreas set, or None when it is empty.

        Computed once per case: every ROI patch of the case asks for it.
        """
        if len(self.pancreas_idx) == 0:
            return None
        if self._box is None:
            zyx = np.stack(np.unravel_index(self.pancreas_idx, self.image.shape), axis=1)
            self._box = (zyx.min(axis=0), zyx.max(axis=0) + 1)
        return self._box


def stratified_folds(entries: Sequence[CaseEntry], folds: int, seed: int = 0) -> list[int]:
    """Fold number of each entry: case-level, stratified by diagnosis, deterministic for ``seed``.

    Both phases of a case always share its fold, because folds are assigned per case id.
    """
    if folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    rng = np.random.default_rng(seed)
    fold = [0] * len(entries)
    for flag in (0, 1):
        idx = sorted((i for i, e in enumerate(entries) if e.abnormal == flag), key=lambda i: entries[i].case_id)
        idx = [idx[j] for j in rng.permutation(len(idx))]
        for rank, i in enumerate(idx):
            fold[i] = rank % folds
    return fold


def check_fold(entries: Sequence[CaseEntry], fold_of: Sequence[int], fold: int, folds: int) -> None:
    """Raise ``ValueError`` unless fold ``fold`` and its training part each hold normal and abnormal cases."""
    if not 0 <= fold < folds:
        raise ValueError(f"fold must be in 0..{folds - 1}, got {fold}")
    test = [e for e, f in zip(entries, fold_of, strict=True) if f == fold]
    train = [e for e, f in zip(entries, fold_of, strict=True) if f != fold]
    for name, part in (("test", test), ("training", train)):
        for flag, word in ((0, "normal"), (1, "abnormal")):
            if not any(e.abnormal == flag for e in part):
                raise ValueError(f"fold {fold} of {folds}: its {name} part has no {word} case "
                                 f"({sum(e.abnormal == 0 for e in entries)} normal, "
                                 f"{sum(e.abnormal == 1 for e in entries)} abnormal in the cohort)")


def phantom_visibility(root: str | Path, phase: str) -> dict[str, bool]:
    """{case_id: whether the generator made its tumour visible in ``phase``} from a phantom cohort's
    ``phantom.json``; raises ``ValueError`` for a cohort without one (a user's own cohort)."""
    path = Path(root) / PHANTOM_JSON
    if not path.exists():
        raise ValueError(f"{path} is missing: relabelling invisible tumours needs a phantom cohort's per-phase "
                         "visibility (a cohort of real scans should carry per-phase labels instead)")
    cases = json.loads(path.read_text())["cases"]
    return {c["case_id"]: bool(c["tumor"]["visible"][phase]) for c in cases if c.get("tumor")}


def relabel_tumor_as_gland(labels: np.ndarray) -> np.ndarray:
    """A copy of ``labels`` with tumour voxels relabelled as pancreas (the input is never modified).

    Per-phase reference labels mark a tumour in both phases even where one phase cannot show it; a
    per-phase model trained to call such gland "tumour" learns that tumour looks like gland.
    """
    out = labels.copy()
    out[out == TUMOR] = PANCREAS
    return out


def load_case(root: Path, entry: CaseEntry, phase: str, spacing: Sequence[float] | None, *,
              tumor_visible: bool = True, binary: bool = False) -> TrainingCase:
    """Load one phase of ``entry`` with its labels, checked, resampled to ``spacing`` when given.

    ``tumor_visible=False``: the tumour is relabelled as gland (:func:`relabel_tumor_as_gland`).
    ``binary``: labels become the pancreas set (1) against background (0), for a locator.
    """
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
    img_path = entry.path(root, phase)
    lab_path = entry.path(root, f"{phase}_label")
    if lab_path is None:
        raise ValueError(f"case {entry.case_id}: no {phase}_label in the manifest; training needs labels")
    for p in (img_path, lab_path):
        if not p.exists():
            raise ValueError(f"case {entry.case_id}: file {p.relative_to(root)} does not exist")
    img, lab = load_canonical_pair(img_path, lab_path, f"case {entry.case_id} {phase}")
    labels = as_label_volume(lab.array, f"case {entry.case_id} {phase}")
    if img.array.dtype.kind == "f" and not np.isfinite(img.array).all():
        raise ValueError(f"case {entry.case_id} {phase}: image has NaN or Inf voxels")
    image = img.array
    if image.dtype != np.int16:  # int16 HU is used as stored; others are rounded and clipped once
        image = np.clip(np.rint(image), -32768, 32767).astype(np.int16)
    if spacing is not None and needs_resampling(img.spacing, spacing):
        work = resample_image(image, img.spacing, spacing)
        labels = labels_to_grid(labels, img.spacing, work.shape, spacing)
        image = np.rint(work).astype(np.int16)
    relabelled = not tumor_visible and bool((labels == TUMOR).any())
    if relabelled:
        labels = relabel_tumor_as_gland(labels)
    if binary:
        labels = (labels > 0).astype(np.uint8)
    flat = labels.reshape(-1)
    lesion = np.flatnonzero((flat == TUMOR) | (flat == DUCT)) if not binary else np.empty(0, np.int64)
    pancreas = np.flatnonzero(flat)
    work_spacing = tuple(spacing) if spacing is not None else tuple(img.spacing)
    return TrainingCase(entry.case_id, entry.abnormal, image, labels, lesion, pancreas, work_spacing, relabelled)


def load_cohort(data: str | Path, phase: str, *, fold: int | None = None, folds: int = 4, seed: int = 0,
                spacing: Sequence[float] | None = None, split: str = "train", relabel_invisible: bool = False,
                binary: bool = False) -> list[TrainingCase]:
    """Load the ``split`` ('train' or 'test') part of fold ``fold`` (all cases when ``fold`` is None).

    ``phase`` is one phase, or ``"any"`` for both phases of every case (a locator's data).
    ``relabel_invisible``: tumours the phantom generator made invisible in a phase are gland in that
    phase's labels (:func:`phantom_visibility`). ``binary``: see :func:`load_case`. Every file is
    opened and checked before anything is returned, so bad input fails before training.
    """
    root = Path(data)
    entries = read_manifest(root)
    if not entries:
        raise ValueError(f"{root / 'manifest.csv'} lists no cases")
    if fold is not None:
        fold_of = stratified_folds(entries, folds, seed)
        check_fold(entries, fold_of, fold, folds)
        entries = [e for e, f in zip(entries, fold_of, strict=True) if (f == fold) == (split == "test")]
    phases = PHASES if phase == ANY_PHASE else (phase,)
    visible = {ph: phantom_visibility(root, ph) if relabel_invisible else {} for ph in phases}
    return [load_case(root, e, ph, spacing, tumor_visible=visible[ph].get(e.case_id, True), binary=binary)
            for e in entries for ph in phases]


def _crop(arr: np.ndarray, centre: np.ndarray, size: int, fill) -> np.ndarray:
    """A ``size``-cubed crop of ``arr`` centred at ``centre``; outside voxels take ``fill``."""
    out = np.full((size,) * 3, fill, dtype=arr.dtype)
    lo = centre - size // 2
    src, dst = [], []
    for a in range(3):
        s0, s1 = max(lo[a], 0), min(lo[a] + size, arr.shape[a])
        src.append(slice(s0, s1))
        dst.append(slice(s0 - lo[a], s1 - lo[a]))
    out[tuple(dst)] = arr[tuple(src)]
    return out


def jittered_roi(case: TrainingCase, rng: np.random.Generator, margin_mm: float,
                 jitter_mm: float) -> tuple[np.ndarray, np.ndarray] | None:
    """The pancreas set's box grown by ``margin_mm`` +- U(0, ``jitter_mm``) on each of its six sides,
    in voxels, clipped to the volume; None when the case has no pancreas set.

    This is the region the segmenter sees at inference (the locator's box plus the margin), with the
    locator's error stood in for by the jitter.
    """
    box = case.pancreas_box()
    if box is None:
        return None
    sp = np.asarray(case.spacing, dtype=np.float64)
    grow_lo = (margin_mm + rng.uniform(-jitter_mm, jitter_mm, 3)) / sp
    grow_hi = (margin_mm + rng.uniform(-jitter_mm, jitter_mm, 3)) / sp
    shape = np.asarray(case.image.shape)
    lo = np.clip(np.floor(box[0] - grow_lo).astype(np.int64), 0, shape - 1)
    hi = np.clip(np.ceil(box[1] + grow_hi).astype(np.int64), lo + 1, shape)
    return lo, hi


def sample_patch(case: TrainingCase, rng: np.random.Generator, pad_hu: float,
                 size: int = PATCH_SIZE, *, sampling: str = "paper", roi_margin_mm: float = 0.0,
                 roi_jitter_mm: float = 0.0, kind: str | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """One (image, labels, kind) training patch pair following :data:`SAMPLINGS` [``sampling``], or of
    the given ``kind``."""
    if kind is None:
        mix = SAMPLINGS[sampling]
        kind = str(rng.choice(list(mix), p=list(mix.values())))
    if kind == "lesion" and len(case.lesion_idx) == 0:
        kind = "roi" if sampling == "roi" else "pancreas"
    if kind in ("pancreas", "roi") and len(case.pancreas_idx) == 0:
        kind = "random"
    if kind == "roi":
        lo, hi = jittered_roi(case, rng, roi_margin_mm, roi_jitter_mm)
        centre = np.array([rng.integers(a, b) for a, b in zip(lo, hi, strict=True)])
    elif kind == "random":
        centre = np.array([rng.integers(0, n) for n in case.image.shape])
    else:
        idx = case.lesion_idx if kind == "lesion" else case.pancreas_idx
        centre = np.array(np.unravel_index(idx[rng.integers(len(idx))], case.image.shape))
    return _crop(case.image, centre, size, pad_hu), _crop(case.labels, centre, size, 0), kind


def augment(image: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The paper's augmentation on a cubic patch pair: a rotation by 0, 90, 180 or 270 degrees in one of
    the three axis planes, then an independent flip on each of the three axes."""
    planes = ((0, 1), (0, 2), (1, 2))
    plane = planes[rng.integers(3)]
    k = int(rng.integers(4))
    image = np.rot90(image, k, axes=plane)
    labels = np.rot90(labels, k, axes=plane)
    for axis in range(3):
        if rng.random() < 0.5:
            image = np.flip(image, axis)
            labels = np.flip(labels, axis)
    return np.ascontiguousarray(image), np.ascontiguousarray(labels)
