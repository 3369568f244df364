"""Markdown renderers for the paper's Table 1 (per phase) and Table 2 (dual-phase) layouts."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from s4c.evaluation.metrics import DetectionStats


def _pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{100 * x:.2f}%"


@dataclass(frozen=True)
class Table1Row:
    """One row of Table 1: DSCs of normal pancreas, abnormal pancreas and tumour, plus detection."""

    phase: str
    method: str
    dsc_normal_pancreas: float
    dsc_abnormal_pancreas: float
    dsc_tumor: float
    stats: DetectionStats


@dataclass(frozen=True)
class Table2Row:
    """One row of Table 2: dual-phase detection."""

    phase: str
    method: str
    stats: DetectionStats


def _frac(k: int, n: int) -> str:
    return f"{k}/{n}"


def render_table1(rows: Sequence[Table1Row]) -> str:
    """Table 1: Phase | Method | N.Pancreas | A.Pancreas | Tumor | Misses | W.Calls | Sensitivity | Specificity."""
    head = "| Phase | Method | N.Pancreas | A.Pancreas | Tumor | Misses | W.Calls | Sensitivity | Specificity |"
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        s = r.stats
        lines.append(f"| {r.phase} | {r.method} | {_pct(r.dsc_normal_pancreas)} | {_pct(r.dsc_abnormal_pancreas)} "
                     f"| {_pct(r.dsc_tumor)} | {_frac(s.misses, s.n_abnormal)} | {_frac(s.wrong_calls, s.n_normal)} "
                     f"| {_pct(s.sensitivity)} | {_pct(s.specificity)} |")
    return "\n".join(lines) + "\n"


def render_table2(rows: Sequence[Table2Row]) -> str:
    """Table 2: Phase | Method | Misses | W.Calls | Sensitivity | Specificity."""
    lines = ["| Phase | Method | Misses | W.Calls | Sensitivity | Specificity |", "|" + "---|" * 6]
    for r in rows:
        s = r.stats
        lines.append(f"| {r.phase} | {r.method} | {_frac(s.misses, s.n_abnormal)} | "
                     f"{_frac(s.wrong_calls, s.n_normal)} | {_pct(s.sensitivity)} | {_pct(s.specificity)} |")
    return "\n".join(lines) + "\n"
