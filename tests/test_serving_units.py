"""Serving library pieces without a server: the async sliding window, the torch voter, request checks,
parameters, the committed configs and the client's scan handling."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from s4c import contract
from s4c.inference.merge import LabelVoter
from s4c.inference.merge_torch import TorchLabelVoter
from s4c.inference.sliding_window import (
    BatchTimeout,
    InferenceCancelled,
    sliding_window_inference,
    sliding_window_inference_async,
)
from s4c.inference.tiling import window_origins
from s4c.repository.params import ServingParams
from s4c.serving.inputs import InvalidInput, check_affine_input, check_ct, check_spacing_input, decode_phase

REPO = Path(__file__).resolve().parents[1]


def oracle(batch: np.ndarray) -> np.ndarray:
    """Labels from thresholds of the patch itself: position-dependent, so any tiling slip shows."""
    x = batch[:, 0]
    return np.digitize(x, [0.0, 50.0, 120.0]).astype(np.uint8)


def async_oracle(delays=None):
    calls = {"n": 0, "max_in_flight": 0, "now": 0}

    async def predict(batch):
        calls["n"] += 1
        calls["now"] += 1
        calls["max_in_flight"] = max(calls["max_in_flight"], calls["now"])
        snapshot = batch.copy()
        await asyncio.sleep(0 if delays is None else delays(calls["n"]))
        assert np.array_equal(snapshot, batch), "an in-flight batch buffer was overwritten"
        calls["now"] -= 1
        return oracle(snapshot)

    return predict, calls


@pytest.mark.parametrize("shape", [(40, 64, 65), (64, 64, 64), (65, 91, 70), (20, 30, 140)])
@pytest.mark.parametrize("in_flight", [1, 2, 3])
@pytest.mark.parametrize("batch_size", [1, 5])
def test_async_equals_sync(shape, in_flight, batch_size):
    rng = np.random.default_rng(sum(shape) + in_flight)
    image = rng.integers(-200, 300, size=shape).astype(np.int16)
    expected = sliding_window_inference(image, oracle, stride=20, batch_size=batch_size)
    predict, calls = async_oracle(lambda n: 0.001 * (n % 3))
    timings: dict = {}
    got = asyncio.run(sliding_window_inference_async(image, predict, stride=20, batch_size=batch_size,
                                                     in_flight=in_flight, timings=timings))
    assert np.array_equal(got, expected)
    n_batches = -(-len(window_origins([max(n, 64) for n in shape], 64, 20)) // batch_size)
    assert calls["n"] == n_batches
    assert calls["max_in_flight"] == min(in_flight, n_batches)
    assert set(timings) == {"tile_s", "network_wait_s", "vote_s"}


def test_async_cancel_stops_between_batches():
    image = np.zeros((64, 128, 128), np.int16)
    predict, calls = async_oracle()
    polls = {"n": 0}

    def should_stop():
        polls["n"] += 1
        return polls["n"] > 3

    with pytest.raises(InferenceCancelled):
        asyncio.run(sliding_window_inference_async(image, predict, batch_size=2, in_flight=2,
                                                   should_stop=should_stop))
    assert calls["n"] < 13  # 25 windows in batches of 2 would be 13 calls


def test_async_batch_timeout():
    image = np.zeros((64, 64, 64), np.int16)
    predict, _ = async_oracle(lambda n: 5.0)
    with pytest.raises(BatchTimeout, match=r"longer than 0\.05"):
        asyncio.run(sliding_window_inference_async(image, predict, batch_timeout_s=0.05))


def test_async_predictor_error_propagates():
    async def broken(batch):
        raise RuntimeError("segmenter down")

    with pytest.raises(RuntimeError, match="segmenter down"):
        asyncio.run(sliding_window_inference_async(np.zeros((64, 64, 70), np.int16), broken))


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_async_rejects_bad_in_flight(bad):
    async def p(b):
        return oracle(b)

    with pytest.raises(ValueError, match="in_flight"):
        asyncio.run(sliding_window_inference_async(np.zeros((64, 64, 64), np.int16), p, in_flight=bad))


@pytest.mark.parametrize("shape", [(64, 64, 64), (70, 90, 64), (100, 64, 81)])
@pytest.mark.parametrize("stride", [20, 32, 64])
def test_torch_voter_equals_numpy_voter_on_cpu(shape, stride):
    """The GPU voter's arithmetic, run on the CPU device, against the numpy majority vote (ties included:
    few labels over many overlaps make ties common)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(stride + sum(shape))
    origins = window_origins(shape, 64, stride)
    patches = rng.integers(0, 4, size=(len(origins), 64, 64, 64)).astype(np.uint8)
    ref = LabelVoter(shape, 64, stride, backend="numpy")
    tv = TorchLabelVoter(shape, 64, stride, device="cpu")
    for i in range(0, len(origins), 3):
        ref.add(patches[i : i + 3], origins[i : i + 3])
        tv.add(torch.from_numpy(patches[i : i + 3]), origins[i : i + 3])
    assert np.array_equal(tv.result(), ref.result())


