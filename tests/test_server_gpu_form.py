"""The GPU form of the Python-backend models on the real tritonserver, as far as a CPU goes.

The server is started with ``--model-config-name=tensorrt`` on a repository where ``s4c`` has only its
``configs/tensorrt.pbtxt`` (its default config.pbtxt is removed, so nothing else can load) with the
instance kinds switched KIND_GPU -> KIND_CPU, and the segmenters and the locator have only their CPU
form. A dual-phase case must come back equal to the in-process library: the GPU form's parameters load
in ``initialize()``, and every BLS request's ``preferred_memory`` (host memory for a CPU instance) is
accepted by the bundled Triton 2.51 stub.
"""

from __future__ import annotations

import json
import shutil
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from s4c import contract
from s4c.data.phantom import generate_case
from s4c.inference.pipeline import RoiSettings, run_phase
from s4c.inference.predictor import OnnxPredictor
from s4c.postprocess import fuse
from s4c.repository.configs import parse_parameters
from s4c.repository.export import export_repository
from s4c.repository.params import ServingParams
from s4c.serving.server import ADMIN_HEADER, ServerConfig, TritonServer, free_ports

pytestmark = pytest.mark.server

grpcclient = pytest.importorskip("tritonclient.grpc")

REPO = Path(__file__).resolve().parents[1]
FORM = "tensorrt"


@pytest.fixture(scope="module")
def gpu_form_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("gpu-form")
    repo = root / "model_repository"
    shutil.copytree(REPO / "model_repository", repo,
                    ignore=shutil.ignore_patterns("*.onnx", "*.plan", "segmenters.json", "__pycache__", "README.md"))
    export_repository(repo)
    pipeline = repo / contract.PIPELINE_MODEL
    form = pipeline / "configs" / f"{FORM}.pbtxt"
    text = form.read_text()
    assert text.count("KIND_GPU") == 1 and "KIND_CPU" not in text
    form.write_text(text.replace("KIND_GPU", "KIND_CPU"))
    (pipeline / "config.pbtxt").unlink()  # only the GPU form's file can load now
    (pipeline / "configs" / "onnxruntime.pbtxt").unlink()
    for name in contract.PATCH_MODELS:  # the CPU (Python-backend) form: no configs/<form>.pbtxt to pick
        shutil.rmtree(repo / name / "configs")
    assert not (repo / contract.DUAL_PHASE_MODEL / "configs").exists()  # one form only
    grpc, http, metrics = free_ports(3)
    config = ServerConfig(repo, grpc_port=grpc, http_port=http, metrics_port=metrics, config_name=FORM)
    server = TritonServer(config, log_path=root / "tritonserver.log")
    server.start()
    try:
        server.wait_ready(300)
        yield server
    finally:
        server.stop()


def test_the_pipeline_model_runs_its_gpu_form_config(gpu_form_server):
    cfg = gpu_form_server.config
    req = urllib.request.Request(f"http://{cfg.local_host}:{cfg.http_port}/v2/models/{contract.PIPELINE_MODEL}/config",
                                 headers={ADMIN_HEADER: cfg.admin_key})
    with urllib.request.urlopen(req, timeout=10) as r:
        served = json.loads(r.read())
    form = parse_parameters((Path(cfg.repository) / contract.PIPELINE_MODEL / "configs" / f"{FORM}.pbtxt").read_text())
    assert served["parameters"] == form["parameters"]
    assert [g["kind"] for g in served["instance_group"]] == ["KIND_CPU"]
    assert "FORCE_CPU_ONLY_INPUT_TENSORS" not in served["parameters"]


def test_a_dual_phase_case_on_the_gpu_form(gpu_form_server):
    case = generate_case(5, abnormal=True, shape=(48, 72, 72), spacing=(2.5, 2.5, 2.5), case_id="gpu-form")
    cts = {"arterial": case.arterial.astype(np.int16), "venous": case.venous.astype(np.int16)}
    spacing = (2.5, 2.5, 2.5)
    inputs = []
    for phase, ct in cts.items():
        ct_name, sp_name, _ = contract.DUAL_INPUTS[phase]
        for name, array, dtype in ((ct_name, ct, "INT16"), (sp_name, np.asarray(spacing, np.float32), "FP32")):
            t = grpcclient.InferInput(name, list(array.shape), dtype)
            t.set_data_from_numpy(array)
            inputs.append(t)
    client = grpcclient.InferenceServerClient(gpu_form_server.config.grpc_url)
    try:
        r = client.infer(contract.DUAL_PHASE_MODEL, inputs, client_timeout=300)
    finally:
        client.close()
    report = json.loads(r.as_numpy(contract.REPORT)[0])
    repo = Path(gpu_form_server.config.repository)
    loc = OnnxPredictor(repo / contract.LOCATOR_MODEL / "1" / "model.onnx", threads=1)
    sp = ServingParams()
    decisions = []
    for phase, ct in cts.items():
        pred = OnnxPredictor(repo / contract.segmenter_model(phase) / "1" / "model.onnx", threads=1)
        ref = run_phase(ct, spacing, pred, pred.spec, mode="roi", locator=(loc, loc.spec),
                        roi=RoiSettings(margin_mm=sp.roi_margin_mm, stride=sp.locator_stride, batch_size=sp.batch_size),
                        stride=sp.stride, batch_size=sp.batch_size)
        labels = r.as_numpy(contract.DUAL_LABELS[phase])
        assert labels.shape == ct.shape and labels.tobytes() == ref.decision.labels.tobytes()
        assert report["phases"][phase]["mode"] == "roi" and report["phases"][phase]["patches"] >= 1
        decisions.append(ref.decision)
    assert bool(r.as_numpy(contract.ABNORMAL)[0]) == fuse(*decisions) == report["abnormal"]
    assert any(d.labels.any() for d in decisions)  # the comparison is over labels, not two empty volumes
