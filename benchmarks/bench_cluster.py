"""Replicas behind nginx on one host (s4c.serving.cluster): throughput with 1 and 2 replicas, and one
replica killed mid-run.

    python benchmarks/bench_cluster.py --out benchmarks/results/cluster.json            # 40 calls, c=4
    python benchmarks/bench_cluster.py --smoke --out /tmp/cluster.json                   # the test's size

Every call is a dual-phase case (s4c_dual_phase) through the load balancer; the answers are compared
byte for byte (labels) with the same cases sent straight to one replica. In the kill run replica 0 is
SIGKILLed once a quarter of the calls have been answered; the client retries UNAVAILABLE. From
nginx's access log: the seconds from the kill until nginx stops sending calls to the dead replica
(the end of the last call it tried there in the first fail_timeout window).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from s4c.data.phantom import generate_case  # noqa: E402
from s4c.io import Volume  # noqa: E402
from s4c.serving.client import ClientError, InferenceClient  # noqa: E402
from s4c.serving.cluster import LocalCluster  # noqa: E402
from s4c.serving.local import prepare_repository  # noqa: E402
from s4c.serving.scans import canonical  # noqa: E402


def make_cases(n: int, shape) -> list[tuple]:
    cases = []
    for i in range(n):
        case = generate_case(100 + i, abnormal=i % 2 == 0, shape=shape, spacing=(3.0, 2.5, 2.5), case_id=f"c{i}")
        cases.append(tuple(canonical(Volume(getattr(case, p).astype(np.int16), case.spacing, case.affine), p)
                           for p in ("arterial", "venous")))
    return cases


def answer_key(answer) -> tuple:
    return (bool(answer.abnormal), answer.labels["arterial"].tobytes(), answer.labels["venous"].tobytes())


def references(url: str, cases) -> list[tuple]:
    with InferenceClient(url) as client:
        return [answer_key(client.infer_dual(a, v)) for a, v in cases]


def load(url: str, cases, refs, n: int, concurrency: int, on_progress=None) -> dict:
    """``n`` calls round the cases, ``concurrency`` in flight; lost (ClientError) and mismatched counts."""
    lost, mismatched, done = [], [], []
    lock = threading.Lock()
    clients = [InferenceClient(url, retries=8, backoff_s=0.5, timeout_s=300) for _ in range(concurrency)]
    local = threading.local()
    pool_ids = iter(range(concurrency))

    def call(i: int) -> None:
        if not hasattr(local, "client"):
            with lock:
                local.client = clients[next(pool_ids)]
        a, v = cases[i % len(cases)]
        try:
            key = answer_key(local.client.infer_dual(a, v))
        except ClientError as exc:
            with lock:
                lost.append(f"call {i}: {exc}")
            return
        with lock:
            if key != refs[i % len(cases)]:
                mismatched.append(i)
            done.append(time.monotonic())
            k = len(done)
        if on_progress is not None:
            on_progress(k)

    t = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(call, range(n)))
    wall = time.perf_counter() - t
    retried = sum(c.retried for c in clients)
    for c in clients:
        c.close()
    return {"calls": n, "concurrency": concurrency, "wall_s": round(wall, 3),
            "throughput_cases_per_s": round((n - len(lost)) / wall, 4), "lost": len(lost), "lost_detail": lost[:5],
            "mismatched": len(mismatched), "client_retries": retried}


def lb_stop_seconds(access_log: Path, dead: str, t_kill_wall: float, fail_timeout_s: float) -> dict:
    """From nginx's log: the calls after the kill that nginx tried on ``dead`` (its address)."""
    tried = []
    for line in access_log.read_text().splitlines():
        parts = line.split()
        end = float(parts[0])
        upstreams = line.split('"')[1]
        if end >= t_kill_wall and dead in upstreams:
            tried.append(round(end - t_kill_wall, 3))
    first_window = [t for t in tried if t <= fail_timeout_s]
    return {"calls_tried_on_dead_replica": len(tried), "seconds_after_kill": tried[:20],
            "lb_stop_s": max(first_window) if first_window else 0.0,
            "reprobes_after_fail_timeout": len(tried) - len(first_window)}


def run(args) -> dict:
    work = Path(tempfile.mkdtemp(prefix="s4c-bench-cluster-"))
    repo = work / "model_repository"
    shutil.copytree(args.model_repository, repo, ignore=shutil.ignore_patterns("*.plan", "__pycache__"))
    repo = prepare_repository(repo)
    cases = make_cases(args.cases, tuple(args.shape))
    result = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
              "cases": args.cases, "shape_zyx": args.shape, "calls": args.calls, "concurrency": args.concurrency}
    try:
        with LocalCluster(repo, replicas=1, workdir=work / "one") as one:
            refs = references(one.servers[0].config.grpc_url, cases)  # straight to the replica, no nginx
            if not args.smoke:
                result["replicas_1"] = load(one.url, cases, refs, args.calls, args.concurrency)
        with LocalCluster(repo, replicas=2, workdir=work / "two") as two:
            if not args.smoke:
                result["replicas_2"] = load(two.url, cases, refs, args.calls, args.concurrency)
            dead = two.servers[0].config.grpc_url
            killed = {}

            def maybe_kill(k: int) -> None:
                if k == max(1, args.calls // 4) and not killed:
                    killed["wall"] = time.time()
                    two.kill_replica(0)

            kill = load(two.url, cases, refs, args.calls, args.concurrency, on_progress=maybe_kill)
            kill.update(lb_stop_seconds(two.access_log, dead, killed["wall"], two.fail_timeout_s))
            kill["killed_after_calls"] = max(1, args.calls // 4)
            kill["fail_timeout_s"] = two.fail_timeout_s
            result["replicas_2_one_killed"] = kill
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--model-repository", type=Path, default=REPO / "model_repository")
    ap.add_argument("--calls", type=int, default=40)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--cases", type=int, default=4)
    ap.add_argument("--shape", type=int, nargs=3, default=[48, 80, 72])
    ap.add_argument("--smoke", action="store_true", help="the kill run only, 16 calls (the test)")
    args = ap.parse_args()
    if args.smoke:
        args.calls = min(args.calls, 16)
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
