"""Replicas behind a real gRPC load balancer (nginx): a replica killed mid-run loses no call after the
client's retries, and every answer equals a single server's byte for byte (benchmarks/bench_cluster.py
--smoke; the committed figures come from its full run)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import need_tool

pytestmark = pytest.mark.server
REPO = Path(__file__).resolve().parents[1]


def test_killed_replica_loses_nothing_and_answers_are_identical(tmp_path):
    need_tool("nginx")
    out = tmp_path / "cluster.json"
    res = subprocess.run([sys.executable, "benchmarks/bench_cluster.py", "--smoke", "--out", str(out)], cwd=REPO,
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    kill = json.loads(out.read_text())["replicas_2_one_killed"]
    assert kill["calls"] == 16 and kill["lost"] == 0, kill["lost_detail"]
    assert kill["mismatched"] == 0
    # nginx saw the dead replica fail and stopped sending to it within its fail_timeout window.
    assert kill["calls_tried_on_dead_replica"] >= 1
    assert 0 <= kill["lb_stop_s"] <= kill["fail_timeout_s"]


def test_cluster_script_starts_and_stops_everything(tmp_path):
    """deploy/local/cluster.py (make cluster): up, serving through nginx, then SIGTERM stops nginx and
    every replica (no process of the session left)."""
    import os
    import signal
    import time

    need_tool("nginx")
    from s4c.serving.server import free_ports

    port = free_ports(1)[0]
    env = {**os.environ, "PATH": os.environ.get("PATH", "") + ":/usr/sbin"}
    proc = subprocess.Popen([sys.executable, "deploy/local/cluster.py", "--replicas", "2", "--port", str(port),
                             "--workdir", str(tmp_path / "w")], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    lines = []
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("load balancer"):
                break
        assert any(ln.startswith("load balancer") for ln in lines), "".join(lines)
        import tritonclient.grpc as grpcclient

        c = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")
        assert c.is_server_live() and c.is_model_ready("s4c_dual_phase")
        c.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(120) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    left = subprocess.run(["pgrep", "-s", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert left == [], f"processes of the cluster left: {left}"
