"""``s4c train``: one model, from a named recipe (:data:`PRESETS`).

* ``paper`` (the :class:`TrainConfig` defaults): the paper's recipe for one phase (section 3.1). SGD,
  base learning rate 0.01 with polynomial decay (power 0.9), momentum 0.9, weight decay 5e-4, batch
  16, deep-supervision weights 1:2:5, 64^3 patches with 90-degree rotations and flips, 80,000
  iterations, patches drawn from the whole volume.
* ``roi``: the default models' segmenter for coarse-to-fine inference. Patches are drawn inside the
  pancreas region (the box of the pancreas set plus a jittered margin, as the locator gives it at
  inference), cross-entropy plus soft Dice, AdamW, and tumours fainter than the gland's noise in a
  phase relabelled as gland for that phase's model. MODEL_CARD.md states every deviation.
* ``locator``: stage 1, the pancreas set against background at 5 mm over the whole volume, one model
  for both phases.
* ``classifier``: the paper's section 2.3 comparison network on a frozen S4C segmenter (``init``),
  trained by :func:`s4c.training.classifier.train_classifier`.

``architecture`` swaps the segmenter network for a baseline (3D U-Net or V-Net) under any segmenter
preset.

A run folder holds ``model.pt`` (inference checkpoint), ``state.pt`` (resumable training state),
``train_log.csv`` and ``loss.png``. Re-running with the same folder resumes from ``state.pt``.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from s4c.checkpoint import ROLES, ModelSpec, git_revision, load_checkpoint, save_checkpoint
from s4c.data.cohort import read_manifest
from s4c.io import load_canonical
from s4c.labels import ANY_PHASE, ARCHITECTURES, LOCATOR_SPACING, NUM_CLASSES, PATCH_SIZE, PHASES, TRAIN_ROI_MARGIN_MM
from s4c.preprocessing import Normalization
from s4c.training.data import SAMPLINGS, augment, load_cohort, sample_patch
from s4c.training.loss import DEEP_SUPERVISION_WEIGHTS, LOSSES, training_loss
from s4c.training.stop import TrainingStopped, stop_requests
from s4c.viz import plot_curve

OPTIMIZERS = ("sgd", "adamw")

#: Named recipes: the TrainConfig fields each one sets (anything given explicitly wins).
PRESETS: dict[str, dict] = {
    "paper": {},
    "roi": {"sampling": "roi", "loss": "ce+dice", "optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-4,
            "batch_size": 4, "width": 8, "iterations": 4000, "relabel_invisible": True,
            "roi_margin_mm": TRAIN_ROI_MARGIN_MM, "roi_jitter_mm": 8.0},
    "locator": {"role": "locator", "phase": ANY_PHASE, "sampling": "locator", "loss": "ce+dice",
                "optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-4, "batch_size": 2, "width": 8,
                "iterations": 800, "spacing": LOCATOR_SPACING, "augment": False},
    # Section 2.3 and 3.1: batch 1, base learning rate 0.001, poly 0.9, 20,000 iterations, SGD with the
    # segmenters' momentum and weight decay, on a frozen segmenter (init).
    "classifier": {"role": "classifier", "lr": 1e-3, "batch_size": 1, "iterations": 20_000, "optimizer": "sgd",
                   "momentum": 0.9, "weight_decay": 5e-4, "roi_margin_mm": TRAIN_ROI_MARGIN_MM,
                   "roi_jitter_mm": 8.0},
}


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
    preset: str = "paper"
    role: str = "segmenter"
    sampling: str = "paper"
    loss: str = "ce"
    optimizer: str = "sgd"
    augment: bool = True
    #: Tumours the phantom generator made invisible in this phase are gland in its labels.
    relabel_invisible: bool = False
    roi_margin_mm: float = TRAIN_ROI_MARGIN_MM
    roi_jitter_mm: float = 0.0
    #: roi sampling only. None: each patch's kind is drawn per case (ROI_SAMPLING, lesion patches only from
    #: cases that have a lesion). A number: that share of all patches is centred on a lesion of a case
    #: drawn among those with one, the rest anywhere in the ROI of any case (for a phase whose visible
    #: lesions are few).
    lesion_fraction: float | None = None
    #: roi sampling only. None: normal cases are drawn as often as the cohort holds them. A number: that
    #: share of all patches lies in the ROI of a normal case (hard negatives: a cohort that is mostly
    #: abnormal otherwise shows the network few tumour-free glands).
    normal_fraction: float | None = None
    #: Keep a copy of model.pt every this many iterations in snapshots/ (learning curves); 0: none.
    snapshot_every: int = 0
    #: The segmenter network (:data:`s4c.labels.ARCHITECTURES`): the paper's S4C or a baseline. The
    #: baselines have no deep-supervision heads: their loss is the main output's.
    architecture: str = "s4c"

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {self.role!r}")
        phases = (*PHASES, ANY_PHASE) if self.role == "locator" else PHASES
        if self.phase not in phases:
            raise ValueError(f"phase of a {self.role} must be one of {phases}, got {self.phase!r}")
        for name, allowed in (("preset", tuple(PRESETS)), ("sampling", tuple(SAMPLINGS)), ("loss", LOSSES),
                              ("optimizer", OPTIMIZERS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        if self.role != "segmenter" and self.architecture != "s4c":
            raise ValueError(f"the {self.role} is an S4C network, not {self.architecture!r}")
        if self.role == "classifier" and self.init is None:
            raise ValueError("the classifier trains on a frozen S4C segmenter: give its checkpoint as init (--init)")
        if not isinstance(self.snapshot_every, int) or self.snapshot_every < 0:
            raise ValueError(f"snapshot_every must be an integer >= 0, got {self.snapshot_every!r}")
        if self.lesion_fraction is not None and (self.sampling != "roi" or not 0 <= self.lesion_fraction <= 1):
            raise ValueError(f"lesion_fraction needs roi sampling and a value in [0, 1], got {self.lesion_fraction!r}")
        if self.normal_fraction is not None:
            if self.sampling != "roi" or not 0 <= self.normal_fraction <= 1:
                raise ValueError(f"normal_fraction needs roi sampling and a value in [0, 1], "
                                 f"got {self.normal_fraction!r}")
            if (self.lesion_fraction or 0.0) + self.normal_fraction > 1:
                raise ValueError(f"lesion_fraction + normal_fraction must be <= 1, got "
                                 f"{self.lesion_fraction} + {self.normal_fraction}")
        if self.roi_margin_mm < 0 or self.roi_jitter_mm < 0:
            raise ValueError("roi_margin_mm and roi_jitter_mm must be >= 0")
        for name in ("iterations", "batch_size", "width", "checkpoint_every", "folds"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not (self.lr > 0 and self.momentum >= 0 and self.weight_decay >= 0):
            raise ValueError("lr must be > 0, momentum and weight_decay >= 0")


def config_from_preset(preset: str, **fields) -> TrainConfig:
    """A :class:`TrainConfig` from the named preset, with ``fields`` (those not None) overriding it."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {tuple(PRESETS)}, got {preset!r}")
    merged = {**PRESETS[preset], **{k: v for k, v in fields.items() if v is not None}, "preset": preset}
    if "phase" not in merged:
        raise ValueError(f"the {preset} preset trains one phase: give phase (arterial or venous)")
    return TrainConfig(**merged)


