"""Training data checks, folds, sampling, augmentation and resumable training."""

from __future__ import annotations

import numpy as np
import pytest

from s4c.data.cohort import CaseEntry, read_manifest, write_manifest
from s4c.io import affine_from_spacing, load_nifti, save_nifti
from s4c.training.data import TrainingCase, augment, check_fold, load_cohort, sample_patch, stratified_folds
from s4c.training.train import TrainConfig, finished_run, load_run_state, poly_lr, train


def tiny_cohort(root, n_normal=2, n_abnormal=2, shape=(24, 28, 30)):
    entries = []
    rng = np.random.default_rng(0)
    for i in range(n_normal + n_abnormal):
        cid = f"c{i}"
        abnormal = int(i >= n_normal)
        lab = np.zeros(shape, np.uint8)
        lab[6:18, 8:20, 6:24] = 1
        if abnormal:
            lab[10:14, 12:16, 10:14] = 2
        ct = (rng.normal(0, 10, shape) + lab * 60).astype(np.int16)
        paths = {}
        for phase in ("arterial", "venous"):
            paths[phase] = f"cases/{cid}/{phase}.nii.gz"
            paths[f"{phase}_label"] = f"cases/{cid}/{phase}_label.nii.gz"
            save_nifti(root / paths[phase], ct, affine_from_spacing((2, 2, 2)))
            save_nifti(root / paths[f"{phase}_label"], lab, affine_from_spacing((2, 2, 2)))
        entries.append(CaseEntry(cid, abnormal=abnormal, **paths))
    write_manifest(root, entries)
    return entries


def test_folds_are_stratified_deterministic_and_by_case():
    entries = [CaseEntry(f"c{i:02d}", "a", "", "v", "", int(i < 12)) for i in range(20)]
    f1 = stratified_folds(entries, 4, seed=3)
    assert f1 == stratified_folds(entries, 4, seed=3)
    for k in range(4):
        part = [e for e, f in zip(entries, f1, strict=True) if f == k]
        assert sum(e.abnormal for e in part) == 3 and sum(1 - e.abnormal for e in part) == 2
    assert stratified_folds(list(reversed(entries)), 4, seed=3) == list(reversed(f1))  # order-free
    only_abnormal = [CaseEntry(f"c{i}", "a", "", "v", "", 1) for i in range(8)]
    with pytest.raises(ValueError, match="no normal case"):
        check_fold(only_abnormal, stratified_folds(only_abnormal, 4), 0, 4)


def test_bad_cohorts_fail_before_training(tmp_path):
    tiny_cohort(tmp_path)
    (tmp_path / "cases/c1/venous_label.nii.gz").unlink()
    with pytest.raises(ValueError, match="does not exist"):
        load_cohort(tmp_path, "venous")
    tiny_cohort(tmp_path)
    save_nifti(tmp_path / "cases/c2/arterial_label.nii.gz", np.zeros((4, 4, 4), np.uint8), np.eye(4))
    with pytest.raises(ValueError, match="shape"):
        load_cohort(tmp_path, "arterial")
    tiny_cohort(tmp_path)
    grid = load_nifti(tmp_path / "cases/c0/venous.nii.gz").affine
    save_nifti(tmp_path / "cases/c0/venous_label.nii.gz", np.full((24, 28, 30), 5, np.uint8), grid)
    with pytest.raises(ValueError, match=r"0\.\.3"):
        load_cohort(tmp_path, "venous")
    moved = grid.copy()
    moved[:3, 3] += 10.0
    save_nifti(tmp_path / "cases/c0/venous_label.nii.gz", np.zeros((24, 28, 30), np.uint8), moved)
    with pytest.raises(ValueError, match="affine differs"):
        load_cohort(tmp_path, "venous")
    (tmp_path / "manifest.csv").write_text("case_id,arterial\nx,y\n")
    with pytest.raises(ValueError, match="missing column"):
        train(TrainConfig(data=str(tmp_path), phase="venous", out=str(tmp_path / "run"), iterations=1))
    assert not (tmp_path / "run" / "state.pt").exists()


