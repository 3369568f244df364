"""ONNX export parity, TensorRT's type rules on every exported graph, the FP16 graph for TensorRT 11, the
trtexec command lines of TensorRT 10 and 11, engine staleness, engine builds (gpu) and the Triton repository."""

from __future__ import annotations

import json
import re
import stat
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from s4c import contract
from s4c.checkpoint import ModelSpec, load_checkpoint, save_checkpoint
from s4c.export import tensorrt as trt_mod
from s4c.export.tensorrt import (
    _check_profile,
    build_engine,
    build_engine_trtexec,
    engine_is_current,
    parse_trtexec_version,
    to_fp16_onnx,
    trtexec_command,
)
from s4c.network import S4CNet
from s4c.repository.export import export_repository
from s4c.repository.onnx import OPSET, check_tensorrt_types, export_onnx, read_spec, tensorrt_type_problems


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A width-4 network with non-trivial BatchNorm statistics, so the parity check means something."""
    torch.manual_seed(0)
    model = S4CNet(width=4)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    model.eval()
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint(path, model, ModelSpec(width=4, phase="venous", spacing=(2.5, 2.5, 2.5)))
    return path, model


def hu_batch(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(60, 150, (n, *contract.SEG_INPUT_DIMS)).astype(np.float32)


def test_onnx_graph_contract_and_parity(checkpoint, tmp_path):
    path, model = checkpoint
    onnx_path = export_onnx(path, tmp_path / "m.onnx", probabilities=True, logits=True)
    graph = onnx.load(str(onnx_path))
    onnx.checker.check_model(graph)
    assert max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) >= OPSET >= 17
    ins = {i.name: i for i in graph.graph.input}
    outs = {o.name: o for o in graph.graph.output}
    assert list(ins) == [contract.SEG_INPUT]
    assert ins[contract.SEG_INPUT].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert outs[contract.SEG_LABELS].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert read_spec(onnx_path).spacing == (2.5, 2.5, 2.5)
    assert tensorrt_type_problems(onnx_path) == []
    assert label_tail(graph) == ["ArgMax", "Cast:FLOAT", "Cast:UINT8"]
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    for n in (1, 3):
        x = hu_batch(n, seed=n)
        labels, probs, logits = sess.run([contract.SEG_LABELS, contract.SEG_PROBABILITIES, contract.SEG_LOGITS],
                                         {contract.SEG_INPUT: x})
        with torch.inference_mode():
            norm = np.clip(x, -160, 300)
            ref = model(torch.from_numpy((norm + 160) / 460.0)).numpy()
        assert labels.shape == (n, 64, 64, 64) and labels.dtype == np.uint8
        assert np.abs(logits - ref).max() < 1e-3
        assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
        assert (labels == ref.argmax(axis=1)).mean() >= 0.999


def test_fp16_graph_matches_fp32_labels(checkpoint, tmp_path):
    path, _ = checkpoint
    fp32 = export_onnx(path, tmp_path / "m.onnx")
    fp16 = to_fp16_onnx(fp32, tmp_path / "m.fp16.onnx")
    g = onnx.load(str(fp16))
    assert tensorrt_type_problems(g) == []
    assert label_tail(g)[-1] == "Cast:UINT8"
    assert g.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # I/O types kept
    assert g.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert any(init.data_type == onnx.TensorProto.FLOAT16 for init in g.graph.initializer)
    x = hu_batch(4, seed=9)
    a = ort.InferenceSession(str(fp32)).run([contract.SEG_LABELS], {contract.SEG_INPUT: x})[0]
    b = ort.InferenceSession(str(fp16)).run([contract.SEG_LABELS], {contract.SEG_INPUT: x})[0]
    assert (a == b).mean() >= 0.995


def label_tail(graph: onnx.ModelProto) -> list[str]:
    """The nodes from ArgMax to the LABELS output, as 'ArgMax' and 'Cast:<to type>'."""
    producer = {o: n for n in graph.graph.node for o in n.output}
    chain, name = [], contract.SEG_LABELS
    while name in producer:
        node = producer[name]
        to = [onnx.TensorProto.DataType.Name(a.i) for a in node.attribute if a.name == "to"]
        chain.append(f"{node.op_type}:{to[0]}" if to else node.op_type)
        if node.op_type == "ArgMax":
            break
        name = node.input[0]
    return chain[::-1]


def _cast_graph(src: int, to: int) -> onnx.ModelProto:
    x = onnx.helper.make_tensor_value_info("x", src, [2])
    y = onnx.helper.make_tensor_value_info("y", to, [2])
    node = onnx.helper.make_node("Cast", ["x"], ["y"], to=to, name="c")
    return onnx.helper.make_model(onnx.helper.make_graph([node], "g", [x], [y]),
                                  opset_imports=[onnx.helper.make_opsetid("", OPSET)])


@pytest.mark.parametrize(("src", "to", "ok"), [
    (onnx.TensorProto.INT64, onnx.TensorProto.UINT8, False),  # what a bare ArgMax -> uint8 exports as
    (onnx.TensorProto.INT32, onnx.TensorProto.UINT8, False),
    (onnx.TensorProto.BOOL, onnx.TensorProto.UINT8, False),
    (onnx.TensorProto.UINT8, onnx.TensorProto.INT64, False),
    (onnx.TensorProto.FLOAT, onnx.TensorProto.UINT8, True),
    (onnx.TensorProto.FLOAT16, onnx.TensorProto.UINT8, True),
    (onnx.TensorProto.UINT8, onnx.TensorProto.FLOAT, True),
    (onnx.TensorProto.INT64, onnx.TensorProto.FLOAT, True),  # no UINT8 involved
])
def test_tensorrt_uint8_cast_rule(src, to, ok):
    """TensorRT's DataType::kUINT8: "kUINT8 conversions are only supported for {kFLOAT, kHALF}"."""
    problems = tensorrt_type_problems(_cast_graph(src, to))
    assert (problems == []) is ok, problems
    if not ok:
        with pytest.raises(ValueError, match="would not build in TensorRT: Cast 'c'"):
            check_tensorrt_types(_cast_graph(src, to))


