"""``s4c compare``: the paper's comparison on a user's cohort. Trains what is missing (S4C, the 3D U-Net
and V-Net baselines, the section 2.3 classifier on the S4C segmenter), evaluates every method on the
same cases and writes Tables 1 and 2 (:mod:`s4c.evaluation.comparison`).

Protocols: ``test`` (train on ``data``, evaluate on a separate cohort) or ``folds`` (k-fold
cross-validation on ``data``, the paper's, every case scored once by the fold that held it out). The
segmenters share one recipe (``preset``, iterations, batch, patches, augmentation); only the network
differs. The coarse-to-fine stage 1 (the locator) is the same for every method: the given checkpoint
(default: the embedded one), or one trained per fold with ``locator_iterations``.

Layout of ``out``: ``train/[fold<k>/]<method>/<phase>/`` run folders (they resume, and a finished run
is reused), ``eval/<method>/`` each method's own ``s4c evaluate`` reports, and the comparison's
``report.md``, ``report.json`` and ``roc.png``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from s4c.data.cohort import read_manifest
from s4c.evaluation.comparison import write_comparison
from s4c.evaluation.evaluate import (
    LOCATOR,
    onnx_predictors,
    phantom_tumor_visibility,
    run_cases,
    split_classifiers,
    write_reports,
)
from s4c.inference.pipeline import RoiSettings
from s4c.labels import COMPARE_METHODS, MODES, PHASES, ROI_MARGIN_MM
from s4c.models import locator_path
from s4c.training.classifier import train_classifier
from s4c.training.data import check_fold, stratified_folds
from s4c.training.train import config_from_preset, train

METHODS = COMPARE_METHODS


def parse_methods(text: str | Sequence[str]) -> tuple[str, ...]:
    """Method keys from ``"s4c,unet3d"`` (or a sequence), checked, in the order given, without repeats."""
    items = [m.strip() for m in (text.split(",") if isinstance(text, str) else text) if m.strip()]
    bad = [m for m in items if m not in METHODS]
    if bad or not items:
        raise ValueError(f"methods must be a comma-separated subset of {', '.join(METHODS)}; got {text!r}")
    return tuple(dict.fromkeys(items))


def parse_widths(text: str | None) -> dict[str, int]:
    """``"unet3d=8,vnet=4"`` as {segmenter: width}; empty for None or ``""``."""
    out: dict[str, int] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in COMPARE_METHODS[:3] or not value.strip().isdigit() or int(value) < 1:
            raise ValueError(f"widths must be SEGMENTER=W pairs (segmenters {', '.join(COMPARE_METHODS[:3])}, W >= 1), "
                             f"got {item!r}")
        out[name] = int(value)
    return out


def _train_fold(data: Path, runs: Path, methods: Sequence[str], fold: int | None, folds: int, *, seed: int,
                preset: str, threads: int | None, progress: bool, segmenter_kwargs: dict, widths: dict,
                classifier_kwargs: dict, locator: Path | None, locator_iterations: int | None) -> dict:
    """{method: {phase: checkpoint}} and the fold's locator, trained into ``runs`` where missing."""
    common = {"data": str(data), "fold": fold, "folds": folds, "seed": seed, "threads": threads}
    ckpts: dict = {}
    need_s4c = "s4c" in methods or "classifier" in methods
    for method in ("s4c", "unet3d", "vnet"):
        if method in methods or (method == "s4c" and need_s4c):
            kw = {**segmenter_kwargs, **({"width": widths[method]} if method in widths else {})}
            ckpts[method] = {p: train(config_from_preset(preset, **common, phase=p, architecture=method,
                                                         out=str(runs / method / p), **kw),
                                      progress=progress) for p in PHASES}
    if "classifier" in methods:
        ckpts["classifier"] = {p: train_classifier(config_from_preset(
            "classifier", **common, phase=p, init=str(ckpts["s4c"][p]), out=str(runs / "classifier" / p),
            **classifier_kwargs), progress=progress) for p in PHASES}
    if locator_iterations:
        locator = train(config_from_preset("locator", **common, out=str(runs / LOCATOR),
                                           iterations=locator_iterations), progress=progress)
    return {"models": {m: ckpts[m] for m in methods}, "locator": Path(locator or locator_path())}


def _run(root: Path, entries, ckpts: dict, locator: Path, workdir: Path, *, mode: str, stride: int,
         batch_size: int, threads: int | None, progress: bool, roi_margin_mm: float) -> list[dict]:
    segmenters, classifiers = split_classifiers(ckpts, workdir)
    if mode == "roi":
        segmenters[LOCATOR] = locator
    predictors = onnx_predictors(segmenters, workdir, threads=threads)
    loc = predictors.pop(LOCATOR, None)
    return run_cases(root, entries, predictors, stride, batch_size, progress, mode=mode, locator=loc,
                     roi=RoiSettings(margin_mm=roi_margin_mm), classifiers=classifiers)


