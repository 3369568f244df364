"""``s4c evaluate``: the S4C pipeline on a labelled cohort, per phase and fused (``s4c cv`` trains the
folds with :mod:`s4c.training.cv` and scores them here).

Per case and phase: run the pipeline, keep the decision, the kept tumour/duct voxel counts and the
DSCs of the pancreas set {1, 2, 3} and of the tumour against the reference labels. Then
summarise like the paper: Table 1 per phase (DSC of normal and abnormal pancreas, tumour DSC,
misses, wrong calls, sensitivity, specificity) and Table 2 fused, plus an ROC over the tumour-voxel
threshold with its AUC.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from s4c.checkpoint import load_checkpoint, save_classifier_segmenter
from s4c.data.cohort import CaseEntry, read_manifest
from s4c.data.phantom import PHANTOM_JSON
from s4c.evaluation.metrics import DetectionStats, detection_stats, dsc, mean_dsc
from s4c.evaluation.tables import Table1Row, Table2Row, render_table1, render_table2
from s4c.inference.classifier import ClassifierPredictor
from s4c.inference.pipeline import RoiSettings, run_phase
from s4c.inference.predictor import OnnxPredictor
from s4c.inference.roi import box_fraction
from s4c.io import load_canonical, load_canonical_pair
from s4c.labels import DEFAULT_MODE, DUCT, MIN_DUCT_VOXELS, MIN_TUMOR_VOXELS, MODES, PHASES, ROI_MARGIN_MM, TUMOR
from s4c.models import checkpoint_path, locator_path
from s4c.outputs import write_results
from s4c.report import phase_report
from s4c.repository.onnx import export_onnx
from s4c.validation import as_label_volume
from s4c.viz import plot_curve

Predictors = Mapping[str, tuple[Callable[[np.ndarray], np.ndarray], object]]
#: Key of the locator among the exported models.
LOCATOR = "locator"
#: Folder of ``out`` that ``evaluate(write_cases=True)`` writes one case folder per case into.
CASES_DIR = "cases"


def evaluate_case(root: Path, entry: CaseEntry, predictors: Predictors, *, stride: int = 20,
                  batch_size: int = 8, mode: str = "full", locator: tuple | None = None,
                  roi: RoiSettings | None = None, write_to: Path | None = None,
                  classifiers: Mapping[str, ClassifierPredictor] | None = None) -> dict:
    """Run both phases of one case and score them against its labels.

    In ``roi`` mode each phase row also has ``locator_recall``: the fraction of the reference
    pancreas-set voxels inside the ROI (1.0 after a fall-back to the whole volume). ``write_to``: also
    write the case's results there, as every path does (:func:`s4c.outputs.write_results`).
    ``classifiers``: a phase with one is decided by its classifier (section 2.3) on the segmentation's
    pancreas region instead of the voxel-count rule; the row keeps the rule's call as
    ``segmenter_abnormal_pred`` and adds ``classifier_probability``.
    """
    out: dict = {"case_id": entry.case_id, "abnormal": entry.abnormal}
    written: dict = {}
    for phase in PHASES:
        img_path, lab_path = entry.path(root, phase), entry.path(root, f"{phase}_label")
        if img_path is None or not img_path.exists():
            raise ValueError(f"case {entry.case_id}: {phase} image missing")
        name = f"case {entry.case_id} {phase}"
        # An image and its labels must share one grid (compared in the canonical frame).
        vol, lab = load_canonical_pair(img_path, lab_path, name) if lab_path is not None else (
            load_canonical(img_path), None)
        predictor, spec = predictors[phase]
        t = time.perf_counter()
        res = run_phase(vol.array, vol.spacing, predictor, spec, stride=stride, batch_size=batch_size, mode=mode,
                        locator=locator, roi=roi or RoiSettings())
        d = res.decision
        row = {"abnormal_pred": int(d.abnormal), "tumor_voxels": d.tumor_voxels, "duct_voxels": d.duct_voxels,
               **res.roi_report()}
        if classifiers and phase in classifiers:
            c = classifiers[phase](vol.array, vol.spacing, d.labels)
            row.update(segmenter_abnormal_pred=row["abnormal_pred"], abnormal_pred=int(c.abnormal),
                       classifier_probability=c.probability, classifier_roi_fallback=c.roi_fallback)
        row["seconds"] = time.perf_counter() - t
        if lab is not None:
            ref = as_label_volume(lab.array, name)
            row["dsc_pancreas"] = dsc(d.labels > 0, ref > 0)
            row["dsc_tumor"] = dsc(d.labels == TUMOR, ref == TUMOR)
            row["dsc_duct"] = dsc(d.labels == DUCT, ref == DUCT)
            if mode == "roi":
                row["locator_recall"] = 1.0 if res.roi_zyx is None else box_fraction(ref > 0, res.roi_zyx)
        out[phase] = row
        written[phase] = (vol, res, spec)
    out["fused_pred"] = int(out["arterial"]["abnormal_pred"] or out["venous"]["abnormal_pred"])
    if write_to is not None:
        report = {"abnormal": bool(out["fused_pred"]), "case_id": entry.case_id, "reference_abnormal": entry.abnormal,
                  "phases": {p: phase_report(r, v.affine, sp) for p, (v, r, sp) in written.items()}}
        write_results(Path(write_to) / entry.case_id, {p: v for p, (v, _, _) in written.items()},
                      {p: r.decision.labels for p, (_, r, _) in written.items()}, report)
    return out


def _phase_summary(cases: Sequence[dict], phase: str) -> dict:
    truth = [c["abnormal"] for c in cases]
    stats = detection_stats(truth, [c[phase]["abnormal_pred"] for c in cases])
    d = stats.to_dict()
    d["dsc_normal_pancreas"] = mean_dsc(c[phase].get("dsc_pancreas", math.nan) for c in cases if not c["abnormal"])
    d["dsc_abnormal_pancreas"] = mean_dsc(c[phase].get("dsc_pancreas", math.nan) for c in cases if c["abnormal"])
    d["dsc_tumor"] = mean_dsc(c[phase].get("dsc_tumor", math.nan) for c in cases if c["abnormal"])
    d["patches_per_case"] = float(np.mean([c[phase].get("patches", 0) for c in cases]))
    recalls = [c[phase]["locator_recall"] for c in cases if "locator_recall" in c[phase]]
    d["locator_recall"] = min(recalls) if recalls else None
    d["roi_fallbacks"] = sum(bool(c[phase].get("roi_fallback")) for c in cases)
    d["seconds_per_case"] = float(np.mean([c[phase].get("seconds", math.nan) for c in cases]))
    # Phantom cohorts say which tumours each phase can show: the phase model's detections among those.
    vis = [c for c in cases if c.get("tumor_visible", {}).get(phase)]
    if vis:
        found = sum(c[phase]["abnormal_pred"] for c in vis)
        d["visible_tumors"] = {"visible": len(vis), "detected": int(found), "sensitivity": found / len(vis)}
    return d


def roc(scores: Sequence[float], truth: Sequence[int]) -> tuple[list[float], list[float], float]:
    """ROC points (false-positive rate, true-positive rate) over every threshold, and the AUC
    (the Mann-Whitney probability that an abnormal case outscores a normal one, ties counting half)."""
    s = np.asarray(scores, float)
    t = np.asarray(truth, int)
    pos, neg = s[t == 1], s[t == 0]
    thresholds = np.unique(np.concatenate([s, [np.inf]]))[::-1]
    fpr = [float((neg >= th).mean()) if len(neg) else math.nan for th in thresholds]
    tpr = [float((pos >= th).mean()) if len(pos) else math.nan for th in thresholds]
    if len(pos) and len(neg):
        greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
        auc = float(greater / (len(pos) * len(neg)))
    else:
        auc = math.nan
    return fpr, tpr, auc


def case_scores(cases: Sequence[dict], *, min_duct_voxels: int = MIN_DUCT_VOXELS) -> tuple[list[float], str]:
    """Each case's fused score for an ROC, and what it is. Classifier rows: the larger phase
    probability. Segmenter rows: the larger kept tumour-voxel count, with the duct rule fixed (a case
    the duct rule calls abnormal scores above every threshold, finite, so the curve starts at 0, 0)."""
    if all("classifier_probability" in c[p] for c in cases for p in PHASES):
        return [max(c[p]["classifier_probability"] for p in PHASES) for c in cases], \
            "max classifier probability over phases"
    duct_score = float(np.finfo(np.float64).max)
    return [duct_score if any(c[p]["duct_voxels"] >= min_duct_voxels for p in PHASES)
            else max(c[p]["tumor_voxels"] for p in PHASES) for c in cases], \
        "max kept tumour voxels over phases (duct rule fixed)"


def summarize(cases: Sequence[dict], *, min_duct_voxels: int = MIN_DUCT_VOXELS) -> dict:
    """The report: objects ``arterial``, ``venous`` and ``fused`` plus the ROC of the fused rule."""
    if not cases:
        raise ValueError("no cases to summarise")
    report = {p: _phase_summary(cases, p) for p in PHASES}
    truth = [c["abnormal"] for c in cases]
    report["fused"] = detection_stats(truth, [c["fused_pred"] for c in cases]).to_dict()
    # ROC: the fused rule with the tumour threshold swept and the duct rule fixed. A case the duct
    # rule calls abnormal gets a score above every threshold (finite, so the curve starts at 0, 0).
    scores, what = case_scores(cases, min_duct_voxels=min_duct_voxels)
    fpr, tpr, auc = roc(scores, truth)
    report["fused"]["roc_auc"] = auc
    report["roc"] = {"fpr": fpr, "tpr": tpr, "score": what}
    report["thresholds"] = {"min_tumor_voxels": MIN_TUMOR_VOXELS, "min_duct_voxels": min_duct_voxels}
    return report


def render_report_md(report: dict, method: str = "S4C") -> str:
    """Markdown with the paper's Table 1 and Table 2 layouts."""
    def stats(d: dict) -> DetectionStats:
        return DetectionStats(d["n_abnormal"], d["n_normal"], d["misses"], d["wrong_calls"])

    rows1 = [Table1Row(p.capitalize(), method, report[p]["dsc_normal_pancreas"], report[p]["dsc_abnormal_pancreas"],
                       report[p]["dsc_tumor"], stats(report[p])) for p in ("venous", "arterial")]
    rows2 = [Table2Row("Arterial&Venous", method, stats(report["fused"]))]
    lines = ["# S4C evaluation", "", "## Table 1: per phase (DSC, detection)", "", render_table1(rows1),
             "## Table 2: dual phase (either phase abnormal)", "", render_table2(rows2)]
    f = report["fused"]
    lines.append(f"Fused sensitivity 95% CI {f['sensitivity_ci95'][0]:.3f}-{f['sensitivity_ci95'][1]:.3f}, "
                 f"specificity 95% CI {f['specificity_ci95'][0]:.3f}-{f['specificity_ci95'][1]:.3f} (Wilson); "
                 f"ROC AUC over the tumour-voxel threshold {f['roc_auc']:.3f}.\n")
    lines += [f"Mode: {report.get('mode', 'full')}.", "",
              "| phase | segmenter windows per case | locator recall (min) | ROI fall-backs | tumours visible in "
              "the phase: detected | seconds per case |", "|---|---|---|---|---|---|"]
    for p in PHASES:
        r = report[p]
        rec = "-" if r.get("locator_recall") is None else f"{r['locator_recall']:.4f}"
        vis = r.get("visible_tumors")
        vis_s = "-" if not vis else f"{vis['detected']}/{vis['visible']}"
        lines.append(f"| {p} | {r['patches_per_case']:.1f} | {rec} | {r['roi_fallbacks']} | {vis_s} | "
                     f"{r['seconds_per_case']:.2f} |")
    return "\n".join(lines) + "\n"