@pytest.mark.parametrize(("shape", "stride", "num_classes", "priority"), [
    ((65, 64, 127), 13, 4, None),  # the highest coverage the uint8 counts allow, an odd extent
    ((64, 200, 64), 61, 4, (3, 1, 2, 0)),  # windows barely overlapping, another tie order
    ((97, 70, 66), 20, 2, (1, 0)),  # the locator's two classes, foreground winning ties
    ((64, 64, 64), 64, 3, (0, 2, 1)),  # one window: no overlap at all
])
def test_torch_voter_equals_numpy_voter_on_awkward_shapes(shape, stride, num_classes, priority):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(sum(shape) + stride)
    origins = window_origins(shape, 64, stride)
    patches = rng.integers(0, num_classes, size=(len(origins), 64, 64, 64)).astype(np.uint8)
    patches[::3] = patches[::3] // 2  # fewer labels in some windows: more ties
    ref = LabelVoter(shape, 64, stride, num_classes=num_classes, tie_priority=priority, backend="numpy")
    tv = TorchLabelVoter(shape, 64, stride, num_classes=num_classes, tie_priority=priority, device="cpu")
    start = 0
    for size in (1, 5, 2, len(origins)):  # uneven batches, the last one whatever is left
        part = slice(start, min(start + size, len(origins)))
        ref.add(patches[part], origins[part])
        tv.add(torch.from_numpy(patches[part]), origins[part])
        start = part.stop
    assert start == len(origins)
    assert np.array_equal(tv.result(), ref.result())


def test_torch_voter_has_read_its_input_when_add_returns():
    """Triton frees a BLS output's memory once the response goes: whatever add() still had to read would be
    gone. On the CPU device: overwrite the input right after add(), and the vote must not change."""
    torch = pytest.importorskip("torch")
    shape = (80, 64, 90)
    origins = window_origins(shape, 64, 20)
    patches = np.random.default_rng(4).integers(0, 4, size=(len(origins), 64, 64, 64)).astype(np.uint8)
    ref = LabelVoter(shape, 64, 20, backend="numpy")
    ref.add(patches, origins)
    tv = TorchLabelVoter(shape, 64, 20, device="cpu")
    for i in range(0, len(origins), 2):
        batch = torch.from_numpy(patches[i : i + 2].copy())
        tv.add(batch, origins[i : i + 2])
        batch.fill_(3)  # the buffer reused (or freed) as soon as add() is back
    assert np.array_equal(tv.result(), ref.result())


