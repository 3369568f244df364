"""``s4c export trt``: an FP16 TensorRT engine with one optimisation profile over the batch axis.

* TensorRT 10: the FP32 ONNX graph is parsed and built with the FP16 builder flag.
* TensorRT 11 and later: networks are strongly typed and the FP16 flag is gone, so the graph is first
  converted to FP16 (:func:`to_fp16_onnx`, FP32/uint8 I/O kept) and built as it is typed.

Next to ``model.plan`` goes ``model.plan.json``: TensorRT version, GPU, compute capability, profile
and the path taken. Engines are specific to the TensorRT version and GPU that built them: build on the
serving machine with the TensorRT of its Triton container.

Status: written against the TensorRT 10/11 Python APIs but not yet run on a GPU (no TensorRT or GPU
on the development machines). :func:`to_fp16_onnx` is verified on the CPU with ONNX Runtime.
"""

from __future__ import annotations

import json
from pathlib import Path

from s4c import contract
from s4c.checkpoint import sha256_file
from s4c.repository.onnx import check_tensorrt_types


def to_fp16_onnx(onnx_in: str | Path, onnx_out: str | Path) -> Path:
    """Convert an exported segmenter to FP16 weights and compute, keeping FP32 input and uint8/FP32
    outputs, as TensorRT 11 needs for an FP16 engine. The result passes the onnx checker and
    :func:`s4c.repository.onnx.check_tensorrt_types`."""
    import onnx  # export extras
    from onnxconverter_common import float16

    model = onnx.load(str(onnx_in))
    # The labels' INT64 -> FLOAT cast after ArgMax stays as it is: converted, the tool retypes its output
    # FLOAT16 but leaves the cast's 'to' FLOAT (a graph ONNX Runtime refuses to load); kept, it adds a
    # FLOAT -> FLOAT16 cast and the last cast to UINT8 is from FLOAT16, as TensorRT allows.
    argmax = {o for n in model.graph.node if n.op_type == "ArgMax" for o in n.output}
    keep = [n.name for n in model.graph.node if n.op_type == "Cast" and n.input[0] in argmax]
    fp16 = float16.convert_float_to_float16(model, keep_io_types=True, node_block_list=keep)
    onnx.checker.check_model(fp16)
    check_tensorrt_types(fp16)
    out = Path(onnx_out)
    onnx.save(fp16, str(out))
    return out


def tensorrt_major(trt) -> int:
    """Major version of an imported ``tensorrt`` module."""
    return int(str(trt.__version__).split(".")[0])


def _check_profile(min_batch: int, opt_batch: int, max_batch: int) -> None:
    if not (1 <= min_batch <= opt_batch <= max_batch):
        raise ValueError(f"need 1 <= min-batch <= opt-batch <= max-batch, got {min_batch}, {opt_batch}, {max_batch}")


def _write_sidecar(plan: Path, onnx_path: Path, trt_version: str, mode: str, profile: tuple[int, int, int]) -> None:
    """``<plan>.json``: what built the engine, for which GPU, from which graph (read by engine_is_current)."""
    facts = {"tensorrt_version": trt_version, **_gpu_facts(), "precision": "fp16", "mode": mode,
             "profile": {"input": contract.SEG_INPUT, "min": profile[0], "opt": profile[1], "max": profile[2]},
             "onnx": onnx_path.name, "onnx_sha256": sha256_file(onnx_path)}
    plan.with_suffix(plan.suffix + ".json").write_text(json.dumps(facts, indent=2) + "\n")


def _gpu_facts() -> dict:
    try:
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(0)
            return {"gpu": torch.cuda.get_device_name(0), "compute_capability": f"{major}.{minor}"}
    except ImportError:
        pass
    return {"gpu": "unknown", "compute_capability": "unknown"}


