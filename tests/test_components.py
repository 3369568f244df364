"""One-pass component statistics and labelling against scipy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import ndimage

from s4c._jit import HAVE_NUMBA
from s4c.components import component_stats, label_components, label_histogram

BACKENDS = ["numpy", pytest.param("numba", marks=pytest.mark.skipif(not HAVE_NUMBA, reason="no numba"))]


@st.composite
def masks(draw):
    shape = tuple(draw(st.integers(1, 12)) for _ in range(3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return rng.random(shape) < draw(st.sampled_from([0.0, 0.05, 0.3, 0.7, 1.0]))


@given(masks())
def test_labelling_matches_scipy_numbering(mask):
    cc, n = label_components(mask)
    ref, n_ref = ndimage.label(mask, structure=np.ones((3, 3, 3)))
    assert n == n_ref
    assert np.array_equal(cc, ref)  # same ids: both number components in raster order


@pytest.mark.parametrize("shape", [(1, 1, 7), (1, 9, 1), (10, 1, 1), (1, 1, 1), (2, 1, 1)])
def test_line_shaped_volumes(shape):
    mask = np.zeros(shape, bool)
    mask.reshape(-1)[::2] = True
    cc, n = label_components(mask)
    assert cc.shape == shape and n == int(mask.sum())


@pytest.mark.parametrize("backend", BACKENDS)
@given(mask=masks())
def test_stats_match_scipy(backend, mask):
    cc, n = label_components(mask)
    s = component_stats(cc, n, centroids=True, backend=backend)
    assert s.counts[1:].tolist() == np.bincount(cc.ravel(), minlength=n + 1)[1:].tolist()
    for i, sl in enumerate(ndimage.find_objects(cc), start=1):
        assert s.box(i) == sl
    if n:
        ref = np.asarray(ndimage.center_of_mass(mask, cc, range(1, n + 1)))
        assert np.allclose(s.centroids[1:], ref)


def test_histogram():
    lab = np.random.default_rng(0).integers(0, 4, (7, 8, 9)).astype(np.uint8)
    assert label_histogram(lab).tolist() == np.bincount(lab.ravel(), minlength=4).tolist()
    assert label_histogram(lab[::2, 1:, ::3]).tolist() == np.bincount(lab[::2, 1:, ::3].ravel(), minlength=4).tolist()