def test_torch_voter_waits_for_its_cuda_stream(monkeypatch):
    """add() ends with _finish on the counts' device; on CUDA that synchronises the current stream."""
    torch = pytest.importorskip("torch")
    synced = []

    class Stream:
        def __init__(self, device):
            self.device = device

        def synchronize(self):
            synced.append(self.device)

    monkeypatch.setattr(torch.cuda, "current_stream", Stream)
    tv = TorchLabelVoter((64, 64, 64), 64, 20, device="cpu")
    tv._finish(torch.device("cuda", 1))
    tv._finish(torch.device("cpu"))
    assert synced == [torch.device("cuda", 1)]
    finished = []
    monkeypatch.setattr(tv, "_finish", finished.append)
    tv.add(torch.zeros((1, 64, 64, 64), dtype=torch.uint8), np.zeros((1, 3), np.int64))
    assert finished == [torch.device("cpu")]


def _ops_in_add(torch, n: int, num_classes: int) -> int:
    tv = TorchLabelVoter((64, 64, 160), 64, 32, num_classes=num_classes, device="cpu")
    origins = window_origins((64, 64, 160), 64, 32)[:n]
    patches = torch.from_numpy((np.arange(n * 64**3) % num_classes).astype(np.uint8).reshape(n, 64, 64, 64))
    tv.add(patches[:1], origins[:1])  # first call builds the cached window offsets
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        tv.add(patches, origins)
    return sum(1 for e in prof.events() if e.name.startswith("aten::"))


def test_torch_voter_launches_per_batch_not_per_patch_and_class():
    """The op count of one add() is the same for 1 patch as for 4, and for 2 classes as for 4: one flat
    index_add per batch (a per-patch, per-class loop would grow with both)."""
    torch = pytest.importorskip("torch")
    counts = {(n, c): _ops_in_add(torch, n, c) for n in (1, 4) for c in (2, 4)}
    assert len(set(counts.values())) == 1, counts
    assert next(iter(counts.values())) < 40


def test_torch_voter_through_the_sliding_window():
    torch = pytest.importorskip("torch")
    image = np.random.default_rng(0).integers(-200, 300, size=(66, 80, 70)).astype(np.int16)

    def torch_oracle(batch):
        return torch.from_numpy(oracle(batch))

    got = sliding_window_inference(image, torch_oracle, voter_factory=lambda *a, **k: TorchLabelVoter(*a, **k))
    assert np.array_equal(got, sliding_window_inference(image, oracle))


def test_torch_voter_rejects_bad_patches():
    torch = pytest.importorskip("torch")
    tv = TorchLabelVoter((64, 64, 64), 64, 20, device="cpu")
    with pytest.raises(ValueError, match="uint8"):
        tv.add(torch.zeros((1, 64, 64, 64), dtype=torch.int64), np.zeros((1, 3), np.int64))
    with pytest.raises(ValueError, match="label 7"):
        tv.add(torch.full((1, 64, 64, 64), 7, dtype=torch.uint8), np.zeros((1, 3), np.int64))
    with pytest.raises(ValueError, match="outside"):
        tv.add(torch.zeros((1, 64, 64, 64), dtype=torch.uint8), np.array([[1, 0, 0]]))


@pytest.mark.gpu
def test_torch_voter_on_cuda_equals_numpy():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    shape = (90, 100, 80)
    origins = window_origins(shape, 64, 20)
    patches = np.random.default_rng(1).integers(0, 4, size=(len(origins), 64, 64, 64)).astype(np.uint8)
    ref = LabelVoter(shape, 64, 20)
    tv = TorchLabelVoter(shape, 64, 20, device="cuda")
    ref.add(patches, origins)
    tv.add(torch.from_numpy(patches).cuda(), origins)
    assert np.array_equal(tv.result(), ref.result())


# --- request checks ------------------------------------------------------------------------------

@pytest.mark.parametrize(("ct", "match"), [
    (None, "missing input CT"),
    (np.zeros((4, 4, 4), np.float32), "INT16"),
    (np.zeros((4, 4), np.int16), "3-D"),
    (np.zeros((0, 4, 4), np.int16), "empty dimension"),
    (np.zeros((11, 10, 10), np.int16), "over this server's limit of 1000"),
])
def test_check_ct(ct, match):
    with pytest.raises(InvalidInput, match=match):
        check_ct(ct, 1000)


