"""The paper's comparison (Tables 1 and 2): several methods' evaluations of the same cases side by side,
with Wilson intervals, exact McNemar tests of S4C's paired decisions against each other method, and
one ROC figure.

Input: per method, the report and the per-case rows :func:`s4c.evaluation.evaluate.write_reports`
writes (``report.json``, ``cases.json``). Nothing here trains or runs a model.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from s4c.evaluation.evaluate import plain_json
from s4c.evaluation.metrics import DetectionStats, mcnemar_exact, paired_discordance
from s4c.evaluation.tables import Table1Row, Table2Row, render_table1, render_table2
from s4c.labels import PHASES
from s4c.viz import plot_rocs

#: Method keys of ``s4c compare`` and their names in the tables (the paper's).
METHOD_LABELS = {"s4c": "S4C (Ours)", "unet3d": "3D UNet", "vnet": "VNet", "classifier": "Classification"}
#: Segmentation methods: Table 1 holds their DSCs. The classifier's segmentation is S4C's.
SEGMENTERS = ("s4c", "unet3d", "vnet")
#: The method the McNemar tests pair every other one with.
REFERENCE = "s4c"
#: The paper's figures (Tables 1 and 2; 228 abnormal and 148 normal cases, 4-fold cross-validation).
PAPER = {
    "table1": [
        ("Venous", "S4C (Ours)", 87.41, 84.69, 43.11, "40/228", "12/148", 82.46, 91.89),
        ("Venous", "3D UNet", 87.70, 83.84, 41.43, "42/228", "16/148", 81.58, 89.19),
        ("Venous", "VNet", 86.76, 83.90, 40.67, "49/228", "20/148", 78.51, 86.49),
        ("Arterial", "S4C (Ours)", 81.78, 83.34, 42.49, "44/228", "21/148", 80.70, 85.81),
        ("Arterial", "3D UNet", 82.47, 83.33, 42.58, "44/228", "20/148", 80.70, 86.49),
        ("Arterial", "VNet", 83.85, 82.79, 39.22, "43/228", "31/148", 81.14, 79.05),
    ],
    "table2": [
        ("Arterial&Venous", "S4C (Ours)", "24/228", "28/148", 89.47, 81.08),
        ("Arterial&Venous", "3D UNet", "26/228", "31/148", 88.60, 79.05),
        ("Arterial&Venous", "VNet", "28/228", "37/148", 87.72, 75.00),
        ("Arterial&Venous", "Classification", "24/228", "23/148", 89.47, 84.46),
    ],
}


def _stats(d: Mapping) -> DetectionStats:
    return DetectionStats(d["n_abnormal"], d["n_normal"], d["misses"], d["wrong_calls"])


def _num(x) -> float:
    return math.nan if x is None else float(x)


def _decisions(cases: Sequence[Mapping], key) -> dict[str, tuple[int, int]]:
    """{case_id: (reference, decision)} with ``key(case)`` the decision."""
    return {c["case_id"]: (int(c["abnormal"]), int(key(c))) for c in cases}


def mcnemar_table(cases: Mapping[str, Sequence[Mapping]], reference: str = REFERENCE) -> dict:
    """{method: {phase or 'fused': {b, c, p}}} for every method but ``reference``: b counts the cases the
    reference decides right and the method wrong, c the reverse; p the exact two-sided McNemar
    p-value. The methods must have been evaluated on the same cases."""
    keys = {p: (lambda c, p=p: c[p]["abnormal_pred"]) for p in PHASES} | {"fused": lambda c: c["fused_pred"]}
    out = {}
    for method, rows in cases.items():
        if method == reference:
            continue
        out[method] = {}
        for name, key in keys.items():
            ref, other = _decisions(cases[reference], key), _decisions(rows, key)
            if set(ref) != set(other):
                raise ValueError(f"{method} and {reference} were evaluated on different cases")
            ids = sorted(ref)
            b, c = paired_discordance([ref[i][0] for i in ids], [ref[i][1] for i in ids], [other[i][1] for i in ids])
            out[method][name] = {"b": b, "c": c, "p": mcnemar_exact(b, c)}
    return out


def summarize_comparison(reports: Mapping[str, Mapping], cases: Mapping[str, Sequence[Mapping]],
                         protocol: Mapping | None = None) -> dict:
    """The comparison as ``report.json`` holds it: the protocol, each method's per-phase and fused
    figures with Wilson intervals and ROC, the McNemar tests (when S4C is among the methods) and the
    paper's figures."""
    methods = {}
    for m, r in reports.items():
        methods[m] = {p: {k: r[p].get(k) for k in ("n_abnormal", "n_normal", "misses", "wrong_calls", "sensitivity",
                                                   "specificity", "sensitivity_ci95", "specificity_ci95",
                                                   "dsc_normal_pancreas", "dsc_abnormal_pancreas", "dsc_tumor")}
                      for p in PHASES}
        methods[m]["fused"] = {k: r["fused"].get(k) for k in ("n_abnormal", "n_normal", "misses", "wrong_calls",
                                                              "sensitivity", "specificity", "sensitivity_ci95",
                                                              "specificity_ci95", "roc_auc")}
        methods[m]["roc"] = r["roc"]
    out = {"protocol": dict(protocol or {}), "methods": methods, "paper": PAPER}
    if REFERENCE in cases and len(cases) > 1:
        out["mcnemar"] = mcnemar_table(cases)
    return out


