"""The in-process pipeline end to end, with oracle predictors and with the real network."""

from __future__ import annotations

import json

import numpy as np
import pytest

from s4c.checkpoint import ModelSpec, load_checkpoint, save_checkpoint
from s4c.inference.pipeline import run_case, run_phase
from s4c.inference.predictor import TorchPredictor
from s4c.network import S4CNet
from s4c.postprocess import classify


def hu_decoder(batch: np.ndarray) -> np.ndarray:
    """Oracle: the CT stores label * 100 HU, so rounding recovers the label."""
    return np.clip(np.rint(batch[:, 0] / 100.0), 0, 3).astype(np.uint8)


def toy_case(shape=(40, 70, 90)):
    lab = np.zeros(shape, np.uint8)
    lab[10:30, 20:50, 20:70] = 1
    lab[15:20, 30:36, 40:46] = 2
    lab[20:22, 25:27, 22:60] = 3
    return lab


def test_oracle_pipeline_reproduces_labels_and_decision():
    lab = toy_case()
    ct = (lab.astype(np.int16) * 100)
    spec = ModelSpec(width=4, phase="venous")
    res = run_phase(ct, (1.0, 1.0, 1.0), hu_decoder, spec, batch_size=4)
    assert np.array_equal(res.raw_labels, lab)
    ref = classify(lab, (1, 1, 1))
    assert res.decision.abnormal == ref.abnormal and res.decision.tumor_voxels == 180
    assert set(res.timings) >= {"preprocess_s", "network_and_vote_s", "postprocess_s"}


def test_resampling_path_returns_input_grid():
    lab = toy_case((30, 40, 50))
    ct = lab.astype(np.int16) * 100
    spec = ModelSpec(width=4, phase="arterial", spacing=(1.0, 1.0, 1.0))
    res = run_phase(ct, (2.0, 1.5, 1.0), hu_decoder, spec)
    assert res.raw_labels.shape == lab.shape
    assert (res.raw_labels == lab).mean() > 0.97


def test_dual_phase_fusion_and_missing_model():
    lab = toy_case()
    normal = np.zeros_like(lab, dtype=np.int16)
    preds = {p: (hu_decoder, ModelSpec(width=4, phase=p)) for p in ("arterial", "venous")}
    abnormal, results = run_case({"arterial": (normal, (1, 1, 1)), "venous": (lab.astype(np.int16) * 100, (1, 1, 1))},
                                 preds)
    assert abnormal and not results["arterial"].decision.abnormal and results["venous"].decision.abnormal
    with pytest.raises(ValueError, match="no model"):
        run_case({"venous": (normal, (1, 1, 1))}, {})


def test_checkpoint_round_trip_and_torch_predictor(tmp_path):
    model = S4CNet(width=4).eval()
    spec = ModelSpec(width=4, phase="arterial", spacing=(2.5, 2.5, 2.5), config={"iterations": 0})
    path = save_checkpoint(tmp_path / "m.pt", model, spec)
    loaded, spec2 = load_checkpoint(path)
    assert spec2 == spec and json.dumps(spec2.to_dict())
    pred = TorchPredictor(loaded, spec2, device="cpu")
    batch = np.random.default_rng(0).normal(0, 200, (2, 1, 64, 64, 64)).astype(np.float32)
    out = pred(batch)
    assert out.shape == (2, 64, 64, 64) and out.dtype == np.uint8 and out.max() < 4
    assert np.array_equal(out, TorchPredictor(model, spec, device="cpu")(batch))
    res = run_phase(np.zeros((64, 64, 70), np.int16), (2.5, 2.5, 2.5), pred, spec2, batch_size=2)
    assert res.raw_labels.shape == (64, 64, 70)