def build_engine(onnx_path: str | Path, out: str | Path, *, min_batch: int = 1, opt_batch: int = 8,
                 max_batch: int = 16, workspace_gib: float = 4.0) -> Path:
    """Build an FP16 engine from an exported segmenter ONNX graph; returns the plan path."""
    _check_profile(min_batch, opt_batch, max_batch)
    onnx_path, out = Path(onnx_path), Path(out)
    if not onnx_path.exists():
        raise FileNotFoundError(f"no ONNX graph at {onnx_path}")
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise RuntimeError("the tensorrt Python package is not installed here; build engines on the GPU server, "
                           "with the TensorRT version of the Triton container that will serve them") from exc
    major = tensorrt_major(trt)
    out.parent.mkdir(parents=True, exist_ok=True)
    source = onnx_path
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    if major >= 11:
        source = to_fp16_onnx(onnx_path, out.with_suffix(".fp16.onnx"))
        network = builder.create_network(0)  # strongly typed is the only mode
        mode = "strongly typed FP16 graph (TensorRT >= 11)"
    else:
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH) if major < 10 else 0
        network = builder.create_network(flags)
        mode = "FP32 graph with BuilderFlag.FP16 (TensorRT <= 10)"
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(source.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {source.name}: {errors}")
    config = builder.create_builder_config()
    if major < 11:
        config.set_flag(trt.BuilderFlag.FP16)
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    profile = builder.create_optimization_profile()
    dims = contract.SEG_INPUT_DIMS
    profile.set_shape(contract.SEG_INPUT, (min_batch, *dims), (opt_batch, *dims), (max_batch, *dims))
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError("TensorRT failed to build the engine; see its log above")
    out.write_bytes(bytes(plan))
    _write_sidecar(out, onnx_path, str(trt.__version__), mode, (min_batch, opt_batch, max_batch))
    return out


def _trtexec() -> str | None:
    import shutil

    for candidate in (shutil.which("trtexec"), "/usr/src/tensorrt/bin/trtexec"):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def build_engine_trtexec(onnx_path: str | Path, out: str | Path, *, min_batch: int = 1, opt_batch: int = 8,
                         max_batch: int = 16, trtexec: str | None = None) -> Path:
    """Build the FP16 engine with ``trtexec`` (TensorRT <= 10, as in an NGC tritonserver image, which has
    trtexec and the TensorRT that will serve the plan, but not always its Python bindings)."""
    import re
    import subprocess

    _check_profile(min_batch, opt_batch, max_batch)
    onnx_path, out = Path(onnx_path), Path(out)
    trtexec = trtexec or _trtexec()
    if trtexec is None:
        raise RuntimeError("neither the tensorrt Python package nor trtexec is available")
    dims = "x".join(str(d) for d in contract.SEG_INPUT_DIMS)
    shapes = {k: f"{contract.SEG_INPUT}:{b}x{dims}" for k, b in (("min", min_batch), ("opt", opt_batch),
                                                                  ("max", max_batch))}
    cmd = [trtexec, f"--onnx={onnx_path}", f"--saveEngine={out}", "--fp16", f"--minShapes={shapes['min']}",
           f"--optShapes={shapes['opt']}", f"--maxShapes={shapes['max']}", "--skipInference"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0 or not out.exists():
        raise RuntimeError(f"trtexec failed ({res.returncode}): {res.stdout[-2000:]}{res.stderr[-2000:]}")
    version = re.search(r"TensorRT version: ([0-9.]+)", res.stdout) or re.search(r"\[TensorRT v(\d+)\]", res.stdout)
    _write_sidecar(out, onnx_path, version.group(1) if version else "unknown", "trtexec --fp16",
                   (min_batch, opt_batch, max_batch))
    return out


def engine_is_current(plan: str | Path, onnx_path: str | Path) -> bool:
    """True when ``plan`` was built from this ONNX graph on this GPU (per its .plan.json sidecar)."""
    plan, onnx_path = Path(plan), Path(onnx_path)
    sidecar = plan.with_suffix(plan.suffix + ".json")
    if not (plan.exists() and sidecar.exists() and onnx_path.exists()):
        return False
    facts = json.loads(sidecar.read_text())
    return (facts.get("onnx_sha256") == sha256_file(onnx_path)
            and facts.get("gpu") == _gpu_facts()["gpu"])


def ensure_engines(repository: str | Path, *, max_batch: int = 16, log=print) -> list[Path]:
    """Build ``<model>/1/model.plan`` for every model of :data:`s4c.contract.PATCH_MODELS` (each
    phase's segmenter and the locator) whose plan is missing or stale (first start of a GPU server);
    the TensorRT Python API when importable, else trtexec."""
    built = []
    for name in contract.PATCH_MODELS:
        version = Path(repository) / name / "1"
        onnx_path, plan = version / "model.onnx", version / "model.plan"
        if engine_is_current(plan, onnx_path):
            continue
        log(f"building the FP16 TensorRT engine for {name} (first start on this GPU) ...")
        try:
            import tensorrt  # noqa: F401

            build_engine(onnx_path, plan, max_batch=max_batch)
        except ImportError:
            build_engine_trtexec(onnx_path, plan, max_batch=max_batch)
        built.append(plan)
    return built