def test_engine_build_errors_without_tensorrt(tmp_path):
    with pytest.raises(ValueError, match="min-batch"):
        _check_profile(4, 2, 8)
    with pytest.raises(FileNotFoundError):
        build_engine(tmp_path / "missing.onnx", tmp_path / "m.plan")


@pytest.mark.gpu
def test_engine_matches_onnxruntime(checkpoint, tmp_path):  # pragma: no cover - needs a GPU with TensorRT
    trt = pytest.importorskip("tensorrt")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    path, _ = checkpoint
    fp32 = export_onnx(path, tmp_path / "m.onnx")
    plan = build_engine(fp32, tmp_path / "m.plan", min_batch=1, opt_batch=2, max_batch=4)
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(plan.read_bytes())
    ctx = engine.create_execution_context()
    x = torch.from_numpy(hu_batch(2)).cuda()
    ctx.set_input_shape(contract.SEG_INPUT, tuple(x.shape))
    out = torch.empty((2, 64, 64, 64), dtype=torch.uint8, device="cuda")
    ctx.set_tensor_address(contract.SEG_INPUT, x.data_ptr())
    ctx.set_tensor_address(contract.SEG_LABELS, out.data_ptr())
    ctx.execute_async_v3(torch.cuda.current_stream().cuda_stream)
    torch.cuda.synchronize()
    ref = ort.InferenceSession(str(fp32)).run([contract.SEG_LABELS], {contract.SEG_INPUT: x.cpu().numpy()})[0]
    assert (out.cpu().numpy() == ref).mean() >= 0.995


def _pbtxt_tensors(text: str, section: str) -> list[dict]:
    block = re.search(section + r" \[(.*?)\n\]", text, re.S).group(1)
    out = []
    for m in re.finditer(r'name: "(\w+)"\s+data_type: (\w+)\s+dims: \[([^\]]*)\]', block):
        out.append({"name": m.group(1), "type": m.group(2), "dims": [int(d) for d in m.group(3).split(",")]})
    return out


ONNX_TO_TRITON = {onnx.TensorProto.FLOAT: "TYPE_FP32", onnx.TensorProto.UINT8: "TYPE_UINT8"}


def _layout(root):
    import shutil

    repo_src = Path(__file__).resolve().parents[1] / "model_repository"
    shutil.copytree(repo_src, root, ignore=shutil.ignore_patterns("*.onnx", "*.plan", "segmenters.json", "configs",
                                                                  "config.pbtxt", "__pycache__"))
    return root