def _draw_case(cfg: TrainConfig, rng: np.random.Generator, cases: list, lesion_cases: list,
               normal_cases: list) -> tuple:
    """The case of the next patch and its kind (None: the sampling's per-case mix)."""
    kind, pool = None, cases
    by_lesion = cfg.lesion_fraction is not None and bool(lesion_cases)
    if by_lesion or cfg.normal_fraction is not None:
        # Cohort-level mix: one draw decides lesion patch, normal-gland patch or the rest.
        u = rng.random()
        lesion = cfg.lesion_fraction if by_lesion else 0.0
        normal = cfg.normal_fraction or 0.0
        if u < lesion:
            kind, pool = "lesion", lesion_cases
        elif u < lesion + normal:
            kind, pool = "roi", normal_cases
        elif by_lesion:
            kind = "roi"
    return pool[int(rng.integers(len(pool)))], kind


def poly_lr(base: float, iteration: int, total: int, power: float) -> float:
    """Polynomial decay: ``base * (1 - iteration / total) ** power``."""
    return base * (1.0 - iteration / total) ** power


#: Set to a folder: every rank writes its parameters there after each step (``rank<r>_<step>.pt``), to
#: check a data-parallel run.
TRACE_ENV = "S4C_TRAIN_TRACE"


@dataclass(frozen=True)
class Distributed:
    """This process's place in a data-parallel run (torchrun's RANK, WORLD_SIZE, LOCAL_RANK)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the one that writes checkpoints, logs and plots."""
        return self.rank == 0

    @classmethod
    def from_env(cls) -> Distributed:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        return cls(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


def rank_rng(seed: int, dist: Distributed) -> np.random.Generator:
    """The patch sampler's stream of a rank: its own for every rank of a data-parallel run, the plain
    ``seed`` stream for a single process (as before data parallelism, so old runs resume alike)."""
    return np.random.default_rng(seed if dist.world == 1 else [seed, dist.rank])


def draw_batch(cfg: TrainConfig, rng: np.random.Generator, cases: list, lesion_cases: list, normal_cases: list,
               n: int, norm: Normalization) -> tuple[np.ndarray, np.ndarray]:
    """``n`` augmented training patches, normalised ((n, 1, 64, 64, 64) float32), and their labels
    ((n, 64, 64, 64) int64), drawn from ``rng``."""
    p = PATCH_SIZE
    x = np.empty((n, 1, p, p, p), np.float32)
    y = np.empty((n, p, p, p), np.int64)
    for b in range(n):
        case, kind = _draw_case(cfg, rng, cases, lesion_cases, normal_cases)
        img, lab, _ = sample_patch(case, rng, norm.hu_min, sampling=cfg.sampling, kind=kind,
                                   roi_margin_mm=cfg.roi_margin_mm, roi_jitter_mm=cfg.roi_jitter_mm)
        if cfg.augment:
            img, lab = augment(img, lab, rng)
        norm.apply(img, out=x[b, 0])
        y[b] = lab
    return x, y


def load_run_state(out: str | Path) -> dict | None:
    """The run folder's ``state.pt``, loaded on the CPU, or None when it has none.

    On the CPU because ``torch.set_rng_state`` takes a CPU ByteTensor only (a state mapped to CUDA
    fails the resume); the model and optimizer states move to their parameters' device as they load.
    """
    import torch

    state_path = Path(out) / "state.pt"
    return torch.load(state_path, map_location="cpu", weights_only=False) if state_path.exists() else None


#: TrainConfig fields a resumed run may change: where and how fast it runs, and for how long (a longer
#: run stretches the rest of its poly schedule). Every other field is the recipe its state was trained
#: with, and a resume that changes one would mix two recipes in one model.
RESUMABLE_CHANGES = frozenset({"out", "iterations", "checkpoint_every", "snapshot_every", "device", "threads",
                               "init"})


def check_resume(out: str | Path, cfg: TrainConfig) -> None:
    """Raise ValueError when the run folder ``out`` was started (its ``config.json``) with another recipe
    than ``cfg``; fields the stored config lacks (an older run) are not compared."""
    path = Path(out) / "config.json"
    if not path.exists():
        return
    stored = json.loads(path.read_text())
    asked = json.loads(json.dumps(asdict(cfg)))  # tuples as lists, as config.json holds them
    changed = []
    for key, value in asked.items():
        if key in RESUMABLE_CHANGES or key not in stored:
            continue
        before = stored[key]
        same = (Path(before).resolve() == Path(value).resolve()) if key == "data" else before == value
        if not same:
            changed.append(f"{key} {before!r} -> {value!r}")
    if changed:
        raise ValueError(f"{out} holds a run started with another recipe ({'; '.join(changed)}): resume it with "
                         f"the flags it was started with, or train into a new --out")


def finished_run(out: str | Path, iterations: int, state: dict | None) -> Path | None:
    """``out/model.pt`` when the run folder ``out`` already holds a run of ``iterations`` steps (its
    ``state`` from :func:`load_run_state` says so), else None."""
    model_path = Path(out) / "model.pt"
    if state is None or not model_path.exists():
        return None
    return model_path if int(state["iteration"]) >= iterations else None


def open_run(cfg: TrainConfig) -> tuple[Path | None, dict | None]:
    """How a trainer starts on ``cfg.out``: ``(model.pt, None)`` when the folder holds a finished run (it is
    returned as it is, without loading the cohort); else ``(None, state)``, where ``state`` is the
    folder's state.pt to resume, after :func:`check_resume`, or None for a new run."""
    state = load_run_state(cfg.out)
    done = finished_run(cfg.out, cfg.iterations, state)
    if done is not None:
        return done, None
    if state is not None:
        check_resume(cfg.out, cfg)
    return None, state


def train(cfg: TrainConfig, *, progress: bool = True, log: Callable[[str], None] = print) -> Path:
    """Train one phase model; returns the path of ``model.pt``. Resumes when ``state.pt`` exists.

    Under torchrun (WORLD_SIZE > 1) the run is data parallel (DistributedDataParallel; gloo on CPU,
    NCCL on CUDA): ``batch_size`` is the global batch, split evenly over the ranks; each rank draws its
    patches from its own stream (:func:`rank_rng`); gradients are averaged, so every rank holds the
    same weights after each step; BatchNorm statistics are each rank's own (as DDP does without
    SyncBatchNorm). Only rank 0 writes; ``state.pt`` holds every rank's stream, and a resumed run with
    the same number of ranks resumes each. SIGTERM or SIGINT ends the run after the current step with a
    checkpoint (all ranks agree on the step), then raises :class:`~s4c.training.stop.TrainingStopped`.
    """
    import torch  # the torch extra: the rest of the package imports without it
    import torch.distributed as tdist

    from s4c.network import build_network  # imports torch

    if cfg.role == "classifier":
        raise ValueError("a classifier trains with s4c.training.classifier.train_classifier")
    done, state = open_run(cfg)
    if done is not None:
        log(f"{cfg.phase}: {cfg.out} already holds {cfg.iterations} iterations")
        return done
    dist = Distributed.from_env()
    if cfg.batch_size % dist.world:
        raise ValueError(f"batch_size {cfg.batch_size} (the global batch) must split evenly over {dist.world} ranks")
    local_batch = cfg.batch_size // dist.world
    if dist.world > 1 and not tdist.is_initialized():
        use_cuda = (cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
        tdist.init_process_group("nccl" if use_cuda else "gloo")
    if not dist.main:
        progress, log = False, (lambda _msg: None)

    out = Path(cfg.out)
    spacing = tuple(cfg.spacing) if cfg.spacing is not None else first_spacing(cfg.data, cfg.phase)
    locator = cfg.role == "locator"
    num_classes = 2 if locator else NUM_CLASSES
    cases = load_cohort(cfg.data, cfg.phase, fold=cfg.fold, folds=cfg.folds, seed=cfg.seed, spacing=spacing,
                        relabel_invisible=cfg.relabel_invisible, binary=locator)
    lesion_cases = [c for c in cases if len(c.lesion_idx)]
    normal_cases = [c for c in cases if not c.abnormal]
    if cfg.normal_fraction and not normal_cases:
        raise ValueError(f"normal_fraction {cfg.normal_fraction} needs normal cases; {cfg.data} has none in training")
    relabelled = [c.case_id for c in cases if c.relabelled]
    if relabelled:
        log(f"{cfg.phase}: {len(relabelled)} tumour(s) invisible in this phase relabelled as gland")
    if dist.main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps({**asdict(cfg), "ranks": dist.world}, indent=2) + "\n")

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and dist.world > 1:
        device = torch.device("cuda", dist.local_rank)
    torch.manual_seed(cfg.seed)
    norm = Normalization()
    # NDHWC lets oneDNN/cuDNN pick their fast 3-D convolution kernels (1.7x per step measured on CPU).
    fmt = torch.channels_last_3d
    model = build_network(cfg.architecture, num_classes=num_classes, width=cfg.width).to(device, memory_format=fmt)
    if cfg.optimizer == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    rng = rank_rng(cfg.seed, dist)
    if cfg.init is not None:
        init_model, init_spec = load_checkpoint(cfg.init)
        if (init_spec.architecture, init_spec.width, init_spec.num_classes) != (cfg.architecture, cfg.width,
                                                                                num_classes):
            raise ValueError(f"--init checkpoint is {init_spec.architecture} of width {init_spec.width} with "
                             f"{init_spec.num_classes} classes, this run {cfg.architecture} of width {cfg.width} "
                             f"with {num_classes}")
        model.load_state_dict(init_model.state_dict())
        log(f"initialised {cfg.phase} from {cfg.init}")
    start = 0
    if state is not None:
        ranks = int(state.get("ranks", 1))
        if ranks != dist.world:
            raise ValueError(f"{out / 'state.pt'} is a run of {ranks} process(es); resume it with the same number "
                             f"(--nproc {ranks}), not {dist.world}")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        rng.bit_generator.state = state["rank_rngs"][dist.rank] if "rank_rngs" in state else state["rng"]
        torch.set_rng_state(state["torch_rng"])
        start = int(state["iteration"])
        log(f"resuming {cfg.phase} from iteration {start}")
    spec = ModelSpec(width=cfg.width, phase=cfg.phase, num_classes=num_classes, spacing=spacing, normalization=norm,
                     config={**asdict(cfg), "sampling_mix": SAMPLINGS[cfg.sampling],
                             "loss_weights": DEEP_SUPERVISION_WEIGHTS, "cases": sorted({c.case_id for c in cases}),
                             "relabelled_faint_tumors": relabelled},
                     git_revision=git_revision(), role=cfg.role, architecture=cfg.architecture)

    if dist.world > 1:
        ddp_kw = {"device_ids": [device.index]} if device.type == "cuda" else {}
        net = torch.nn.parallel.DistributedDataParallel(model, **ddp_kw)
    else:
        net = model
    writer = log_fh = bar = None
    if dist.main:
        log_path = out / "train_log.csv"
        new_log = not log_path.exists() or start == 0
        log_fh = log_path.open("w" if new_log else "a", newline="")
        writer = csv.writer(log_fh)
        if new_log:
            writer.writerow(["iteration", "loss", "lr", "seconds"])
        if progress:
            bar = tqdm(total=cfg.iterations, initial=start, desc=f"train {cfg.phase}", unit="it")
    trace = os.environ.get(TRACE_ENV)
    stopped: TrainingStopped | None = None  # raised once every rank is done, when a signal ended the run
    model.train()
    t_start = time.perf_counter()
    try:
        with stop_requests() as stop:
            for it in range(start, cfg.iterations):
                lr = poly_lr(cfg.lr, it, cfg.iterations, cfg.lr_power)
                for g in opt.param_groups:
                    g["lr"] = lr
                x, y = draw_batch(cfg, rng, cases, lesion_cases, normal_cases, local_batch, norm)
                opt.zero_grad(set_to_none=True)
                inputs = torch.from_numpy(x).to(device).contiguous(memory_format=fmt)
                loss = training_loss(net(inputs), torch.from_numpy(y).to(device), cfg.loss,
                                     class_weights=cfg.class_weights)
                loss.backward()  # DDP averages the gradients over the ranks here
                opt.step()
                flags = torch.tensor([float(loss.detach()), float(stop["signal"] != 0)], device=device)
                if dist.world > 1:
                    tdist.all_reduce(flags)  # the mean loss, and whether any rank was asked to stop
                    flags[0] /= dist.world
                value, stopping = float(flags[0]), bool(flags[1] > 0)
                if trace:
                    Path(trace).mkdir(parents=True, exist_ok=True)
                    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()},
                               Path(trace) / f"rank{dist.rank}_{it + 1:06d}.pt")
                if writer is not None:
                    writer.writerow([it + 1, f"{value:.5f}", f"{lr:.6g}", f"{time.perf_counter() - t_start:.1f}"])
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{value:.4f}", lr=f"{lr:.2e}")
                snapshot = bool(cfg.snapshot_every) and (it + 1) % cfg.snapshot_every == 0
                if (it + 1) % cfg.checkpoint_every == 0 or it + 1 == cfg.iterations or snapshot or stopping:
                    if log_fh is not None:
                        log_fh.flush()
                    _save(out, model, opt, rng, it + 1, spec, dist)
                if snapshot and dist.main:
                    (out / "snapshots").mkdir(exist_ok=True)
                    (out / "snapshots" / f"model_{it + 1:06d}.pt").write_bytes((out / "model.pt").read_bytes())
                if stopping:  # a signal here, or on another rank
                    if it + 1 < cfg.iterations:
                        stopped = TrainingStopped(out, it + 1, stop["signal"] or signal.SIGTERM)
                    break
    finally:
        if log_fh is not None:
            log_fh.close()
        if bar is not None:
            bar.close()
    if start >= cfg.iterations:
        _save(out, model, opt, rng, start, spec, dist)
    if dist.main:
        _plot(out, cfg.phase)
    if dist.world > 1:
        tdist.barrier()  # rank 0's files are complete before any rank returns
    model.eval()
    if stopped is not None:
        raise stopped
    return out / "model.pt"


