"""Data-parallel training (torchrun, gloo on CPU), 2 processes for a few steps: both ranks hold the same
weights after every step, those equal a single process that sees the same global batch (the two
ranks' patches, gradients averaged), and a run stopped by SIGTERM resumes onto the same trajectory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from s4c.data.phantom import write_cohort  # noqa: E402

ITERATIONS = 4
ARGS = ["--preset", "paper", "--phase", "arterial", "--batch-size", "2", "--width", "4", "--threads", "1",
        "--checkpoint-every", "1", "--seed", "3", "--no-progress"]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ddp_cohort")
    write_cohort(root, n_normal=1, n_abnormal=1, seed=5, shape=(48, 64, 64), spacing=(2.5, 2.5, 2.5))
    return root


def _torchrun(cohort: Path, out: Path, trace: Path, iterations: int = ITERATIONS, popen: bool = False):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "s4c.training",
           "--data", str(cohort), "--out", str(out), "--iterations", str(iterations), *ARGS]
    env = {**os.environ, "S4C_TRAIN_TRACE": str(trace), "OMP_NUM_THREADS": "1"}
    if popen:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res


def _params(state: dict) -> dict:
    """The trained parameters (BatchNorm running statistics are each rank's own)."""
    return {k: v for k, v in state.items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))}


def _trace(trace: Path, rank: int, step: int) -> dict:
    return _params(torch.load(trace / f"rank{rank}_{step:06d}.pt", weights_only=True))


def test_ranks_agree_and_match_one_process_on_the_global_batch(cohort, tmp_path):
    out, trace = tmp_path / "run", tmp_path / "trace"
    _torchrun(cohort, out, trace)
    for step in range(1, ITERATIONS + 1):
        a, b = _trace(trace, 0, step), _trace(trace, 1, step)
        assert all(torch.equal(a[k], b[k]) for k in a), f"ranks differ after step {step}"
    # Only rank 0 wrote; the log has one row per step.
    assert (out / "model.pt").exists() and len((out / "train_log.csv").read_text().splitlines()) == ITERATIONS + 1

    # One process, the same global batch: each rank's patches from its own stream, gradients averaged.
    from s4c.network import S4CNet
    from s4c.preprocessing import Normalization
    from s4c.training.data import load_cohort
    from s4c.training.loss import training_loss
    from s4c.training.train import Distributed, config_from_preset, draw_batch, first_spacing, poly_lr, rank_rng

    cfg = config_from_preset("paper", data=str(cohort), phase="arterial", out=str(tmp_path / "ref"),
                             iterations=ITERATIONS, batch_size=2, width=4, seed=3, threads=1)
    cases = load_cohort(cohort, "arterial", seed=cfg.seed, spacing=first_spacing(cohort, "arterial"))
    lesion = [c for c in cases if len(c.lesion_idx)]
    normal = [c for c in cases if not c.abnormal]
    torch.manual_seed(cfg.seed)
    model = S4CNet(num_classes=4, width=cfg.width).to(memory_format=torch.channels_last_3d)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    rngs = [rank_rng(cfg.seed, Distributed(r, 2)) for r in range(2)]
    norm = Normalization()
    model.train()
    for it in range(ITERATIONS):
        for g in opt.param_groups:
            g["lr"] = poly_lr(cfg.lr, it, cfg.iterations, cfg.lr_power)
        opt.zero_grad(set_to_none=True)
        for rng in rngs:
            x, y = draw_batch(cfg, rng, cases, lesion, normal, 1, norm)
            x = torch.from_numpy(x).contiguous(memory_format=torch.channels_last_3d)
            (training_loss(model(x), torch.from_numpy(y), cfg.loss) / 2).backward()
        opt.step()
        ddp = _trace(trace, 0, it + 1)
        ref = _params(model.state_dict())
        worst = max(float((ddp[k] - ref[k]).abs().max()) for k in ref)
        assert worst < 1e-5, f"step {it + 1}: DDP and one process differ by {worst:g}"


def test_a_stopped_run_resumes_on_the_same_trajectory(cohort, tmp_path):
    whole = tmp_path / "whole"
    _torchrun(cohort, whole, tmp_path / "trace_whole", iterations=6)
    part, trace = tmp_path / "part", tmp_path / "trace_part"
    proc = _torchrun(cohort, part, trace, iterations=6, popen=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not (trace / "rank0_000001.pt").exists():
            assert proc.poll() is None, proc.stdout.read()
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGTERM)  # as a scheduler preempts a job
        proc.wait(120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    stopped = int(torch.load(part / "state.pt", weights_only=False)["iteration"])
    assert 1 <= stopped < 6, f"the run was not stopped early (at {stopped})"
    assert torch.load(part / "state.pt", weights_only=False)["ranks"] == 2
    # Resume with the CLI's own form: s4c train --nproc 2.
    res = subprocess.run([sys.executable, "-m", "s4c.cli", "train", "--nproc", "2", "--data", str(cohort), "--out",
                          str(part), "--iterations", "6", *ARGS], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "S4C_TRAIN_TRACE": str(trace)})
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    a = _params(torch.load(whole / "state.pt", weights_only=False)["model"])
    b = _params(torch.load(part / "state.pt", weights_only=False)["model"])
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst < 1e-6, f"stopped at {stopped} and resumed: off the trajectory by {worst:g}"
    for step in range(stopped + 1, 7):
        assert all(torch.equal(u, v) for u, v in zip(_trace(trace, 0, step).values(), _trace(trace, 1, step).values(),
                                                     strict=True))


def test_resuming_with_another_process_count_is_refused(cohort, tmp_path):
    out = tmp_path / "one"
    res = subprocess.run([sys.executable, "-m", "s4c.cli", "train", "--data", str(cohort), "--out", str(out),
                          "--iterations", "1", *ARGS], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    res = subprocess.run([sys.executable, "-m", "s4c.cli", "train", "--nproc", "2", "--data", str(cohort), "--out",
                          str(out), "--iterations", "2", *ARGS], capture_output=True, text=True, timeout=600)
    assert res.returncode != 0
    assert "is a run of 1 process(es); resume it with the same number" in res.stdout + res.stderr
