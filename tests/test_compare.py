"""The paper's comparison (issue 14): the baseline segmenters (MONAI's 3D U-Net and V-Net) under the
segmenter contract, the section 2.3 classifier on a frozen S4C segmenter, the McNemar arithmetic, the
tables' layouts, and ``s4c compare`` end to end (slow)."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("monai")

from s4c.checkpoint import ModelSpec, classifier_segmenter, load_checkpoint, save_checkpoint  # noqa: E402
from s4c.data.phantom import write_cohort  # noqa: E402
from s4c.evaluation.comparison import (  # noqa: E402
    PAPER,
    mcnemar_table,
    render_comparison_md,
    summarize_comparison,
)
from s4c.evaluation.evaluate import evaluate, summarize  # noqa: E402
from s4c.evaluation.metrics import mcnemar_exact, paired_discordance, wilson_interval  # noqa: E402
from s4c.inference.classifier import ClassifierPredictor, pad_to_multiple  # noqa: E402
from s4c.inference.predictor import OnnxPredictor, TorchPredictor  # noqa: E402
from s4c.labels import ARCHITECTURES, PHASES  # noqa: E402
from s4c.network import PoolThreeClassifier, S4CNet, VNet, build_network  # noqa: E402
from s4c.repository.onnx import export_onnx, read_spec  # noqa: E402
from s4c.training.classifier import train_classifier  # noqa: E402
from s4c.training.compare import parse_methods, parse_widths  # noqa: E402
from s4c.training.stop import TrainingStopped  # noqa: E402
from s4c.training.train import TrainConfig, config_from_preset, poly_lr, train  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


# --- McNemar and the paired counts -------------------------------------------------------------------

@pytest.mark.parametrize(("b", "c", "p"), [(0, 0, 1.0), (1, 6, 0.125), (0, 5, 0.0625), (3, 3, 1.0),
                                          (10, 2, 0.0385742), (0, 1, 1.0), (2, 14, 0.0041809)])
def test_mcnemar_exact_known_values(b, c, p):
    # Hand values: (1, 6): 2 * (1 + 7) / 2^7; (0, 5): 2 / 2^5; (10, 2): 2 * (1 + 12 + 66) / 2^12;
    # (2, 14): 2 * (1 + 16 + 120) / 2^16.
    assert mcnemar_exact(b, c) == pytest.approx(p, rel=1e-5)
    assert mcnemar_exact(c, b) == pytest.approx(p, rel=1e-5)


def test_mcnemar_exact_equals_scipy_binomtest():
    stats = pytest.importorskip("scipy.stats")
    for b in range(0, 15):
        for c in range(0, 15):
            if b + c:
                assert mcnemar_exact(b, c) == pytest.approx(stats.binomtest(b, b + c, 0.5).pvalue, rel=1e-9)
    with pytest.raises(ValueError, match=">= 0"):
        mcnemar_exact(-1, 2)


def test_paired_discordance():
    truth = [1, 1, 1, 0, 0, 0]
    a = [1, 1, 0, 0, 1, 0]  # right, right, wrong, right, wrong, right
    b = [1, 0, 1, 1, 1, 0]  # right, wrong, right, wrong, wrong, right
    assert paired_discordance(truth, a, b) == (2, 1)
    with pytest.raises(ValueError, match="one decision per case"):
        paired_discordance(truth, a, b[:-1])


# --- the tables ------------------------------------------------------------------------------------------

def _cases(decisions: dict[str, list[int]], truth: list[int], tumor: list[int]) -> list[dict]:
    return [{"case_id": f"c{i}", "abnormal": t,
             **{p: {"abnormal_pred": decisions[p][i], "tumor_voxels": tumor[i], "duct_voxels": 0,
                    "dsc_pancreas": 0.8, "dsc_tumor": 0.5 if t else math.nan, "patches": 3, "seconds": 1.0}
                for p in PHASES},
             "fused_pred": int(decisions["arterial"][i] or decisions["venous"][i])} for i, t in enumerate(truth)]


def _comparison():
    truth = [1, 1, 1, 1, 0, 0, 0]
    cases = {
        "s4c": _cases({"arterial": [1, 1, 1, 0, 0, 0, 1], "venous": [0, 1, 0, 0, 0, 0, 0]}, truth,
                      [90, 80, 70, 10, 5, 0, 60]),
        "unet3d": _cases({"arterial": [1, 0, 0, 0, 0, 1, 1], "venous": [0, 0, 0, 0, 0, 0, 0]}, truth,
                         [90, 20, 10, 10, 5, 50, 60]),
    }
    reports = {m: summarize(c) for m, c in cases.items()}
    return summarize_comparison(reports, cases, {"train": "A", "test": "B"}), cases


def test_mcnemar_table_pairs_cases_by_id():
    comparison, cases = _comparison()
    t = comparison["mcnemar"]["unet3d"]
    # Arterial: S4C right on c1, c2, c5 where U-Net is wrong on c1, c2, c5 -> b = 3 (c1, c2, c5); c = 0.
    assert (t["arterial"]["b"], t["arterial"]["c"]) == (3, 0)
    assert t["arterial"]["p"] == pytest.approx(0.25)
    assert (t["fused"]["b"], t["fused"]["c"]) == (3, 0)
    shuffled = {"s4c": cases["s4c"], "unet3d": cases["unet3d"][::-1]}
    assert mcnemar_table(shuffled)["unet3d"] == t
    with pytest.raises(ValueError, match="different cases"):
        mcnemar_table({"s4c": cases["s4c"], "unet3d": cases["unet3d"][:-1]})


def test_report_layouts_follow_the_paper():
    comparison, _ = _comparison()
    md = render_comparison_md(comparison)
    lines = md.splitlines()
    t1 = "| Phase | Method | N.Pancreas | A.Pancreas | Tumor | Misses | W.Calls | Sensitivity | Specificity |"
    t2 = "| Phase | Method | Misses | W.Calls | Sensitivity | Specificity |"
    assert lines.count(t1) == 2 and lines.count(t2) == 2  # ours, then the paper's
    i = lines.index(t1)
    rows = lines[i + 2:i + 6]
    assert [r.split(" | ")[0:2] for r in rows] == [["| Venous", "S4C (Ours)"], ["| Venous", "3D UNet"],
                                                   ["| Arterial", "S4C (Ours)"], ["| Arterial", "3D UNet"]]
    # Arterial S4C: abnormal c0-c2 found, c3 missed; normal c6 called abnormal.
    assert rows[2] == "| Arterial | S4C (Ours) | 80.00% | 80.00% | 50.00% | 1/4 | 1/3 | 75.00% | 66.67% |"
    j = lines.index(t2)
    assert lines[j + 2] == "| Arterial&Venous | S4C (Ours) | 1/4 | 1/3 | 75.00% | 66.67% |"
    lo, hi = wilson_interval(3, 4)
    assert f"| Arterial&Venous | S4C (Ours) | {100 * lo:.1f}-{100 * hi:.1f}% |" in md
    assert "| 3D UNet | Arterial&Venous | 3 | 0 | 0.25 |" in md
    # The paper's Table 2 as printed.
    assert "| Arterial&Venous | S4C (Ours) | 24/228 | 28/148 | 89.47% | 81.08% |" in md
    assert "| Arterial&Venous | Classification | 24/228 | 23/148 | 89.47% | 84.46% |" in md
    assert len(PAPER["table1"]) == 6


def test_classifier_rows_have_no_dsc_and_score_by_probability():
    truth = [1, 0]
    cases = _cases({"arterial": [1, 0], "venous": [0, 0]}, truth, [50, 0])
    for c, prob in zip(cases, (0.9, 0.2), strict=True):
        for p in PHASES:
            c[p]["classifier_probability"] = prob
    report = summarize(cases)
    assert report["roc"]["score"] == "max classifier probability over phases"
    assert report["fused"]["roc_auc"] == 1.0
    md = render_comparison_md(summarize_comparison({"classifier": report}, {"classifier": cases}))
    assert "| Arterial | Classification | n/a | n/a | n/a | 0/1 | 0/1 | 100.00% | 100.00% |" in md


def test_methods_and_widths_parse():
    assert parse_methods("s4c, vnet,s4c") == ("s4c", "vnet")
    with pytest.raises(ValueError, match="subset of"):
        parse_methods("s4c,resnet")
    assert parse_widths("vnet=4,unet3d=8") == {"vnet": 4, "unet3d": 8}
    assert parse_widths(None) == {}
    for bad in ("vnet", "classifier=4", "vnet=0", "vnet=x"):
        with pytest.raises(ValueError, match="SEGMENTER=W"):
            parse_widths(bad)


# --- the baseline networks -------------------------------------------------------------------------------

def test_vnet_at_width_16_is_monai_vnet():
    from monai.networks.nets import VNet as MonaiVNet

    ours = VNet(width=16).state_dict()
    theirs = MonaiVNet(spatial_dims=3, in_channels=1, out_channels=4).state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_architecture_maps_a_patch_to_four_classes(arch):
    net = build_network(arch, width=2)
    x = torch.zeros(1, 1, 64, 64, 64)
    out = net.train()(x)
    main = out[0] if isinstance(out, tuple) else out
    assert main.shape == (1, 4, 64, 64, 64)
    assert net.eval()(x).shape == (1, 4, 64, 64, 64)
    with pytest.raises(ValueError, match="architecture must be one of"):
        build_network("resnet")


@pytest.mark.parametrize("arch", ["unet3d", "vnet"])
def test_baselines_export_with_the_segmenter_contract(tmp_path, arch):
    torch.manual_seed(0)
    net = build_network(arch, width=2).eval()
    spec = ModelSpec(width=2, phase="arterial", spacing=(2.5, 2.5, 2.5), architecture=arch)
    ckpt = save_checkpoint(tmp_path / f"{arch}.pt", net, spec)
    loaded, spec2 = load_checkpoint(ckpt)
    assert spec2.architecture == arch and type(loaded) is type(net)
    onnx_path = export_onnx(ckpt, tmp_path / f"{arch}.onnx")
    assert read_spec(onnx_path).architecture == arch
    hu = np.random.default_rng(1).uniform(-1000, 400, (2, 1, 64, 64, 64)).astype(np.float32)
    labels = OnnxPredictor(onnx_path, threads=1)(hu)  # HU in, uint8 labels out
    assert labels.dtype == np.uint8 and labels.shape == (2, 64, 64, 64)
    ref = TorchPredictor(loaded, spec2, "cpu")(hu)
    assert (labels == ref).mean() > 0.999  # float rounding may flip a near tie


def test_spec_architecture_defaults_and_rules():
    old = ModelSpec(width=4, phase="venous").to_dict()
    del old["architecture"]  # a checkpoint written before the baselines existed
    assert ModelSpec.from_dict(old).architecture == "s4c"
    with pytest.raises(ValueError, match="architecture must be one of"):
        ModelSpec(width=4, phase="venous", architecture="resnet")
    with pytest.raises(ValueError, match="is an S4C network"):
        ModelSpec(width=4, phase="any", role="locator", architecture="vnet")
    with pytest.raises(ValueError, match="S4C network"):
        TrainConfig(data="d", phase="any", out="o", role="locator", architecture="unet3d")


# --- the classifier of section 2.3 ----------------------------------------------------------------------

def test_pool_three_classifier_is_frozen_on_its_segmenter():
    torch.manual_seed(0)
    seg = S4CNet(width=2)
    before = {k: v.clone() for k, v in seg.state_dict().items()}
    clf = PoolThreeClassifier(seg).train()
    assert not seg.training  # the segmenter's BatchNorm keeps its statistics
    opt = torch.optim.SGD([p for p in clf.parameters() if p.requires_grad], lr=0.1)
    x = torch.randn(1, 1, 40, 56, 24)  # any extents divisible by 8
    loss = torch.nn.functional.cross_entropy(clf(x), torch.tensor([1]))
    loss.backward()
    opt.step()
    assert clf(x).shape == (1, 2)
    assert all(torch.equal(v, before[k]) for k, v in seg.state_dict().items())
    assert pool3_shape(seg, x) == (1, 8, 5, 7, 3)


def pool3_shape(seg, x):
    return tuple(seg.pool3_features(x).shape)


def test_pad_to_multiple():
    a = np.ones((9, 16, 1), np.float32)
    p = pad_to_multiple(a, -5.0)
    assert p.shape == (16, 16, 8) and p[9:].max() == -5.0 and p[:9, :, :1].min() == 1.0
    assert pad_to_multiple(p, 0.0) is p


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("compare_cohort")
    write_cohort(root, n_normal=2, n_abnormal=2, seed=71, shape=(48, 64, 64), spacing=(2.5, 2.5, 2.5))
    return root


def _segmenter(tiny: Path, tmp: Path, arch: str = "s4c") -> Path:
    cfg = config_from_preset("roi", data=str(tiny), phase="arterial", out=str(tmp / arch), iterations=1,
                             batch_size=1, width=2, threads=1, architecture=arch)
    return train(cfg, progress=False, log=lambda _m: None)


def test_a_baseline_trains_under_the_roi_preset(tiny, tmp_path):
    path = _segmenter(tiny, tmp_path, "unet3d")
    _, spec = load_checkpoint(path)
    assert spec.architecture == "unet3d" and spec.config["architecture"] == "unet3d"
    with pytest.raises(ValueError, match="unet3d of width 2"):
        train(config_from_preset("roi", data=str(tiny), phase="arterial", out=str(tmp_path / "x"), iterations=1,
                                 batch_size=1, width=2, threads=1, init=str(path)), progress=False)


@pytest.mark.gpu
def test_classifier_resumes_on_cuda(tiny, tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    seg = _segmenter(tiny, tmp_path)
    common = dict(data=str(tiny), phase="arterial", out=str(tmp_path / "c"), init=str(seg), checkpoint_every=2,
                  device="cuda")
    train_classifier(config_from_preset("classifier", iterations=2, **common), progress=False, log=lambda _m: None)
    said: list[str] = []
    train_classifier(config_from_preset("classifier", iterations=4, **common), progress=False, log=said.append)
    assert said == ["resuming arterial classifier from iteration 2"]


def test_classifier_trains_resumes_and_evaluates(tiny, tmp_path, monkeypatch):
    seg = _segmenter(tiny, tmp_path)
    with pytest.raises(ValueError, match="init"):
        config_from_preset("classifier", data=str(tiny), phase="arterial", out=str(tmp_path / "c"))
    cfg = config_from_preset("classifier", data=str(tiny), phase="arterial", out=str(tmp_path / "c4"), iterations=4,
                             init=str(seg), threads=1, checkpoint_every=2)
    with pytest.raises(ValueError, match="train_classifier"):
        train(cfg, progress=False)
    whole = load_checkpoint(train_classifier(cfg, progress=False, log=lambda _m: None))[0].state_dict()
    # Interrupted after the checkpoint at iteration 2, then the same command again: the same weights.
    import s4c.training.classifier as clf_mod

    def crash_at_3(base, it, total, power):
        if it == 2:
            raise KeyboardInterrupt("stopped")
        return poly_lr(base, it, total, power)

    again = TrainConfig(**{**cfg.__dict__, "out": str(tmp_path / "c_resumed")})
    monkeypatch.setattr(clf_mod, "poly_lr", crash_at_3)
    with pytest.raises(KeyboardInterrupt):
        train_classifier(again, progress=False, log=lambda _m: None)
    monkeypatch.setattr(clf_mod, "poly_lr", poly_lr)
    assert torch.load(Path(again.out) / "state.pt", weights_only=False)["iteration"] == 2
    with pytest.raises(ValueError, match=r"another recipe \(lr 0\.001 -> 0\.002"):
        train_classifier(TrainConfig(**{**again.__dict__, "lr": 0.002}), progress=False, log=lambda _m: None)
    said: list[str] = []
    resumed = load_checkpoint(train_classifier(again, progress=False, log=said.append))[0].state_dict()
    assert said == ["resuming arterial classifier from iteration 2"]
    rows = (Path(again.out) / "train_log.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows] == ["iteration", "1", "2", "3", "4"]
    assert all(torch.allclose(whole[k].float(), resumed[k].float(), atol=1e-6) for k in whole)
    # SIGTERM during step 2 (no checkpoint due until 100): that step ends, is checkpointed, and
    # TrainingStopped says so; the same command then finishes on the same weights.
    signalled = TrainConfig(**{**cfg.__dict__, "out": str(tmp_path / "c_signalled"), "checkpoint_every": 100})

    def sigterm_at_2(base, it, total, power):
        if it == 1:
            signal.raise_signal(signal.SIGTERM)
        return poly_lr(base, it, total, power)

    monkeypatch.setattr(clf_mod, "poly_lr", sigterm_at_2)
    with pytest.raises(TrainingStopped, match="stopped by SIGTERM after iteration 2") as info:
        train_classifier(signalled, progress=False, log=lambda _m: None)
    assert info.value.exit_code == 143
    monkeypatch.setattr(clf_mod, "poly_lr", poly_lr)
    assert torch.load(Path(signalled.out) / "state.pt", weights_only=False)["iteration"] == 2
    finished = load_checkpoint(train_classifier(signalled, progress=False, log=lambda _m: None))[0].state_dict()
    assert all(torch.allclose(whole[k].float(), finished[k].float(), atol=1e-6) for k in whole)
    said.clear()
    assert train_classifier(again, progress=False, log=said.append) == Path(again.out) / "model.pt"
    assert said == [f"arterial classifier: {again.out} already holds 4 iterations"]
    clf_path = Path(cfg.out) / "model.pt"
    _, spec = load_checkpoint(clf_path)
    assert spec.role == "classifier" and spec.num_classes == 2
    with pytest.raises(ValueError, match="classifier"):
        export_onnx(clf_path, tmp_path / "c.onnx")
    # The segmenter inside is the frozen one it was trained on.
    inner = load_checkpoint(classifier_segmenter(clf_path, tmp_path / "inner.pt"))[0].state_dict()
    original = load_checkpoint(seg)[0].state_dict()
    assert all(torch.equal(inner[k], original[k]) for k in original)
    # Evaluated through s4c evaluate: the classifier decides, the rule's call is kept beside it.
    models = tmp_path / "models"
    models.mkdir()
    (models / "default_arterial.pt").write_bytes(clf_path.read_bytes())
    seg_model, seg_spec = load_checkpoint(seg)
    save_checkpoint(models / "default_venous.pt", seg_model, replace(seg_spec, phase="venous"))
    report = evaluate(tiny, tmp_path / "eval", models=models, mode="full", threads=1, progress=False)
    rows = json.loads((tmp_path / "eval" / "cases.json").read_text())
    for r in rows:
        a = r["arterial"]
        assert 0.0 <= a["classifier_probability"] <= 1.0
        assert a["abnormal_pred"] == int(a["classifier_probability"] >= 0.5)
        assert "segmenter_abnormal_pred" in a and "classifier_probability" not in r["venous"]
    assert report["arterial"]["n_abnormal"] == 2
    pred = ClassifierPredictor.from_checkpoint(clf_path, device="cpu")
    ct = np.full((48, 64, 64), -1000, np.int16)
    empty = pred(ct, (2.5, 2.5, 2.5), np.zeros(ct.shape, np.uint8))
    assert empty.roi_fallback and empty.roi_zyx == ((0, 48), (0, 64), (0, 64))
    with pytest.raises(ValueError, match="differ in shape"):
        pred(ct, (2.5, 2.5, 2.5), np.zeros((4, 4, 4), np.uint8))


# --- the command ---------------------------------------------------------------------------------------

def _s4c(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "s4c.cli", *args], capture_output=True, text=True, timeout=900)


def test_compare_flags_are_checked(tmp_path):
    res = _s4c("compare", "--data", str(tmp_path), "--out", str(tmp_path / "o"))
    assert res.returncode == 2 and "one of the arguments --test --folds is required" in res.stderr
    res = _s4c("compare", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--test", "x", "--folds", "2")
    assert res.returncode == 2 and "not allowed with argument" in res.stderr
    res = _s4c("compare", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--test", "x", "--methods", "s4c,rf")
    assert res.returncode == 2 and "subset of s4c, unet3d, vnet, classifier" in res.stderr
    res = _s4c("compare", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--test", "x",
               "--lesion-fraction", "1.5")
    assert res.returncode == 2 and "--lesion-fraction" in res.stderr


def test_compare_gives_every_segmenter_the_patch_mix(tiny, tmp_path, monkeypatch):
    import s4c.training.compare as compare_mod

    seen = []

    def record(cfg, **_kw):
        seen.append(cfg)
        raise KeyboardInterrupt("recorded")

    monkeypatch.setattr(compare_mod, "train", record)
    with pytest.raises(KeyboardInterrupt):
        compare_mod.compare(tiny, tmp_path / "o", methods=("vnet",), test=tiny, iterations=3, lesion_fraction=0.4,
                            normal_fraction=0.35)
    assert [(c.architecture, c.iterations, c.lesion_fraction, c.normal_fraction) for c in seen] == [
        ("vnet", 3, 0.4, 0.35)]


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["test", "folds"])
def test_compare_end_to_end(tiny, tmp_path, protocol):
    extra = ["--test", str(tiny)] if protocol == "test" else ["--folds", "2"]
    out = tmp_path / "cmp"
    res = _s4c("compare", "--data", str(tiny), "--out", str(out), *extra, "--iterations", "2", "--batch-size", "1",
               "--width", "2", "--classifier-iterations", "2", "--threads", "1", "--no-progress")
    assert res.returncode == 0, res.stderr[-3000:]
    rep = json.loads((out / "report.json").read_text())
    assert list(rep["methods"]) == ["s4c", "unet3d", "vnet", "classifier"]
    assert set(rep["mcnemar"]) == {"unet3d", "vnet", "classifier"}
    for m in rep["methods"]:
        assert rep["methods"][m]["fused"]["n_abnormal"] + rep["methods"][m]["fused"]["n_normal"] == 4
        assert load_checkpoint(next((out / "train").rglob(f"{m}/arterial/model.pt")))[1].phase == "arterial"
    md = (out / "report.md").read_text()
    assert "## Table 2: dual phase" in md and "| Arterial&Venous | Classification |" in md
    assert (out / "roc.png").stat().st_size > 0
    # A second run reuses every finished run folder and gives the same tables.
    again = _s4c("compare", "--data", str(tiny), "--out", str(out), *extra, "--iterations", "2", "--batch-size", "1",
                 "--width", "2", "--classifier-iterations", "2", "--threads", "1", "--no-progress")
    assert again.returncode == 0, again.stderr[-3000:]
    assert (out / "report.md").read_text() == md


@pytest.mark.server
def test_baselines_serve_in_place_of_the_s4c_network(tmp_path):
    """A 3D U-Net (arterial) and a V-Net (venous) exported into the repository in place of the S4C
    segmenters: the real server answers with the in-process pipeline's labels over the same graphs."""
    import shutil

    from s4c.inference.pipeline import run_phase
    from s4c.io import load_canonical
    from s4c.models import locator_path

    models = tmp_path / "models"
    torch.manual_seed(3)
    for phase, arch in (("arterial", "unet3d"), ("venous", "vnet")):
        save_checkpoint(models / f"default_{phase}.pt", build_network(arch, width=2).eval(),
                        ModelSpec(width=2, phase=phase, spacing=(2.5, 2.5, 2.5), architecture=arch))
    shutil.copyfile(locator_path(), models / "default_locator.pt")
    repo = tmp_path / "model_repository"
    shutil.copytree(REPO / "model_repository", repo,
                    ignore=shutil.ignore_patterns("*.onnx", "*.plan", "segmenters.json", "__pycache__"))
    case = tmp_path / "case"
    write_cohort(case, n_normal=0, n_abnormal=1, seed=73, shape=(48, 64, 64), spacing=(2.5, 2.5, 2.5))
    scans = {p: case / "cases" / "case_0000" / f"{p}.nii.gz" for p in PHASES}
    out = tmp_path / "out"
    res = subprocess.run([sys.executable, "-m", "s4c.cli", "infer", "--model-repository", str(repo), "--models",
                          str(models), "--arterial", str(scans["arterial"]), "--venous", str(scans["venous"]),
                          "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    segmenters = json.loads((repo / "s4c" / "1" / "segmenters.json").read_text())
    assert "unet3d" in json.dumps(segmenters) and "vnet" in json.dumps(segmenters)
    locator = OnnxPredictor(repo / "locator" / "1" / "model.onnx", threads=1)
    for phase in PHASES:
        vol = load_canonical(scans[phase])
        pred = OnnxPredictor(repo / f"segmenter_{phase}" / "1" / "model.onnx", threads=1)
        assert pred.spec.architecture == ("unet3d" if phase == "arterial" else "vnet")
        lib = run_phase(vol.array, vol.spacing, pred, pred.spec, mode="roi", locator=(locator, locator.spec))
        served = load_canonical(out / f"{phase}_labels.nii.gz").array
        assert served.shape == lib.decision.labels.shape and np.array_equal(served, lib.decision.labels)
        assert len(np.unique(lib.raw_labels)) > 1  # the untrained networks still label something
