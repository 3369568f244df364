"""The synthetic dual-phase phantom: determinism, formats, anatomy/label sanity and the cohort writer.

Cases are generated on small grids: ``FULL`` keeps the default 240 x 320 x 320 mm field of view at 5 mm
voxels; ``CROP`` keeps the default 2.5 mm voxels on a centred 120 x 160 x 160 mm field of view, which
holds the pancreas and resolves the 3-6 mm duct.
"""

from __future__ import annotations

import json
import math

import cc3d
import numpy as np
import pytest
from scipy import ndimage

from s4c.data.cohort import COLUMNS, read_manifest
from s4c.data.phantom import GENERATOR_VERSION, PhantomCase, generate_case, write_cohort
from s4c.io import affine_from_spacing, load_nifti
from s4c.labels import DUCT, MIN_TUMOR_VOXELS, PANCREAS, TUMOR

FULL = {"shape": (48, 64, 64), "spacing": (5.0, 5.0, 5.0)}
CROP = {"shape": (48, 64, 64), "spacing": (2.5, 2.5, 2.5)}
PHASES = (("arterial", "arterial_label"), ("venous", "venous_label"))


def arrays(case: PhantomCase):
    return case.arterial, case.venous, case.arterial_label, case.venous_label


@pytest.fixture(scope="module")
def normal_cases() -> list[PhantomCase]:
    return [generate_case(seed, abnormal=False, **FULL) for seed in (0, 1, 2)]


@pytest.fixture(scope="module")
def abnormal_cases() -> list[PhantomCase]:
    cases = [generate_case(seed, abnormal=True, **CROP) for seed in range(10)]
    # Make sure the duct checks are not vacuous: add seeds until one case has a duct.
    seed = 10
    while not any(c.meta["duct"]["present"] for c in cases):
        cases.append(generate_case(seed, abnormal=True, **CROP))
        seed += 1
    return cases


# ---------------------------------------------------------------- determinism


def test_same_seed_is_bit_identical_and_seed_sequence_is_not_mutated():
    a = generate_case(7, abnormal=True, **FULL)
    b = generate_case(7, abnormal=True, **FULL)
    for x, y in zip(arrays(a), arrays(b), strict=True):
        assert np.array_equal(x, y)
    assert a.meta == b.meta
    ss = np.random.SeedSequence(7)
    c = generate_case(ss, abnormal=True, **FULL)
    d = generate_case(ss, abnormal=True, **FULL)
    assert ss.n_children_spawned == 0
    for x, y, z in zip(arrays(a), arrays(c), arrays(d), strict=True):
        assert np.array_equal(x, y) and np.array_equal(y, z)


def test_different_seeds_differ():
    a = generate_case(3, abnormal=False, **FULL)
    b = generate_case(4, abnormal=False, **FULL)
    assert not np.array_equal(a.arterial, b.arterial)
    assert not np.array_equal(a.venous_label, b.venous_label)


def test_anatomy_does_not_depend_on_the_grid():
    """Shape/spacing only change the sampling: the same seed gives the same tumour and gland volume."""
    fine = generate_case(5, abnormal=True, shape=(96, 128, 128), spacing=(2.5, 2.5, 2.5))
    coarse = generate_case(5, abnormal=True, **FULL)
    assert fine.meta["tumor"]["nominal_diameter_mm"] == coarse.meta["tumor"]["nominal_diameter_mm"]
    assert fine.meta["venous_shift_zyx_mm"] == coarse.meta["venous_shift_zyx_mm"]
    vol_fine = (fine.arterial_label > 0).sum() * 2.5**3
    vol_coarse = (coarse.arterial_label > 0).sum() * 5.0**3
    assert vol_coarse == pytest.approx(vol_fine, rel=0.2)


# ---------------------------------------------------------------- formats


@pytest.mark.parametrize("abnormal", [False, True])
def test_dtypes_shapes_and_affine(abnormal):
    case = generate_case(11, abnormal=abnormal, case_id="x", **FULL)
    assert case.case_id == "x" and case.abnormal is abnormal
    for img, lab in ((case.arterial, case.arterial_label), (case.venous, case.venous_label)):
        assert img.dtype == np.int16 and img.shape == FULL["shape"]
        assert lab.dtype == np.uint8 and lab.shape == FULL["shape"]
        assert lab.max() <= 3
        assert img.min() >= -1024 and img.max() <= 3071
    assert case.spacing == FULL["spacing"]
    assert np.array_equal(case.affine, affine_from_spacing(FULL["spacing"]))
    json.dumps(case.meta)  # JSON-serialisable
    assert case.meta["generator_version"] == GENERATOR_VERSION


