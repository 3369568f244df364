"""``s4c export trt``: an FP16 TensorRT engine with one optimisation profile over the batch axis.

* TensorRT 10: the FP32 ONNX graph is parsed and built with the FP16 builder flag.
* TensorRT 11 and later: networks are strongly typed and the FP16 flag is gone, so the graph is first
  converted to FP16 (:func:`to_fp16_onnx`, FP32/uint8 I/O kept) and built as it is typed.

Next to ``model.plan`` goes ``model.plan.json``: TensorRT version, GPU, compute capability, profile
and the path taken. Engines are specific to the TensorRT version and GPU that built them: build on the
serving machine with the TensorRT of its Triton container.

Status: written against the TensorRT 10/11 Python APIs and trtexec options but not yet run on a GPU (no
TensorRT or GPU on the development machines). On the CPU: :func:`to_fp16_onnx` against ONNX Runtime, the
trtexec command lines for 10.x and 11.x against a stand-in trtexec that rejects unknown options as the
real one does, and staleness (:func:`engine_is_current`) against changed TensorRT versions and GPUs.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
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
    """Major version of an imported ``tensorrt`` module or of a version string ("10.5.0")."""
    version = trt if isinstance(trt, str) else trt.__version__
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        raise ValueError(f"not a TensorRT version: {version!r}") from None


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
    """Name and compute capability of GPU 0 (torch, else nvidia-smi); "unknown" where neither tells."""
    try:
        import torch  # in the GPU image (the DLPack voter); optional elsewhere

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(0)
            return {"gpu": torch.cuda.get_device_name(0), "compute_capability": f"{major}.{minor}"}
    except ImportError:
        pass
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            res = subprocess.run([smi, "--query-gpu=name,compute_cap", "--format=csv,noheader", "--id=0"],
                                 capture_output=True, text=True, timeout=30)
            name, cap = (part.strip() for part in res.stdout.strip().splitlines()[0].rsplit(",", 1))
            if res.returncode == 0 and re.fullmatch(r"\d+\.\d+", cap):
                return {"gpu": name, "compute_capability": cap}
        except (OSError, subprocess.SubprocessError, IndexError, ValueError):
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
    for candidate in (shutil.which("trtexec"), "/usr/src/tensorrt/bin/trtexec"):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def parse_trtexec_version(output: str) -> str | None:
    """The TensorRT version (``major.minor.patch``) in trtexec's output, or None.

    trtexec prints ``TensorRT version: 10.5.0`` once it runs a build, and every run, ``--help``
    included, starts with ``&&&& RUNNING TensorRT.trtexec [TensorRT v100500] [b18]``, where the number
    is ``NV_TENSORRT_VERSION``: ``major * 10000 + minor * 100 + patch`` from TensorRT 10 on
    (NVIDIA/TensorRT ``include/NvInferRuntimeBase.h``, ``NV_TENSORRT_VERSION_INT``, releases 10.0 to 11.1;
    the banner is ``samples/common/logging.h``, ``defineTest``), ``major * 1000 + minor * 100 + patch``
    before it (8.x).
    """
    m = re.search(r"TensorRT version: (\d+)\.(\d+)\.(\d+)", output)
    if m:
        return ".".join(m.groups())
    m = re.search(r"\[TensorRT v(\d+)\]", output)
    if not m:
        return None
    v = int(m.group(1))
    if v >= 100000:
        return f"{v // 10000}.{v // 100 % 100}.{v % 100}"
    return f"{v // 1000}.{v // 100 % 10}.{v % 100}"


def trtexec_version(trtexec: str) -> str:
    """The TensorRT version of a trtexec binary, from its ``--help`` banner; ``RuntimeError`` if none."""
    res = subprocess.run([trtexec, "--help"], capture_output=True, text=True, timeout=120)
    version = parse_trtexec_version(res.stdout + res.stderr)
    if version is None:
        raise RuntimeError(f"{trtexec} --help printed no TensorRT version (exit {res.returncode})")
    return version


def trtexec_command(trtexec: str, onnx_path: str | Path, out: str | Path, tensorrt_version: str, *,
                    min_batch: int = 1, opt_batch: int = 8, max_batch: int = 16) -> list[str]:
    """The trtexec command line that builds an FP16 engine with TensorRT ``tensorrt_version``.

    * TensorRT 10: ``onnx_path`` is the FP32 graph and ``--fp16`` lets the builder pick FP16 kernels.
    * TensorRT 11 and later: trtexec has no ``--fp16`` (NVIDIA/TensorRT ``samples/common/sampleOptions.cpp``
      parses ``--fp16`` on release/10.16 and not on release/11.0; ``--stronglyTyped`` is "[Deprecated]
      Strongly typed network is now enabled by default. This flag is a no-op"), and an option it does not
      know fails the run (``samples/trtexec/trtexec.cpp``: "Unknown option: ..."). The precision is the
      graph's own: ``onnx_path`` must be the FP16 graph (:func:`to_fp16_onnx`).
    """
    _check_profile(min_batch, opt_batch, max_batch)
    dims = "x".join(str(d) for d in contract.SEG_INPUT_DIMS)
    shapes = [f"--{k}Shapes={contract.SEG_INPUT}:{b}x{dims}"
              for k, b in (("min", min_batch), ("opt", opt_batch), ("max", max_batch))]
    precision = ["--fp16"] if tensorrt_major(tensorrt_version) < 11 else []
    return [trtexec, f"--onnx={onnx_path}", f"--saveEngine={out}", *precision, *shapes, "--skipInference"]


def build_engine_trtexec(onnx_path: str | Path, out: str | Path, *, min_batch: int = 1, opt_batch: int = 8,
                         max_batch: int = 16, trtexec: str | None = None) -> Path:
    """Build the FP16 engine with ``trtexec`` (as in an NGC tritonserver image, which has trtexec and the
    TensorRT that will serve the plan, but not always its Python bindings). ``onnx_path`` is the FP32
    graph; for TensorRT 11 and later it is converted to ``<out>.fp16.onnx`` first."""
    _check_profile(min_batch, opt_batch, max_batch)
    onnx_path, out = Path(onnx_path), Path(out)
    if not onnx_path.exists():
        raise FileNotFoundError(f"no ONNX graph at {onnx_path}")
    trtexec = trtexec or _trtexec()
    if trtexec is None:
        raise RuntimeError("neither the tensorrt Python package nor trtexec is available")
    version = trtexec_version(trtexec)
    out.parent.mkdir(parents=True, exist_ok=True)
    if tensorrt_major(version) >= 11:
        source, mode = to_fp16_onnx(onnx_path, out.with_suffix(".fp16.onnx")), "trtexec, FP16 graph (TensorRT >= 11)"
    else:
        source, mode = onnx_path, "trtexec --fp16 (TensorRT <= 10)"
    cmd = trtexec_command(trtexec, source, out, version, min_batch=min_batch, opt_batch=opt_batch,
                          max_batch=max_batch)
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0 or not out.exists():
        raise RuntimeError(f"trtexec failed ({res.returncode}): {res.stdout[-2000:]}{res.stderr[-2000:]}")
    _write_sidecar(out, onnx_path, parse_trtexec_version(res.stdout) or version, mode,
                   (min_batch, opt_batch, max_batch))
    return out


def current_tensorrt_version() -> str | None:
    """The TensorRT that would build (and serve) engines here: the Python package's, else trtexec's;
    None when there is neither."""
    try:
        import tensorrt as trt  # the GPU image's TensorRT bindings, when it has them
    except ImportError:
        trtexec = _trtexec()
        return trtexec_version(trtexec) if trtexec else None
    return str(trt.__version__)


def _release(version: str | None) -> tuple[str, ...] | None:
    """``major.minor.patch`` of a version string (the Python package adds a build number, trtexec does not)."""
    return None if not version or version == "unknown" else tuple(str(version).split(".")[:3])


def engine_is_current(plan: str | Path, onnx_path: str | Path, *, tensorrt_version: str | None = None) -> bool:
    """True when ``plan`` was built from this ONNX graph, on this GPU model and compute capability, by this
    TensorRT release (per its .plan.json sidecar). ``tensorrt_version``: the TensorRT here (default
    :func:`current_tensorrt_version`). A plan that TensorRT cannot deserialise would stop the server, so
    anything not known to match (no sidecar, an unknown GPU or TensorRT) counts as stale."""
    plan, onnx_path = Path(plan), Path(onnx_path)
    sidecar = plan.with_suffix(plan.suffix + ".json")
    if not (plan.exists() and sidecar.exists() and onnx_path.exists()):
        return False
    try:
        facts = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return False
    here = {**_gpu_facts(), "tensorrt_version": tensorrt_version or current_tensorrt_version()}
    if "unknown" in (here["gpu"], here["compute_capability"]) or _release(here["tensorrt_version"]) is None:
        return False
    return (facts.get("onnx_sha256") == sha256_file(onnx_path) and facts.get("gpu") == here["gpu"]
            and facts.get("compute_capability") == here["compute_capability"]
            and _release(facts.get("tensorrt_version")) == _release(here["tensorrt_version"]))


def ensure_engines(repository: str | Path, *, max_batch: int = 16, log=print) -> list[Path]:
    """Build ``<model>/1/model.plan`` for every model of :data:`s4c.contract.PATCH_MODELS` (each
    phase's segmenter and the locator) whose plan is missing or stale (:func:`engine_is_current`: first
    start on a GPU, or after an image upgrade changed TensorRT); the TensorRT Python API when
    importable, else trtexec."""
    try:
        import tensorrt  # noqa: F401  # the bindings, when the image has them
    except ImportError:
        build = build_engine_trtexec
    else:
        build = build_engine
    here = current_tensorrt_version()
    built = []
    for name in contract.PATCH_MODELS:
        version = Path(repository) / name / "1"
        onnx_path, plan = version / "model.onnx", version / "model.plan"
        if engine_is_current(plan, onnx_path, tensorrt_version=here):
            continue
        log(f"building the FP16 TensorRT engine for {name} (no plan built from this graph by TensorRT {here} "
            f"on this GPU) ...")
        build(onnx_path, plan, max_batch=max_batch)
        built.append(plan)
    return built