def compare(data: str | Path, out: str | Path, *, methods: Sequence[str] = METHODS, test: str | Path | None = None,
            folds: int | None = None, preset: str = "roi", iterations: int | None = None,
            batch_size: int | None = None, width: int | None = None, widths: dict[str, int] | None = None,
            classifier_iterations: int | None = None, lesion_fraction: float | None = None,
            normal_fraction: float | None = None, locator: str | Path | None = None,
            locator_iterations: int | None = None, seed: int = 0,
            mode: str = "roi", stride: int = 20, batch_size_inference: int = 8, threads: int | None = None,
            roi_margin_mm: float = ROI_MARGIN_MM, progress: bool = True) -> dict:
    """Train and evaluate ``methods`` (:data:`METHODS`) under one protocol: ``test`` (a held-out cohort)
    or ``folds`` (cross-validation on ``data``); exactly one of them. ``width`` sets every segmenter's
    base width, ``widths`` ({segmenter: width}) single ones; ``lesion_fraction`` and ``normal_fraction``
    set every segmenter's patch mix (the roi preset's flags of the same names). Returns the comparison
    (``out/report.json``)."""
    methods = parse_methods(methods)
    if (test is None) == (folds is None):
        raise ValueError("give exactly one protocol: a held-out cohort (test) or k-fold cross-validation (folds)")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if folds is not None and folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    root, out = Path(data), Path(out)
    entries = read_manifest(root)
    if not entries:
        raise ValueError(f"{root / 'manifest.csv'} lists no cases")
    seg_kwargs = {k: v for k, v in (("iterations", iterations), ("batch_size", batch_size), ("width", width),
                                    ("lesion_fraction", lesion_fraction), ("normal_fraction", normal_fraction))
                  if v is not None}
    clf_kwargs = {"iterations": classifier_iterations} if classifier_iterations else {}
    train_kw = {"seed": seed, "preset": preset, "threads": threads, "progress": progress,
                "segmenter_kwargs": seg_kwargs, "widths": dict(widths or {}), "classifier_kwargs": clf_kwargs,
                "locator": Path(locator) if locator else None, "locator_iterations": locator_iterations}
    run_kw = {"mode": mode, "stride": stride, "batch_size": batch_size_inference, "threads": threads,
              "progress": progress, "roi_margin_mm": roi_margin_mm}
    cases: dict[str, list[dict]] = {m: [] for m in methods}
    trained: dict = {}
    if test is not None:
        eval_root = Path(test)
        test_entries = read_manifest(eval_root)
        if not test_entries:
            raise ValueError(f"{eval_root / 'manifest.csv'} lists no cases")
        fold = _train_fold(root, out / "train", methods, None, 4, **train_kw)
        trained["all"] = fold
        for m in methods:
            cases[m] = _run(eval_root, test_entries, fold["models"][m], fold["locator"], out / "eval" / m / "onnx",
                            **run_kw)
    else:
        eval_root = root
        fold_of = stratified_folds(entries, folds, seed)
        for k in range(folds):  # every fold is checked before any training starts
            check_fold(entries, fold_of, k, folds)
        for k in range(folds):
            fold = _train_fold(root, out / "train" / f"fold{k}", methods, k, folds, **train_kw)
            trained[f"fold{k}"] = fold
            held_out = [e for e, f in zip(entries, fold_of, strict=True) if f == k]
            for m in methods:
                cases[m] += [{**c, "fold": k} for c in _run(root, held_out, fold["models"][m], fold["locator"],
                                                            out / "eval" / m / f"onnx{k}", **run_kw)]
    visibility = phantom_tumor_visibility(eval_root)
    reports = {}
    for m in methods:
        for c in cases[m]:
            if c["case_id"] in visibility:
                c["tumor_visible"] = visibility[c["case_id"]]
        reports[m] = write_reports(out / "eval" / m, cases[m], {"data": str(eval_root), "mode": mode,
                                                               "method": m})
    protocol = {"train": str(root), "test": str(test) if test is not None else f"{folds}-fold cross-validation "
                f"of the training cohort (seed {seed})", "methods": ", ".join(methods), "mode": mode,
                "segmenter preset": preset, "segmenter overrides": json.dumps(seg_kwargs) if seg_kwargs else "none",
                "classifier overrides": json.dumps(clf_kwargs) if clf_kwargs else "none",
                "locator": f"trained per fold, {locator_iterations} iterations" if locator_iterations else
                str(next(iter(trained.values()))["locator"]),
                "cases evaluated": len(next(iter(cases.values())))}
    return write_comparison(out, reports, cases, protocol)
