"""One loader and one frame: every path reads scans through :func:`s4c.io.load_canonical` and writes
labels back on the file's own grid.

A phantom is stored three ways: as generated (RAS), LPS (X and Y reversed) and flipped and permuted
(Z reversed, X and Y swapped). Each copy has the same world coordinates for every voxel, so each path
must give the same labels, metrics and decisions for all three.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from s4c.data.cohort import CaseEntry, read_manifest, write_manifest
from s4c.data.phantom import generate_case
from s4c.evaluation.evaluate import evaluate_case
from s4c.inference.pipeline import run_phase
from s4c.inference.predictor import load_predictors
from s4c.io import check_orthogonal, load_canonical, load_canonical_pair, load_nifti, save_nifti, to_canonical
from s4c.labels import PHASES
from s4c.outputs import write_results
from s4c.serving.scans import read_scan
from s4c.training.data import load_case

SHAPE, SPACING = (40, 72, 64), (3.0, 2.5, 2.0)


def _reorient(array: np.ndarray, affine: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """The same voxels stored another way: (Z, Y, X) array and its (i, j, k) affine, world unchanged."""
    a, m = array, affine.copy()
    xyz = a.transpose(2, 1, 0)  # (i, j, k)
    if kind == "lps":  # reverse i and j
        n = xyz.shape
        flip = np.diag([-1.0, -1.0, 1.0, 1.0])
        flip[0, 3], flip[1, 3] = n[0] - 1, n[1] - 1
        xyz, m = xyz[::-1, ::-1, :], m @ flip
    elif kind == "flipped":  # reverse k, then swap i and j
        n = xyz.shape
        flip = np.diag([1.0, 1.0, -1.0, 1.0])
        flip[2, 3] = n[2] - 1
        xyz, m = xyz[:, :, ::-1], m @ flip
        swap = np.array([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=np.float64)
        xyz, m = xyz.transpose(1, 0, 2), m @ swap
    elif kind != "ras":
        raise ValueError(kind)
    return np.ascontiguousarray(xyz.transpose(2, 1, 0)), m


KINDS = ("ras", "lps", "flipped")


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory):
    """{kind: cohort root}, one abnormal case each, the same anatomy stored three ways."""
    case = generate_case(11, abnormal=True, shape=SHAPE, spacing=SPACING, case_id="frame")
    affine = case.affine.copy()
    affine[:3, 3] = (-80.0, 40.0, 12.5)
    roots = {}
    for kind in KINDS:
        root = tmp_path_factory.mktemp(kind)
        files = {}
        for phase in PHASES:
            for suffix, array in (("", getattr(case, phase)), ("_label", getattr(case, f"{phase}_label"))):
                arr, aff = _reorient(np.asarray(array), affine, kind)
                rel = f"cases/frame/{phase}{suffix}.nii.gz"
                save_nifti(root / rel, arr, aff)
                files[f"{phase}{suffix}"] = rel
        write_manifest(root, [CaseEntry(case_id="frame", abnormal=1, **files)])
        roots[kind] = root
    return roots


def test_copies_differ_on_disk_but_not_in_the_canonical_frame(cohorts):
    ras = load_canonical(cohorts["ras"] / "cases/frame/arterial.nii.gz")
    for kind in ("lps", "flipped"):
        path = cohorts[kind] / "cases/frame/arterial.nii.gz"
        raw = load_nifti(path)
        assert not np.array_equal(raw.affine, ras.affine)  # the copy really is stored another way
        canon = load_canonical(path)
        assert np.array_equal(canon.array, ras.array)
        assert np.allclose(canon.affine, ras.affine)
        assert canon.spacing == ras.spacing == SPACING
        # And back: the canonical array returns to the file's own voxel order.
        assert np.array_equal(canon.to_source(canon.array), raw.array)
        # The same world point from either index.
        zyx = (3, 17, 29)
        src = canon.source_index(zyx)
        w_canon = canon.affine @ np.array([zyx[2], zyx[1], zyx[0], 1.0])
        w_src = raw.affine @ np.array([src[2], src[1], src[0], 1.0])
        assert np.allclose(w_canon, w_src)


def test_training_loads_the_same_case_from_every_copy(cohorts):
    ref = None
    for kind in KINDS:
        (entry,) = read_manifest(cohorts[kind])
        case = load_case(cohorts[kind], entry, "arterial", None)
        if ref is None:
            ref = case
            assert (case.labels == 2).any()
            continue
        assert np.array_equal(case.image, ref.image) and np.array_equal(case.labels, ref.labels)
        assert case.spacing == ref.spacing


@pytest.fixture(scope="module")
def predictors():
    return load_predictors(None)


def test_evaluation_rows_are_the_same_for_every_copy(cohorts, predictors):
    rows = {}
    for kind in KINDS:
        (entry,) = read_manifest(cohorts[kind])
        row = evaluate_case(cohorts[kind], entry, predictors, mode="full")
        for phase in PHASES:
            row[phase].pop("seconds")
        rows[kind] = row
    assert rows["ras"]["arterial"]["dsc_pancreas"] > 0.3  # the network sees the anatomy the right way up
    same = json.dumps(rows["ras"], sort_keys=True)  # NaN DSCs (no duct) compare equal as text
    assert json.dumps(rows["lps"], sort_keys=True) == same and json.dumps(rows["flipped"], sort_keys=True) == same


def test_labels_come_back_on_each_file_grid(cohorts, predictors, tmp_path):
    """The demo's and the client's reader and the one writer: run on the canonical array, write back,
    and the written labels equal the RAS result reoriented onto each copy's grid."""
    labels, scans = {}, {}
    for kind in KINDS:
        scan = read_scan(cohorts[kind] / "cases/frame/arterial.nii.gz")
        pred, spec = predictors["arterial"]
        labels[kind] = run_phase(scan.ct, scan.spacing, pred, spec, mode="full").decision.labels
        scans[kind] = scan
    assert (labels["ras"] > 0).any()
    for kind in KINDS:
        assert np.array_equal(labels[kind], labels["ras"])
        out = tmp_path / kind
        report = {"abnormal": False, "phases": {"arterial": {"tumors": []}}}
        paths = write_results(out, {"arterial": scans[kind].volume}, {"arterial": labels[kind]}, report)
        written = load_nifti(paths["arterial_labels"])
        src = load_nifti(cohorts[kind] / "cases/frame/arterial.nii.gz")
        assert np.array_equal(written.affine, src.affine) and written.array.shape == src.array.shape
        ras_on_grid, _ = _reorient(labels["ras"], np.eye(4), kind)
        assert np.array_equal(written.array, ras_on_grid)


