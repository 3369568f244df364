"""Serving benchmark: the real tritonserver on this machine, measured with tritonclient and perf_analyzer.

One run, one server, one machine, so the ratios cancel the machine's speed and noise:

* ``overhead_ratio``: end-to-end ``s4c`` time for a volume (gRPC client, both ways) divided by pure
  in-process ONNX Runtime time on the same patches with the same session options (no tiling, voting,
  post-processing or transfer).
* ``vs_monai_ratio``: our in-process sliding window (majority vote) divided by MONAI's
  ``sliding_window_inference`` driving the same ONNX graph (its probability output; 64^3 window,
  overlap 0.6875 = stride 20, constant blending) on the same volume.
* ``scaling``: end-to-end time against patch count over several volume sizes, with a linear fit.
* ``peak_memory_ratio``: peak RSS of the server and its stub processes above idle during one request,
  divided by the request's CT bytes.
* ``vote_vs_copy_ratio``, ``classify_vs_cc3d_ratio``: copied from ``results/core.json`` (run
  ``bench_core.py`` first; ``make bench`` does).

Plus p50/p95 latency and volumes per minute at concurrency 1-4, the per-stage breakdown from the
REPORT timings, and the perf_analyzer suite (segmenter batch and concurrency sweeps, s4c and
s4c_dual_phase on real phantom volumes) with CSVs in ``results/perf_analyzer/``.

Run: ``.venv/bin/python benchmarks/bench_serving.py`` (``make bench``); ``--quick`` for the CI-sized run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path

import numpy as np

from s4c import contract
from s4c.data.phantom import generate_case
from s4c.inference.predictor import OnnxPredictor
from s4c.inference.sliding_window import sliding_window_inference
from s4c.inference.tiling import extract_patches, pad_to_window, padded_shape, window_origins
from s4c.labels import MODES
from s4c.repository.export import export_repository
from s4c.runtime import disable_numpy_hugepage_madvise
from s4c.serving.client import make_inputs
from s4c.serving.server import ServerConfig, TritonServer, free_ports, session_processes
from s4c.serving.shm import SystemSharedMemory

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SPACING = (2.5, 2.5, 2.5)  # the default models' working grid: no resampling in the timed path


# --- helpers --------------------------------------------------------------------------------------

def session_rss_bytes(sid: int) -> int:
    """Summed PSS of every process in session ``sid`` (tritonserver and its Python stubs).

    PSS, not RSS: the server and each stub map the same /dev/shm tensor pool, and summed RSS would
    count those shared pages once per process."""
    total = 0
    for pid in session_processes(sid):
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:  # the process ended since it was listed
            continue
        for line in rollup.splitlines():
            if line.startswith("Pss:"):
                total += int(line.split()[1]) * 1024
    return total


class PeakSampler:
    """Samples a session's RSS every ``period`` seconds in a thread; ``peak`` is the maximum seen."""

    def __init__(self, sid: int, period: float = 0.05) -> None:
        self.sid, self.period, self.peak = sid, period, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, session_rss_bytes(self.sid))
            time.sleep(self.period)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def phantom(shape: tuple[int, int, int], seed: int = 3) -> np.ndarray:
    case = generate_case(seed, abnormal=True, shape=shape, spacing=SPACING, case_id=f"bench{seed}")
    return case.venous.astype(np.int16), case.arterial.astype(np.int16)


def n_patches(shape) -> int:
    return len(window_origins(padded_shape(shape, 64), 64, 20))


def infer_once(client, ct: np.ndarray, phase: str = "venous", spacing=SPACING) -> tuple[float, dict]:
    inputs = make_inputs({contract.CT: (ct, "INT16"), contract.SPACING: (np.asarray(spacing, np.float32), "FP32"),
                          contract.PHASE: (np.array([phase.encode()], dtype=np.object_), "BYTES")})
    t0 = time.perf_counter()
    r = client.infer(contract.PIPELINE_MODEL, inputs, client_timeout=3600)
    seconds = time.perf_counter() - t0
    return seconds, json.loads(r.as_numpy(contract.REPORT)[0])


