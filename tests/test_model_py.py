"""The Python-backend model.py files on their own, with a stand-in triton_python_backend_utils (the real
server tests are in test_server.py). Checks one response per request and the error mapping."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
import types
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from s4c import contract

REPO = Path(__file__).resolve().parents[1]


class FakeTensor:
    def __init__(self, name, array):
        self._name, self._array = name, np.asarray(array)

    def name(self):
        return self._name

    def as_numpy(self):
        return self._array

    def is_cpu(self):
        return True


class FakeError:
    INVALID_ARG, INTERNAL, UNAVAILABLE, CANCELLED = "INVALID_ARG", "INTERNAL", "UNAVAILABLE", "CANCELLED"

    def __init__(self, message, code="INTERNAL"):
        self._message, self._code = message, code

    def message(self):
        return self._message

    def code(self):
        return self._code


class FakeResponse:
    def __init__(self, output_tensors=None, error=None):
        self.output_tensors, self.error = output_tensors or [], error


class FakeRequest:
    def __init__(self, tensors, cancelled=False, request_id=""):
        self.tensors, self.cancelled, self.id = {t.name(): t for t in tensors}, cancelled, request_id

    def is_cancelled(self):
        return self.cancelled

    def request_id(self):
        return self.id


class FakeBls:
    """InferenceRequest stand-in that answers segmenter calls with an oracle (labels from HU) and locator
    calls with pancreas set / background (HU >= 0); ``calls`` counts the batches each model got,
    ``ids`` the request ids they carried, ``memory`` the (memory type, device) each asked its outputs in;
    a model in ``fail`` answers that error instead. Keyword arguments are python_backend's own."""

    calls: ClassVar[dict] = {}
    ids: ClassVar[dict] = {}
    fail: ClassVar[dict] = {}
    memory: ClassVar[dict] = {}

    def __init__(self, model_name, requested_output_names, inputs, request_id="", preferred_memory=None):
        if preferred_memory is not None and not isinstance(preferred_memory, FakePreferredMemory):
            raise TypeError("preferred_memory must be a pb_utils.PreferredMemory")
        self.model_name, self.inputs, self.request_id = model_name, inputs, request_id
        self.preferred_memory = preferred_memory

    async def async_exec(self):
        FakeBls.calls[self.model_name] = FakeBls.calls.get(self.model_name, 0) + 1
        FakeBls.ids.setdefault(self.model_name, set()).add(self.request_id)
        where = None if self.preferred_memory is None else (self.preferred_memory.type, self.preferred_memory.device)
        FakeBls.memory.setdefault(self.model_name, set()).add(where)
        if self.model_name in FakeBls.fail:
            error = FakeBls.fail[self.model_name]
            return types.SimpleNamespace(has_error=lambda: True, error=lambda: error)
        x = self.inputs[0].as_numpy()
        if self.model_name == contract.LOCATOR_MODEL:
            labels = (x[:, 0] >= 0.0).astype(np.uint8)
        else:
            labels = np.digitize(x[:, 0], [0.0, 60.0, 200.0]).astype(np.uint8)
        return types.SimpleNamespace(has_error=lambda: False, labels=FakeTensor(contract.SEG_LABELS, labels))


class FakePreferredMemory:
    """pb_utils.PreferredMemory(preferred_memory_type, preferred_device_id=0) (python_backend pb_stub.cc)."""

    def __init__(self, preferred_memory_type, preferred_device_id=0):
        if preferred_memory_type not in (MEMORY_GPU, MEMORY_CPU):
            raise TypeError(f"not a pb_utils memory type: {preferred_memory_type!r}")
        self.type, self.device = preferred_memory_type, int(preferred_device_id)


#: Stand-ins for pb_utils.TRITONSERVER_MEMORY_GPU / _CPU (a pybind11 enum in the stub).
MEMORY_GPU, MEMORY_CPU = "GPU", "CPU"