def test_inputs_are_not_mutated():
    shape, spacing = [48, 64, 64], [5.0, 5.0, 5.0]
    generate_case(1, abnormal=True, shape=shape, spacing=spacing)
    assert shape == [48, 64, 64] and spacing == [5.0, 5.0, 5.0]


# ---------------------------------------------------------------- anatomy and labels


def test_normal_cases_have_pancreas_only(normal_cases):
    for case in normal_cases:
        for lab in (case.arterial_label, case.venous_label):
            assert (lab == PANCREAS).sum() > 100
            assert not np.isin(lab, (TUMOR, DUCT)).any()
        assert case.meta["tumor"] is None and not case.meta["duct"]["present"]


def test_venous_phase_is_a_shifted_acquisition(normal_cases):
    for case in normal_cases:
        shift = case.meta["venous_shift_zyx_mm"]
        assert all(abs(s) <= 5.0 for s in shift) and math.hypot(*shift) > 0
        assert not np.array_equal(case.arterial_label, case.venous_label)
        n_a, n_v = (case.arterial_label > 0).sum(), (case.venous_label > 0).sum()
        assert n_v == pytest.approx(n_a, rel=0.15)


def test_air_outside_the_body(normal_cases):
    for case in normal_cases:
        for img in (case.arterial, case.venous):
            # Anterior corners of every slice (Y is anterior at high index) are far outside the torso.
            corners = img[:, -4:, :4], img[:, -4:, -4:]
            assert all((c < -900).all() for c in corners)
            assert img.min() >= -1024


def test_abnormal_tumour_size_and_connectivity(abnormal_cases):
    for case in abnormal_cases:
        for _img_name, lab_name in PHASES:
            lab = getattr(case, lab_name)
            tumor = lab == TUMOR
            assert tumor.sum() >= MIN_TUMOR_VOXELS, case.meta["tumor"]
            cc = cc3d.connected_components(lab > 0, connectivity=26)
            largest = np.argmax(np.bincount(cc.ravel())[1:]) + 1
            assert (cc[tumor] == largest).all()
        assert case.meta["tumor"]["voxels"]["arterial"] == (case.arterial_label == TUMOR).sum()


def test_phase_enhancement(abnormal_cases, normal_cases):
    contrast = {"arterial": [], "venous": []}
    for case in abnormal_cases + normal_cases:
        pa = case.arterial[case.arterial_label == PANCREAS].mean()
        pv = case.venous[case.venous_label == PANCREAS].mean()
        assert pa > pv  # the gland enhances most in the pancreatic (late arterial) phase
    for case in abnormal_cases:
        for img_name, lab_name in PHASES:
            img, lab = getattr(case, img_name), getattr(case, lab_name)
            contrast[img_name].append(img[lab == TUMOR].mean() - img[lab == PANCREAS].mean())
    # PNETs are mostly hyper-enhancing in the arterial phase and subtler in the venous one.
    assert np.mean(contrast["arterial"]) > np.mean(contrast["venous"]) + 10


def test_duct_is_darker_than_the_gland(abnormal_cases):
    """Duct voxels are darker than the gland parenchyma around them.

    The reference is the interior of the gland (away from its surface and from the lesions): surface
    voxels are partial-volumed with fat, which would make the plain pancreas mean a moving target.
    """
    seen = 0
    for case in abnormal_cases:
        if not case.meta["duct"]["present"]:
            assert not ((case.arterial_label == DUCT).any() or (case.venous_label == DUCT).any())
            continue
        for img_name, lab_name in PHASES:
            img, lab = getattr(case, img_name), getattr(case, lab_name)
            duct = lab == DUCT
            assert duct.any()
            parenchyma = ndimage.binary_erosion(lab > 0) & (lab == PANCREAS) & ~ndimage.binary_dilation(lab >= TUMOR)
            assert img[duct].mean() < img[parenchyma].mean() - 5
            seen += 1
    assert seen


def test_tumour_meta_is_consistent(abnormal_cases):
    patterns = {c.meta["tumor"]["pattern"] for c in abnormal_cases}
    assert patterns <= {"typical", "arterial_only", "venous_only"}
    for case in abnormal_cases:
        t = case.meta["tumor"]
        if t["pattern"] == "arterial_only":
            assert t["visible"] == {"arterial": True, "venous": False}
        if t["pattern"] == "venous_only":
            assert t["visible"] == {"arterial": False, "venous": True}
        assert t["location"] in ("head", "body", "tail")


