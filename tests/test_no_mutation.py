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
    d = classify(labels, (1, 1, 1), min_tumor_voxels=1)
    assert d.labels.flags.writeable and d.abnormal


def test_sliding_window_read_only(labels):
    out = sliding_window_inference(labels, lambda b: b[:, 0].astype(np.uint8), pad_value=0)
    assert np.array_equal(out, labels)


def test_preprocessing_read_only(labels):
    ct = frozen(labels.astype(np.int16) * 100)
    resample_image(ct, (2, 1, 1), (1, 1, 1))
    labels_to_grid(labels, (1, 1, 1), (15, 20, 25), (2, 2, 2))
    Normalization().apply(ct)


def test_components_read_only(labels):
    cc, n = label_components(labels)
    cc.flags.writeable = False
    component_stats(cc, n, centroids=True)
    label_histogram(labels)