def test_sampling_centres_lesions_and_pads():
    lab = np.zeros((30, 30, 30), np.uint8)
    lab[10:20, 10:20, 10:20] = 1
    lab[2, 2, 2] = 2
    img = np.full(lab.shape, 5, np.int16)
    flat = lab.reshape(-1)
    case = TrainingCase("x", 1, img, lab, np.flatnonzero(flat >= 2), np.flatnonzero(flat))
    rng = np.random.default_rng(0)
    kinds = set()
    for _ in range(60):
        pi, pl, kind = sample_patch(case, rng, pad_hu=-160)
        kinds.add(kind)
        assert pi.shape == pl.shape == (64, 64, 64)
        if kind == "lesion":
            assert pl[32, 32, 32] == 2 and (pi == -160).any()  # centred, padded outside the volume
    assert kinds == {"lesion", "pancreas", "random"}


def test_augment_keeps_image_and_labels_aligned():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 1000, (8, 8, 8)).astype(np.int16)
    lab = (img % 4).astype(np.uint8)
    seen = set()
    for _ in range(80):
        ai, al = augment(img, lab, rng)
        assert np.array_equal(ai % 4, al)
        assert sorted(ai.ravel().tolist()) == sorted(img.ravel().tolist())
        seen.add(ai.tobytes())
    assert len(seen) > 20  # many of the 48 cube symmetries reached


def test_poly_lr():
    assert poly_lr(0.01, 0, 100, 0.9) == 0.01
    assert poly_lr(0.01, 50, 100, 0.9) == pytest.approx(0.01 * 0.5**0.9)
    assert poly_lr(0.01, 100, 100, 0.9) == 0.0


def test_train_is_deterministic_and_resumes(tmp_path):
    import torch

    tiny_cohort(tmp_path / "data")
    common = dict(data=str(tmp_path / "data"), phase="arterial", batch_size=2, width=4, seed=1,
                  checkpoint_every=2, threads=1)
    straight = train(TrainConfig(out=str(tmp_path / "a"), iterations=4, **common), progress=False)
    train(TrainConfig(out=str(tmp_path / "b"), iterations=4, **common), progress=False)  # fresh run, same seed
    a = torch.load(straight, weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "b" / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)
    # A run stopped after 2 iterations continues from its state to 4.
    state = torch.load(tmp_path / "a" / "state.pt", weights_only=False)
    assert state["iteration"] == 4
    train(TrainConfig(out=str(tmp_path / "c"), iterations=2, **common), progress=False)
    resumed = train(TrainConfig(out=str(tmp_path / "c"), iterations=4, **common), progress=False)
    lines = (tmp_path / "c" / "train_log.csv").read_text().splitlines()
    assert [ln.split(",")[0] for ln in lines] == ["iteration", "1", "2", "3", "4"]
    assert (tmp_path / "c" / "loss.png").exists()
    blob = torch.load(resumed, weights_only=True)
    spec = blob["spec"]
    assert spec["phase"] == "arterial" and spec["width"] == 4 and spec["spacing"] == [2.0, 2.0, 2.0]
    assert spec["normalization"] == {"hu_min": -160.0, "hu_max": 300.0}
    assert spec["config"]["iterations_done"] == 4 and "git_revision" in spec
    assert read_manifest(tmp_path / "data")
    # A finished run is returned as it is: no cohort load, model.pt untouched.
    before = resumed.read_bytes()
    said: list[str] = []
    (tmp_path / "data" / "manifest.csv").rename(tmp_path / "data" / "hidden.csv")
    again = train(TrainConfig(out=str(tmp_path / "c"), iterations=4, **common), progress=False, log=said.append)
    assert again == resumed and again.read_bytes() == before
    assert said == [f"arterial: {tmp_path / 'c'} already holds 4 iterations"]
    state = load_run_state(tmp_path / "c")
    assert finished_run(tmp_path / "c", 4, state) == resumed and finished_run(tmp_path / "c", 5, state) is None
    assert load_run_state(tmp_path / "nothing") is None and finished_run(tmp_path / "nothing", 1, None) is None
    # The state loads on the CPU whatever the run's device: torch.set_rng_state takes a CPU ByteTensor only.
    tensors = [state["torch_rng"], *state["model"].values()]
    assert all(t.device.type == "cpu" for t in tensors)
    torch.set_rng_state(state["torch_rng"])
    # A resume with another recipe is refused before the cohort loads; where and how long it runs may change.
    with pytest.raises(ValueError, match=r"another recipe \(lr 0.01 -> 0.02; seed 1 -> 2\)"):
        train(TrainConfig(out=str(tmp_path / "c"), iterations=6, **{**common, "lr": 0.02, "seed": 2}), progress=False)
    (tmp_path / "data" / "hidden.csv").rename(tmp_path / "data" / "manifest.csv")
    moved = {**common, "data": str(tmp_path / "data" / ".." / "data"), "threads": 2, "checkpoint_every": 3}
    said.clear()
    train(TrainConfig(out=str(tmp_path / "c"), iterations=6, **moved), progress=False, log=said.append)
    assert "resuming arterial from iteration 4" in said