def write_reports(out: str | Path, cases: Sequence[dict], extra: dict | None = None) -> dict:
    """Write ``report.json``, ``report.md``, ``cases.json`` and ``roc.png`` into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = summarize(cases)
    if extra:
        report.update(extra)
    (out / "report.json").write_text(json.dumps(plain_json(report), indent=2, allow_nan=False) + "\n")
    (out / "cases.json").write_text(json.dumps(plain_json(list(cases)), indent=2, allow_nan=False) + "\n")
    (out / "report.md").write_text(render_report_md(report))
    plot_curve(report["roc"]["fpr"], report["roc"]["tpr"], out / "roc.png", smooth=1,
               title=f"ROC, fused, tumour-voxel threshold swept: AUC {report['fused']['roc_auc']:.3f} "
                     f"(x: 1 - specificity, y: sensitivity)", xlabel_unit="")
    return report


def plain_json(x):
    """Plain JSON: numpy scalars to Python, NaN/Inf (undefined DSCs, CIs of empty groups) to null."""
    if isinstance(x, dict):
        return {k: plain_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain_json(v) for v in x]
    if isinstance(x, (np.integer, np.bool_)):
        return x.item()
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    return x


def evaluate(data: str | Path, out: str | Path, *, models: str | Path | None = None, stride: int = 20,
             batch_size: int = 8, threads: int | None = None, progress: bool = True, mode: str = DEFAULT_MODE,
             roi_margin_mm: float = ROI_MARGIN_MM, write_cases: bool = False) -> dict:
    """Evaluate the models in ``models`` (default: embedded) on every case of the cohort ``data``, in
    ``mode`` (``roi``: the locator in ``models`` first, then the segmenter on its ROI). ``write_cases``:
    also write each case's results into ``out/cases/<case_id>/`` (the files ``s4c infer`` writes)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    root = Path(data)
    entries = read_manifest(root)
    if not entries:
        raise ValueError(f"{root / 'manifest.csv'} lists no cases")
    ckpts = {phase: checkpoint_path(phase, models) for phase in PHASES}
    ckpts, classifiers = split_classifiers(ckpts, Path(out) / "onnx")
    if mode == "roi":
        ckpts[LOCATOR] = locator_path(models)
    predictors = onnx_predictors(ckpts, Path(out) / "onnx", threads=threads)
    locator = predictors.pop(LOCATOR, None)
    roi = RoiSettings(margin_mm=roi_margin_mm)
    t = time.perf_counter()
    cases = run_cases(root, entries, predictors, stride, batch_size, progress, mode=mode, locator=locator, roi=roi,
                      write_to=Path(out) / CASES_DIR if write_cases else None, classifiers=classifiers)
    seconds = time.perf_counter() - t
    visibility = phantom_tumor_visibility(root)
    for c in cases:
        if c["case_id"] in visibility:
            c["tumor_visible"] = visibility[c["case_id"]]
    return write_reports(out, cases, {"data": str(root), "models": str(models or "embedded default"),
                                      "stride": stride, "mode": mode,
                                      "roi_margin_mm": roi_margin_mm if mode == "roi" else None,
                                      "seconds_per_dual_phase_case": seconds / len(entries)})


