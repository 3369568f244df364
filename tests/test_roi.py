"""ROI arithmetic and coarse-to-fine (roi mode) inference against the whole-volume (full) mode."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from s4c.checkpoint import ModelSpec
from s4c.inference.pipeline import RoiSettings, run_phase, window_count
from s4c.inference.roi import (
    box_fraction,
    box_to_mm,
    expand_to_window,
    grow_mm,
    largest_component_box,
    mask_outside,
    mm_to_box,
)
from s4c.inference.tiling import window_starts


def test_largest_component_box_matches_scipy():
    rng = np.random.default_rng(0)
    mask = ndimage.binary_opening(rng.random((30, 41, 27)) > 0.6, iterations=1)
    lab, n = ndimage.label(mask, structure=np.ones((3, 3, 3)))
    sizes = ndimage.sum(mask, lab, range(1, n + 1))
    big = int(np.argmax(sizes)) + 1
    sl = ndimage.find_objects(lab)[big - 1]
    assert largest_component_box(mask) == tuple((s.start, s.stop) for s in sl)
    assert largest_component_box(np.zeros((4, 4, 4), bool)) is None
    src = mask.copy()
    largest_component_box(mask)
    assert np.array_equal(mask, src)


def test_margin_in_mm_on_an_anisotropic_grid():
    spacing = (3.0, 0.8, 0.5)
    box = ((10, 12), (100, 120), (200, 240))
    lo, hi = box_to_mm(box, spacing)
    assert np.allclose(lo, [30.0, 80.0, 100.0]) and np.allclose(hi, [36.0, 96.0, 120.0])
    shape = (40, 400, 500)
    extent = np.asarray(shape) * np.asarray(spacing)
    grown = mm_to_box(grow_mm((lo, hi), 10.0, extent), spacing, shape)
    # 10 mm is 3.33 slices (rounded out to 4), 12.5 rows and 20 columns.
    assert grown == ((6, 16), (87, 133), (180, 260))


def test_clipping_at_the_volume_edges():
    spacing = (2.0, 2.0, 2.0)
    shape = (20, 30, 40)
    extent = np.asarray(shape) * 2.0
    box = ((0, 3), (25, 30), (10, 12))
    grown = mm_to_box(grow_mm(box_to_mm(box, spacing), 15.0, extent), spacing, shape)
    assert grown == ((0, 11), (17, 30), (2, 20))
    with pytest.raises(ValueError, match="margin"):
        grow_mm(box_to_mm(box, spacing), -1.0, extent)


def test_the_same_mm_box_on_two_grids_covers_the_same_region():
    lo, hi = np.array([12.4, 30.0, 7.5]), np.array([40.1, 52.5, 60.0])
    for spacing, shape in (((2.5, 2.5, 2.5), (40, 40, 40)), ((0.8, 0.8, 1.0), (125, 125, 100))):
        b = mm_to_box((lo, hi), spacing, shape)
        blo, bhi = box_to_mm(b, spacing)
        assert np.all(blo <= lo + 1e-9) and np.all(bhi >= hi - 1e-9)  # covers the physical box
        assert np.all(lo - blo < np.asarray(spacing)) and np.all(bhi - hi < np.asarray(spacing))  # minimal


def test_an_roi_smaller_than_a_window_is_grown_to_one():
    assert expand_to_window(((10, 20), (0, 100), (50, 60)), (128, 100, 128), 64) == ((0, 64), (0, 100), (23, 87))
    # near an edge the window shifts inwards; an axis shorter than the window is taken whole
    assert expand_to_window(((120, 126), (5, 8), (0, 4)), (128, 40, 64), 64) == ((64, 128), (0, 40), (0, 64))
    with pytest.raises(ValueError, match="inside"):
        expand_to_window(((0, 200), (0, 1), (0, 1)), (100, 10, 10), 64)


def test_box_fraction_and_mask_outside():
    mask = np.zeros((10, 10, 10), bool)
    mask[2:6, 2:6, 2:6] = True
    assert box_fraction(mask, ((0, 10), (0, 10), (0, 10))) == 1.0
    assert box_fraction(mask, ((2, 4), (0, 10), (0, 10))) == 0.5
    assert box_fraction(np.zeros_like(mask), ((0, 1), (0, 1), (0, 1))) == 1.0
    lab = np.full((4, 4, 4), 2, np.uint8)
    out = mask_outside(lab, ((1, 3), (0, 4), (0, 2)))
    assert out.sum() == 2 * 2 * 4 * 2 and lab.min() == 2


def _label_decoder(num_classes: int):
    """Oracle predictor: the CT stores label * 100 HU (plus noise under 50 HU)."""
    def predict(batch: np.ndarray) -> np.ndarray:
        return np.clip(np.rint(batch[:, 0] / 100.0), 0, num_classes - 1).astype(np.uint8)

    return predict


def _aligned_case():
    """A volume whose oracle ROI (pancreas box + 10 mm at 1 mm) starts on the full mode's window grid
    and ends where a stride-20 tiling of it ends, so the ROI mode runs a subset of full mode's windows."""
    shape = (104, 124, 144)
    lab = np.zeros(shape, np.uint8)
    lab[30:94, 30:114, 50:134] = 1
    lab[50:60, 60:70, 90:100] = 2
    rng = np.random.default_rng(3)
    ct = (lab.astype(np.int16) * 100 + rng.integers(-40, 40, shape)).astype(np.int16)
    return ct, lab