@pytest.fixture(scope="module")
def models(checkpoint, tmp_path_factory):
    """A models folder as `--models` takes it: both phases' segmenters and a 2-class locator."""
    _, model = checkpoint
    root = tmp_path_factory.mktemp("models")
    for phase in ("arterial", "venous"):
        save_checkpoint(root / f"default_{phase}.pt", model, ModelSpec(width=4, phase=phase))
    torch.manual_seed(1)
    save_checkpoint(root / "default_locator.pt", S4CNet(num_classes=2, width=4).eval(),
                    ModelSpec(width=4, phase="any", num_classes=2, role="locator", spacing=(5.0, 5.0, 5.0)))
    return root


def test_repository_configs_match_onnx_graphs(models, tmp_path):
    """Every form of each segmenter's and the locator's config declares exactly the exported graph's
    tensors; segmenters.json describes all three, the locator with its role."""
    import json

    repo = export_repository(_layout(tmp_path / "repo"), models=models)
    for name in contract.PATCH_MODELS:
        d = repo / name
        graph = onnx.load(str(d / "1" / "model.onnx"))
        for cfg in (d / "config.pbtxt", d / "configs" / "tensorrt.pbtxt", d / "configs" / "onnxruntime.pbtxt"):
            text = cfg.read_text()
            assert f'name: "{name}"' in text
            assert "max_batch_size: 16" in text and "dynamic_batching" in text
            for section, tensors in (("input", graph.graph.input), ("output", graph.graph.output)):
                declared = _pbtxt_tensors(text, section)
                actual = [{"name": t.name, "type": ONNX_TO_TRITON[t.type.tensor_type.elem_type],
                           "dims": [dim.dim_value for dim in t.type.tensor_type.shape.dim[1:]]} for t in tensors]
                assert declared == actual, (name, cfg.name, section)
    infos = json.loads((repo / "s4c" / "1" / "segmenters.json").read_text())
    assert set(infos) == {"segmenter_arterial", "segmenter_venous", contract.LOCATOR_MODEL}
    assert infos["segmenter_venous"]["spec"]["phase"] == "venous"
    assert infos["segmenter_venous"]["spec"]["role"] == "segmenter"
    loc = infos[contract.LOCATOR_MODEL]["spec"]
    assert (loc["role"], loc["phase"], loc["num_classes"]) == ("locator", "any", 2)
    assert read_spec(repo / contract.LOCATOR_MODEL / "1" / "model.onnx").role == "locator"


def test_locator_graph_labels_are_its_argmax(models, tmp_path):
    """The locator exports as is: 2 classes, argmax inside the graph, labels 0/1."""
    model, spec = load_checkpoint(models / "default_locator.pt")
    onnx_path = export_onnx(models / "default_locator.pt", tmp_path / "loc.onnx")
    x = hu_batch(2, seed=3)
    assert tensorrt_type_problems(onnx_path) == []
    labels = ort.InferenceSession(str(onnx_path)).run([contract.SEG_LABELS], {contract.SEG_INPUT: x})[0]
    with torch.inference_mode():
        ref = model(torch.from_numpy(spec.normalization.apply(x))).numpy().argmax(axis=1)
    assert labels.dtype == np.uint8 and labels.max() <= 1 and (labels == ref).mean() >= 0.999


def test_repository_mode_is_kept_unless_asked(models, tmp_path):
    from s4c.repository.export import configured_mode

    repo = _layout(tmp_path / "repo")
    assert configured_mode(repo) is None
    export_repository(repo, models=models)
    assert configured_mode(repo) == "roi"
    export_repository(repo, models=models, mode="full")
    assert configured_mode(repo) == "full"
    for form in ("tensorrt", "onnxruntime"):
        assert 'string_value: "full"' in (repo / "s4c" / "configs" / f"{form}.pbtxt").read_text()
    export_repository(repo, models=models)  # s4c serve's re-export after a checkpoint change
    assert configured_mode(repo) == "full"
    with pytest.raises(ValueError, match="mode"):
        export_repository(repo, models=models, mode="coarse")