def test_classify_cli_gives_one_answer_for_every_copy(cohorts):
    answers = []
    for kind in KINDS:
        res = subprocess.run([sys.executable, "-m", "s4c.cli", "classify", "--labels",
                              str(cohorts[kind] / "cases/frame/arterial_label.nii.gz")],
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        answers.append(json.loads(res.stdout))
    assert answers[0]["tumor_voxels"] > 0
    assert answers[1] == answers[0] and answers[2] == answers[0]


def test_a_label_map_on_another_grid_is_refused(cohorts, tmp_path):
    img = cohorts["ras"] / "cases/frame/arterial.nii.gz"
    lab = load_nifti(cohorts["ras"] / "cases/frame/arterial_label.nii.gz")
    moved = lab.affine.copy()
    moved[:3, 3] += 7.5
    bad = save_nifti(tmp_path / "label.nii.gz", lab.array, moved)
    with pytest.raises(ValueError, match="affine differs"):
        load_canonical_pair(img, bad, "case x")


def test_sheared_grid_is_refused_and_input_not_mutated():
    from s4c.io import Volume

    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    affine[0, 2] = 0.5  # k axis leans into x
    with pytest.raises(ValueError, match="sheared"):
        check_orthogonal(affine, "tilted.nii.gz")
    array = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    before = array.copy()
    lps = np.diag([-1.0, -1.0, 1.0, 1.0])
    canon = to_canonical(Volume(array, (1.0, 1.0, 1.0), lps), "x")
    assert np.array_equal(array, before)
    assert np.array_equal(canon.array, array[:, ::-1, ::-1])
