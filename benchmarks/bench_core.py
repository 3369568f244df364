"""Core-library benchmark: the overlap vote and classify, each as a ratio to its floor.

* vote_vs_copy_ratio: merging the 4,608 stride-20 label patches of a 200 x 512 x 512 volume by
  majority vote (LabelVoter: accumulate + decide), divided by the floor of copying the same patch
  bytes into a uint8 volume at the same windows.
* classify_vs_cc3d_ratio: s4c.postprocess.classify on a label volume, divided by one cc3d 26-connected
  labelling of the same volume. Measured on two inputs: the vote of the random patches, and a
  segmentation-like volume (a pancreas-sized C_max with a tumour and duct, plus hundreds of
  false-positive blobs near and far) that exercises the filter.

Each figure is the minimum over ``--repeats`` interleaved runs, all within this one process.
Run: ``.venv/bin/python benchmarks/bench_core.py`` (or ``make bench``).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from importlib import metadata
from pathlib import Path

import cc3d
import numpy as np

from s4c.inference import _kernels
from s4c.inference.merge import LabelVoter
from s4c.inference.tiling import window_origins
from s4c.postprocess import classify
from s4c.runtime import disable_numpy_hugepage_madvise, thp_defrag_policy

RESULTS = Path(__file__).resolve().parent / "results"


def copy_floor(shape, origins, patches, window):
    vol = np.empty(shape, np.uint8)
    for (z, y, x), p in zip(origins, patches, strict=True):
        vol[z : z + window, y : y + window, x : x + window] = p
    return vol


def vote(shape, origins, patches, window, stride, batch, backend):
    voter = LabelVoter(shape, window, stride, backend=backend)
    for i in range(0, len(origins), batch):
        voter.add(patches[i : i + batch], origins[i : i + batch])
    return voter.result()


def segmentation_like(shape, seed=0) -> np.ndarray:
    """A label volume shaped like a real prediction: one gland, a tumour, a duct, scattered blobs."""
    rng = np.random.default_rng(seed)
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    lab = np.zeros(shape, np.uint8)
    cz, cy, cx = shape[0] // 2, shape[1] // 2, shape[2] // 2
    gland = ((z - cz) / 30.0) ** 2 + ((y - cy) / 40.0) ** 2 + ((x - cx) / 110.0) ** 2 < 1
    lab[gland] = 1
    lab[((z - cz) / 8.0) ** 2 + ((y - cy) / 8.0) ** 2 + ((x - cx - 50) / 8.0) ** 2 < 1] = 2
    lab[(np.abs(z - cz) < 3) & (np.abs(y - cy) < 3) & (x > cx - 90) & (x < cx + 40)] = 3
    for _ in range(400):  # false positives of 1..~500 voxels anywhere
        r = rng.integers(1, 6)
        c = [rng.integers(r, n - r) for n in shape]
        lab[c[0] - r : c[0] + r, c[1] - r : c[1] + r, c[2] - r : c[2] + r] = rng.integers(1, 4)
    return lab


def label_once(lab: np.ndarray) -> np.ndarray:
    return cc3d.connected_components(lab, connectivity=26, binary_image=True)


def measure_memory(shape, stride, batch, patches) -> dict:
    """Peak bytes allocated by sliding_window_inference on an int16 volume (tracemalloc sees numpy),
    as a multiple of the input volume's bytes and of its voxel count."""
    import tracemalloc

    from s4c.inference.sliding_window import sliding_window_inference

    ct = np.zeros(shape, np.int16)
    calls = iter(range(10**9))

    def predictor(b):  # replays the random patches: the vote sees realistic disagreement
        i = next(calls) * batch
        return patches[i : i + len(b)]

    tracemalloc.start()
    sliding_window_inference(ct, predictor, stride=stride, batch_size=batch, pad_value=0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"sliding_window_peak_bytes": peak, "peak_per_input_byte": peak / ct.nbytes,
            "peak_per_voxel": peak / ct.size}


def timed(fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", type=int, nargs=3, default=[200, 512, 512], metavar=("Z", "Y", "X"))
    ap.add_argument("--stride", type=int, default=20)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--backend", default="auto", choices=["auto", "numba", "numpy"])
    ap.add_argument("--out", type=Path, default=RESULTS / "core.json")
    ap.add_argument("--numpy-hugepage", action="store_true",
                    help="keep numpy's huge-page madvise on (s4c entry points switch it off)")
    args = ap.parse_args()
    if not args.numpy_hugepage:
        disable_numpy_hugepage_madvise()

    window = 64
    shape = tuple(args.shape)
    origins = window_origins(shape, window, args.stride)
    rng = np.random.default_rng(0)
    patches = rng.integers(0, 4, (len(origins), window, window, window), dtype=np.uint8)
    _kernels.warm_up()  # JIT compile outside the timings

    copy_t, vote_t = [], []
    for _ in range(args.repeats):
        copy_t.append(timed(copy_floor, shape, origins, patches, window)[0])
        t, voted = timed(vote, shape, origins, patches, window, args.stride, args.batch, args.backend)
        vote_t.append(t)

    memory = measure_memory(shape, args.stride, args.batch, patches)

    inputs = {"voted_random": voted, "segmentation_like": segmentation_like(shape)}
    classify_results = {}
    for name, lab in inputs.items():
        cc_t, cl_t = [], []
        for _ in range(args.repeats):
            cc_t.append(timed(label_once, lab)[0])
            t, decision = timed(classify, lab)
            cl_t.append(t)
        classify_results[name] = {
            "cc3d_s": min(cc_t), "classify_s": min(cl_t), "ratio": min(cl_t) / min(cc_t),
            "components": decision.components, "components_kept": decision.components_kept,
        }

    result = {
        "command": " ".join(["python", "benchmarks/bench_core.py", *sys.argv[1:]]),
        "shape_zyx": list(shape), "stride": args.stride, "patches": len(origins),
        "vote_backend": args.backend if args.backend != "auto" else ("numba" if _kernels.HAVE_NUMBA else "numpy"),
        "copy_floor_s": min(copy_t), "vote_s": min(vote_t),
        "vote_vs_copy_ratio": min(vote_t) / min(copy_t),
        "classify": classify_results,
        "memory": memory,
        "classify_vs_cc3d_ratio": max(r["ratio"] for r in classify_results.values()),
        "targets": {"vote_vs_copy_ratio": 4.0, "classify_vs_cc3d_ratio": 5.0},
        "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version(),
                    "numpy": np.__version__, "cc3d": metadata.version("connected-components-3d"),
                    "thp_defrag": thp_defrag_policy(), "numpy_hugepage_madvise": args.numpy_hugepage},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"vote_vs_copy_ratio      {result['vote_vs_copy_ratio']:.2f}  "
          f"(vote {result['vote_s']:.3f} s, copy floor {result['copy_floor_s']:.3f} s, {len(origins)} patches)")
    print(f"sliding window peak     {memory['peak_per_input_byte']:.2f} x the int16 input "
          f"({memory['peak_per_voxel']:.2f} bytes/voxel)")
    for name, r in classify_results.items():
        print(f"classify_vs_cc3d_ratio  {r['ratio']:.2f}  on {name} (classify {r['classify_s']:.3f} s, "
              f"cc3d {r['cc3d_s']:.3f} s, {r['components']} components)")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
