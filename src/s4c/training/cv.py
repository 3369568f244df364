"""``s4c cv``: train the folds of a cohort, then score every case once with the fold that held it out.

Training sits on top of evaluation here, not the other way round: :mod:`s4c.evaluation` scores models
and never trains them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from s4c.data.cohort import read_manifest
from s4c.evaluation.evaluate import LOCATOR, onnx_predictors, run_cases, write_reports
from s4c.inference.pipeline import RoiSettings
from s4c.labels import MODES, PHASES, ROI_MARGIN_MM
from s4c.training.data import check_fold, stratified_folds
from s4c.training.train import config_from_preset, train


def cross_validate(data: str | Path, out: str | Path, *, folds: int = 4, seed: int = 0, stride: int = 20,
                   eval_batch_size: int = 8, threads: int | None = None, progress: bool = True,
                   mode: str = "full", preset: str = "paper", roi_margin_mm: float = ROI_MARGIN_MM,
                   locator_kwargs: Mapping | None = None, **train_kwargs) -> dict:
    """Train folds x phases (and, in ``roi`` mode, a locator per fold), then evaluate every case
    exactly once, with the models of the fold that held it out. Folds are stratified by diagnosis and
    split by case (both phases together). ``train_kwargs`` override the segmenters' ``preset``,
    ``locator_kwargs`` the locator preset."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    root, out = Path(data), Path(out)
    entries = read_manifest(root)
    if not entries:
        raise ValueError(f"{root / 'manifest.csv'} lists no cases")
    fold_of = stratified_folds(entries, folds, seed)
    for k in range(folds):  # every fold is checked before any training starts
        check_fold(entries, fold_of, k, folds)
    common = {"data": str(root), "folds": folds, "seed": seed, "threads": threads}
    cases: list[dict] = []
    for k in range(folds):
        ckpts = {}
        for phase in PHASES:
            cfg = config_from_preset(preset, **common, phase=phase, out=str(out / f"fold{k}" / phase), fold=k,
                                     **train_kwargs)
            ckpts[phase] = train(cfg, progress=progress)
        if mode == "roi":
            cfg = config_from_preset("locator", **common, out=str(out / f"fold{k}" / LOCATOR), fold=k,
                                     **dict(locator_kwargs or {}))
            ckpts[LOCATOR] = train(cfg, progress=progress)
        predictors = onnx_predictors(ckpts, out / f"fold{k}" / "onnx", threads=threads)
        locator = predictors.pop(LOCATOR, None)
        held_out = [e for e, f in zip(entries, fold_of, strict=True) if f == k]
        for c in run_cases(root, held_out, predictors, stride, eval_batch_size, progress, mode=mode,
                            locator=locator, roi=RoiSettings(margin_mm=roi_margin_mm)):
            cases.append({**c, "fold": k})
    return write_reports(out, cases, {"data": str(root), "folds": folds, "seed": seed, "stride": stride,
                                      "mode": mode, "preset": preset, "train": train_kwargs})