def _signal_at(step: int, signum: int):
    """A poly_lr that sends this process ``signum`` as step ``step`` (0-based) begins."""
    import signal

    def lr(base, it, total, power):
        if it == step:
            signal.raise_signal(signum)
        return poly_lr(base, it, total, power)
    return lr


def test_a_signal_stops_a_run_after_the_step_with_a_checkpoint(tmp_path, monkeypatch, capsys):
    """SIGTERM (a scheduler's preemption) or SIGINT ends the run after the current step: checkpointed,
    TrainingStopped raised so no caller takes it for finished, the CLI exits 128 + signal; resumed, it
    lands on the uninterrupted run's weights. A signal during the last step just finishes the run."""
    import signal

    import torch

    import s4c.training.train as train_mod
    from s4c.cli import main
    from s4c.training.stop import TrainingStopped

    tiny_cohort(tmp_path / "data")
    common = dict(data=str(tmp_path / "data"), phase="arterial", batch_size=2, width=4, seed=1,
                  checkpoint_every=100, threads=1, iterations=4)
    whole = train(TrainConfig(out=str(tmp_path / "whole"), **common), progress=False)
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    monkeypatch.setattr(train_mod, "poly_lr", _signal_at(1, signal.SIGTERM))
    with pytest.raises(TrainingStopped, match=r"stopped by SIGTERM after iteration 2 \(checkpointed\)") as info:
        train(TrainConfig(out=str(tmp_path / "run"), **common), progress=False)
    assert (info.value.iteration, info.value.signum, info.value.exit_code) == (2, signal.SIGTERM, 143)
    assert {sig: signal.getsignal(sig) for sig in before} == before  # the handlers are given back
    assert load_run_state(tmp_path / "run")["iteration"] == 2
    # The CLI, resuming the same run: stopped again (SIGINT at step 3), exit code 130, message on stderr.
    argv = ["train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--phase", "arterial",
            "--iterations", "4", "--batch-size", "2", "--width", "4", "--seed", "1", "--checkpoint-every", "100",
            "--threads", "1", "--no-progress"]
    monkeypatch.setattr(train_mod, "poly_lr", _signal_at(2, signal.SIGINT))
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert "s4c train: " in err and "stopped by SIGINT after iteration 3" in err and "resume" in err
    assert load_run_state(tmp_path / "run")["iteration"] == 3
    # A signal during the last step: the run is finished, nothing is raised.
    monkeypatch.setattr(train_mod, "poly_lr", _signal_at(3, signal.SIGTERM))
    resumed = train(TrainConfig(out=str(tmp_path / "run"), **common), progress=False)
    a = torch.load(whole, weights_only=True)["state_dict"]
    b = torch.load(resumed, weights_only=True)["state_dict"]
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)
    lines = (tmp_path / "run" / "train_log.csv").read_text().splitlines()
    assert [ln.split(",")[0] for ln in lines] == ["iteration", "1", "2", "3", "4"]


def test_stop_requests_installs_nothing_off_the_main_thread():
    import signal
    import threading

    from s4c.training.stop import stop_requests

    seen = {}

    def worker():
        with stop_requests() as stop:
            seen["handler"], seen["flag"] = signal.getsignal(signal.SIGTERM), stop["signal"]

    before = signal.getsignal(signal.SIGTERM)
    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen == {"handler": before, "flag": 0}


