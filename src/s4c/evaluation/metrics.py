"""Segmentation overlap and per-case detection metrics.

DSC policy: when both the reference and the prediction are empty the DSC is undefined and returned
as NaN; :func:`mean_dsc` skips NaNs, so normal cases never inflate a tumour DSC.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

#: Two-sided 95% normal quantile.
Z95 = 1.959963984540054


def dsc(prediction: np.ndarray, reference: np.ndarray) -> float:
    """Dice-Sorensen coefficient 2|P∩R| / (|P|+|R|) of two boolean masks of the same shape.

    NaN when both masks are empty (see the module docstring).
    """
    p = np.asarray(prediction, dtype=bool)
    r = np.asarray(reference, dtype=bool)
    if p.shape != r.shape:
        raise ValueError(f"mask shapes differ: {p.shape} vs {r.shape}")
    total = int(np.count_nonzero(p)) + int(np.count_nonzero(r))
    if total == 0:
        return float("nan")
    return 2.0 * int(np.count_nonzero(p & r)) / total


def mean_dsc(values: Iterable[float]) -> float:
    """Mean of the defined (non-NaN) DSC values; NaN if there are none."""
    v = [x for x in values if not math.isnan(x)]
    return float(np.mean(v)) if v else float("nan")


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion; (nan, nan) when ``n == 0``."""
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got {successes}/{n}")
    if n == 0:
        return float("nan"), float("nan")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class DetectionStats:
    """Per-case detection counts. A miss is an abnormal case called normal; a wrong call is a normal
    case called abnormal (the paper's 'W.Calls')."""

    n_abnormal: int
    n_normal: int
    misses: int
    wrong_calls: int

    @property
    def sensitivity(self) -> float:
        return (self.n_abnormal - self.misses) / self.n_abnormal if self.n_abnormal else float("nan")

    @property
    def specificity(self) -> float:
        return (self.n_normal - self.wrong_calls) / self.n_normal if self.n_normal else float("nan")

    @property
    def sensitivity_ci(self) -> tuple[float, float]:
        return wilson_interval(self.n_abnormal - self.misses, self.n_abnormal)

    @property
    def specificity_ci(self) -> tuple[float, float]:
        return wilson_interval(self.n_normal - self.wrong_calls, self.n_normal)

    def to_dict(self) -> dict:
        return {
            "sensitivity": self.sensitivity, "sensitivity_ci95": list(self.sensitivity_ci),
            "specificity": self.specificity, "specificity_ci95": list(self.specificity_ci),
            "misses": self.misses, "wrong_calls": self.wrong_calls,
            "n_abnormal": self.n_abnormal, "n_normal": self.n_normal,
        }


def detection_stats(truth: Sequence[bool | int], predicted: Sequence[bool | int]) -> DetectionStats:
    """Counts from per-case truth (1 abnormal) and predictions, in the same case order."""
    t = np.asarray(truth).astype(int)
    p = np.asarray(predicted).astype(int)
    if t.shape != p.shape or t.ndim != 1:
        raise ValueError(f"truth and predictions must be 1-D of equal length, got {t.shape} and {p.shape}")
    if not (np.isin(t, (0, 1)).all() and np.isin(p, (0, 1)).all()):
        raise ValueError("truth and predictions must be 0/1")
    return DetectionStats(
        n_abnormal=int((t == 1).sum()), n_normal=int((t == 0).sum()),
        misses=int(((t == 1) & (p == 0)).sum()), wrong_calls=int(((t == 0) & (p == 1)).sum()),
    )


def paired_discordance(truth: Sequence[int], a: Sequence[int], b: Sequence[int]) -> tuple[int, int]:
    """(cases method ``a`` decides correctly and ``b`` wrongly, cases ``b`` correctly and ``a`` wrongly),
    from the per-case reference ``truth`` and the two methods' decisions on the same cases."""
    if not len(truth) == len(a) == len(b):
        raise ValueError(f"need one decision per case from each method: {len(truth)}, {len(a)}, {len(b)}")
    right_a = [bool(x) == bool(t) for x, t in zip(a, truth, strict=True)]
    right_b = [bool(x) == bool(t) for x, t in zip(b, truth, strict=True)]
    return (sum(ra and not rb for ra, rb in zip(right_a, right_b, strict=True)),
            sum(rb and not ra for ra, rb in zip(right_a, right_b, strict=True)))


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value of ``b`` and ``c`` discordant pairs: twice the smaller binomial
    tail of Binomial(b + c, 1/2), capped at 1; 1.0 when there is no discordant pair."""
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got {b}, {c}")
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1)) / 2.0**n
    return min(1.0, 2.0 * tail)
