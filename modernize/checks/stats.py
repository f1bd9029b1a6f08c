"""The two statistics the report needs, from SciPy.

Welch's t-test decides whether a step's change is within seed noise; Spearman's rank
correlation compares our top-1 ordering with the paper's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from scipy import stats


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` degrees of freedom."""
    return float(2.0 * stats.t.sf(abs(t), df))


def welch_p(mean1: float, std1: float, n1: int, mean2: float, std2: float, n2: int) -> float:
    """Two-sided p-value of Welch's unequal-variance t-test from summary statistics
    (sample std, ddof=1). Needs n >= 2 on both sides. Zero spread on both sides gives
    p = 1 for equal means and 0 otherwise (SciPy returns NaN there)."""
    if n1 < 2 or n2 < 2:
        raise ValueError("Welch's t-test needs at least two samples on each side")
    if std1 == 0.0 and std2 == 0.0:
        return 1.0 if mean1 == mean2 else 0.0
    return float(stats.ttest_ind_from_stats(mean1, std1, n1, mean2, std2, n2, equal_var=False).pvalue)


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho (ties share their average rank). NaN with fewer than 3 pairs or
    when one side is constant."""
    if len(x) != len(y):
        raise ValueError("spearman: x and y must have the same length")
    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return math.nan
    return float(stats.spearmanr(list(x), list(y)).statistic)