def _ci(d: Mapping, key: str) -> str:
    lo, hi = d.get(f"{key}_ci95") or (None, None)
    return "n/a" if lo is None or hi is None else f"{100 * lo:.1f}-{100 * hi:.1f}%"


def render_comparison_md(comparison: Mapping) -> str:
    """``report.md``: Table 1 (per phase) and Table 2 (fused) in the paper's layouts, the Wilson
    intervals, the McNemar tests, the paper's tables beside them, and the protocol."""
    methods = comparison["methods"]
    rows1 = []
    for phase in ("venous", "arterial"):
        for m, r in methods.items():
            d = r[phase]
            seg = m in SEGMENTERS
            rows1.append(Table1Row(phase.capitalize(), METHOD_LABELS.get(m, m),
                                   _num(d["dsc_normal_pancreas"]) if seg else math.nan,
                                   _num(d["dsc_abnormal_pancreas"]) if seg else math.nan,
                                   _num(d["dsc_tumor"]) if seg else math.nan, _stats(d)))
    rows2 = [Table2Row("Arterial&Venous", METHOD_LABELS.get(m, m), _stats(r["fused"])) for m, r in methods.items()]
    lines = ["# Comparison: S4C against 3D U-Net, V-Net and the classification network", ""]
    proto = comparison.get("protocol") or {}
    if proto:
        lines += ["## Protocol", ""] + [f"- {k}: {v}" for k, v in proto.items()] + [""]
    lines += ["## Table 1: per phase (DSC, detection)", "",
              "DSCs of the classification network are n/a: it decides on the S4C segmenter's features and its "
              "segmentation is S4C's.", "", render_table1(rows1),
              "## Table 2: dual phase (either phase abnormal)", "", render_table2(rows2),
              "## 95% Wilson intervals", "", "| Phase | Method | Sensitivity | Specificity |", "|---|---|---|---|"]
    for name in ("venous", "arterial", "fused"):
        for m, r in methods.items():
            label = "Arterial&Venous" if name == "fused" else name.capitalize()
            lines.append(f"| {label} | {METHOD_LABELS.get(m, m)} | {_ci(r[name], 'sensitivity')} | "
                         f"{_ci(r[name], 'specificity')} |")
    lines.append("")
    aucs = ", ".join(f"{METHOD_LABELS.get(m, m)} {r['fused']['roc_auc']:.3f}" for m, r in methods.items()
                     if r["fused"].get("roc_auc") is not None)
    if aucs:
        lines += [f"Fused ROC AUC (roc.png): {aucs}.", ""]
    if comparison.get("mcnemar"):
        lines += ["## Exact McNemar tests against S4C (paired case decisions)", "",
                  "b: cases S4C decides right and the other method wrong; c: the reverse; p: two-sided exact.", "",
                  "| Method | Phase | b | c | p |", "|---|---|---|---|---|"]
        for m, t in comparison["mcnemar"].items():
            for name in ("venous", "arterial", "fused"):
                label = "Arterial&Venous" if name == "fused" else name.capitalize()
                lines.append(f"| {METHOD_LABELS.get(m, m)} | {label} | {t[name]['b']} | {t[name]['c']} | "
                             f"{t[name]['p']:.3g} |")
        lines.append("")
    lines += ["## The paper's figures (376 cases, 4-fold cross-validation)", "",
              "| Phase | Method | N.Pancreas | A.Pancreas | Tumor | Misses | W.Calls | Sensitivity | Specificity |",
              "|" + "---|" * 9]
    lines += [f"| {p} | {m} | {a:.2f}% | {b:.2f}% | {t:.2f}% | {mi} | {w} | {se:.2f}% | {sp:.2f}% |"
              for p, m, a, b, t, mi, w, se, sp in PAPER["table1"]]
    lines += ["", "| Phase | Method | Misses | W.Calls | Sensitivity | Specificity |", "|" + "---|" * 6]
    lines += [f"| {p} | {m} | {mi} | {w} | {se:.2f}% | {sp:.2f}% |" for p, m, mi, w, se, sp in PAPER["table2"]]
    return "\n".join(lines) + "\n"


def write_comparison(out: str | Path, reports: Mapping[str, Mapping], cases: Mapping[str, Sequence[Mapping]],
                     protocol: Mapping | None = None) -> dict:
    """Write ``report.json``, ``report.md`` and ``roc.png`` (every method's fused ROC) into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    comparison = summarize_comparison(reports, cases, protocol)
    (out / "report.json").write_text(json.dumps(plain_json(comparison), indent=2, allow_nan=False) + "\n")
    (out / "report.md").write_text(render_comparison_md(comparison))
    plot_rocs({METHOD_LABELS.get(m, m): (r["roc"]["fpr"], r["roc"]["tpr"]) for m, r in comparison["methods"].items()},
              out / "roc.png", title="Fused ROC of every method (tumour-voxel threshold / classifier probability)")
    return comparison