def infer_once_shm(client, ct: np.ndarray, headers: dict, phase: str = "venous",
                   spacing=SPACING) -> tuple[float, dict]:
    """:func:`infer_once` with the CT and the labels in system shared memory (``s4c infer
    --shared-memory``); SPACING, PHASE and REPORT stay in the gRPC message."""
    import tritonclient.grpc as grpcclient

    with SystemSharedMemory(client, headers) as shm:
        inputs = [shm.input(contract.CT, ct, "INT16"),
                  *make_inputs({contract.SPACING: (np.asarray(spacing, np.float32), "FP32"),
                                contract.PHASE: (np.array([phase.encode()], dtype=np.object_), "BYTES")})]
        outputs = [shm.output(contract.LABELS, ct.shape, "UINT8"), grpcclient.InferRequestedOutput(contract.REPORT)]
        t0 = time.perf_counter()
        r = client.infer(contract.PIPELINE_MODEL, inputs, outputs=outputs, client_timeout=3600)
        seconds = time.perf_counter() - t0
        labels = shm.read(contract.LABELS)
    report = json.loads(r.as_numpy(contract.REPORT)[0])
    report["_labels_nonzero"] = int(np.count_nonzero(labels))
    return seconds, report


def ort_only_seconds(predictor: OnnxPredictor, ct: np.ndarray, batch: int = 8) -> float:
    """The network alone on the same patches in the same batches (patch extraction not timed)."""
    padded = pad_to_window(ct, 64, -160.0)
    origins = window_origins(padded.shape, 64, 20)
    buf = np.empty((batch, 1, 64, 64, 64), np.float32)
    total = 0.0
    for i in range(0, len(origins), batch):
        x = extract_patches(padded, origins[i : i + batch], 64, buf[: len(origins[i : i + batch])])
        t = time.perf_counter()
        predictor(x)
        total += time.perf_counter() - t
    return total


def monai_seconds(prob_session, ct: np.ndarray, batch: int = 8) -> tuple[float, np.ndarray]:
    import torch
    from monai.inferers import sliding_window_inference as monai_swi

    def predictor(x: torch.Tensor) -> torch.Tensor:
        out = prob_session.run([contract.SEG_PROBABILITIES], {contract.SEG_INPUT: x.numpy()})[0]
        return torch.from_numpy(out)

    image = torch.from_numpy(ct.astype(np.float32))[None, None]
    t = time.perf_counter()
    with torch.inference_mode():
        probs = monai_swi(image, (64, 64, 64), batch, predictor, overlap=0.6875, mode="constant",
                          padding_mode="constant", cval=-160.0)
        labels = probs[0].argmax(0).to(torch.uint8).numpy()
    return time.perf_counter() - t, labels


def linear_fit(x, y) -> dict:
    x, y = np.asarray(x, float), np.asarray(y, float)
    slope, intercept = np.polyfit(x, y, 1)
    pred = slope * x + intercept
    ss_res, ss_tot = float(((y - pred) ** 2).sum()), float(((y - y.mean()) ** 2).sum())
    return {"seconds_per_patch": float(slope), "intercept_s": float(intercept),
            "r2": 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0}


# --- perf_analyzer ---------------------------------------------------------------------------------

def perf_analyzer_binary() -> str:
    out = subprocess.run(["bash", str(ROOT / "benchmarks" / "install_perf_analyzer.sh")], capture_output=True,
                         text=True, check=True)
    return str(ROOT / out.stdout.strip().splitlines()[-1])


def write_input_data(path: Path, volumes: dict[str, np.ndarray], dual: bool) -> Path:
    """perf_analyzer --input-data JSON with real phantom volumes (content + shape per tensor)."""
    sp = {"content": list(SPACING), "shape": [3]}

    def tensor(a: np.ndarray) -> dict:
        return {"content": a.reshape(-1).tolist(), "shape": list(a.shape)}

    if dual:
        entry = {"ARTERIAL": tensor(volumes["arterial"]), "VENOUS": tensor(volumes["venous"]),
                 "ARTERIAL_SPACING": sp, "VENOUS_SPACING": sp}
    else:
        entry = {"CT": tensor(volumes["venous"]), "SPACING": sp, "PHASE": ["venous"]}
    path.write_text(json.dumps({"data": [entry]}))
    return path


def run_perf_analyzer(pa: str, url: str, model: str, csv: Path, extra: list[str], timeout: int = 900) -> dict:
    cmd = [pa, "-m", model, "-i", "grpc", "-u", url, "-f", str(csv), *extra]
    t = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    rows = []
    if csv.exists():
        lines = csv.read_text().splitlines()
        header = lines[0].split(",") if lines else []
        rows = [dict(zip(header, line.split(","), strict=False)) for line in lines[1:] if line.strip()]
    return {"command": " ".join(["perf_analyzer", *cmd[1:]]), "returncode": res.returncode,
            "seconds": round(time.perf_counter() - t, 1), "csv": str(csv.relative_to(ROOT)), "rows": rows,
            "stderr_tail": res.stderr[-600:] if res.returncode else ""}