def test_check_ct_accepts_at_the_limit():
    ct = np.zeros((10, 10, 10), np.int16)
    assert check_ct(ct, 1000) is ct


@pytest.mark.parametrize(("sp", "match"), [
    (None, "missing"), (np.ones(2, np.float32), "3 values"), (np.array([1, np.nan, 1], np.float32), "finite"),
    (np.array([1, 0, 1], np.float32), "> 0"), (np.array([1, 1, -2], np.float32), "along X"),
    (np.array([1, np.inf, 1], np.float32), "along Y"),
])
def test_check_spacing_input(sp, match):
    with pytest.raises(InvalidInput, match=match):
        check_spacing_input(sp)


@pytest.mark.parametrize(("value", "ok"), [(b"arterial", "arterial"), (b" Venous ", "venous"), ("venous", "venous")])
def test_decode_phase(value, ok):
    assert decode_phase(np.array([value], dtype=np.object_)) == ok


@pytest.mark.parametrize(("value", "match"), [
    (np.array([b"delayed"], dtype=np.object_), "unknown PHASE 'delayed'"),
    (np.array([b"\xff\xfe"], dtype=np.object_), "UTF-8"),
    (np.array([b"arterial", b"venous"], dtype=np.object_), "one value"),
    (np.array([b"x" * 500], dtype=np.object_), r"\.\.\."),
])
def test_decode_phase_errors(value, match):
    with pytest.raises(InvalidInput, match=match):
        decode_phase(value)


def test_check_affine_input():
    assert check_affine_input(None) is None
    assert check_affine_input(np.eye(4)).shape == (4, 4)
    with pytest.raises(InvalidInput, match="4x4"):
        check_affine_input(np.eye(3))
    with pytest.raises(InvalidInput, match="singular"):
        check_affine_input(np.zeros((4, 4)))


# --- parameters and configs ----------------------------------------------------------------------

def test_params_from_model_config():
    cfg = {"parameters": {"stride": {"string_value": "32"}, "keep_ratio": {"string_value": "0.25"},
                          "segmenter_venous": {"string_value": "seg_v2"}}}
    p = ServingParams.from_model_config(cfg)
    assert p.stride == 32 and p.keep_ratio == 0.25 and p.segmenter("venous") == "seg_v2"
    assert p.rule_kwargs()["min_tumor_voxels"] == 40


@pytest.mark.parametrize(("values", "match"), [
    ({"stride": "0"}, "stride"), ({"stride": "65"}, "stride"), ({"stride": "x"}, "must be int"),
    ({"keep_ratio": "1.5"}, "keep_ratio"), ({"batch_timeout_s": "nan"}, "batch_timeout_s"),
    ({"strides": "20"}, "unknown parameter"), ({"min_tumor_voxels": "-1"}, "min_tumor_voxels"),
    ({"mode": "coarse"}, "parameter mode must be one of roi, full, got 'coarse'"),
    ({"mode": "ROI"}, "parameter mode must be one of roi, full"),
    ({"roi_margin_mm": "-1"}, "roi_margin_mm must be a finite number of mm >= 0, got -1.0"),
    ({"roi_margin_mm": "inf"}, "roi_margin_mm"), ({"roi_margin_mm": "nan"}, "roi_margin_mm"),
    ({"roi_margin_mm": "wide"}, "roi_margin_mm must be float"),
    ({"locator_stride": "0"}, "locator_stride must be a positive integer"),
    ({"locator_stride": "65"}, "locator_stride must be <= 64"),
    ({"locator_stride": "2.5"}, "locator_stride must be int"),
    ({"locator": ""}, "locator must be a model name"),
])
def test_params_errors(values, match):
    with pytest.raises(ValueError, match=match):
        ServingParams.from_strings(values)


