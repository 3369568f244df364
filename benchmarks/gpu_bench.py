"""GPU benchmark, one command: segmenter throughput per engine and precision, the whole S4C pipeline on the
GPU (tiling, FP16 network, GPU voting, classify) for a dual-phase 512 x 512 x 200 case at stride 20,
and the network's FLOPs per patch against the GPU's FP16 dense peak.

    python benchmarks/gpu_bench.py                 # on a GPU machine; writes benchmarks/results/gpu_<gpu>.json
    python benchmarks/gpu_bench.py --smoke         # on the CPU, tiny sizes (the tests run this)

Engines measured when present: TensorRT (FP16 engine built from the exported ONNX), PyTorch eager and
torch.compile (FP32 and FP16), ONNX Runtime (its CUDA provider when installed, else the CPU provider
at small batches only). Targets on an H100/H200: the dual-phase case in <= 2 s end to end and a
segmenter at >= 40% of the FP16 dense peak.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from importlib import metadata
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"

#: Dense FP16 tensor-core peaks (TFLOP/s, no sparsity) from the vendor data sheets, by name fragment.
FP16_DENSE_PEAK_TFLOPS = {"H200": 989.4, "H100 SXM": 989.4, "H100 PCIe": 756.0, "H100": 989.4, "A100": 312.0,
                          "L40S": 362.1, "L4": 121.0, "A10": 125.0, "V100": 125.0, "T4": 65.0}


def peak_for(name: str) -> float | None:
    for key, value in FP16_DENSE_PEAK_TFLOPS.items():
        if key in name:
            return value
    return None


def flops_per_patch(model, patch: int = 64) -> int:
    """Multiply-adds x 2 of every convolution and transposed convolution for one (1, 1, P, P, P) patch."""
    import torch

    total = 0

    def hook(mod, inputs, output):
        nonlocal total
        k = int(np.prod(mod.kernel_size))
        if isinstance(mod, torch.nn.ConvTranspose3d):
            total += 2 * inputs[0].numel() * mod.out_channels // mod.groups * k
        else:
            total += 2 * output.numel() * (mod.in_channels // mod.groups) * k

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (torch.nn.Conv3d, torch.nn.ConvTranspose3d))]
    with torch.inference_mode():
        model(torch.zeros(1, 1, patch, patch, patch, device=next(model.parameters()).device))
    for h in handles:
        h.remove()
    return total


def timed(fn, sync, repeats: int) -> float:
    fn()
    sync()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t)
    return best


def bench_torch(model, device, batches, repeats, compile_too: bool) -> list[dict]:
    import torch

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    rows = []
    for precision in ("fp32", "fp16"):
        if precision == "fp16" and device.type != "cuda":
            continue  # CPU FP16 convolutions are not a deployment path
        dtype = torch.float16 if precision == "fp16" else torch.float32
        m = model.to(device=device, dtype=dtype, memory_format=torch.channels_last_3d).eval()
        variants = [("pytorch_eager", m)]
        if compile_too:
            variants.append(("pytorch_compile", torch.compile(m)))
        for engine, net in variants:
            for b in batches:
                x = torch.randn(b, 1, 64, 64, 64, device=device, dtype=dtype).contiguous(
                    memory_format=torch.channels_last_3d)

                def run(net=net, x=x):
                    with torch.inference_mode():
                        net(x)

                try:
                    s = timed(run, sync, repeats)
                except Exception as exc:  # e.g. out of memory at the largest batch
                    rows.append({"engine": engine, "precision": precision, "batch": b, "error": repr(exc)[:200]})
                    continue
                rows.append({"engine": engine, "precision": precision, "batch": b, "seconds": s,
                             "patches_per_s": b / s})
    model.float()
    return rows


def bench_ort(onnx_path: Path, batches, repeats, on_gpu: bool) -> list[dict]:
    import onnxruntime as ort

    providers = ort.get_available_providers()
    provider = "CUDAExecutionProvider" if on_gpu and "CUDAExecutionProvider" in providers else "CPUExecutionProvider"
    sess = ort.InferenceSession(str(onnx_path), providers=[provider])
    rows = []
    for b in batches if provider != "CPUExecutionProvider" else [b for b in batches if b <= 2]:
        x = np.random.default_rng(0).normal(size=(b, 1, 64, 64, 64)).astype(np.float32)
        s = timed(lambda x=x: sess.run(["LABELS"], {"CT_PATCHES": x}), lambda: None, repeats)
        rows.append({"engine": f"onnxruntime ({provider})", "precision": "fp32", "batch": b, "seconds": s,
                     "patches_per_s": b / s})
    return rows


def bench_tensorrt(onnx_path: Path, batches, repeats) -> list[dict]:
    try:
        import tensorrt  # noqa: F401
        import torch
    except ImportError:
        return [{"engine": "tensorrt", "error": "tensorrt not installed here"}]
    from s4c.export.tensorrt import build_engine

    plan = build_engine(onnx_path, onnx_path.with_suffix(".plan"), max_batch=max(batches))
    import tensorrt as trt

    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(plan.read_bytes())
    ctx = engine.create_execution_context()
    rows = []
    for b in batches:
        x = torch.randn(b, 1, 64, 64, 64, device="cuda")
        y = torch.empty(b, 64, 64, 64, device="cuda", dtype=torch.uint8)
        ctx.set_input_shape("CT_PATCHES", tuple(x.shape))
        ctx.set_tensor_address("CT_PATCHES", x.data_ptr())
        ctx.set_tensor_address("LABELS", y.data_ptr())
        stream = torch.cuda.current_stream().cuda_stream
        s = timed(lambda stream=stream: ctx.execute_async_v3(stream), torch.cuda.synchronize, repeats)
        rows.append({"engine": "tensorrt", "precision": "fp16", "batch": b, "seconds": s, "patches_per_s": b / s})
    return rows


def gpu_pipeline(model, spec, device, shape, batch: int, stride: int = 20) -> dict:
    """One phase on the device: the int16 volume uploaded once, patches gathered on the device, the FP16
    network, the torch majority vote (:class:`TorchLabelVoter`), then classify on the host."""
    import torch

    from s4c.inference.merge_torch import TorchLabelVoter
    from s4c.inference.tiling import window_origins
    from s4c.postprocess import classify

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    rng = np.random.default_rng(0)
    ct = rng.integers(-200, 300, size=shape).astype(np.int16)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    net = model.to(device=device, dtype=dtype, memory_format=torch.channels_last_3d).eval()
    norm = spec.normalization
    timings = {}
    sync()
    t0 = time.perf_counter()
    vol = torch.from_numpy(ct).to(device)
    origins = window_origins(shape, 64, stride)
    voter = TorchLabelVoter(shape, 64, stride, device=str(device))
    ar = torch.arange(64, device=device)
    t_net = 0.0
    with torch.inference_mode():
        for i in range(0, len(origins), batch):
            o = torch.from_numpy(origins[i : i + batch]).to(device)
            z = (o[:, 0, None] + ar)[:, :, None, None]
            y = (o[:, 1, None] + ar)[:, None, :, None]
            x = (o[:, 2, None] + ar)[:, None, None, :]
            patches = vol[z, y, x].to(dtype)
            patches = ((patches.clamp(norm.hu_min, norm.hu_max) - norm.hu_min) / (norm.hu_max - norm.hu_min))
            t = time.perf_counter()
            labels = net(patches[:, None].contiguous(memory_format=torch.channels_last_3d)).argmax(1).to(torch.uint8)
            t_net += time.perf_counter() - t
            voter.add(labels, origins[i : i + batch])
        voted = voter.result()
    sync()
    timings["tile_network_vote_s"] = time.perf_counter() - t0
    t = time.perf_counter()
    decision = classify(voted, (1.0, 0.8, 0.8))
    timings["classify_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - t0
    timings["network_launch_s"] = t_net
    model.float()
    return {"shape_zyx": list(shape), "patches": len(origins), "abnormal": decision.abnormal, **timings}


def main() -> None:
    import torch

    from s4c.checkpoint import ModelSpec
    from s4c.network import S4CNet

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="tiny CPU run (tests)")
    ap.add_argument("--width", type=int, default=32, help="network width (paper: 32)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    width = 4 if args.smoke else args.width
    batches = [1, 2] if args.smoke else [1, 2, 4, 8, 16, 32]
    repeats = 1 if args.smoke else 5
    shape = (64, 80, 80) if args.smoke else (200, 512, 512)
    torch.manual_seed(0)
    model = S4CNet(width=width).eval()
    spec = ModelSpec(width=width, phase="venous", trained=False)
    gpu = torch.cuda.get_device_name(0) if device.type == "cuda" else "none (CPU)"
    flops = flops_per_patch(model)
    result = {"command": "python benchmarks/gpu_bench.py" + (" --smoke" if args.smoke else ""), "gpu": gpu,
              "device": str(device), "versions": {"torch": torch.__version__, "cuda": torch.version.cuda,
                                                  "cudnn": torch.backends.cudnn.version(),
                                                  "python": platform.python_version(),
                                                  "onnxruntime": metadata.version("onnxruntime")},
              "network": {"width": width, "parameters": sum(p.numel() for p in model.parameters()),
                          "gflops_per_patch": flops / 1e9}}
    rows = bench_torch(model, device, batches, repeats, compile_too=not args.smoke)

    from s4c.checkpoint import save_checkpoint
    from s4c.repository.onnx import export_onnx

    tmp = Path("build/gpu_bench")
    tmp.mkdir(parents=True, exist_ok=True)
    ckpt = save_checkpoint(tmp / "net.pt", model, spec)
    onnx_path = export_onnx(ckpt, tmp / "net.onnx")
    rows += bench_ort(onnx_path, batches, repeats, on_gpu=device.type == "cuda")
    if device.type == "cuda":
        rows += bench_tensorrt(onnx_path, batches, repeats)
    peak = peak_for(gpu)
    for r in rows:
        if "seconds" in r:
            r["tflops"] = r["patches_per_s"] * flops / 1e12
            r["fraction_of_fp16_peak"] = (r["tflops"] / peak) if peak else None
    result["segmenter"] = rows
    result["fp16_dense_peak_tflops"] = peak
    best = max((r for r in rows if "seconds" in r), key=lambda r: r["patches_per_s"])
    result["best_segmenter"] = {k: best[k] for k in ("engine", "precision", "batch", "patches_per_s", "tflops",
                                                     "fraction_of_fp16_peak")}
    phases = [gpu_pipeline(model, spec, device, shape, batch=4 if args.smoke else 32) for _ in ("arterial", "venous")]
    result["pipeline_dual_phase"] = {"phases": phases, "total_s": sum(p["total_s"] for p in phases),
                                     "stride": 20, "voting": "TorchLabelVoter on " + str(device),
                                     "precision": "fp16" if device.type == "cuda" else "fp32"}
    result["targets"] = {"dual_phase_512x512x200_s": "<= 2 (H100/H200)", "segmenter_fraction_of_fp16_peak": ">= 0.40"}
    out = args.out or (tmp / "smoke.json" if args.smoke else
                       RESULTS / f"gpu_{gpu.replace(' ', '_').replace('/', '_')}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"gpu": gpu, "best_segmenter": result["best_segmenter"],
                      "dual_phase_total_s": result["pipeline_dual_phase"]["total_s"]}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
