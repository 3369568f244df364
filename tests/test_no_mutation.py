"""Public functions never write to their inputs: every call here gets read-only arrays."""

from __future__ import annotations

import numpy as np
import pytest

from s4c.components import component_stats, label_components, label_histogram
from s4c.inference.sliding_window import sliding_window_inference
from s4c.postprocess import classify
from s4c.preprocessing import Normalization, labels_to_grid, resample_image


def frozen(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    a.flags.writeable = False
    return a


@pytest.fixture
def labels() -> np.ndarray:
    lab = np.zeros((30, 40, 50), np.uint8)
    lab[5:20, 5:30, 5:40] = 1
    lab[8:12, 8:12, 8:12] = 2
    lab[22:24, 33:35, 45:47] = 3
    return frozen(lab)


def test_classify_read_only(labels):
    before = labels.copy()
    d = classify(labels, (1, 1, 1), min_tumor_voxels=1)
    assert d.labels.flags.writeable and d.abnormal and d.tumor_voxels == 64
    assert not np.shares_memory(d.labels, labels)  # a new array, not a view of the read-only input
    assert np.array_equal(labels, before)


def test_sliding_window_read_only(labels):
    out = sliding_window_inference(labels, lambda b: b[:, 0].astype(np.uint8), pad_value=0)
    assert np.array_equal(out, labels) and out.flags.writeable


def test_preprocessing_read_only(labels):
    ct = frozen(labels.astype(np.int16) * 100)
    before = ct.copy()
    fine = resample_image(ct, (2, 1, 1), (1, 1, 1))  # z twice as fine
    assert fine.shape == (60, 40, 50) and fine.min() == 0 and fine.max() == 300
    coarse = labels_to_grid(labels, (1, 1, 1), (15, 20, 25), (2, 2, 2))
    assert np.array_equal(coarse, labels[1::2, 1::2, 1::2])  # nearest neighbour at the coarse voxel centres
    norm = Normalization().apply(ct)
    assert norm.dtype == np.float32 and 0.0 <= norm.min() and norm.max() <= 1.0
    assert norm[0, 0, 0] == pytest.approx(160 / 460)  # 0 HU in the [-160, 300] window
    assert np.array_equal(ct, before)


def test_components_read_only(labels):
    cc, n = label_components(labels)
    assert n == 2  # the gland (with its tumour) and the separate duct
    cc.flags.writeable = False
    stats = component_stats(cc, n, centroids=True)
    assert sorted(int(c) for c in stats.counts[1:]) == [8, 13061 + 64]
    assert label_histogram(labels).tolist() == [60000 - 13061 - 64 - 8, 13061, 64, 8]