@pytest.mark.gpu
def test_train_resumes_on_cuda(tmp_path):
    """A run stopped on the GPU resumes there (its state.pt holds the CPU RNG state next to CUDA weights)."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    tiny_cohort(tmp_path / "data")
    common = dict(data=str(tmp_path / "data"), phase="arterial", batch_size=2, width=4, seed=1,
                  checkpoint_every=2, device="cuda", out=str(tmp_path / "run"))
    train(TrainConfig(iterations=2, **common), progress=False)
    said: list[str] = []
    model = train(TrainConfig(iterations=4, **common), progress=False, log=said.append)
    assert "resuming arterial from iteration 2" in said
    assert torch.load(model, weights_only=True)["spec"]["config"]["iterations_done"] == 4


def test_paper_width_trains_and_exports(tmp_path):
    """w = 32 (the paper's width): one training step, then ONNX export and parity."""
    import onnxruntime as ort

    from s4c import contract
    from s4c.inference.predictor import TorchPredictor
    from s4c.repository.onnx import export_onnx

    tiny_cohort(tmp_path / "data", n_normal=1, n_abnormal=1)
    ckpt = train(TrainConfig(data=str(tmp_path / "data"), phase="venous", out=str(tmp_path / "run"), iterations=1,
                             batch_size=1, width=32, threads=2), progress=False)
    onnx_path = export_onnx(ckpt, tmp_path / "w32.onnx")
    x = np.random.default_rng(0).normal(40, 120, (1, 1, 64, 64, 64)).astype(np.float32)
    a = ort.InferenceSession(str(onnx_path)).run([contract.SEG_LABELS], {contract.SEG_INPUT: x})[0]
    b = TorchPredictor.from_checkpoint(ckpt, device="cpu")(x)
    assert (a == b).mean() >= 0.999


def test_presets_and_overrides():
    from s4c.training.train import PRESETS, config_from_preset

    paper = config_from_preset("paper", data="d", phase="arterial", out="o")
    assert (paper.optimizer, paper.loss, paper.sampling, paper.iterations, paper.batch_size, paper.lr) == (
        "sgd", "ce", "paper", 80_000, 16, 0.01)
    roi = config_from_preset("roi", data="d", phase="venous", out="o", iterations=7, lesion_fraction=0.4)
    assert roi.iterations == 7 and roi.sampling == "roi" and roi.optimizer == "adamw" and roi.relabel_invisible
    loc = config_from_preset("locator", data="d", out="o")
    assert loc.role == "locator" and loc.phase == "any" and tuple(loc.spacing) == (5.0, 5.0, 5.0)
    assert set(PRESETS) == {"paper", "roi", "locator", "classifier"}
    clf = config_from_preset("classifier", data="d", phase="venous", out="o", init="seg.pt")
    assert (clf.role, clf.batch_size, clf.lr, clf.iterations, clf.optimizer) == ("classifier", 1, 1e-3, 20_000, "sgd")
    with pytest.raises(ValueError, match="phase"):
        config_from_preset("roi", data="d", out="o")
    with pytest.raises(ValueError, match="preset"):
        config_from_preset("fast", data="d", phase="venous", out="o")
    with pytest.raises(ValueError, match="lesion_fraction"):
        config_from_preset("paper", data="d", phase="venous", out="o", lesion_fraction=0.5)
    with pytest.raises(ValueError, match="phase of a segmenter"):
        config_from_preset("paper", data="d", phase="any", out="o")


def test_roi_patches_stay_in_the_jittered_roi(tmp_path):
    from s4c.training.data import jittered_roi, load_cohort, sample_patch

    tiny_cohort(tmp_path)
    cases = load_cohort(tmp_path, "arterial")
    rng = np.random.default_rng(0)
    case = cases[0]
    lo, hi = case.pancreas_box()
    assert tuple(lo) == (6, 8, 6) and tuple(hi) == (18, 20, 24)
    for _ in range(20):
        rlo, rhi = jittered_roi(case, rng, margin_mm=4.0, jitter_mm=2.0)
        # 4 +- 2 mm at 2 mm voxels: 1 to 3 voxels beyond the box on each side, clipped to the volume
        assert np.all(rlo >= np.maximum(lo - 3, 0)) and np.all(rlo <= lo - 1)
        assert np.all(rhi <= np.minimum(hi + 3, case.image.shape)) and np.all(rhi >= hi + 1)
    img, lab, kind = sample_patch(case, rng, -160.0, sampling="roi", roi_margin_mm=4.0, kind="roi")
    assert kind == "roi" and img.shape == (64, 64, 64) and lab.max() >= 1


def test_relabel_invisible_needs_a_phantom_cohort_and_relabels(tmp_path):
    import json as _json

    from s4c.training.data import load_cohort

    tiny_cohort(tmp_path)
    with pytest.raises(ValueError, match=r"phantom\.json"):
        load_cohort(tmp_path, "venous", relabel_invisible=True)
    cases = [{"case_id": f"c{i}", "tumor": None if i < 2 else {"visible": {"arterial": True, "venous": i == 3}}}
             for i in range(4)]
    (tmp_path / "phantom.json").write_text(_json.dumps({"cases": cases}))
    ven = {c.case_id: c for c in load_cohort(tmp_path, "venous", relabel_invisible=True)}
    assert ven["c2"].relabelled and not (ven["c2"].labels == 2).any() and len(ven["c2"].lesion_idx) == 0
    assert not ven["c3"].relabelled and (ven["c3"].labels == 2).any()
    art = load_cohort(tmp_path, "arterial", relabel_invisible=True)
    assert not any(c.relabelled for c in art)
    both = load_cohort(tmp_path, "any", binary=True)
    assert len(both) == 8 and all(c.labels.max() == 1 for c in both)


def test_soft_dice_loss_bounds_and_training_loss():
    import torch

    from s4c.training.loss import deep_supervision_loss, soft_dice_loss, training_loss

    target = torch.zeros((2, 8, 8, 8), dtype=torch.int64)
    target[:, 2:6, 2:6, 2:6] = 1
    target[0, 3:5, 3:5, 3:5] = 2
    perfect = torch.nn.functional.one_hot(target, 4).permute(0, 4, 1, 2, 3).float() * 50.0
    # classes 1 and 2 perfect; class 3 is absent and never predicted: its Dice is smooth/smooth = 1
    assert float(soft_dice_loss(perfect, target)) < 1e-4
    wrong = torch.roll(perfect, shifts=1, dims=1)
    assert float(soft_dice_loss(wrong, target)) > 0.99
    outs = (perfect, perfect, perfect)
    assert torch.allclose(training_loss(outs, target, "ce"), deep_supervision_loss(outs, target))
    assert float(training_loss(outs, target, "ce+dice")) >= float(training_loss(outs, target, "ce"))
    with pytest.raises(ValueError, match="loss"):
        training_loss(outs, target, "focal")


def test_normal_fraction_draws_normal_glands_at_the_given_share():
    from types import SimpleNamespace

    from s4c.training.train import _draw_case, config_from_preset

    cases = [SimpleNamespace(case_id=f"a{i}", abnormal=1, lesion_idx=[1]) for i in range(9)]
    cases.append(SimpleNamespace(case_id="n0", abnormal=0, lesion_idx=[]))
    lesion = [c for c in cases if c.abnormal]
    normal = [c for c in cases if not c.abnormal]
    cfg = config_from_preset("roi", data="d", phase="venous", out="o", lesion_fraction=0.4, normal_fraction=0.35)
    rng = np.random.default_rng(0)
    draws = [_draw_case(cfg, rng, cases, lesion, normal) for _ in range(4000)]
    kinds = [k for _, k in draws]
    assert kinds.count("lesion") / 4000 == pytest.approx(0.4, abs=0.03)
    assert all(c.abnormal for c, k in draws if k == "lesion")
    # 1 normal case in 10: without the option it would get ~6% of the patches; with it at least 35%.
    assert sum(c.case_id == "n0" for c, _ in draws) / 4000 == pytest.approx(0.35 + 0.25 * 0.1, abs=0.03)
    # Without either option the per-case mix decides (kind None) and the pool is the whole cohort.
    plain = config_from_preset("roi", data="d", phase="venous", out="o")
    assert {k for _, k in (_draw_case(plain, rng, cases, lesion, normal) for _ in range(50))} == {None}
    with pytest.raises(ValueError, match="lesion_fraction \\+ normal_fraction"):
        config_from_preset("roi", data="d", phase="venous", out="o", lesion_fraction=0.7, normal_fraction=0.4)
    with pytest.raises(ValueError, match="normal_fraction needs roi"):
        config_from_preset("paper", data="d", phase="venous", out="o", normal_fraction=0.3)