def test_params_roi_defaults():
    from s4c.labels import DEFAULT_MODE, LOCATOR_STRIDE, ROI_MARGIN_MM

    p = ServingParams()
    assert (p.mode, p.locator, p.roi_margin_mm, p.locator_stride) == (DEFAULT_MODE, contract.LOCATOR_MODEL,
                                                                      ROI_MARGIN_MM, LOCATOR_STRIDE)
    q = ServingParams.from_strings({"mode": "full", "roi_margin_mm": "0", "locator_stride": "64", "locator": "loc"})
    assert (q.mode, q.roi_margin_mm, q.locator_stride, q.locator) == ("full", 0.0, 64, "loc")


def test_committed_configs_are_the_generated_ones():
    """config.pbtxt is the contract: the committed files must be exactly what s4c.repository.configs renders."""
    from s4c.repository.configs import repository_configs

    for rel, text in repository_configs().items():
        path = REPO / "model_repository" / rel
        assert path.exists(), rel
        assert path.read_text() == text, f"{rel} is stale: run `s4c export repository`"


def _config_forms() -> dict[str, str]:
    """Every config of every model in every form, as rendered (the default form under 'config')."""
    from s4c.repository.configs import FORMS, dual_phase_config, patch_model_config, pipeline_config

    out = {"s4c/config": pipeline_config(), "s4c_dual_phase/config": dual_phase_config(),
           **{f"s4c/{f}": pipeline_config(f) for f in FORMS}}
    for name in contract.PATCH_MODELS:
        out[f"{name}/config"] = patch_model_config(name)
        out.update({f"{name}/{f}": patch_model_config(name, f) for f in FORMS})
    return out


@pytest.mark.parametrize("mode", ["roi", "full"])
def test_every_rendered_config_is_read_by_its_own_model(mode):
    """Every config of every model in every form, as repository_configs(mode) renders it, read the way that
    model reads it: ServingParams.from_model_config for s4c and s4c_dual_phase (an unknown or bad key
    raises, as FORCE_CPU_ONLY_INPUT_TENSORS did), the segmenter stub's reader for the patch models' CPU
    form. Their onnxruntime and tensorrt forms are read by Triton's own backends: no parameters there."""
    from s4c.repository.configs import FORMS, PIPELINE_PARAMS, parse_parameters, repository_configs
    from s4c.serving.onnx_segmenter import read_segmenter_params

    platforms = {"tensorrt": "tensorrt_plan", "onnxruntime": "onnxruntime_onnx"}
    seen = set()
    for rel, text in repository_configs(mode).items():
        model, form = rel.split("/")[0], ("config" if rel.endswith("/config.pbtxt") else Path(rel).stem)
        seen.add((model, form))
        assert f'name: "{model}"' in text, rel
        config = parse_parameters(text)
        assert len(config["parameters"]) == text.count("parameters: {"), rel  # the parser saw every block
        if model in (contract.PIPELINE_MODEL, contract.DUAL_PHASE_MODEL):
            p = ServingParams.from_model_config(config)  # raises on any bad or unknown key
            assert 'backend: "python"' in text and p.max_voxels == ServingParams().max_voxels, rel
            if model == contract.PIPELINE_MODEL:
                assert set(PIPELINE_PARAMS) == set(config["parameters"]), rel
                assert (p.mode, p.locator) == (mode, contract.LOCATOR_MODEL), rel
        elif form == "config":
            assert 'backend: "python"' in text and read_segmenter_params(config) == {"intra_op_threads": 0}, rel
        else:
            assert config["parameters"] == {} and f'platform: "{platforms[form]}"' in text, rel
    models = (contract.PIPELINE_MODEL, *contract.PATCH_MODELS)
    assert seen == {(m, f) for m in models for f in ("config", *FORMS)} | {(contract.DUAL_PHASE_MODEL, "config")}