def first_spacing(data: str | Path, phase: str) -> tuple[float, float, float]:
    """The voxel spacing of the first case's ``phase`` image (arterial for ``"any"``): the working
    spacing when none is given."""
    root = Path(data)
    entries = read_manifest(root)
    if not entries:
        raise ValueError(f"{root / 'manifest.csv'} lists no cases")
    phase = PHASES[0] if phase == ANY_PHASE else phase
    return tuple(round(v, 4) for v in load_canonical(entries[0].path(root, phase)).spacing)


def _save(out: Path, model, opt, rng, iteration: int, spec: ModelSpec, dist: Distributed = Distributed()) -> None:
    """Rank 0 writes ``state.pt`` (with every rank's sampler stream) and ``model.pt``; every rank of a
    data-parallel run calls this at the same step."""
    import torch  # the torch extra

    rank_rngs = [rng.bit_generator.state]
    if dist.world > 1:
        import torch.distributed as tdist

        rank_rngs = [None] * dist.world
        tdist.all_gather_object(rank_rngs, rng.bit_generator.state)
    if not dist.main:
        return
    # Write then rename, so an interrupted save never leaves a truncated state behind.
    tmp = out / "state.pt.tmp"
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "rng": rng.bit_generator.state,
                "rank_rngs": rank_rngs, "ranks": dist.world, "torch_rng": torch.get_rng_state(),
                "iteration": iteration}, tmp)
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
