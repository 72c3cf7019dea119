"""Statistics over seeds for studies: t-intervals and paired differences, without SciPy.

A study runs every arm with the same seeds, so arms are compared *paired by seed*: the difference
`arm[s] - baseline[s]` removes what the seed alone explains (initialisation, SFT data order, task
draws), and the interval is Student's t on those n differences:

    d_bar +- t_{(1 + level) / 2, n - 1} * s_d / sqrt(n)

The t quantile is computed exactly (the t CDF through the regularised incomplete beta function,
evaluated by its continued fraction, then inverted by bisection), so no table limits the degrees
of freedom. With n = 1 there is no spread to estimate: the interval is undefined (None).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Sequence


@dataclasses.dataclass(frozen=True)
class Interval:
    """A mean over n values with its sample standard deviation and a two-sided t-interval.

    Attributes:
        mean: the sample mean.
        sd: the sample standard deviation (ddof = 1); None when n < 2.
        low, high: the interval bounds; None when n < 2.
        n: the number of values.
        level: the confidence level of [low, high].
    """

    mean: float
    sd: float | None
    low: float | None
    high: float | None
    n: int
    level: float

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def mean_sd(values: Sequence[float]) -> tuple[float, float | None]:
    """Sample mean and standard deviation (ddof = 1; None for a single value)."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("mean_sd needs at least one value, got none")
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(var)


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz, Numerical Recipes 6.4)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
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
        if abs(delta - 1.0) < 1e-15:
            return h
    raise ArithmeticError(f"incomplete beta continued fraction did not converge (a={a}, b={b})")


def betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if a <= 0 or b <= 0:
        raise ValueError(f"betainc needs a > 0 and b > 0, got a={a}, b={b}")
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"betainc needs 0 <= x <= 1, got x={x}")
    if x in (0.0, 1.0):
        return x
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    front = math.exp(log_front)
    # The continued fraction converges fast for x < (a + 1) / (a + b + 2); use symmetry otherwise.
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` degrees of freedom."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be > 0, got {df}")
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))  # P(T > |t|)
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t with `df` degrees of freedom (bisection on `t_cdf`)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"quantile level must be in (0, 1), got {p}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        low, high = high, high * 2.0
    for _ in range(200):
        mid = 0.5 * (low + high)
        if t_cdf(mid, df) < p:
            low = mid
        else:
            high = mid
        if high - low <= 1e-13 * max(1.0, high):
            break
    return 0.5 * (low + high)


def t_interval(values: Sequence[float], *, level: float = 0.95) -> Interval:
    """Mean of `values` with the two-sided Student-t interval at `level` (None bounds if n < 2)."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level must be in (0, 1), got {level}")
    mean, sd = mean_sd(values)
    n = len(values)
    if sd is None:
        return Interval(mean, None, None, None, n, level)
    half = t_quantile((1.0 + level) / 2.0, n - 1) * sd / math.sqrt(n)
    return Interval(mean, sd, mean - half, mean + half, n, level)


def paired_difference(
    treatment: Mapping[int, float], baseline: Mapping[int, float], *, level: float = 0.95
) -> Interval:
    """The t-interval of `treatment[s] - baseline[s]` over the seeds s both share.

    Args:
        treatment, baseline: {seed: value}. Both must hold the same seeds: a comparison with a
            seed missing on one side is not paired, so it raises ValueError naming the seeds.
        level: the confidence level.
    """
    if set(treatment) != set(baseline):
        raise ValueError(
            f"paired comparison needs the same seeds on both sides, got {sorted(treatment)} "
            f"and {sorted(baseline)}"
        )
    seeds = sorted(treatment)
    return t_interval([treatment[s] - baseline[s] for s in seeds], level=level)


__all__ = [
    "Interval",
    "betainc",
    "mean_sd",
    "paired_difference",
    "t_cdf",
    "t_interval",
    "t_quantile",
]