def phantom_tumor_visibility(root: str | Path) -> dict[str, dict[str, bool]]:
    """{case_id: {phase: visible}} for the abnormal cases of a phantom cohort (its ``phantom.json``);
    empty for a cohort without one."""
    path = Path(root) / PHANTOM_JSON
    if not path.exists():
        return {}
    return {c["case_id"]: dict(c["tumor"]["visible"]) for c in json.loads(path.read_text())["cases"] if c.get("tumor")}


def split_classifiers(checkpoints: Mapping[str, Path], workdir: Path) -> tuple[dict, dict]:
    """({phase: segmenter checkpoint}, {phase: ClassifierPredictor}): a phase whose checkpoint is a
    classifier runs the frozen segmenter inside it (written to ``workdir``) and is decided by the
    classifier."""
    segmenters, classifiers = dict(checkpoints), {}
    for phase, ckpt in checkpoints.items():
        if not Path(ckpt).exists():
            continue
        model, spec = load_checkpoint(ckpt)
        if spec.role == "classifier":
            out = Path(workdir) / f"{phase}_classifier_segmenter.pt"
            segmenters[phase] = save_classifier_segmenter(model, spec, out, name=Path(ckpt).name)
            classifiers[phase] = ClassifierPredictor(model, spec, device="cpu")
    return segmenters, classifiers


def onnx_predictors(checkpoints: Mapping[str, Path], workdir: Path, *, threads: int | None = None) -> dict:
    """{phase: (OnnxPredictor, spec)} for {phase: checkpoint}, exported to ONNX into ``workdir``."""
    out = {}
    for phase, ckpt in checkpoints.items():
        if not Path(ckpt).exists():
            raise FileNotFoundError(f"no {phase} model at {ckpt}")
        onnx_path = export_onnx(ckpt, workdir / f"{phase}.onnx")
        pred = OnnxPredictor(onnx_path, threads=threads)
        out[phase] = (pred, pred.spec)
    return out


def run_cases(root, entries, predictors, stride, batch_size, progress, **kwargs) -> list[dict]:
    """evaluate_case over ``entries`` (with a progress bar when ``progress``)."""
    it = entries
    if progress:
        it = tqdm(entries, desc="evaluate", unit="case")
    return [evaluate_case(root, e, predictors, stride=stride, batch_size=batch_size, **kwargs) for e in it]
