"""Metrics and the paper's tables, checked against the paper's own counts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from s4c.evaluation.metrics import DetectionStats, detection_stats, dsc, mean_dsc, wilson_interval
from s4c.evaluation.tables import Table1Row, Table2Row, render_table1, render_table2


def test_paper_fused_figures_from_counts():
    s = DetectionStats(n_abnormal=228, n_normal=148, misses=24, wrong_calls=28)
    assert f"{100 * s.sensitivity:.2f}" == "89.47"
    assert f"{100 * s.specificity:.2f}" == "81.08"
    table = render_table2([Table2Row("Arterial&Venous", "S4C (Ours)", s)])
    assert "| Arterial&Venous | S4C (Ours) | 24/228 | 28/148 | 89.47% | 81.08% |" in table


def test_paper_table1_rows():
    venous = DetectionStats(228, 148, 40, 12)
    arterial = DetectionStats(228, 148, 44, 21)
    text = render_table1([
        Table1Row("Venous", "Ours", 0.8741, 0.8469, 0.4311, venous),
        Table1Row("Arterial", "Ours", 0.8178, 0.8334, 0.4249, arterial),
    ])
    assert "| Venous | Ours | 87.41% | 84.69% | 43.11% | 40/228 | 12/148 | 82.46% | 91.89% |" in text
    assert "| Arterial | Ours | 81.78% | 83.34% | 42.49% | 44/228 | 21/148 | 80.70% | 85.81% |" in text


def test_detection_stats_from_cases():
    truth = [1, 1, 1, 0, 0]
    pred = [1, 0, 1, 1, 0]
    s = detection_stats(truth, pred)
    assert (s.n_abnormal, s.n_normal, s.misses, s.wrong_calls) == (3, 2, 1, 1)
    assert s.sensitivity == pytest.approx(2 / 3) and s.specificity == pytest.approx(0.5)
    d = s.to_dict()
    assert set(d) >= {"sensitivity", "specificity", "misses", "wrong_calls", "n_abnormal", "n_normal"}
    with pytest.raises(ValueError):
        detection_stats([1, 0], [1])
    with pytest.raises(ValueError):
        detection_stats([2], [1])


def test_wilson_interval_known_values():
    from scipy.stats import binomtest

    for k, n in ((204, 228), (120, 148), (1, 3), (0, 7), (5, 5)):
        ref = binomtest(k, n).proportion_ci(method="wilson")
        assert wilson_interval(k, n) == pytest.approx((ref.low, ref.high), abs=1e-12)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == pytest.approx(1.0)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    with pytest.raises(ValueError):
        wilson_interval(5, 4)


def test_dsc_and_empty_policy():
    a = np.zeros((4, 4, 4), bool)
    b = a.copy()
    assert math.isnan(dsc(a, b))
    a[0, 0, :2] = True
    assert dsc(a, b) == 0.0
    b[0, 0, 1:3] = True
    assert dsc(a, b) == pytest.approx(0.5)
    assert dsc(a, a) == 1.0
    assert mean_dsc([0.5, float("nan"), 1.0]) == pytest.approx(0.75)
    assert math.isnan(mean_dsc([float("nan")]))
    with pytest.raises(ValueError, match="shapes"):
        dsc(a, b[:2])
