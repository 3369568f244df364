"""The Python-backend model.py files on their own, with a stand-in triton_python_backend_utils (the real
server tests are in test_server.py). Checks one response per request and the error mapping."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
import types
from pathlib import Path

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
    def __init__(self, tensors, cancelled=False):
        self.tensors, self.cancelled = {t.name(): t for t in tensors}, cancelled

    def is_cancelled(self):
        return self.cancelled

    def request_id(self):
        return ""


class FakeBls:
    """InferenceRequest stand-in that answers segmenter calls with an oracle (labels from HU)."""

    def __init__(self, model_name, requested_output_names, inputs):
        self.model_name, self.inputs = model_name, inputs

    async def async_exec(self):
        x = self.inputs[0].as_numpy()
        labels = np.digitize(x[:, 0], [0.0, 60.0, 200.0]).astype(np.uint8)
        return types.SimpleNamespace(has_error=lambda: False, labels=FakeTensor(contract.SEG_LABELS, labels))


def fake_pb_utils():
    pb = types.ModuleType("triton_python_backend_utils")
    pb.Tensor, pb.TritonError, pb.InferenceResponse, pb.InferenceRequest = FakeTensor, FakeError, FakeResponse, FakeBls
    pb.get_input_tensor_by_name = lambda request, name: request.tensors.get(name)
    pb.get_output_tensor_by_name = lambda response, name: response.labels
    pb.Logger = types.SimpleNamespace(log_error=lambda msg: pb.logged.append(msg))
    pb.logged = []
    return pb


@pytest.fixture
def s4c_model(monkeypatch, tmp_path):
    from s4c.checkpoint import ModelSpec
    from s4c.serving.service import SegmenterInfo, write_segmenters_file

    pb = fake_pb_utils()
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", pb)
    (tmp_path / "1").mkdir()
    infos = {f"segmenter_{p}": SegmenterInfo(f"segmenter_{p}", "1", ModelSpec(width=4, phase=p), "x") for p in
             ("arterial", "venous")}
    write_segmenters_file(tmp_path / "1" / "segmenters.json", infos)
    spec = importlib.util.spec_from_file_location("s4c_model_py", REPO / "model_repository" / "s4c" / "1" / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.TritonPythonModel()
    model.initialize({"model_config": json.dumps({"name": "s4c", "parameters": {}}), "model_repository": str(tmp_path),
                      "model_version": "1", "model_instance_kind": "CPU"})
    return model, pb


def _request(ct, spacing=(2.5, 2.5, 2.5), phase=b"venous", cancelled=False):
    tensors = [FakeTensor(contract.CT, ct), FakeTensor(contract.SPACING, np.asarray(spacing, np.float32)),
               FakeTensor(contract.PHASE, np.array([phase], dtype=np.object_))]
    return FakeRequest(tensors, cancelled)


def test_one_response_per_request_with_errors_in_place(s4c_model):
    model, _ = s4c_model
    good = np.full((64, 70, 66), -50, np.int16)
    good[20:40, 20:40, 20:40] = 30  # 'pancreas' to the oracle (0..60 HU), with a 'tumour' core (60..200)
    good[28:32, 28:32, 28:32] = 100
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