@pytest.mark.parametrize("mode", ["roi", "full"])
def test_gpu_forms_of_the_pipeline_differ_from_the_cpu_one_in_the_instance_kind_only(mode):
    """So the server test that loads configs/tensorrt.pbtxt with KIND_CPU loads what a GPU server does."""
    from s4c.repository.configs import FORMS, pipeline_config

    cpu = pipeline_config(mode=mode)
    for form in FORMS:
        gpu = pipeline_config(form, mode)
        assert gpu != cpu and gpu.replace("KIND_GPU", "KIND_CPU") == cpu


@pytest.mark.parametrize(("params", "match"), [({"threads": "2"}, "unknown parameter"),
                                               ({"intra_op_threads": "two"}, "integer"),
                                               ({"intra_op_threads": "-1"}, "integer")])
def test_segmenter_params_errors(params, match):
    from s4c.serving.onnx_segmenter import read_segmenter_params

    with pytest.raises(ValueError, match=match):
        read_segmenter_params({"parameters": {k: {"string_value": v} for k, v in params.items()}})
    assert read_segmenter_params({"parameters": {"intra_op_threads": {"string_value": "3"}}}) == {"intra_op_threads": 3}


def test_committed_repository_has_no_config_the_rendering_lacks():
    from s4c.repository.configs import repository_configs

    committed = {str(p.relative_to(REPO / "model_repository")) for p in (REPO / "model_repository").rglob("*.pbtxt")}
    assert committed == set(repository_configs())


def test_locator_forms_match_the_segmenters_but_for_the_name():
    from s4c.repository.configs import FORMS, locator_config, segmenter_config

    for form in (None, *FORMS):
        seg = segmenter_config("venous", form)
        assert locator_config(form) == seg.replace(contract.segmenter_model("venous"), contract.LOCATOR_MODEL)


def test_repository_configs_in_full_mode():
    from s4c.repository.configs import parse_parameters, repository_configs

    roi, full = repository_configs(), repository_configs("full")
    assert set(roi) == set(full)
    for rel in roi:
        if rel.startswith(f"{contract.PIPELINE_MODEL}/"):
            assert parse_parameters(full[rel])["parameters"]["mode"] == {"string_value": "full"}, rel
        else:
            assert full[rel] == roi[rel], rel


def test_configs_use_the_contract_names():
    from s4c.repository.configs import dual_phase_config, pipeline_config, segmenter_config

    text = pipeline_config()
    for name in (contract.CT, contract.SPACING, contract.PHASE, contract.LABELS, contract.ABNORMAL,
                 contract.TUMOR_VOXELS, contract.DUCT_VOXELS, contract.REPORT):
        assert f'name: "{name}"' in text
    # Labels' placement is asked per BLS request (preferred_memory); this backend key would move inputs only.
    trt = pipeline_config("tensorrt")
    assert "KIND_GPU" in trt and "FORCE_CPU_ONLY_INPUT_TENSORS" not in trt
    trt = segmenter_config("arterial", "tensorrt")
    assert 'platform: "tensorrt_plan"' in trt and "dynamic_batching" in trt and "KIND_GPU" in trt
    assert 'backend: "python"' in segmenter_config("venous")
    dual = dual_phase_config()
    for name in ("ARTERIAL", "VENOUS", "ARTERIAL_SPACING", "VENOUS_SPACING", "LABELS_ARTERIAL", "LABELS_VENOUS"):
        assert f'name: "{name}"' in dual
    with pytest.raises(ValueError, match="form"):
        segmenter_config("arterial", "openvino")


def test_segmenter_max_batch_matches_the_engine_default():
    """The TensorRT profile's maximum (s4c export trt --max-batch default) is the config's max_batch_size."""
    from s4c.cli import build_parser
    from s4c.repository.configs import SEGMENTER_MAX_BATCH

    args = build_parser().parse_args(["export", "trt", "--onnx", "a.onnx", "--out", "b.plan"])
    assert args.max_batch == SEGMENTER_MAX_BATCH