# ---------------------------------------------------------------- write_cohort


def test_write_cohort(tmp_path):
    manifest = write_cohort(tmp_path, n_normal=2, n_abnormal=2, seed=21, **FULL)
    assert manifest == tmp_path / "manifest.csv"
    assert manifest.read_text().splitlines()[0] == ",".join(COLUMNS)
    entries = read_manifest(manifest)
    assert [e.case_id for e in entries] == [f"case_{i:04d}" for i in range(4)]
    assert sorted(e.abnormal for e in entries) == [0, 0, 1, 1]
    children = np.random.SeedSequence(21).spawn(4)
    for i, e in enumerate(entries):
        for col in ("arterial", "arterial_label", "venous", "venous_label"):
            assert getattr(e, col) == f"cases/{e.case_id}/{col}.nii.gz"
        vols = {col: load_nifti(e.path(tmp_path, col)) for col in ("arterial", "arterial_label", "venous",
                                                                  "venous_label")}
        assert vols["arterial"].array.dtype == np.int16 and vols["venous"].array.dtype == np.int16
        assert vols["arterial_label"].array.dtype == np.uint8 and vols["venous_label"].array.dtype == np.uint8
        for v in vols.values():
            assert v.spacing == pytest.approx(FULL["spacing"])
            assert v.array.shape == FULL["shape"]
        ref = generate_case(children[i], abnormal=bool(e.abnormal), case_id=e.case_id, **FULL)
        assert np.array_equal(vols["arterial"].array, ref.arterial)
        assert np.array_equal(vols["venous_label"].array, ref.venous_label)
        assert ((vols["arterial_label"].array == TUMOR).any()) == bool(e.abnormal)
    info = json.loads((tmp_path / "phantom.json").read_text())
    assert info["generator_version"] == GENERATOR_VERSION and info["seed"] == 21
    assert info["shape"] == list(FULL["shape"]) and info["spacing"] == list(FULL["spacing"])
    assert [c["case_id"] for c in info["cases"]] == [e.case_id for e in entries]


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"n_normal": -1, "n_abnormal": 1}, "-1"),
    ({"n_normal": 1, "n_abnormal": -3}, "-3"),
    ({"n_normal": 0, "n_abnormal": 0}, "0 + 0"),
    ({"n_normal": 1.5, "n_abnormal": 1}, "1.5"),
    ({"n_normal": 1, "n_abnormal": 1, "shape": (48, 64)}, "(48, 64)"),
    ({"n_normal": 1, "n_abnormal": 1, "shape": (48, 8, 64)}, "8"),
    ({"n_normal": 1, "n_abnormal": 1, "shape": (48.5, 64, 64)}, "48.5"),
    ({"n_normal": 1, "n_abnormal": 1, "shape": (48, -64, 64)}, "-64"),
    ({"n_normal": 1, "n_abnormal": 1, "spacing": (5.0, 0.0, 5.0)}, "0.0"),
    ({"n_normal": 1, "n_abnormal": 1, "spacing": (5.0, 5.0, -2.0)}, "-2.0"),
    ({"n_normal": 1, "n_abnormal": 1, "spacing": (float("nan"), 5.0, 5.0)}, "nan"),
    ({"n_normal": 1, "n_abnormal": 1, "spacing": (5.0, 5.0)}, "(5.0, 5.0)"),
])
def test_write_cohort_rejects_bad_input(tmp_path, kwargs, needle):
    with pytest.raises(ValueError) as err:
        write_cohort(tmp_path, seed=0, **kwargs)
    assert needle in str(err.value)
    assert not (tmp_path / "manifest.csv").exists()


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"seed": -5}, "-5"),
    ({"seed": 1, "shape": (15, 64, 64)}, "15"),
    ({"seed": 1, "spacing": (5.0, float("inf"), 5.0)}, "inf"),
])
def test_generate_case_rejects_bad_input(kwargs, needle):
    with pytest.raises(ValueError) as err:
        generate_case(abnormal=False, **{**FULL, **kwargs})
    assert needle in str(err.value)


def test_tumour_needs_the_pancreas_in_the_field_of_view():
    with pytest.raises(ValueError, match="does not contain the pancreas"):
        generate_case(0, abnormal=True, shape=(16, 16, 16), spacing=(1.0, 1.0, 1.0))
