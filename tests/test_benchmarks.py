"""The benchmark scripts run (on the CPU, small) and write what they promise."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def test_gpu_script_smoke_on_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    res = subprocess.run([sys.executable, "benchmarks/gpu_bench.py", "--smoke", "--out", str(out)], cwd=REPO,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    r = json.loads(out.read_text())
    assert r["network"]["gflops_per_patch"] > 0
    engines = {row["engine"] for row in r["segmenter"]}
    assert "pytorch_eager" in engines and any(e.startswith("onnxruntime") for e in engines)
    assert {p["patches"] for p in r["pipeline_dual_phase"]["phases"]} == {4}  # 64x80x80 at stride 20
    assert r["pipeline_dual_phase"]["total_s"] > 0


def test_flops_count_matches_a_hand_count():
    import torch

    sys.path.insert(0, str(REPO / "benchmarks"))
    from gpu_bench import flops_per_patch

    net = torch.nn.Sequential(torch.nn.Conv3d(1, 2, 3, padding=1), torch.nn.ConvTranspose3d(2, 1, 2, stride=2))
    # conv: 2 * (2 * 64^3 outputs) * (1 * 27); transposed: 2 * (2 * 64^3 inputs) * 1 * 8
    assert flops_per_patch(net) == 2 * 2 * 64**3 * 27 + 2 * 2 * 64**3 * 8


def test_linear_fit():
    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_serving import linear_fit

    fit = linear_fit([1, 2, 3, 4], [2.5, 4.5, 6.5, 8.5])
    assert np.isclose(fit["seconds_per_patch"], 2.0) and np.isclose(fit["intercept_s"], 0.5)
    assert np.isclose(fit["r2"], 1.0)