def test_repository_engines_and_missing_models(models, tmp_path):
    import shutil

    repo = _layout(tmp_path / "repo")
    plan = tmp_path / "loc.plan"
    plan.write_bytes(b"engine")
    export_repository(repo, models=models, engines={"locator": plan})
    assert (repo / contract.LOCATOR_MODEL / "1" / "model.plan").read_bytes() == b"engine"
    with pytest.raises(ValueError, match="engines are for arterial, venous, locator"):
        export_repository(repo, models=models, engines={"segmenter_venous": plan})
    with pytest.raises(FileNotFoundError, match="no TensorRT engine for locator"):
        export_repository(repo, models=models, engines={"locator": tmp_path / "missing.plan"})
    partial = tmp_path / "partial"
    shutil.copytree(models, partial)
    (partial / "default_locator.pt").unlink()
    with pytest.raises(FileNotFoundError, match="no locator"):
        export_repository(repo, models=partial)
    shutil.copy(partial / "default_venous.pt", partial / "default_locator.pt")
    with pytest.raises(ValueError, match="holds a segmenter model; locator needs a locator"):
        export_repository(repo, models=partial)


def test_cli_export_repository_mode_and_engine_flags():
    from s4c.cli import build_parser

    args = build_parser().parse_args(["export", "repository", "--mode", "full", "--engine", "locator", "l.plan"])
    assert args.mode == "full" and args.engine == [["locator", "l.plan"]]
    assert build_parser().parse_args(["export", "repository"]).mode == "roi"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["export", "repository", "--mode", "coarse"])


def test_ensure_engines_builds_every_patch_model(models, tmp_path, monkeypatch):
    """--build-engines covers the locator as well as the segmenters (trtexec path, as without the
    TensorRT Python package)."""
    import sys

    from s4c.export import tensorrt as trt_mod

    repo = export_repository(_layout(tmp_path / "repo"), models=models)
    built = []
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt -> ImportError
    monkeypatch.setattr(trt_mod, "build_engine_trtexec",
                        lambda onnx_path, plan, max_batch: built.append(plan.parent.parent.name))
    trt_mod.ensure_engines(repo, max_batch=16, log=lambda _msg: None)
    assert built == list(contract.PATCH_MODELS)


def test_repository_needs_the_layout(checkpoint, tmp_path):
    with pytest.raises(FileNotFoundError, match="model_repository"):
        export_repository(tmp_path / "empty")


def test_repository_is_current_tracks_checkpoints(models, tmp_path):
    import shutil

    from s4c.repository.export import repository_is_current

    models = Path(shutil.copytree(models, tmp_path / "models"))
    model = S4CNet(width=4).eval()
    repo = _layout(tmp_path / "repo")
    assert not repository_is_current(repo, models)
    export_repository(repo, models=models)
    assert repository_is_current(repo, models)
    save_checkpoint(models / "default_venous.pt", model, ModelSpec(width=4, phase="venous", git_revision="other"))
    assert not repository_is_current(repo, models)
    export_repository(repo, models=models)
    assert repository_is_current(repo, models)
    save_checkpoint(models / "default_locator.pt", S4CNet(num_classes=2, width=4).eval(),
                    ModelSpec(width=4, phase="any", num_classes=2, role="locator", git_revision="other"))
    assert not repository_is_current(repo, models)  # the locator counts too
    export_repository(repo, models=models)
    (repo / contract.LOCATOR_MODEL / "1" / "model.onnx").write_bytes(b"stale")
    assert not repository_is_current(repo, models)
    (models / "default_locator.pt").unlink()
    assert not repository_is_current(repo, models)


@pytest.mark.slow
def test_gpu_fp16_script_smoke_on_cpu():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "export/gpu_fp16_check.py", "--smoke"], capture_output=True, text=True,
                         timeout=900, cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr
    assert '"label_agreement"' in out.stdout


# --- trtexec and engine staleness (TensorRT 10 and 11, on the CPU) --------------------------------------

@pytest.mark.parametrize(("output", "version"), [
    ("&&&& RUNNING TensorRT.trtexec [TensorRT v100500] [b18] # trtexec --help", "10.5.0"),
    ("&&&& RUNNING TensorRT.trtexec [TensorRT v101600] [b72] # trtexec --help", "10.16.0"),
    ("&&&& RUNNING TensorRT.trtexec [TensorRT v110000] [b114] # trtexec --help", "11.0.0"),
    ("&&&& RUNNING TensorRT.trtexec [TensorRT v8601] [b8] # trtexec", "8.6.1"),
    ("[I] TensorRT version: 11.1.0\n&&&& RUNNING TensorRT.trtexec [TensorRT v110100]", "11.1.0"),
    ("no banner", None),
])
def test_trtexec_version_strings(output, version):
    """NV_TENSORRT_VERSION is major*10000 + minor*100 + patch from TensorRT 10 (NvInferRuntimeBase.h)."""
    assert parse_trtexec_version(output) == version


