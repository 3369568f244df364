"""Training of the classification network of the paper's section 2.3 (the ``classifier`` preset).

One model per phase, on a frozen S4C segmenter (``init``): its Pool3 features inside the pancreas
region of interest, which in training is the reference pancreas set's box plus the margin, jittered as
the segmenter's ROI patches are (:func:`s4c.training.data.jittered_roi`). Batch 1 (the regions differ
in size), SGD with momentum, polynomial decay, softmax cross-entropy on the case label. Each step
draws a normal or an abnormal case with equal probability, then a case of that class (the cohorts
here are unbalanced; the paper does not say how it drew). The paper's 90-degree rotations and flips
apply to the region. Run folders resume from ``state.pt`` like the segmenters'.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from s4c.checkpoint import ModelSpec, git_revision, load_checkpoint, save_checkpoint
from s4c.inference.classifier import pad_to_multiple
from s4c.preprocessing import Normalization
from s4c.training.data import augment, jittered_roi, load_cohort
from s4c.training.stop import TrainingStopped, stop_requests
from s4c.training.train import TrainConfig, open_run, poly_lr


def region(case, rng: np.random.Generator, cfg: TrainConfig) -> np.ndarray:
    """The case's pancreas region (Z, Y, X) in HU with a jittered margin, augmented; the whole volume
    when the case has no pancreas set."""
    roi = jittered_roi(case, rng, cfg.roi_margin_mm, cfg.roi_jitter_mm)
    img = case.image if roi is None else case.image[tuple(slice(a, b) for a, b in zip(*roi, strict=True))]
    img = np.asarray(img, np.float32)
    if cfg.augment:
        img, _ = augment(img, np.zeros(img.shape, np.uint8), rng)
    return img


def train_classifier(cfg: TrainConfig, *, progress: bool = True, log: Callable[[str], None] = print) -> Path:
    """Train the phase's classifier on the frozen segmenter ``cfg.init``; returns ``model.pt``'s path.
    Resumes when ``state.pt`` exists. SIGTERM or SIGINT ends the run after the current step with a
    checkpoint, then raises :class:`~s4c.training.stop.TrainingStopped`."""
    import torch  # the torch extra

    from s4c.network import PoolThreeClassifier  # imports torch

    if cfg.role != "classifier" or cfg.init is None:
        raise ValueError("train_classifier needs a classifier config with init = the segmenter checkpoint")
    done, state = open_run(cfg)
    if done is not None:
        log(f"{cfg.phase} classifier: {cfg.out} already holds {cfg.iterations} iterations")
        return done
    segmenter, seg_spec = load_checkpoint(cfg.init)
    if seg_spec.role != "segmenter" or seg_spec.architecture != "s4c":
        raise ValueError(f"{Path(cfg.init).name} is a {seg_spec.architecture} {seg_spec.role}; the classifier "
                         f"takes the Pool3 features of an S4C segmenter")
    if seg_spec.phase != cfg.phase:
        raise ValueError(f"{Path(cfg.init).name} is a {seg_spec.phase} segmenter, this is the {cfg.phase} classifier")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    cases = load_cohort(cfg.data, cfg.phase, fold=cfg.fold, folds=cfg.folds, seed=cfg.seed, spacing=seg_spec.spacing)
    by_class = [[c for c in cases if not c.abnormal], [c for c in cases if c.abnormal]]
    if not all(by_class):
        raise ValueError(f"the classifier needs normal and abnormal cases; {cfg.data} has "
                         f"{len(by_class[0])} normal and {len(by_class[1])} abnormal in training")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(cfg.seed)
    model = PoolThreeClassifier(segmenter).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    rng = np.random.default_rng(cfg.seed)
    norm: Normalization = seg_spec.normalization
    start, state_path = 0, out / "state.pt"
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        start = int(state["iteration"])
        log(f"resuming {cfg.phase} classifier from iteration {start}")
    spec = ModelSpec(width=seg_spec.width, phase=cfg.phase, num_classes=2, spacing=seg_spec.spacing,
                     normalization=norm, role="classifier", git_revision=git_revision(),
                     config={**asdict(cfg), "segmenter_spec": seg_spec.to_dict(),
                             "cases": sorted({c.case_id for c in cases}), "class_draw": "balanced"})

    def save(iteration: int) -> None:
        tmp = out / "state.pt.tmp"
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "rng": rng.bit_generator.state,
                    "torch_rng": torch.get_rng_state(), "iteration": iteration}, tmp)
        tmp.replace(state_path)
        save_checkpoint(out / "model.pt", model.eval(), replace(spec, config={**spec.config,
                                                                              "iterations_done": iteration}))
        model.train()

    log_path = out / "train_log.csv"
    new_log = start == 0 or not log_path.exists()
    with log_path.open("w" if new_log else "a", newline="") as fh:
        writer = csv.writer(fh)
        if new_log:
            writer.writerow(["iteration", "loss", "lr", "seconds"])
        bar = tqdm(total=cfg.iterations, initial=start, desc=f"classifier {cfg.phase}", unit="it",
                   disable=not progress)
        model.train()
        t0 = time.perf_counter()
        stopped: TrainingStopped | None = None
        with stop_requests() as stop:
            for it in range(start, cfg.iterations):
                lr = poly_lr(cfg.lr, it, cfg.iterations, cfg.lr_power)
                for g in opt.param_groups:
                    g["lr"] = lr
                label = int(rng.integers(2))
                pool = by_class[label]
                case = pool[int(rng.integers(len(pool)))]
                x = norm.apply(pad_to_multiple(region(case, rng, cfg), norm.hu_min))
                opt.zero_grad(set_to_none=True)
                logits = model(torch.from_numpy(np.ascontiguousarray(x))[None, None].to(device))
                loss = torch.nn.functional.cross_entropy(logits, torch.tensor([label], device=device))
                loss.backward()
                opt.step()
                writer.writerow([it + 1, f"{float(loss.detach()):.5f}", f"{lr:.6g}",
                                 f"{time.perf_counter() - t0:.1f}"])
                bar.update(1)
                if (it + 1) % cfg.checkpoint_every == 0 or it + 1 == cfg.iterations or stop["signal"]:
                    fh.flush()
                    save(it + 1)
                if stop["signal"] and it + 1 < cfg.iterations:
                    stopped = TrainingStopped(out, it + 1, stop["signal"])
                    break
        bar.close()
    if stopped is not None:
        raise stopped
    if start >= cfg.iterations:
        save(start)
    return out / "model.pt"