def _window_dependent(batch: np.ndarray) -> np.ndarray:
    """A segmenter whose answer depends on where a voxel sits in its window, as a real network's
    does near window borders, so the vote depends on which windows ran."""
    base = np.clip(np.rint(batch[:, 0] / 100.0), 0, 3).astype(np.int64)
    zz, yy, xx = np.meshgrid(*(np.arange(64) // 21,) * 3, indexing="ij")
    return ((base + zz + 2 * yy + xx) % 4).astype(np.uint8)


def test_oracle_locator_roi_mode_equals_full_mode_where_every_window_is_inside():
    ct, _ = _aligned_case()
    spec = ModelSpec(width=4, phase="arterial")
    seg = _window_dependent
    loc_spec = ModelSpec(width=4, phase="any", num_classes=2, role="locator")
    locator = (_label_decoder(2), loc_spec)
    roi = RoiSettings(margin_mm=10.0, stride=32)
    full = run_phase(ct, (1.0, 1.0, 1.0), seg, spec, mode="full", stride=20, batch_size=4)
    res = run_phase(ct, (1.0, 1.0, 1.0), seg, spec, mode="roi", locator=locator, roi=roi, stride=20, batch_size=4)
    assert res.roi_zyx == ((20, 104), (20, 124), (40, 144)) and not res.roi_fallback
    assert res.patches == 2 * 3 * 3 and full.patches == window_count(ct.shape, 20) == 3 * 4 * 5
    # Voxels every one of whose full-mode windows lies inside the ROI.
    inside = []
    for n, (a, b) in zip(ct.shape, res.roi_zyx, strict=True):
        starts = window_starts(n, 64, 20)
        v = np.arange(n)
        cover = (starts[None, :] <= v[:, None]) & (v[:, None] < starts[None, :] + 64)
        ok = (starts >= a) & (starts + 64 <= b)
        inside.append(np.all(~cover | ok[None, :], axis=1))
    mask = inside[0][:, None, None] & inside[1][None, :, None] & inside[2][None, None, :]
    assert mask.sum() == 40 * 60 * 60
    assert len(np.unique(full.raw_labels[mask])) == 4
    assert np.array_equal(res.raw_labels[mask], full.raw_labels[mask])
    outside = np.ones(ct.shape, bool)
    outside[20:104, 20:124, 40:144] = False
    assert not res.raw_labels[outside].any()
    # and the voxels near the ROI's edge really do differ between the modes, so the mask matters
    assert not np.array_equal(res.raw_labels[~mask], full.raw_labels[~mask])


def test_roi_mode_falls_back_to_the_whole_volume_when_the_locator_finds_nothing():
    ct, _ = _aligned_case()
    spec = ModelSpec(width=4, phase="venous")
    loc_spec = ModelSpec(width=4, phase="any", num_classes=2, role="locator")

    def nothing(batch):
        return np.zeros((len(batch), 64, 64, 64), np.uint8)

    seg = _label_decoder(4)
    res = run_phase(ct, (1.0, 1.0, 1.0), seg, spec, mode="roi", locator=(nothing, loc_spec))
    full = run_phase(ct, (1.0, 1.0, 1.0), seg, spec, mode="full")
    assert res.roi_fallback and res.roi_zyx is None and res.patches == full.patches
    assert np.array_equal(res.decision.labels, full.decision.labels)
    assert res.roi_report()["roi_fallback"] is True
    with pytest.raises(ValueError, match="locator"):
        run_phase(ct, (1.0, 1.0, 1.0), seg, spec, mode="roi")
    with pytest.raises(ValueError, match="mode"):
        run_phase(ct, (1.0, 1.0, 1.0), seg, spec, mode="half")


def test_roi_mode_on_a_resampled_grid_reports_the_box_on_the_input_grid():
    # Locator at 4 mm, segmenter at 2 mm, input at 1 x 1.5 x 1 mm.
    lab = np.zeros((80, 60, 100), np.uint8)
    lab[30:50, 20:40, 30:70] = 1
    lab[38:44, 28:34, 45:55] = 2
    ct = lab.astype(np.int16) * 100
    spec = ModelSpec(width=4, phase="arterial", spacing=(2.0, 2.0, 2.0))
    loc_spec = ModelSpec(width=4, phase="any", num_classes=2, role="locator", spacing=(4.0, 4.0, 4.0))
    res = run_phase(ct, (1.0, 1.5, 1.0), _label_decoder(4), spec, mode="roi", locator=(_label_decoder(2), loc_spec),
                    roi=RoiSettings(margin_mm=6.0))
    (z0, z1), (y0, y1), (x0, x1) = res.roi_zyx
    # The pancreas is inside; the box is no larger than the pancreas plus the margin plus one voxel of the
    # locator's 4 mm grid and one of the segmenter's 2 mm grid on each side (in input voxels).
    for (a, b), (p0, p1), sp in zip(res.roi_zyx, ((30, 50), (20, 40), (30, 70)), (1.0, 1.5, 1.0), strict=True):
        assert a <= p0 and b >= p1
        assert p0 - a <= (6 + 4 + 2) / sp + 1 and b - p1 <= (6 + 4 + 2) / sp + 1
    assert z1 - z0 < 80 and x1 - x0 < 100  # a real crop, not the whole volume
    outside = np.ones(ct.shape, bool)
    outside[z0:z1, y0:y1, x0:x1] = False
    assert not res.decision.labels[outside].any()
    assert res.decision.abnormal and res.reference_spacing == (2.0, 2.0, 2.0)
    th = res.decision.thresholds
    assert th["min_tumor_ml"] == pytest.approx(40 * 8 / 1000) and th["keep_distance_mm_zyx"] == [54.0] * 3


def test_box_of_the_largest_component_and_of_the_large_ones():
    mask = np.zeros((20, 20, 40), bool)
    mask[5:10, 5:10, 2:12] = True  # 250 voxels
    mask[6:9, 6:9, 20:30] = True  # 90 voxels: 36 % of the largest
    mask[7:8, 7:8, 35:37] = True  # 2 voxels
    assert largest_component_box(mask) == ((5, 10), (5, 10), (2, 12))
    assert largest_component_box(mask, 0.2) == ((5, 10), (5, 10), (2, 30))
    assert largest_component_box(mask, 0.0) == ((5, 10), (5, 10), (2, 37))
    with pytest.raises(ValueError, match="min_fraction"):
        largest_component_box(mask, 1.5)


def test_locator_recall_curve_with_an_under_segmenting_locator():
    from s4c.evaluation.locator import locator_recall_curve

    _, lab = _aligned_case()
    core = np.zeros_like(lab)
    core[35:89, 35:109, 55:129] = 1  # what the locator sees: the gland 5 voxels short on every side
    ct = core.astype(np.int16) * 100
    loc_spec = ModelSpec(width=4, phase="any", num_classes=2, role="locator")
    r = locator_recall_curve(ct, (1.0, 1.0, 1.0), lab, _label_decoder(2), loc_spec, margins_mm=(0.0, 4.0, 5.0, 9.0))
    assert r["found"] and r["recall"][0] < r["recall"][1] < 1.0 and r["recall"][2] == r["recall"][3] == 1.0
    assert r["recall"][0] == pytest.approx(54 * 74 * 74 / (64 * 84 * 84))