def fake_pb_utils():
    pb = types.ModuleType("triton_python_backend_utils")
    pb.Tensor, pb.TritonError, pb.InferenceResponse, pb.InferenceRequest = FakeTensor, FakeError, FakeResponse, FakeBls
    pb.PreferredMemory = FakePreferredMemory
    pb.TRITONSERVER_MEMORY_GPU, pb.TRITONSERVER_MEMORY_CPU = MEMORY_GPU, MEMORY_CPU
    pb.get_input_tensor_by_name = lambda request, name: request.tensors.get(name)
    pb.get_output_tensor_by_name = lambda response, name: response.labels
    pb.Logger = types.SimpleNamespace(log_error=lambda msg: pb.logged.append(msg))
    pb.logged = []
    return pb


def _infos(locator_role="locator"):
    from s4c.checkpoint import ModelSpec
    from s4c.repository.segmenters import SegmenterInfo

    infos = {f"segmenter_{p}": SegmenterInfo(f"segmenter_{p}", "1", ModelSpec(width=4, phase=p), "x") for p in
             ("arterial", "venous")}
    if locator_role is not None:
        loc = (ModelSpec(width=4, phase="any", num_classes=2, role="locator", spacing=(5.0, 5.0, 5.0))
               if locator_role == "locator" else ModelSpec(width=4, phase="venous"))
        infos[contract.LOCATOR_MODEL] = SegmenterInfo(contract.LOCATOR_MODEL, "1", loc, "loc-sha")
    return infos