@pytest.mark.parametrize(("message", "code", "want_code", "want_message"), [
    ("s4c: bad [s4c-code:INVALID_ARG]", "INTERNAL", "INVALID_ARG", "phase: s4c: bad"),  # tag wins (Triton < 2.56)
    ("s4c: bad [s4c-code:UNAVAILABLE]", "UNAVAILABLE", "UNAVAILABLE", "phase: s4c: bad"),
    ("s4c: bad", "INVALID_ARG", "INVALID_ARG", "phase: s4c: bad"),  # code() passed through (Triton >= 2.56)
    ("s4c: bad", None, "INTERNAL", "phase: s4c: bad"),  # a stub without codes
    ("x Exceeds maximum queue size", "INTERNAL", "UNAVAILABLE", "phase: x Exceeds maximum queue size"),
    ("'s' version 1 is not at ready state", None, "UNAVAILABLE", "phase: 's' version 1 is not at ready state"),
    ("s4c: bad [s4c-code:NOPE]", "INTERNAL", "INTERNAL", "phase: s4c: bad [s4c-code:NOPE]"),  # not a code: kept
    ("s4c: bad [s4c-code:CANCELLED] tail", "INTERNAL", "INTERNAL", "phase: s4c: bad [s4c-code:CANCELLED] tail"),
])
def test_child_error_code_and_message(message, code, want_code, want_message):
    from s4c.serving.errors import child_error

    err = child_error(message, code, "phase")
    assert (err.code, str(err)) == (want_code, want_message)


def test_error_tags_round_trip_and_only_for_internal_ids():
    from s4c.serving.errors import CODE_NAMES, BlsError, child_error, is_internal_id, tagged
    from s4c.serving.service import error_code

    for code in CODE_NAMES:
        assert child_error(tagged("m", code, True), "INTERNAL", "w").code == code
        assert error_code(BlsError("m", code)) == code
    assert tagged("m", "INVALID_ARG", False) == "m"
    assert is_internal_id("s4c-internal:venous") and not is_internal_id("") and not is_internal_id(None)
    with pytest.raises(ValueError, match="unknown Triton error code"):
        BlsError("m", "NOPE")


def test_shared_memory_close_waits_while_the_server_holds_a_region(monkeypatch):
    """Triton refuses to unregister a region "currently in use" until it releases the request's inputs;
    close() retries that one error, and gives up on any other at once."""
    pytest.importorskip("tritonclient.utils.shared_memory")
    from tritonclient.utils import InferenceServerException

    import s4c.serving.shm as shm_mod

    monkeypatch.setattr(shm_mod.time, "sleep", lambda s: None)

    class FakeClient:
        def __init__(self, busy: int, other: bool = False) -> None:
            self.busy, self.other, self.calls = busy, other, []

        def register_system_shared_memory(self, name, key, nbytes, headers=None):
            pass

        def unregister_system_shared_memory(self, name, headers=None):
            self.calls.append(name)
            if self.other:
                raise InferenceServerException("restricted protocol")
            if self.busy:
                self.busy -= 1
                raise InferenceServerException(f"Cannot unregister shared memory region '{name}', "
                                               "it is currently in use.")

    busy = FakeClient(busy=2)
    with shm_mod.SystemSharedMemory(busy) as shm:
        shm.input("CT", np.zeros((4, 4, 4), np.int16), "INT16")
    assert len(busy.calls) == 3 and busy.busy == 0
    refused = FakeClient(busy=0, other=True)
    with pytest.raises(InferenceServerException, match="restricted"):
        with shm_mod.SystemSharedMemory(refused) as shm:
            shm.input("CT", np.zeros((4, 4, 4), np.int16), "INT16")
    assert len(refused.calls) == 1
    import tritonclient.utils.shared_memory as sysshm

    assert sysshm.mapped_shared_memory_regions() == []
