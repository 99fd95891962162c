"""Intervals for calibration figures: a cell's mean, and a paired difference between rounds.

Everything here is closed-form, so a reader can check a figure by hand:

- ``mean_interval``: for pass/fail grades (every score 0 or 10) the Wilson score interval of
  the pass rate, scaled to 0-10 (it stays inside 0-10 and behaves at 0 % and 100 %, where a
  normal interval collapses to a point); for other grades (a judge's 1-10) the Student t
  interval ``mean ± t(0.975, n-1) · s / √n``, clipped to 0-10.
- ``paired_difference``: the same questions graded after ``r`` rounds and after 0; the t
  interval of the per-question differences, and the exact two-sided sign test on the
  questions that changed (McNemar's exact test when grades are pass/fail). A gain is called
  distinguishable from zero when its interval excludes zero.

The t quantile comes from the regularised incomplete beta function (Numerical Recipes'
continued fraction), so no SciPy is needed; it matches tables to 1e-6.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

CONFIDENCE = 0.95
_Z = 1.959963984540054  # the standard normal's 0.975 quantile


@dataclass(frozen=True, slots=True)
class Interval:
    """A mean and its 95 % interval, on the grades' own 0-10 scale."""

    n: int
    mean: float
    low: float
    high: float
    method: str  # wilson | t | none


@dataclass(frozen=True, slots=True)
class PairedDifference:
    """Mean of ``after - before`` over the paired questions, its 95 % interval, how many
    questions got better or worse, and the exact sign test's two-sided p-value."""

    n: int
    mean: float
    low: float
    high: float
    better: int
    worse: int
    p_value: float

    @property
    def distinguishable(self) -> bool:
        """True when the interval excludes zero."""
        return self.low > 0 or self.high < 0

    def verdict(self) -> str:
        """In words: "better", "worse" or "no difference shown"."""
        if not self.distinguishable:
            return "no difference shown"
        return "better" if self.mean > 0 else "worse"


def is_pass_fail(scores: Sequence[float]) -> bool:
    return all(score in (0.0, 10.0) for score in scores)


def mean_interval(scores: Sequence[float]) -> Interval:
    """The mean of ``scores`` (0-10) with its 95 % interval (see the module docstring)."""
    n = len(scores)
    if n == 0:
        return Interval(0, math.nan, math.nan, math.nan, "none")
    mean = sum(scores) / n
    if is_pass_fail(scores):
        low, high = wilson(sum(1 for s in scores if s == 10.0), n)
        return Interval(n, mean, 10 * low, 10 * high, "wilson")
    low, high = _t_bounds(scores)
    return Interval(n, mean, max(0.0, low), min(10.0, high), "t")


def wilson(successes: int, n: int) -> tuple[float, float]:
    """Wilson's 95 % score interval for a proportion ``successes / n``."""
    if n <= 0:
        raise ValueError("n must be positive")
    p = successes / n
    z2 = _Z * _Z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = _Z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, round(centre - half, 12)), min(1.0, round(centre + half, 12))


def paired_difference(after: Sequence[float], before: Sequence[float]) -> PairedDifference:
    """``after[i] - before[i]`` summarised; the two sequences grade the same questions in the
    same order. Raises ``ValueError`` when they differ in length or are empty."""
    if len(after) != len(before) or not after:
        raise ValueError("paired_difference needs two equally long, non-empty sequences")
    diffs = [a - b for a, b in zip(after, before, strict=True)]
    n = len(diffs)
    mean = sum(diffs) / n
    low, high = _t_bounds(diffs) if n > 1 else (-math.inf, math.inf)
    better = sum(1 for d in diffs if d > 0)
    worse = sum(1 for d in diffs if d < 0)
    return PairedDifference(n, mean, low, high, better, worse, sign_test(better, worse))


def sign_test(better: int, worse: int) -> float:
    """Exact two-sided binomial p-value of ``better`` vs ``worse`` under p = 1/2."""
    total = better + worse
    if total == 0:
        return 1.0
    k = min(better, worse)
    tail = sum(math.comb(total, i) for i in range(k + 1)) / float(2**total)
    return min(1.0, 2 * tail)


def t_quantile(probability: float, df: int) -> float:
    """The Student t distribution's quantile, for 0.5 <= ``probability`` < 1 and ``df`` >= 1."""
    if not 0.5 <= probability < 1 or df < 1:
        raise ValueError("t_quantile needs 0.5 <= probability < 1 and df >= 1")
    low, high = 0.0, 1.0
    while _t_cdf(high, df) < probability:
        high *= 2
    for _ in range(200):
        middle = (low + high) / 2
        if _t_cdf(middle, df) < probability:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def _t_bounds(values: Sequence[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return -math.inf, math.inf
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    half = t_quantile(1 - (1 - CONFIDENCE) / 2, n - 1) * math.sqrt(variance / n)
    return mean - half, mean + half


def _t_cdf(t: float, df: int) -> float:
    x = df / (df + t * t)
    tail = 0.5 * _incomplete_beta(df / 2, 0.5, x)
    return 1 - tail if t >= 0 else tail


def _incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    front = math.exp(log_front)
    if x < (a + 1) / (a + b + 2):
        return front * _beta_fraction(a, b, x) / a
    return 1 - front * _beta_fraction(b, a, 1 - x) / b


def _beta_fraction(a: float, b: float, x: float) -> float:
    tiny = 1e-300
    c, d = 1.0, 1 - (a + b) * x / (a + 1)
    d = 1 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 300):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1 + numerator * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= c * d
        if abs(c * d - 1) < 1e-15:
            break
    return result
