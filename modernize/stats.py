"""The two statistics the report needs, without a SciPy dependency.

Welch's t-test decides whether a step's change is within seed noise; Spearman's rank
correlation compares our top-1 ordering with the paper's. Both are a few lines on top of
``math``/pandas, so the toolkit's dependency list stays torch + fvcore + pandas + matplotlib.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 3e-16
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta ``I_x(a, b)``."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` degrees of freedom."""
    if math.isinf(t):
        return 0.0
    return betainc(df / 2.0, 0.5, df / (df + t * t))


def welch_p(mean1: float, std1: float, n1: int, mean2: float, std2: float, n2: int) -> float:
    """Two-sided p-value of Welch's unequal-variance t-test from summary statistics
    (sample std, ddof=1). Needs n >= 2 on both sides. Zero spread on both sides gives
    p = 1 for equal means and 0 otherwise."""
    if n1 < 2 or n2 < 2:
        raise ValueError("Welch's t-test needs at least two samples on each side")
    v1, v2 = std1 * std1 / n1, std2 * std2 / n2
    if v1 + v2 == 0.0:
        return 1.0 if mean1 == mean2 else 0.0
    t = (mean1 - mean2) / math.sqrt(v1 + v2)
    df = (v1 + v2) ** 2 / ((v1 * v1 / (n1 - 1) if v1 else 0.0) + (v2 * v2 / (n2 - 1) if v2 else 0.0))
    return t_two_sided_p(t, df)


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho: Pearson correlation of the average ranks (ties share a rank).
    NaN with fewer than 3 pairs or when one side is constant."""
    a, b = pd.Series(list(x), dtype=float), pd.Series(list(y), dtype=float)
    if len(a) != len(b):
        raise ValueError("spearman: x and y must have the same length")
    if len(a) < 3:
        return math.nan
    return float(a.rank().corr(b.rank()))
