"""FP16 versus FP32 on a GPU with PyTorch/cuDNN (for machines with PyTorch but no TensorRT).

Measures, for each phase's default model, on patches cut from a generated phantom case:
* label agreement of FP16 (``model.half()``) with FP32, per voxel;
* throughput in patches per second for FP32 and FP16 at several batch sizes.
Writes ``benchmarks/results/gpu_fp16_<gpu>.json`` with the GPU name and software versions.

    python export/gpu_fp16_check.py            # on a CUDA machine
    python export/gpu_fp16_check.py --smoke    # tiny CPU run, used by the tests

Status: not yet run on a GPU (none was lent while it was written).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def phantom_patches(n: int, seed: int = 0) -> np.ndarray:
    """(n, 1, 64, 64, 64) float32 HU patches centred around the pancreas of a phantom case."""
    from s4c.data.phantom import generate_case
    from s4c.inference.tiling import window_origins

    case = generate_case(seed, abnormal=True)
    origins = window_origins(case.venous.shape, 64, 20)
    rng = np.random.default_rng(seed)
    pick = origins[rng.choice(len(origins), size=n, replace=n > len(origins))]
    return np.stack([case.venous[z:z + 64, y:y + 64, x:x + 64][None] for z, y, x in pick]).astype(np.float32)


def run(device: str, batches: list[int], repeats: int, patches: int, out: Path | None) -> dict:
    import torch

    from s4c.inference.predictor import load_predictors

    predictors = load_predictors(allow_untrained=True, device=device)
    x_all = torch.from_numpy(phantom_patches(patches)).to(device)
    result = {"device": device, "torch": torch.__version__, "python": platform.python_version(),
              "gpu": torch.cuda.get_device_name(0) if device == "cuda" else platform.processor() or "cpu",
              "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if device == "cuda" else None,
              "phases": {}}
    for phase, (pred, spec) in predictors.items():
        net32 = pred.model.float().eval()
        net16 = type(net32)(width=spec.width).to(device).eval()
        net16.load_state_dict(net32.state_dict())
        net16 = net16.half()
        lo, hi = spec.normalization.hu_min, spec.normalization.hu_max
        xn = ((x_all.clamp(lo, hi) - lo) / (hi - lo)).contiguous()
        with torch.inference_mode():
            l32 = torch.cat([net32(xn[i:i + 4]).argmax(1) for i in range(0, len(xn), 4)])
            l16 = torch.cat([net16(xn[i:i + 4].half()).argmax(1) for i in range(0, len(xn), 4)])
        row = {"trained": spec.trained, "width": spec.width,
               "label_agreement": float((l32 == l16).float().mean()), "throughput": {}}
        for b in batches:
            xb = xn[:b] if b <= len(xn) else xn.repeat((b + len(xn) - 1) // len(xn), 1, 1, 1, 1)[:b]
            for name, net, xin in (("fp32", net32, xb), ("fp16", net16, xb.half())):
                with torch.inference_mode():
                    net(xin)
                    if device == "cuda":
                        torch.cuda.synchronize()
                    t = time.perf_counter()
                    for _ in range(repeats):
                        net(xin)
                    if device == "cuda":
                        torch.cuda.synchronize()
                    dt = time.perf_counter() - t
                row["throughput"].setdefault(name, {})[str(b)] = b * repeats / dt
        result["phases"][phase] = row
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="tiny run on the CPU (no results file)")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    if args.smoke:
        res = run("cpu", [1], 1, 2, None)
    else:
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device; use --smoke on the CPU")
        name = torch.cuda.get_device_name(0).replace(" ", "_")
        res = run("cuda", args.batches, args.repeats, 32, RESULTS / f"gpu_fp16_{name}.json")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
