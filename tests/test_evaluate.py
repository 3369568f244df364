"""Evaluation reports, the ROC/AUC, and the whole path: phantom -> train -> evaluate -> ONNX parity."""

from __future__ import annotations

import json
import math

import numpy as np
import onnxruntime as ort
import pytest

from s4c import contract
from s4c.evaluation.evaluate import evaluate, roc, summarize
from s4c.training.cv import cross_validate


def test_roc_auc_against_bruteforce():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 20, 40).astype(float)
    truth = rng.integers(0, 2, 40)
    fpr, tpr, auc = roc(scores, truth)
    pos, neg = scores[truth == 1], scores[truth == 0]
    pairs = [(1.0 if p > n else 0.5 if p == n else 0.0) for p in pos for n in neg]
    assert auc == pytest.approx(np.mean(pairs))
    assert (fpr[0], tpr[0]) == (0.0, 0.0) and (fpr[-1], tpr[-1]) == (1.0, 1.0)
    f, t = np.asarray(fpr), np.asarray(tpr)
    assert float(np.sum(np.diff(f) * (t[1:] + t[:-1]) / 2)) == pytest.approx(auc)  # trapezoid area


def _case(cid, abnormal, art, ven, tumor=50):
    def phase(pred):
        return {"abnormal_pred": pred, "tumor_voxels": tumor if pred else 0, "duct_voxels": 0,
                "dsc_pancreas": 0.8, "dsc_tumor": 0.5 if abnormal else math.nan, "dsc_duct": math.nan}
    return {"case_id": cid, "abnormal": abnormal, "arterial": phase(art), "venous": phase(ven),
            "fused_pred": int(art or ven)}


def test_summary_counts_and_keys():
    cases = [_case("a", 1, 1, 0), _case("b", 1, 0, 0), _case("c", 0, 0, 1), _case("d", 0, 0, 0)]
    r = summarize(cases)
    assert (r["fused"]["misses"], r["fused"]["wrong_calls"]) == (1, 1)
    assert (r["arterial"]["misses"], r["venous"]["wrong_calls"]) == (1, 1)
    for key in ("sensitivity", "specificity", "misses", "wrong_calls", "n_abnormal", "n_normal",
                "sensitivity_ci95", "specificity_ci95"):
        assert key in r["fused"] and key in r["arterial"]
    for key in ("dsc_normal_pancreas", "dsc_abnormal_pancreas", "dsc_tumor"):
        assert r["venous"][key] == pytest.approx(0.8 if "pancreas" in key else 0.5)


def test_whole_path_phantom_train_evaluate_export(tmp_path):
    from s4c.cli import main

    data = tmp_path / "cohort"
    assert main(["phantom", "--out", str(data), "--normal", "2", "--abnormal", "2", "--seed", "4",
                 "--shape", "64", "96", "96", "--spacing", "3", "3.3", "3.3"]) == 0
    models = tmp_path / "models"
    for phase in ("arterial", "venous"):
        assert main(["train", "--data", str(data), "--phase", phase, "--out", str(tmp_path / phase),
                     "--iterations", "2", "--batch-size", "2", "--width", "4", "--threads", "1",
                     "--no-progress"]) == 0
        models.mkdir(exist_ok=True)
        (models / f"default_{phase}.pt").write_bytes((tmp_path / phase / "model.pt").read_bytes())
    assert main(["train", "--preset", "locator", "--data", str(data), "--out", str(tmp_path / "loc"),
                 "--iterations", "2", "--width", "4", "--threads", "1", "--no-progress"]) == 0
    (models / "default_locator.pt").write_bytes((tmp_path / "loc" / "model.pt").read_bytes())
    full = evaluate(data, tmp_path / "eval_full", models=models, threads=1, progress=False, mode="full")
    assert full["mode"] == "full" and full["arterial"]["locator_recall"] is None
    report = evaluate(data, tmp_path / "eval", models=models, threads=1, progress=False)
    saved = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert saved["mode"] == "roi"
    for p in ("arterial", "venous"):
        assert 0.0 <= saved[p]["locator_recall"] <= 1.0
        assert 1 <= saved[p]["patches_per_case"] <= full[p]["patches_per_case"]
    cases = json.loads((tmp_path / "eval" / "cases.json").read_text())
    assert all(c[p]["mode"] == "roi" and "roi_zyx" in c[p] for c in cases for p in ("arterial", "venous"))
    assert set(saved) >= {"arterial", "venous", "fused"}
    assert saved["fused"]["n_abnormal"] == 2 and saved["fused"]["n_normal"] == 2
    assert report["fused"]["misses"] == saved["fused"]["misses"]
    assert all(isinstance(saved[p][k], (float, type(None))) for p in ("arterial", "venous")
               for k in ("dsc_normal_pancreas", "dsc_abnormal_pancreas", "dsc_tumor"))
    md = (tmp_path / "eval" / "report.md").read_text()
    assert "| Phase | Method | N.Pancreas |" in md and "| Arterial&Venous |" in md
    assert (tmp_path / "eval" / "roc.png").exists()
    assert main(["export", "onnx", "--checkpoint", str(models / "default_venous.pt"), "--out",
                 str(tmp_path / "v.onnx")]) == 0
    from s4c.inference.predictor import TorchPredictor

    x = np.random.default_rng(2).normal(40, 120, (2, 1, 64, 64, 64)).astype(np.float32)
    onnx_labels = ort.InferenceSession(str(tmp_path / "v.onnx")).run(
        [contract.SEG_LABELS], {contract.SEG_INPUT: x})[0]
    torch_labels = TorchPredictor.from_checkpoint(models / "default_venous.pt", device="cpu")(x)
    assert (onnx_labels == torch_labels).mean() >= 0.999


def test_cv_rejects_a_fold_without_normals(tmp_path):
    from test_training import tiny_cohort

    tiny_cohort(tmp_path, n_normal=1, n_abnormal=4)
    with pytest.raises(ValueError, match="no normal case"):
        cross_validate(tmp_path, tmp_path / "cv", folds=2, iterations=1, batch_size=1, width=4, progress=False)
    assert not (tmp_path / "cv" / "fold0").exists()


def test_cv_roi_mode_trains_a_locator_per_fold(tmp_path):
    from test_training import tiny_cohort

    tiny_cohort(tmp_path, n_normal=2, n_abnormal=2)
    report = cross_validate(tmp_path, tmp_path / "cv", folds=2, mode="roi", preset="roi", progress=False,
                            iterations=1, batch_size=1, width=4, relabel_invisible=False,
                            locator_kwargs={"iterations": 1, "width": 4, "batch_size": 1})
    for k in range(2):
        assert (tmp_path / "cv" / f"fold{k}" / "locator" / "model.pt").exists()
        assert (tmp_path / "cv" / f"fold{k}" / "arterial" / "model.pt").exists()
    assert report["mode"] == "roi" and report["preset"] == "roi"
    cases = json.loads((tmp_path / "cv" / "cases.json").read_text())
    assert sorted(c["fold"] for c in cases) == [0, 0, 1, 1]
    assert all(c["arterial"]["mode"] == "roi" for c in cases)