def test_bad_checkpoint_and_bad_ct(tmp_path):
    (tmp_path / "x.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"x\.pt"):
        load_checkpoint(tmp_path / "x.pt")
    spec = ModelSpec(width=4, phase="venous")
    with pytest.raises(ValueError, match="NaN"):
        run_phase(np.full((8, 8, 8), np.nan, np.float32), (1, 1, 1), hu_decoder, spec)
    with pytest.raises(ValueError, match="spacing"):
        run_phase(np.zeros((8, 8, 8), np.int16), (1, 0, 1), hu_decoder, spec)
    with pytest.raises(ValueError, match="phase"):
        ModelSpec(width=4, phase="portal")


@pytest.mark.gpu
def test_torch_predictor_on_cuda_matches_cpu():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    model = S4CNet(width=4).eval()
    spec = ModelSpec(width=4, phase="venous")
    batch = np.random.default_rng(0).normal(0, 200, (2, 1, 64, 64, 64)).astype(np.float32)
    cpu = TorchPredictor(model, spec, device="cpu")(batch)
    gpu = TorchPredictor(model, spec, device="cuda")(batch)
    assert (cpu == gpu).mean() > 0.999


def soft_tissue_oracle(batch: np.ndarray) -> np.ndarray:
    """Oracle on real HU: 0-60 'pancreas', 60-200 'tumour', above 200 'duct' (each voxel alone)."""
    return np.digitize(batch[:, 0], [0.0, 60.0, 200.0]).astype(np.uint8)


def test_real_ct_runs_through_the_pipeline(real_ct_dir):
    """The shared real CT through resampling, the sliding window, the rules and back, held to the same
    steps done directly: a voxel-wise oracle on the resampled volume, the brute-force rule, labels
    mapped back by nearest neighbour."""
    from s4c.io import load_nifti
    from s4c.preprocessing import labels_to_grid, resample_image

    from reference import classify_reference

    vol = load_nifti(real_ct_dir / "example_ct_sm.nii.gz")
    spec = ModelSpec(width=4, phase="venous", spacing=(2.5, 2.5, 2.5))
    res = run_phase(vol.array, vol.spacing, soft_tissue_oracle, spec, batch_size=4)
    work = resample_image(vol.array, vol.spacing, spec.spacing)
    raw = soft_tissue_oracle(work[None, None])[0]  # a voxel-wise oracle: windows and votes change nothing
    abnormal, tumour, duct, kept = classify_reference(raw)
    assert res.decision.labels.shape == vol.array.shape
    assert (res.decision.abnormal, res.decision.tumor_voxels, res.decision.duct_voxels) == (abnormal, tumour, duct)
    assert tumour > 0 and np.count_nonzero(kept == 1) > 1000  # a real comparison, not an empty volume
    expected = labels_to_grid(kept, spec.spacing, vol.array.shape, vol.spacing)
    assert np.array_equal(res.decision.labels, expected)


@pytest.mark.parametrize("mode", ["full", "roi"])
def test_decision_does_not_depend_on_the_input_grid(mode):
    """The rules count voxels on the working grid: the same anatomy sampled at 2.5, 1.25 and 0.8 mm
    gets the same decision and nearly the same counts (a 40-voxel tumour at 2.5 mm would be
    ~1,200 voxels at 0.8 mm if the rules counted input voxels)."""
    from s4c.preprocessing import resample_image

    lab = np.zeros((40, 48, 56), np.uint8)
    lab[10:30, 12:36, 10:46] = 1
    lab[18:22, 20:24, 24:27] = 2  # 48 voxels at 2.5 mm: just above the 40-voxel rule
    ct = lab.astype(np.int16) * 100
    spec = ModelSpec(width=4, phase="arterial", spacing=(2.5, 2.5, 2.5))
    loc = (lambda b: (b[:, 0] > 50).astype(np.uint8),
           ModelSpec(width=4, phase="any", num_classes=2, role="locator", spacing=(5.0, 5.0, 5.0)))
    native = run_phase(ct, (2.5, 2.5, 2.5), hu_decoder, spec, mode=mode, locator=loc)
    assert native.decision.abnormal and native.decision.tumor_voxels == 48
    for target in (1.25, 0.8):
        fine = np.rint(resample_image(ct, (2.5,) * 3, (target,) * 3)).astype(np.int16)
        res = run_phase(fine, (target,) * 3, hu_decoder, spec, mode=mode, locator=loc)
        assert res.decision.abnormal == native.decision.abnormal
        assert abs(res.decision.tumor_voxels - 48) <= 12
        assert res.decision.labels.shape == fine.shape
        assert res.decision.thresholds["reference_spacing_zyx_mm"] == [2.5, 2.5, 2.5]
