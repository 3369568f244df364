"""``s4c train``: the paper's recipe for one phase (section 3.1).

SGD, base learning rate 0.01 with polynomial decay (power 0.9), momentum 0.9, weight decay 5e-4,
batch 16, deep-supervision weights 1:2:5, 64^3 patches with 90-degree rotations and flips. The
paper trains 80,000 iterations; ``iterations`` is configurable.

A run folder holds ``model.pt`` (inference checkpoint), ``state.pt`` (resumable training state),
``train_log.csv`` and ``loss.png``. Re-running with the same folder resumes from ``state.pt``.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from s4c.checkpoint import ModelSpec, git_revision, save_checkpoint
from s4c.labels import PHASES
from s4c.preprocessing import Normalization
from s4c.training.data import SAMPLING, augment, load_cohort, sample_patch
from s4c.training.loss import DEEP_SUPERVISION_WEIGHTS, deep_supervision_loss
from s4c.training.plot import plot_curve


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (stored in the checkpoint)."""

    data: str
    phase: str
    out: str
    fold: int | None = None
    folds: int = 4
    iterations: int = 80_000
    batch_size: int = 16
    lr: float = 0.01
    lr_power: float = 0.9
    momentum: float = 0.9
    weight_decay: float = 5e-4
    width: int = 32
    seed: int = 0
    spacing: tuple[float, float, float] | None = None
    checkpoint_every: int = 100
    device: str | None = None
    threads: int | None = None
    #: Per-class cross-entropy weights; None (the paper) weighs every voxel equally.
    class_weights: tuple[float, float, float, float] | None = None
    #: Warm start: a checkpoint (same width) whose weights replace the random initialisation.
    init: str | None = None

    def __post_init__(self) -> None:
        if self.phase not in PHASES:
            raise ValueError(f"phase must be one of {PHASES}, got {self.phase!r}")
        for name in ("iterations", "batch_size", "width", "checkpoint_every", "folds"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not (self.lr > 0 and self.momentum >= 0 and self.weight_decay >= 0):
            raise ValueError("lr must be > 0, momentum and weight_decay >= 0")


def poly_lr(base: float, iteration: int, total: int, power: float) -> float:
    """Polynomial decay: ``base * (1 - iteration / total) ** power``."""
    return base * (1.0 - iteration / total) ** power


def train(cfg: TrainConfig, *, progress: bool = True, log: Callable[[str], None] = print) -> Path:
    """Train one phase model; returns the path of ``model.pt``. Resumes when ``state.pt`` exists."""
    import torch

    from s4c.network import S4CNet

    out = Path(cfg.out)
    spacing = tuple(cfg.spacing) if cfg.spacing is not None else first_spacing(cfg.data, cfg.phase)
    cases = load_cohort(cfg.data, cfg.phase, fold=cfg.fold, folds=cfg.folds, seed=cfg.seed, spacing=spacing)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(cfg.seed)
    norm = Normalization()
    # NDHWC lets oneDNN/cuDNN pick their fast 3-D convolution kernels (1.7x per step measured on CPU).
    fmt = torch.channels_last_3d
    model = S4CNet(width=cfg.width).to(device, memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    rng = np.random.default_rng(cfg.seed)
    if cfg.init is not None:
        from s4c.checkpoint import load_checkpoint

        init_model, init_spec = load_checkpoint(cfg.init)
        if init_spec.width != cfg.width:
            raise ValueError(f"--init checkpoint has width {init_spec.width}, this run has width {cfg.width}")
        model.load_state_dict(init_model.state_dict())
        log(f"initialised {cfg.phase} from {cfg.init}")
    start = 0
    state_path = out / "state.pt"
    if state_path.exists():
        state = torch.load(state_path, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        start = int(state["iteration"])
        log(f"resuming {cfg.phase} from iteration {start}")
    spec = ModelSpec(width=cfg.width, phase=cfg.phase, spacing=spacing, normalization=norm,
                     config={**asdict(cfg), "sampling": SAMPLING, "loss_weights": DEEP_SUPERVISION_WEIGHTS,
                             "cases": [c.case_id for c in cases]},
                     git_revision=git_revision())

    log_path = out / "train_log.csv"
    new_log = not log_path.exists() or start == 0
    log_fh = log_path.open("w" if new_log else "a", newline="")
    writer = csv.writer(log_fh)
    if new_log:
        writer.writerow(["iteration", "loss", "lr", "seconds"])
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.iterations, initial=start, desc=f"train {cfg.phase}", unit="it")
    model.train()
    t_start = time.perf_counter()
    p = 64
    x = np.empty((cfg.batch_size, 1, p, p, p), np.float32)
    y = np.empty((cfg.batch_size, p, p, p), np.int64)
    try:
        for it in range(start, cfg.iterations):
            lr = poly_lr(cfg.lr, it, cfg.iterations, cfg.lr_power)
            for g in opt.param_groups:
                g["lr"] = lr
            for b in range(cfg.batch_size):
                case = cases[int(rng.integers(len(cases)))]
                img, lab, _ = sample_patch(case, rng, norm.hu_min)
                img, lab = augment(img, lab, rng)
                norm.apply(img, out=x[b, 0])
                y[b] = lab
            opt.zero_grad(set_to_none=True)
            inputs = torch.from_numpy(x).to(device).contiguous(memory_format=fmt)
            loss = deep_supervision_loss(model(inputs), torch.from_numpy(y).to(device),
                                         class_weights=cfg.class_weights)
            loss.backward()
            opt.step()
            value = float(loss.detach())
            writer.writerow([it + 1, f"{value:.5f}", f"{lr:.6g}", f"{time.perf_counter() - t_start:.1f}"])
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{value:.4f}", lr=f"{lr:.2e}")
            if (it + 1) % cfg.checkpoint_every == 0 or it + 1 == cfg.iterations:
                log_fh.flush()
                _save(out, model, opt, rng, it + 1, spec)
    finally:
        log_fh.close()
        if bar is not None:
            bar.close()
    if start >= cfg.iterations:
        _save(out, model, opt, rng, start, spec)
    _plot(out, cfg.phase)
    model.eval()
    return out / "model.pt"


def first_spacing(data: str | Path, phase: str) -> tuple[float, float, float]:
    """The voxel spacing of the first case's ``phase`` image: the working spacing when none is given."""
    from s4c.data.cohort import read_manifest
    from s4c.io import load_nifti

    root = Path(data)
    entries = read_manifest(root)
    if not entries:
        raise ValueError(f"{root / 'manifest.csv'} lists no cases")
    return tuple(round(v, 4) for v in load_nifti(entries[0].path(root, phase)).spacing)


def _save(out: Path, model, opt, rng, iteration: int, spec: ModelSpec) -> None:
    import torch

    # Write then rename, so an interrupted save never leaves a truncated state behind.
    tmp = out / "state.pt.tmp"
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "rng": rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(), "iteration": iteration}, tmp)
    tmp.replace(out / "state.pt")
    cfg = dict(spec.config, iterations_done=iteration)
    was_training = model.training
    save_checkpoint(out / "model.pt", model.eval(), replace(spec, config=cfg))
    model.train(was_training)


def _plot(out: Path, phase: str) -> None:
    rows = list(csv.DictReader((out / "train_log.csv").open()))
    if rows:
        plot_curve([int(r["iteration"]) for r in rows], [float(r["loss"]) for r in rows], out / "loss.png",
                   title=f"{phase} training loss (1:2:5 deep supervision)")
