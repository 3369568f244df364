"""Normalisation constants and resampling to a working spacing and back."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from s4c.preprocessing import Normalization, labels_to_grid, needs_resampling, resample_image, resampled_shape


def test_normalisation_maps_window_to_unit_range():
    n = Normalization(-160, 300)
    x = np.array([-1000, -160, 70, 300, 2000], np.int16)
    assert n.apply(x).tolist() == pytest.approx([0.0, 0.0, 0.5, 1.0, 1.0])
    assert Normalization.from_dict(n.to_dict()) == n
    with pytest.raises(ValueError):
        Normalization(10, 10)


def test_resampled_shape_keeps_extent():
    assert resampled_shape((100, 50, 51), (1.0, 2.0, 0.7), (2.0, 1.0, 1.4)) == (50, 100, 26)
    assert not needs_resampling((1, 1, 1), None)
    assert not needs_resampling((1, 1, 1), (1.0005, 1, 1))
    assert needs_resampling((1, 1, 1), (1.01, 1, 1))


def test_resample_matches_scipy_zoom_grid_mode():
    img = np.random.default_rng(0).normal(size=(12, 16, 9)).astype(np.float32)
    out = resample_image(img, (2.0, 1.0, 1.5), (1.0, 2.0, 1.5))
    assert out.shape == (24, 8, 9) and out.dtype == np.float32
    ref = ndimage.zoom(img.astype(np.float64), (2.0, 0.5, 1.0), order=1, mode="nearest", grid_mode=True)
    assert np.allclose(out, ref, atol=1e-5)


def test_resample_non_integer_ratio_matches_map_coordinates():
    # The output grid has exactly the target spacing (extent rounded), unlike zoom's shape ratio.
    img = np.random.default_rng(2).normal(size=(7, 15, 10)).astype(np.float32)
    s, t = (3.0, 1.0, 0.8), (2.2, 2.0, 1.1)
    out = resample_image(img, s, t)
    axes = [np.clip((np.arange(n) + 0.5) * b / a - 0.5, 0, m - 1)
            for n, m, a, b in zip(out.shape, img.shape, s, t, strict=True)]
    ref = ndimage.map_coordinates(img.astype(np.float64), np.meshgrid(*axes, indexing="ij"), order=1)
    assert np.allclose(out, ref, atol=1e-5)


def test_constant_and_linear_images_are_preserved():
    assert np.allclose(resample_image(np.full((5, 6, 7), 42, np.int16), (1, 1, 1), (0.5, 2, 1)), 42)
    z = np.arange(20, dtype=np.float32)[:, None, None] * np.ones((1, 3, 3), np.float32)
    out = resample_image(z, (1, 1, 1), (0.5, 1, 1))
    inner = out[2:-2, 0, 0]
    # Voxel-centred grid: output voxel j sits at input coordinate (j + 0.5) / 2 - 0.5.
    assert np.allclose(inner, (np.arange(2, 38) + 0.5) / 2 - 0.5)


def test_labels_round_trip_through_finer_grid():
    lab = np.random.default_rng(1).integers(0, 4, (9, 10, 11)).astype(np.uint8)
    # Up-sampling by an integer factor with nearest neighbour and mapping back is exact.
    fine = labels_to_grid(lab, (2, 2, 2), (18, 20, 22), (1, 1, 1))
    assert fine.shape == (18, 20, 22)
    assert np.array_equal(labels_to_grid(fine, (1, 1, 1), lab.shape, (2, 2, 2)), lab)
    assert np.array_equal(labels_to_grid(lab, (2, 2, 2), lab.shape, (2, 2, 2)), lab)


def test_real_ct_resamples_to_working_spacing(real_ct_dir):
    from s4c.io import load_nifti

    vol = load_nifti(real_ct_dir / "example_ct_sm.nii.gz")
    out = resample_image(vol.array, vol.spacing, (2.5, 2.0, 2.0))
    assert out.shape == resampled_shape(vol.array.shape, vol.spacing, (2.5, 2.0, 2.0)) == (36, 152, 183)
    assert abs(float(out.mean()) - float(vol.array.mean())) < 5.0
