"""classify / fuse against a brute-force scipy oracle, plus the paper's exact boundaries."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from s4c.postprocess import Decision, classify, fuse

from reference import classify_reference


def blob(labels: np.ndarray, origin, size, value) -> None:
    z, y, x = origin
    dz, dy, dx = size
    labels[z : z + dz, y : y + dy, x : x + dx] = value


@st.composite
def sparse_labels(draw):
    shape = tuple(draw(st.integers(1, 14)) for _ in range(3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    density = draw(st.sampled_from([0.02, 0.1, 0.3, 0.6]))
    lab = np.where(rng.random(shape) < density, rng.integers(1, 4, shape), 0).astype(np.uint8)
    return lab


@given(sparse_labels(), st.sampled_from([0.0, 0.2, 0.5]), st.sampled_from([1.0, 1.5, 3.0, 27.0]),
       st.integers(0, 6), st.integers(0, 8))
def test_matches_bruteforce(labels, ratio, distance, min_t, min_d):
    before = labels.copy()
    got = classify(labels, keep_ratio=ratio, keep_distance=distance, min_tumor_voxels=min_t,
                   min_duct_voxels=min_d)
    ab, t, d, filtered = classify_reference(labels, keep_ratio=ratio, keep_distance=distance,
                                            min_tumor_voxels=min_t, min_duct_voxels=min_d)
    assert np.array_equal(labels, before), "input mutated"
    assert (got.abnormal, got.tumor_voxels, got.duct_voxels) == (ab, t, d)
    assert np.array_equal(got.labels, filtered)
    assert sum(c.voxels for c in got.tumors) == t


def test_empty_volume():
    d = classify(np.zeros((5, 6, 7), np.uint8))
    assert not d.abnormal and d.tumor_voxels == 0 and d.components == 0 and d.tumors == ()
    assert d.labels.shape == (5, 6, 7) and not d.labels.any()


def test_single_voxel():
    lab = np.zeros((3, 3, 3), np.uint8)
    lab[1, 1, 1] = 2
    d = classify(lab, min_tumor_voxels=1, spacing=(2.0, 1.0, 0.5))
    assert d.abnormal and d.tumor_voxels == 1
    (t,) = d.tumors
    assert t.centroid == (1.0, 1.0, 1.0) and t.bbox == ((1, 2), (1, 2), (1, 2))
    assert t.volume_ml == pytest.approx(1e-3)


def test_tumor_threshold_39_and_40():
    for n, expected in ((39, False), (40, True)):
        lab = np.zeros((10, 10, 60), np.uint8)
        lab[2:8, 2:8, 2:50] = 1
        lab[5, 5, 3 : 3 + n] = 2
        d = classify(lab)
        assert d.tumor_voxels == n and d.abnormal is expected


def test_duct_threshold_499_and_500():
    for n, expected in ((499, False), (500, True)):
        lab = np.zeros((20, 30, 30), np.uint8)
        lab[1:19, 1:29, 1:29] = 1
        flat = lab.reshape(-1)
        idx = np.flatnonzero(flat == 1)[:n]
        flat[idx] = 3
        d = classify(lab)
        assert d.duct_voxels == n and d.abnormal is expected


@pytest.mark.parametrize(("gap", "kept"), [(26, True), (27, False)])
def test_distance_just_under_and_at_27(gap, kept):
    # C_max is a large slab; a small tumour blob sits `gap` voxels away along X (centre to centre).
    lab = np.zeros((6, 6, 120), np.uint8)
    blob(lab, (0, 0, 0), (6, 6, 40), 1)
    far = 39 + gap
    lab[2:4, 2:4, far] = 2  # 4 voxels, far below 20% of C_max
    d = classify(lab, min_tumor_voxels=1)
    assert (d.tumor_voxels == 4) is kept
    assert d.abnormal is kept


def test_distance_just_under_27_diagonal():
    # Offsets (0, 19, 19): sqrt(722) = 26.87 < 27 is kept; (0, 19, 20): sqrt(761) = 27.59 is not.
    for dy, dx, kept in ((19, 19, True), (19, 20, False)):
        lab = np.zeros((3, 60, 60), np.uint8)
        blob(lab, (0, 0, 0), (3, 20, 20), 1)
        lab[1, 19 + dy, 19 + dx] = 2
        assert math.isclose(math.hypot(dy, dx) < 27, kept)
        assert (classify(lab, min_tumor_voxels=1).tumor_voxels == 1) is kept


@pytest.mark.parametrize(("size", "kept"), [(200, False), (201, True)])
def test_size_ratio_at_and_above_20_percent(size, kept):
    # C_max has 1000 voxels; the far component (100 voxels away) is kept only if > 200 voxels.
    lab = np.zeros((10, 10, 400), np.uint8)
    blob(lab, (0, 0, 0), (10, 10, 10), 1)
    far = np.zeros(size, np.uint8) + 2
    line = lab[0:1, 0:1, 150 : 150 + size]
    line[...] = far.reshape(1, 1, size)
    d = classify(lab, min_tumor_voxels=1)
    assert (d.tumor_voxels == size) is kept


def test_ratio_just_below_20_percent_is_removed():
    lab = np.zeros((10, 10, 400), np.uint8)
    blob(lab, (0, 0, 0), (10, 10, 10), 1)
    lab[0, 0, 150:349] = 2  # 199 voxels < 200
    assert classify(lab, min_tumor_voxels=1).tumor_voxels == 0


def test_tie_for_largest_takes_first_in_raster_order():
    lab = np.zeros((1, 1, 200), np.uint8)
    lab[0, 0, 0:10] = 1
    lab[0, 0, 100:110] = 2
    # Both have 10 voxels; the first (pancreas) is C_max, the tumour is 90 away but 100% of C_max.
    d = classify(lab, keep_ratio=1.0, min_tumor_voxels=1)
    assert d.tumor_voxels == 0 and d.pancreas_voxels == 10


def test_tumors_are_components_in_input_coordinates():
    lab = np.zeros((30, 30, 30), np.uint8)
    blob(lab, (5, 5, 5), (20, 20, 20), 1)
    blob(lab, (6, 6, 6), (3, 3, 3), 2)
    blob(lab, (15, 15, 15), (4, 4, 4), 2)
    d = classify(lab, spacing=(1, 1, 1), min_tumor_voxels=1)
    assert [t.voxels for t in d.tumors] == [64, 27]
    assert d.tumors[0].bbox == ((15, 19), (15, 19), (15, 19))
    assert d.tumors[0].centroid == (16.5, 16.5, 16.5)
    assert d.tumors[1].volume_ml == pytest.approx(0.027)


def test_to_dict_is_json_ready():
    import json

    lab = np.zeros((10, 10, 10), np.uint8)
    lab[2:8, 2:8, 2:8] = 2
    text = json.dumps(classify(lab, spacing=(1, 1, 1)).to_dict())
    assert '"tumor_voxels": 216' in text


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (np.zeros((4, 4), np.uint8), "3-D"),
        (np.zeros((4, 4, 4, 1), np.uint8), "3-D"),
        (np.zeros((4, 4, 4), np.int32), "uint8"),
        (np.zeros((4, 4, 4), np.float32), "uint8"),
        (np.full((4, 4, 4), 4, np.uint8), "found 4"),
        (np.zeros((0, 4, 4), np.uint8), "empty"),
        ([[[0]]], "numpy array"),
    ],
)
def test_rejects_bad_labels(labels, match):
    with pytest.raises(ValueError, match=match):
        classify(labels)


@pytest.mark.parametrize("spacing", [(1, 1), (0, 1, 1), (1, -1, 1), (1, float("nan"), 1), (1, 1, float("inf"))])
def test_rejects_bad_spacing(spacing):
    with pytest.raises(ValueError, match="spacing"):
        classify(np.zeros((2, 2, 2), np.uint8), spacing)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"keep_ratio": 1.5}, "keep_ratio"), ({"keep_distance": 0}, "keep_distance"),
     ({"keep_distance": float("nan")}, "keep_distance"), ({"min_tumor_voxels": -1}, "min_tumor_voxels"),
     ({"min_duct_voxels": 2.5}, "min_duct_voxels")],
)
def test_rejects_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        classify(np.zeros((2, 2, 2), np.uint8), **kwargs)


def test_fuse_is_or():
    lab = np.zeros((8, 8, 8), np.uint8)
    normal = classify(lab)
    lab[1:7, 1:7, 1:7] = 2
    abnormal = classify(lab)
    assert fuse(normal, abnormal) and fuse(abnormal, normal) and not fuse(normal, normal)
    assert fuse(False, True) and not fuse(False)
    assert isinstance(abnormal, Decision)
    with pytest.raises(ValueError):
        fuse()
    with pytest.raises(ValueError):
        fuse("yes")