@pytest.mark.parametrize(("version", "fp16_flag"), [("10.5.0", True), ("10.16.0", True), ("11.0.0", False),
                                                    ("11.1.0", False), ("12.0.0", False)])
def test_trtexec_command_line_per_tensorrt_version(version, fp16_flag):
    """TensorRT 11's trtexec has no --fp16 (release/11.0 samples/common/sampleOptions.cpp parses none) and
    fails on an option it does not know; 10.x still takes it."""
    cmd = trtexec_command("trtexec", "m.onnx", "m.plan", version, min_batch=1, opt_batch=8, max_batch=16)
    assert ("--fp16" in cmd) is fp16_flag
    assert cmd[:3] == ["trtexec", "--onnx=m.onnx", "--saveEngine=m.plan"] and cmd[-1] == "--skipInference"
    assert "--minShapes=CT_PATCHES:1x1x64x64x64" in cmd and "--maxShapes=CT_PATCHES:16x1x64x64x64" in cmd
    with pytest.raises(ValueError, match="min-batch"):
        trtexec_command("trtexec", "m.onnx", "m.plan", version, min_batch=4, opt_batch=2)


#: A stand-in trtexec: the --help banner of TensorRT $FAKE_TRT, "Unknown option" (exit 1) for an option
#: that release does not parse, and a plan that records the graph it was built from.
FAKE_TRTEXEC = """\
import json, os, sys
v = os.environ["FAKE_TRT"]
major, minor, patch = (int(p) for p in v.split("."))
print(f"&&&& RUNNING TensorRT.trtexec [TensorRT v{major * 10000 + minor * 100 + patch}] [b1] # trtexec")
args = dict(a[2:].split("=", 1) if "=" in a else (a[2:], "") for a in sys.argv[1:])
if "help" in args:
    sys.exit(0)
known = {"onnx", "saveEngine", "minShapes", "optShapes", "maxShapes", "skipInference"}
known |= {"fp16"} if major < 11 else set()
unknown = sorted(set(args) - known)
if unknown:
    print("Unknown option: --" + unknown[0])
    sys.exit(1)
print(f"[I] TensorRT version: {v}")
open(args["saveEngine"], "w").write(json.dumps({"onnx": args["onnx"], "fp16_flag": "fp16" in args}))
"""


@pytest.fixture
def fake_trtexec(tmp_path, monkeypatch):
    path = tmp_path / "bin" / "trtexec"
    path.parent.mkdir()
    path.write_text(f"#!{sys.executable}\n" + FAKE_TRTEXEC)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(trt_mod, "_gpu_facts", lambda: {"gpu": "NVIDIA H200", "compute_capability": "9.0"})
    return path


@pytest.mark.parametrize(("version", "fp16_graph"), [("10.5.0", False), ("11.0.0", True)])
def test_build_engine_trtexec_for_tensorrt_10_and_11(checkpoint, tmp_path, fake_trtexec, monkeypatch, version,
                                                     fp16_graph):
    """The command line reaches a trtexec that refuses what its release does not know: TensorRT 10 builds the
    FP32 graph with --fp16, 11 the FP16 graph (type-linted) without it; the sidecar records the release."""
    monkeypatch.setenv("FAKE_TRT", version)
    fp32 = export_onnx(checkpoint[0], tmp_path / "m.onnx")
    plan = build_engine_trtexec(fp32, tmp_path / "m.plan", trtexec=str(fake_trtexec))
    built = json.loads(plan.read_text())
    assert built["fp16_flag"] is not fp16_graph
    source = Path(built["onnx"])
    assert (source.name == "m.fp16.onnx") is fp16_graph
    graph = onnx.load(str(source))
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in graph.graph.initializer) is fp16_graph
    assert tensorrt_type_problems(graph) == []
    facts = json.loads((tmp_path / "m.plan.json").read_text())
    assert (facts["tensorrt_version"], facts["compute_capability"], facts["gpu"]) == (version, "9.0", "NVIDIA H200")
    assert engine_is_current(plan, fp32, tensorrt_version=version)