def perf_suite(url: str, volumes: dict[str, np.ndarray], out_dir: Path, quick: bool, admin_key: str) -> dict:
    from s4c.serving.server import grpc_admin_header

    pa = perf_analyzer_binary()
    out_dir.mkdir(parents=True, exist_ok=True)
    # perf_analyzer reads the model config, one of the restricted (admin) protocols.
    count = ["-H", f"{grpc_admin_header()}:{admin_key}",
             "--measurement-mode", "count_windows", "--measurement-request-count", "2" if quick else "4",
             "--max-trials", "3", "--stability-percentage", "100"]
    suite: dict = {"binary": "perf_analyzer 2.48.0 (tritonclient[all] wheel)", "segmenter_batch": [],
                   "segmenter_concurrency": None}
    batches = [1, 4, 16] if quick else [1, 2, 4, 8, 16]
    for b in batches:
        r = run_perf_analyzer(pa, url, "segmenter_venous", out_dir / f"segmenter_batch{b}.csv",
                              ["-b", str(b), "--concurrency-range", "1", "--input-data", "random", *count])
        for row in r["rows"]:
            row["patches_per_s"] = round(float(row.get("Inferences/Second", 0)), 2)  # PA counts batch items
        suite["segmenter_batch"].append({"batch": b, **r})
    suite["segmenter_concurrency"] = run_perf_analyzer(
        pa, url, "segmenter_venous", out_dir / "segmenter_concurrency.csv",
        ["-b", "8", "--concurrency-range", "1:2" if quick else "1:4", "--input-data", "random", *count])
    single = write_input_data(out_dir / "s4c_input.json", volumes, dual=False)
    dual = write_input_data(out_dir / "s4c_dual_phase_input.json", volumes, dual=True)
    suite["s4c"] = run_perf_analyzer(pa, url, "s4c", out_dir / "s4c.csv",
                                     ["--input-data", str(single), "--bls-composing-models",
                                      "segmenter_venous", "--concurrency-range", "1", *count])
    suite["s4c_dual_phase"] = run_perf_analyzer(
        pa, url, "s4c_dual_phase", out_dir / "s4c_dual_phase.csv",
        ["--input-data", str(dual), "--bls-composing-models", "s4c,segmenter_arterial,segmenter_venous",
         "--concurrency-range", "1", *count])
    for f in (single, dual):
        f.unlink()  # megabytes of JSON, regenerated each run
    return suite


