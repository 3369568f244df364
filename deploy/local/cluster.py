"""Replicas on one host, for real: N `tritonserver` replicas of the model repository on loopback
ports, behind nginx as an HTTP/2 gRPC load balancer (grpc_pass, passive health checks), until Ctrl-C
or SIGTERM, then everything is stopped.

    python deploy/local/cluster.py --replicas 2 --model-repository model_repository --port 8001
    s4c infer --url 127.0.0.1:8001 --arterial A.nii.gz --venous V.nii.gz --out result/

`make cluster` runs it with REPLICAS=2 (override: make cluster REPLICAS=3 PORT=9001).
"""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from s4c.serving.cluster import LocalCluster
from s4c.serving.local import prepare_repository


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--model-repository", type=Path, default=Path("model_repository"))
    ap.add_argument("--port", type=int, default=8001, help="the load balancer's gRPC port (0: a free one)")
    ap.add_argument("--address", default="127.0.0.1", help="the load balancer's listen address")
    ap.add_argument("--workdir", type=Path, default=None, help="logs and nginx files (default: a temp folder)")
    args = ap.parse_args(argv)
    repository = prepare_repository(args.model_repository)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with LocalCluster(repository, replicas=args.replicas, port=args.port, address=args.address,
                      workdir=args.workdir) as cluster:
        for i, s in enumerate(cluster.servers):
            print(f"replica {i}: {s.config.grpc_url} (log {cluster.workdir / f'replica{i}.log'})", flush=True)
        print(f"load balancer (nginx, gRPC): {cluster.url}; Ctrl-C stops everything", flush=True)
        stop.wait()
        print("stopping", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