def test_the_stand_in_rejects_fp16_on_tensorrt_11(fake_trtexec, tmp_path, monkeypatch):
    """So the test above would catch an --fp16 on TensorRT 11, as the real trtexec fails the build."""
    import subprocess

    monkeypatch.setenv("FAKE_TRT", "11.0.0")
    res = subprocess.run([str(fake_trtexec), "--onnx=a.onnx", f"--saveEngine={tmp_path / 'a.plan'}", "--fp16"],
                         capture_output=True, text=True)
    assert res.returncode == 1 and "Unknown option: --fp16" in res.stdout


def _plan_with_sidecar(tmp_path, monkeypatch, *, version="10.5.0", gpu="NVIDIA H200", cc="9.0"):
    onnx_path, plan = tmp_path / "model.onnx", tmp_path / "model.plan"
    onnx_path.write_bytes(b"graph")
    plan.write_bytes(b"engine")
    monkeypatch.setattr(trt_mod, "_gpu_facts", lambda: {"gpu": gpu, "compute_capability": cc})
    trt_mod._write_sidecar(plan, onnx_path, version, "test", (1, 8, 16))
    return plan, onnx_path


def test_engine_staleness_tracks_tensorrt_gpu_and_graph(tmp_path, monkeypatch):
    """An old plan on a persistent volume after an image upgrade must be rebuilt, not deserialised."""
    plan, onnx_path = _plan_with_sidecar(tmp_path, monkeypatch)
    assert engine_is_current(plan, onnx_path, tensorrt_version="10.5.0")
    assert engine_is_current(plan, onnx_path, tensorrt_version="10.5.0.18")  # the Python package's build suffix
    assert not engine_is_current(plan, onnx_path, tensorrt_version="10.6.0")  # a newer image
    assert not engine_is_current(plan, onnx_path, tensorrt_version="11.0.0")
    monkeypatch.setattr(trt_mod, "current_tensorrt_version", lambda: None)
    assert not engine_is_current(plan, onnx_path)  # no TensorRT to tell: not known to match
    monkeypatch.setattr(trt_mod, "_gpu_facts", lambda: {"gpu": "NVIDIA H200", "compute_capability": "10.0"})
    assert not engine_is_current(plan, onnx_path, tensorrt_version="10.5.0")
    monkeypatch.setattr(trt_mod, "_gpu_facts", lambda: {"gpu": "NVIDIA L4", "compute_capability": "9.0"})
    assert not engine_is_current(plan, onnx_path, tensorrt_version="10.5.0")
    monkeypatch.setattr(trt_mod, "_gpu_facts", lambda: {"gpu": "unknown", "compute_capability": "unknown"})
    assert not engine_is_current(plan, onnx_path, tensorrt_version="10.5.0")
    monkeypatch.setattr(trt_mod, "_gpu_facts", lambda: {"gpu": "NVIDIA H200", "compute_capability": "9.0"})
    onnx_path.write_bytes(b"another graph")
    assert not engine_is_current(plan, onnx_path, tensorrt_version="10.5.0")
    (tmp_path / "model.plan.json").write_text("{not json")
    assert not engine_is_current(plan, onnx_path, tensorrt_version="10.5.0")


def test_ensure_engines_rebuilds_after_a_tensorrt_upgrade(models, tmp_path, monkeypatch):
    repo = export_repository(_layout(tmp_path / "repo"), models=models)
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt -> ImportError: the trtexec path
    for name in contract.PATCH_MODELS:
        version = repo / name / "1"
        _plan_with_sidecar(version, monkeypatch, version="10.5.0")
        (version / "model.onnx").write_bytes(b"graph")
    built = []
    monkeypatch.setattr(trt_mod, "build_engine_trtexec",
                        lambda onnx_path, plan, max_batch: built.append(plan.parent.parent.name))
    monkeypatch.setattr(trt_mod, "current_tensorrt_version", lambda: "10.5.0")
    assert trt_mod.ensure_engines(repo, log=lambda _m: None) == [] and built == []
    monkeypatch.setattr(trt_mod, "current_tensorrt_version", lambda: "10.6.0")
    trt_mod.ensure_engines(repo, log=lambda _m: None)
    assert built == list(contract.PATCH_MODELS)