# --- main ------------------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=RESULTS / "cpu.json")
    ap.add_argument("--quick", action="store_true", help="CI-sized: fewer sizes, repeats and perf_analyzer runs")
    ap.add_argument("--no-perf-analyzer", action="store_true")
    ap.add_argument("--mode", choices=MODES, default="full",
                    help="the s4c model's mode (default full: the paper's whole-volume sliding window)")
    args = ap.parse_args()
    disable_numpy_hugepage_madvise()
    import tritonclient.grpc as grpcclient

    # A copy of the committed repository in --mode (default full: every patch-count figure compares the
    # same windows; roi mode's window counts are benchmarks/bench_roi.py's).
    repo = ROOT / "build" / "bench" / f"model_repository_{args.mode}"
    shutil.rmtree(repo, ignore_errors=True)
    shutil.copytree(ROOT / "model_repository", repo,
                    ignore=shutil.ignore_patterns("*.onnx", "*.plan", "segmenters.json", "__pycache__"))
    export_repository(repo, mode=args.mode)
    sizes = [(64, 96, 96), (64, 128, 128), (96, 128, 128), (96, 160, 160)]
    if not args.quick:
        sizes.append((96, 256, 256))
    conc_shape, conc_requests = (64, 96, 96), (2 if args.quick else 4)
    grpc, http, metrics = free_ports(3)
    cfg = ServerConfig(repo, grpc_port=grpc, http_port=http, metrics_port=metrics)
    result: dict = {"command": "python benchmarks/bench_serving.py" + (" --quick" if args.quick else "")
                               + (f" --mode {args.mode}" if args.mode != "full" else ""), "mode": args.mode,
                    "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                                "python": platform.python_version(), "gpu": "none"},
                    "versions": {p: metadata.version(p) for p in ("onnxruntime", "numpy", "tritonclient",
                                                                  "nvidia-pytriton", "monai", "torch")},
                    "tritonserver": "2.51.0 (nvidia-pytriton wheel), CPU form: segmenters in ONNX Runtime "
                                    "inside the Python backend"}
    log = ROOT / "build" / "bench" / "tritonserver.log"
    vols = {s: phantom(s) for s in sizes}
    with TritonServer(cfg, log_path=log) as server:
        sid = server.process.pid
        client = grpcclient.InferenceServerClient(cfg.grpc_url)
        # Warm-up, so that "idle" is a warm server: JIT kernels in both s4c instances, and ONNX Runtime's
        # arena at the largest batch dynamic batching forms (two in-flight batches of 8 merge into 16).
        infer_once(client, vols[sizes[-1]][0])
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda ct: infer_once(grpcclient.InferenceServerClient(cfg.grpc_url), ct),
                          [vols[sizes[1]][0]] * 2))
        idle = session_rss_bytes(sid)

        # Scaling, one request per size (the largest also gives the breakdown). No memory sampling here:
        # reading smaps_rollup of every process 50 times a second slows the server it measures.
        scaling = []
        for s in sizes:
            ct = vols[s][0]
            seconds, report = infer_once(client, ct)
            scaling.append({"shape_zyx": list(s), "patches": n_patches(s), "seconds": round(seconds, 3),
                            "server_total_s": report["timings_s"]["total_s"], "ct_mb": round(ct.nbytes / 2**20, 2)})
        result["scaling"] = {"points": scaling, **linear_fit([p["patches"] for p in scaling],
                                                              [p["seconds"] for p in scaling])}
        big = sizes[-1]
        t = report["timings_s"]
        result["breakdown_s"] = {
            "shape_zyx": list(big), "end_to_end": round(seconds, 3),
            "transfer_and_queue": round(seconds - t["total_s"], 3), "preprocessing": t["preprocess_s"],
            "tiling": t["tile_s"], "network_wait": t["network_wait_s"], "voting": t["vote_s"],
            "resample_back": t["resample_back_s"], "postprocessing": t["postprocess_s"]}
        # Memory on a clinical-size request: 200 x 512 x 512 int16 at 1.0 x 0.8 x 0.8 mm (105 MB), which the
        # server resamples to the model's 2.5 mm grid. Small volumes are dominated by fixed per-batch buffers.
        clinical_shape, clinical_spacing = (200, 512, 512), (1.0, 0.8, 0.8)
        clinical = generate_case(3, abnormal=True, shape=clinical_shape, spacing=clinical_spacing,
                                 case_id="clinical").venous.astype(np.int16)
        idle = session_rss_bytes(sid)
        with PeakSampler(sid) as sampler:
            c_seconds, c_report = infer_once(client, clinical, spacing=clinical_spacing)
        result["peak_memory_ratio"] = round((sampler.peak - idle) / clinical.nbytes, 3)
        result["peak_memory"] = {"idle_mb": round(idle / 2**20, 1), "shape_zyx": list(clinical_shape),
                                 "spacing_zyx_mm": list(clinical_spacing), "ct_mb": round(clinical.nbytes / 2**20, 1),
                                 "peak_above_idle_mb": round((sampler.peak - idle) / 2**20, 1),
                                 "end_to_end_s": round(c_seconds, 3), "server_timings_s": c_report["timings_s"],
                                 "how": "max over 50 ms samples of the summed PSS of tritonserver and every stub "
                                        "process (one session), minus the warm idle value just before"}
        # The same request with the CT and the labels in system shared memory (a client on this host).
        # The regions are the client's pages that the server maps: PSS gives the server half of them, so
        # the conservative figure below adds both regions in full.
        from s4c.serving.server import grpc_admin_header

        admin = {grpc_admin_header(): server.config.admin_key}
        infer_once_shm(client, np.ascontiguousarray(clinical[:48, :160, :160]), admin)  # warm the shm path
        idle = session_rss_bytes(sid)
        with PeakSampler(sid) as sampler:
            s_seconds, s_report = infer_once_shm(client, clinical, admin, spacing=clinical_spacing)
        regions = clinical.nbytes + clinical.size  # the int16 CT and the uint8 labels
        result["peak_memory_ratio_shared_memory"] = round((sampler.peak - idle) / clinical.nbytes, 3)
        result["peak_memory_shared_memory"] = {
            "idle_mb": round(idle / 2**20, 1), "peak_above_idle_mb": round((sampler.peak - idle) / 2**20, 1),
            "regions_mb": round(regions / 2**20, 1),
            "ratio_counting_regions_in_full": round((sampler.peak - idle + regions / 2) / clinical.nbytes, 3),
            "end_to_end_s": round(s_seconds, 3), "same_decision": s_report["abnormal"] == c_report["abnormal"],
            "how": "as peak_memory, with the CT input and the LABELS output in system shared memory "
                   "(s4c.serving.shm, tritonclient.utils.shared_memory); PSS splits the regions' pages "
                   "between the client and the server"}
        del clinical

        # Overhead against the network alone on the same patches (same ORT defaults as the server).
        onnx_path = repo / "segmenter_venous" / "1" / "model.onnx"
        ort = OnnxPredictor(onnx_path)
        e2e = scaling[-1]["seconds"]
        ort_s = ort_only_seconds(ort, vols[big][0])
        result["overhead_ratio"] = round(e2e / ort_s, 3)
        result["overhead"] = {"shape_zyx": list(big), "end_to_end_s": e2e, "ort_only_s": round(ort_s, 3),
                              "patches": n_patches(big)}

        # Latency and throughput at concurrency 1..4, on two volume sizes.
        conc_sizes = [(conc_shape, conc_requests), (sizes[2], 1 if args.quick else 2)]
        result["concurrency"] = []
        for shape, per_client in conc_sizes:
            ct_c = vols[shape][0]
            points = []
            for k in (1, 2, 3, 4):
                def worker(_, ct_c=ct_c, per_client=per_client):
                    return [infer_once(grpcclient.InferenceServerClient(cfg.grpc_url), ct_c)[0]
                            for _ in range(per_client)]

                t0 = time.perf_counter()
                with ThreadPoolExecutor(k) as pool:
                    lat = [x for xs in pool.map(worker, range(k)) for x in xs]
                wall = time.perf_counter() - t0
                points.append({"concurrency": k, "requests": len(lat),
                               "p50_s": round(float(np.percentile(lat, 50)), 3),
                               "p95_s": round(float(np.percentile(lat, 95)), 3),
                               "volumes_per_min": round(60 * len(lat) / wall, 2)})
            result["concurrency"].append({"shape_zyx": list(shape), "patches": n_patches(shape), "points": points})

        if not args.no_perf_analyzer:
            pa_vols = {"venous": vols[(64, 96, 96)][0], "arterial": vols[(64, 96, 96)][1]}
            result["perf_analyzer"] = perf_suite(cfg.grpc_url, pa_vols, RESULTS / "perf_analyzer", args.quick,
                                                 cfg.admin_key)
        client.close()

    # In-process comparison with MONAI (no server running, same graph with probabilities).
    import onnxruntime as ort_mod

    from s4c.models import checkpoint_path
    from s4c.repository.onnx import export_onnx

    prob_path = export_onnx(checkpoint_path("venous"), ROOT / "build" / "bench" / "venous_prob.onnx",
                            probabilities=True)
    prob = ort_mod.InferenceSession(str(prob_path), providers=["CPUExecutionProvider"])
    ct = vols[sizes[2]][0]
    ours, theirs = [], []
    for _ in range(2):
        t0 = time.perf_counter()
        ours_labels = sliding_window_inference(ct, ort, stride=20, batch_size=8, pad_value=-160.0)
        ours.append(time.perf_counter() - t0)
        s, monai_labels = monai_seconds(prob, ct)
        theirs.append(s)
    result["vs_monai_ratio"] = round(min(ours) / min(theirs), 3)
    result["vs_monai"] = {"shape_zyx": list(sizes[2]), "ours_s": round(min(ours), 3), "monai_s": round(min(theirs), 3),
                          "label_agreement": round(float((ours_labels == monai_labels).mean()), 6),
                          "how": "ours: s4c sliding_window_inference, LABELS output, majority vote; MONAI: "
                                 "monai.inferers.sliding_window_inference, PROBABILITIES output, mean, argmax; "
                                 "window 64, stride 20 (overlap 0.6875), batch 8, best of 2"}

    core_path = RESULTS / "core.json"
    if core_path.exists():
        core = json.loads(core_path.read_text())
        result["vote_vs_copy_ratio"] = round(core["vote_vs_copy_ratio"], 3)
        result["classify_vs_cc3d_ratio"] = round(core["classify"]["voted_random"]["ratio"], 3)
        result["core_source"] = f"{core_path.relative_to(ROOT)} ({core.get('command', '')})"
    result["targets"] = {"overhead_ratio": "<= 1.15", "vs_monai_ratio": "<= 1.0", "peak_memory_ratio": "<= 3",
                         "vote_vs_copy_ratio": "<= 4", "classify_vs_cc3d_ratio": "<= 5"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    summary = {k: result.get(k) for k in ("overhead_ratio", "vs_monai_ratio", "peak_memory_ratio",
                                           "vote_vs_copy_ratio", "classify_vs_cc3d_ratio")}
    summary["scaling_r2"] = round(result["scaling"]["r2"], 4)
    print(json.dumps(summary, indent=2))
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
