"""Do two dual-phase requests overlap in the server? perf_analyzer at concurrency 1 and 2.

A non-decoupled Python model runs one ``execute`` at a time per instance (python_backend README,
"Async Execute": the shared event loop runs requests concurrently only for decoupled models), so with
one ``s4c_dual_phase`` instance a second case waits in that model's queue while the first one waits
on its two ``s4c`` BLS calls. This benchmark serves two copies of the dual-phase model side by side,
one with 1 instance and one with the committed instance count, both over the same ``s4c`` model, and
measures each with the real perf_analyzer at concurrency 1 and 2, plus the dual model's own queue
time per request from Triton's statistics (near zero when requests overlap, about one request's
compute time when they serialise).

Run: ``.venv/bin/python benchmarks/bench_dual_concurrency.py`` -> results/dual_concurrency.json and
results/perf_analyzer/dual_x*_concurrency.csv.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import time
from pathlib import Path

import numpy as np

from bench_serving import SPACING, perf_analyzer_binary, run_perf_analyzer, write_input_data
from s4c import contract
from s4c.data.phantom import generate_case
from s4c.labels import PHASES
from s4c.repository.configs import dual_phase_config
from s4c.repository.export import export_repository
from s4c.runtime import disable_numpy_hugepage_madvise
from s4c.serving.server import MODELS, ServerConfig, TritonServer, free_ports, grpc_admin_header

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def instance_count(config_text: str) -> int:
    m = re.search(r"instance_group \[\s*\{\s*kind: \w+\s*count: (\d+)", config_text)
    if m is None:
        raise ValueError("no instance_group count in the dual-phase config")
    return int(m.group(1))


def add_dual_copy(repo: Path, name: str, count: int) -> None:
    """A copy of ``s4c_dual_phase`` named ``name`` with ``count`` instances (same code, same ``s4c``)."""
    dst = repo / name
    shutil.copytree(repo / contract.DUAL_PHASE_MODEL, dst, ignore=shutil.ignore_patterns("__pycache__"))
    text = (dst / "config.pbtxt").read_text()
    text = text.replace(f'name: "{contract.DUAL_PHASE_MODEL}"', f'name: "{name}"')
    text = re.sub(r"(instance_group \[\s*\{\s*kind: \w+\s*count: )\d+", rf"\g<1>{count}", text)
    assert instance_count(text) == count
    (dst / "config.pbtxt").write_text(text)


def queue_ms_per_request(client, model: str, headers: dict) -> dict:
    st = client.get_inference_statistics(model, headers=headers, as_json=True)["model_stats"][0]["inference_stats"]
    # protobuf JSON leaves zero fields out
    return {"requests": int(st["success"].get("count", 0)), "queue_ns": int(st["queue"].get("ns", 0)),
            "compute_ns": int(st["compute_infer"].get("ns", 0))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=RESULTS / "dual_concurrency.json")
    ap.add_argument("--requests", type=int, default=8, help="perf_analyzer --measurement-request-count")
    args = ap.parse_args()
    disable_numpy_hugepage_madvise()
    import tritonclient.grpc as grpcclient

    work = ROOT / "build" / "bench_dual"
    shutil.rmtree(work, ignore_errors=True)
    repo = work / "model_repository"
    shutil.copytree(ROOT / "model_repository", repo,
                    ignore=shutil.ignore_patterns("*.onnx", "*.plan", "segmenters.json", "__pycache__"))
    export_repository(repo)
    committed = instance_count(dual_phase_config())
    variants = {"dual_x1": 1, f"dual_x{committed}": committed} if committed != 1 else {"dual_x1": 1, "dual_x2": 2}
    for name, count in variants.items():
        add_dual_copy(repo, name, count)
    case = generate_case(3, abnormal=True, shape=(96, 128, 128), spacing=SPACING, case_id="bench")
    data = write_input_data(work / "dual_input.json", {p: getattr(case, p).astype(np.int16) for p in PHASES},
                            dual=True)
    grpc, http, metrics = free_ports(3)
    cfg = ServerConfig(repo, grpc_port=grpc, http_port=http, metrics_port=metrics)
    pa = perf_analyzer_binary()
    out_dir = RESULTS / "perf_analyzer"
    out_dir.mkdir(parents=True, exist_ok=True)
    result: dict = {
        "command": "python benchmarks/bench_dual_concurrency.py",
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "gpu": "none",
                    "load_average_at_start": [round(x, 2) for x in os.getloadavg()]},
        "tritonserver": "2.51.0 (nvidia-pytriton wheel), CPU form", "committed_dual_instances": committed,
        "case": {"shape_zyx": list(case.arterial.shape), "spacing_zyx_mm": list(SPACING)},
        "variants": {}}
    with TritonServer(cfg, log_path=work / "tritonserver.log", models=(*MODELS, *variants)) as server:
        client = grpcclient.InferenceServerClient(cfg.grpc_url)
        headers = {grpc_admin_header(): server.config.admin_key}
        for name, count in variants.items():
            before = queue_ms_per_request(client, name, headers)
            t = time.perf_counter()
            r = run_perf_analyzer(pa, cfg.grpc_url, name, out_dir / f"{name}_concurrency.csv",
                                  ["-H", f"{grpc_admin_header()}:{server.config.admin_key}",
                                   "--input-data", str(data), "--concurrency-range", "1:2",
                                   "--bls-composing-models", "s4c,locator,segmenter_arterial,segmenter_venous",
                                   "--measurement-mode", "count_windows", "--measurement-request-count",
                                   str(args.requests), "--max-trials", "3", "--stability-percentage", "100"])
            after = queue_ms_per_request(client, name, headers)
            n = after["requests"] - before["requests"]
            points = [{"concurrency": int(row["Concurrency"]),
                       "cases_per_s": round(float(row["Inferences/Second"]), 3),
                       "p50_ms": round(float(row["p50 latency"]) / 1000, 1),
                       "p95_ms": round(float(row["p95 latency"]) / 1000, 1),
                       "queue_ms": round(float(row["Server Queue"]) / 1000, 1),
                       "compute_ms": round(float(row["Server Compute Infer"]) / 1000, 1)}
                      for row in r["rows"]] if r["returncode"] == 0 else []
            by_c = {p["concurrency"]: p for p in points}
            queued = (after["queue_ns"] - before["queue_ns"]) / max(n, 1) / 1e6
            entry = {"instances": count, "perf_analyzer": {k: r[k] for k in ("command", "returncode", "seconds", "csv",
                                                                                 "stderr_tail")},
                     "points": points, "requests_measured": n,
                     "mean_dual_queue_ms_all_requests": round(queued, 1),
                     "wall_s": round(time.perf_counter() - t, 1)}
            if 1 in by_c and 2 in by_c:
                entry["throughput_ratio_c2_over_c1"] = round(by_c[2]["cases_per_s"] / by_c[1]["cases_per_s"], 3)
                entry["queue_ms_at_c2"] = by_c[2]["queue_ms"]
            result["variants"][name] = entry
            print(name, json.dumps({k: v for k, v in entry.items() if k != "perf_analyzer"}))
    data.unlink()
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