def load_s4c_model(monkeypatch, tmp_path, parameters=None, infos=None, instance=("CPU", "0")):
    """model.py of ``s4c`` initialised as Triton would, over a fake pb_utils and a segmenters.json;
    ``instance``: Triton's model_instance_kind and model_instance_device_id."""
    from s4c.repository.segmenters import write_segmenters_file

    pb = fake_pb_utils()
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", pb)
    monkeypatch.setattr(FakeBls, "calls", {})
    monkeypatch.setattr(FakeBls, "ids", {})
    monkeypatch.setattr(FakeBls, "fail", {})
    monkeypatch.setattr(FakeBls, "memory", {})
    (tmp_path / "1").mkdir(exist_ok=True)
    write_segmenters_file(tmp_path / "1" / "segmenters.json", _infos() if infos is None else infos)
    spec = importlib.util.spec_from_file_location("s4c_model_py", REPO / "model_repository" / "s4c" / "1" / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.TritonPythonModel()
    params = {k: {"string_value": v} for k, v in (parameters or {}).items()}
    model.initialize({"model_config": json.dumps({"name": "s4c", "parameters": params}),
                      "model_repository": str(tmp_path), "model_version": "1", "model_instance_kind": instance[0],
                      "model_instance_device_id": instance[1]})
    return model, pb


@pytest.fixture(params=["roi", "full"])
def s4c_model(request, monkeypatch, tmp_path):
    return load_s4c_model(monkeypatch, tmp_path, {"mode": request.param})


def _ok_case():
    ct = np.full((64, 70, 66), -50, np.int16)
    ct[20:40, 20:40, 20:40] = 30  # 'pancreas' to the oracle (0..60 HU), with a 'tumour' core (60..200)
    ct[28:32, 28:32, 28:32] = 100
    return ct


def _request(ct, spacing=(2.5, 2.5, 2.5), phase=b"venous", cancelled=False, request_id=""):
    tensors = [FakeTensor(contract.CT, ct), FakeTensor(contract.SPACING, np.asarray(spacing, np.float32)),
               FakeTensor(contract.PHASE, np.array([phase], dtype=np.object_))]
    return FakeRequest(tensors, cancelled, request_id)


def test_one_response_per_request_with_errors_in_place(s4c_model):
    model, _ = s4c_model
    good = _ok_case()
    requests = [_request(good), _request(good, phase=b"delayed"), _request(good, spacing=(1, 0, 1)), _request(good)]
    responses = asyncio.run(model.execute(requests))
    assert len(responses) == 4
    ok, bad_phase, bad_spacing, ok2 = responses
    assert ok.error is None and bad_phase.error.code() == "INVALID_ARG" and bad_spacing.error.code() == "INVALID_ARG"
    assert "delayed" in bad_phase.error.message() and "SPACING" in bad_spacing.error.message()
    out = {t.name(): t.as_numpy() for t in ok.output_tensors}
    assert set(out) == {contract.LABELS, contract.ABNORMAL, contract.TUMOR_VOXELS, contract.DUCT_VOXELS,
                        contract.REPORT}
    assert out[contract.LABELS].shape == good.shape and out[contract.TUMOR_VOXELS][0] == 64
    assert bool(out[contract.ABNORMAL][0]) is True
    assert json.loads(out[contract.REPORT][0])["tumor_voxels"] == 64
    assert ok2.error is None


def test_cancelled_request_gets_cancelled(s4c_model):
    model, _ = s4c_model
    (resp,) = asyncio.run(model.execute([_request(np.zeros((64, 64, 200), np.int16), cancelled=True)]))
    assert resp.error.code() == "CANCELLED"


def test_internal_error_is_logged_not_returned(s4c_model, monkeypatch):
    model, pb = s4c_model

    async def boom(*a, **k):
        raise RuntimeError("secret patient detail")

    monkeypatch.setattr(model.pipeline, "run", boom)
    (resp,) = asyncio.run(model.execute([_request(np.zeros((64, 64, 64), np.int16))]))
    assert resp.error.code() == "INTERNAL"
    assert "secret" not in resp.error.message() and "RuntimeError" in resp.error.message()
    assert any("secret patient detail" in m for m in pb.logged)


def test_roi_mode_calls_the_locator_then_the_segmenter_on_the_region(monkeypatch, tmp_path):
    """The committed config's parameters (default mode roi, the locator model) through model.py."""
    from s4c.repository.configs import parse_parameters

    config = parse_parameters((REPO / "model_repository" / "s4c" / "config.pbtxt").read_text())
    parameters = {k: v["string_value"] for k, v in config["parameters"].items()}
    assert parameters["mode"] == "roi" and parameters["locator"] == contract.LOCATOR_MODEL
    model, _ = load_s4c_model(monkeypatch, tmp_path, parameters)
    (resp,) = asyncio.run(model.execute([_request(_ok_case())]))
    assert resp.error is None, resp.error and resp.error.message()
    out = {t.name(): t.as_numpy() for t in resp.output_tensors}
    report = json.loads(out[contract.REPORT][0])
    assert report["mode"] == "roi" and report["roi_fallback"] is False
    assert len(report["roi_zyx"]) == 3 and all(0 <= lo < hi <= n for (lo, hi), n in
                                                 zip(report["roi_zyx"], (64, 70, 66), strict=True))
    assert report["locator"]["name"] == contract.LOCATOR_MODEL and report["locator"]["onnx_sha256"] == "loc-sha"
    assert report["locator_patches"] >= 1 and report["patches"] >= 1
    assert FakeBls.calls[contract.LOCATOR_MODEL] >= 1 and FakeBls.calls["segmenter_venous"] >= 1
    assert out[contract.TUMOR_VOXELS][0] == 64 and bool(out[contract.ABNORMAL][0])


def test_full_mode_calls_no_locator(monkeypatch, tmp_path):
    model, _ = load_s4c_model(monkeypatch, tmp_path, {"mode": "full"}, infos=_infos(locator_role=None))
    (resp,) = asyncio.run(model.execute([_request(_ok_case())]))
    report = json.loads({t.name(): t.as_numpy() for t in resp.output_tensors}[contract.REPORT][0])
    assert report["mode"] == "full" and report["roi_zyx"] is None and "locator" not in report
    assert contract.LOCATOR_MODEL not in FakeBls.calls


@pytest.mark.parametrize("mode", ["roi", "full"])
def test_cpu_instance_asks_every_bls_output_in_host_memory(monkeypatch, tmp_path, mode):
    """A CPU pipeline instance votes with numpy: each segmenter and locator call asks for host memory,
    or a GPU segmenter would hand it device labels (python_backend keeps BLS outputs where produced)."""
    model, _ = load_s4c_model(monkeypatch, tmp_path, {"mode": mode})
    (resp,) = asyncio.run(model.execute([_request(_ok_case())]))
    assert resp.error is None
    called = {"segmenter_venous", *([contract.LOCATOR_MODEL] if mode == "roi" else [])}
    assert set(FakeBls.memory) == called
    assert all(where == {(MEMORY_CPU, 0)} for where in FakeBls.memory.values()), FakeBls.memory


def test_gpu_instance_asks_for_its_own_device_and_votes_there(monkeypatch, tmp_path):
    """Instance on GPU 1: the labels are asked on GPU 1 and the voter runs on cuda:1 (the vote itself is
    the torch voter's, tested on the CPU device in test_serving_units.py)."""
    model, _ = load_s4c_model(monkeypatch, tmp_path, {"mode": "roi"}, instance=("GPU", "1"))
    assert model.pipeline.voter_factory.keywords == {"device": "cuda:1"}
    batch = np.zeros((2, *contract.SEG_INPUT_DIMS), np.float32)
    for predict in (*model.pipeline.predictors.values(), model.pipeline.locator[0]):
        asyncio.run(predict(batch))
    assert FakeBls.memory == {name: {(MEMORY_GPU, 1)} for name in ("segmenter_arterial", "segmenter_venous",
                                                                   contract.LOCATOR_MODEL)}


def test_output_memory_needs_a_device_id(monkeypatch):
    from s4c.serving import triton

    pb = fake_pb_utils()
    assert triton.output_memory(pb, 3).device == 3 and triton.output_memory(pb, None).type == MEMORY_CPU
    for bad in (-1, "0", 1.0, True):
        with pytest.raises(ValueError, match="GPU device id"):
            triton.output_memory(pb, bad)


@pytest.mark.parametrize(("parameters", "infos", "match"), [
    ({"mode": "roi"}, "no locator", "locator 'locator' is not described in segmenters.json"),
    ({"mode": "roi"}, "segmenter as locator", "holds a segmenter model, not a locator"),
    ({"mode": "roi", "locator": "loc2"}, None, "'loc2' is not described"),
    ({"mode": "coarse"}, None, "mode must be one of roi, full"),
])
def test_roi_mode_refuses_a_config_without_a_locator(monkeypatch, tmp_path, parameters, infos, match):
    infos = {None: None, "no locator": _infos(locator_role=None),
             "segmenter as locator": _infos(locator_role="segmenter")}[infos]
    with pytest.raises(ValueError, match=match):
        load_s4c_model(monkeypatch, tmp_path, parameters, infos)


# Error codes through BLS: a child's code and message reach the caller unchanged.
TAG = " [s4c-code:{}]"


@pytest.mark.parametrize("tag", [True, False], ids=["tagged", "code()"])
@pytest.mark.parametrize("code", ["INVALID_ARG", "INTERNAL", "UNAVAILABLE", "CANCELLED"])
def test_segmenter_error_keeps_its_code_and_message(monkeypatch, tmp_path, code, tag):
    """A segmenter answering ``code`` makes the s4c response ``code``, with the segmenter's message; the
    code reaches s4c either as the child's tag (python_backend < 25.04 drops codes) or as code()."""
    model, _ = load_s4c_model(monkeypatch, tmp_path, {"mode": "full"}, infos=_infos(locator_role=None))
    message = "segmenter_venous: deliberate failure"
    FakeBls.fail["segmenter_venous"] = FakeError(message + (TAG.format(code) if tag else ""),
                                                 "INTERNAL" if tag else code)
    (resp,) = asyncio.run(model.execute([_request(_ok_case())]))
    assert resp.error.code() == code
    assert resp.error.message() == f"s4c: segmenter segmenter_venous: {message}"  # tag stripped, nothing lost
    assert FakeBls.calls["segmenter_venous"] >= 1
    assert FakeBls.ids["segmenter_venous"] == {"s4c-internal:segmenter"}  # so our segmenter tags its errors


@pytest.mark.parametrize(("message", "code"), [
    ("Model segmenter_venous - Error when running inference: [request id: s4c-internal:segmenter] Exceeds "
     "maximum queue size", "UNAVAILABLE"),
    ("Model segmenter_venous - Error when running inference: 'segmenter_venous' version 1 is not at ready state",
     "UNAVAILABLE"),
    ("onnxruntime backend: invalid batch", "INTERNAL"),
])
def test_untagged_child_errors_of_triton_core(monkeypatch, tmp_path, message, code):
    """A child that is not ours (Triton core at submission, another backend) on a python_backend that
    reports every BLS error as INTERNAL: its transient messages become UNAVAILABLE, the rest stay INTERNAL."""
    model, _ = load_s4c_model(monkeypatch, tmp_path, {"mode": "full"}, infos=_infos(locator_role=None))
    FakeBls.fail["segmenter_venous"] = FakeError(message, "INTERNAL")
    (resp,) = asyncio.run(model.execute([_request(_ok_case())]))
    assert resp.error.code() == code and message in resp.error.message()


def test_locator_error_keeps_its_code(monkeypatch, tmp_path):
    model, _ = load_s4c_model(monkeypatch, tmp_path, {"mode": "roi"})
    FakeBls.fail[contract.LOCATOR_MODEL] = FakeError("locator: bad batch" + TAG.format("INVALID_ARG"))
    (resp,) = asyncio.run(model.execute([_request(_ok_case())]))
    assert resp.error.code() == "INVALID_ARG" and resp.error.message() == "s4c: locator locator: locator: bad batch"
    assert "segmenter_venous" not in FakeBls.calls


@pytest.mark.parametrize("request_id", ["s4c-internal:venous", "", "user-7"])
def test_s4c_tags_its_errors_only_for_internal_requests(s4c_model, request_id):
    """The dual-phase model's calls (internal ids) get the code in the message; a user's never does."""
    model, _ = s4c_model
    (bad, internal_error) = asyncio.run(model.execute([_request(_ok_case(), phase=b"delayed", request_id=request_id),
                                                       _request(_ok_case(), spacing=(0, 1, 1),
                                                                request_id=request_id)]))
    internal = request_id.startswith("s4c-internal:")
    for resp in (bad, internal_error):
        assert resp.error.code() == "INVALID_ARG"
        assert resp.error.message().endswith(TAG.format("INVALID_ARG")) is internal
    assert "delayed" in bad.error.message()


def load_dual_model(monkeypatch):
    pb = fake_pb_utils()
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", pb)
    monkeypatch.setattr(FakeBls, "memory", {})
    monkeypatch.setattr(FakeBls, "calls", {})
    monkeypatch.setattr(FakeBls, "ids", {})
    monkeypatch.setattr(FakeBls, "fail", {})
    path = REPO / "model_repository" / "s4c_dual_phase" / "1" / "model.py"
    spec = importlib.util.spec_from_file_location("s4c_dual_model_py", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.TritonPythonModel()
    model.initialize({"model_config": json.dumps({"name": "s4c_dual_phase", "parameters": {}}),
                      "model_repository": "unused", "model_version": "1", "model_instance_kind": "CPU"})
    return model


def _dual_request():
    ct, sp = _ok_case(), np.full(3, 2.5, np.float32)
    return FakeRequest([FakeTensor("ARTERIAL", ct), FakeTensor("VENOUS", ct), FakeTensor("ARTERIAL_SPACING", sp),
                        FakeTensor("VENOUS_SPACING", sp)])


@pytest.mark.parametrize("code", ["INVALID_ARG", "INTERNAL", "UNAVAILABLE"])
def test_dual_phase_passes_the_pipeline_code_on(monkeypatch, code):
    """s4c (called with internal ids) answers ``code`` tagged: the dual-phase response has ``code`` and
    s4c's message, tag stripped."""
    model = load_dual_model(monkeypatch)
    FakeBls.fail[contract.PIPELINE_MODEL] = FakeError("s4c: segmenter segmenter_arterial: broken" + TAG.format(code))
    (resp,) = asyncio.run(model.execute([_dual_request()]))
    assert resp.error.code() == code
    assert resp.error.message() in {f"s4c_dual_phase: {p}: s4c: segmenter segmenter_arterial: broken"
                                    for p in ("arterial", "venous")}
    assert FakeBls.ids[contract.PIPELINE_MODEL] == {"s4c-internal:arterial", "s4c-internal:venous"}
