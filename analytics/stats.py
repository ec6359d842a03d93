"""Small statistics for the analytics: interpolated quantiles and the Mann-Whitney U test.

Quantiles interpolate linearly between order statistics (Hyndman & Fan type 7): numpy's default,
Polars' `quantile(q, "linear")` and DuckDB's `quantile_cont`, so a P95 computed in any of the three
agrees. The P95 of a handful of samples is therefore a point between the two largest, not the max.

`mann_whitney_u` follows the textbook (and SciPy's `mannwhitneyu`) conventions: U is the statistic
of the first sample, U = R1 - n1 (n1 + 1) / 2 with midranks for ties, so U counts the pairs where
x > y (ties count one half). Its p-value is exact (the null distribution of U, enumerated) when
there are no ties and the samples are small; otherwise it uses the normal approximation with the
tie correction of the variance and a continuity correction of 0.5.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np

Alternative = Literal["greater", "less", "two-sided"]
Method = Literal["auto", "exact", "asymptotic"]
# The exact null distribution is counted in int64 (C(n1 + n2, min(n1, n2)) rank assignments) over
# n1 * n2 + 1 values of U: exact within these bounds, the normal approximation beyond them.
EXACT_MAX_ARRANGEMENTS = 2**62
EXACT_MAX_CELLS = 20_000


@dataclass(frozen=True)
class MannWhitneyResult:
    """U statistic of the first sample, its p-value and how the p-value was computed."""

    u: float
    p_value: float
    method: Literal["exact", "asymptotic"]
    alternative: Alternative


def quantile(values: Sequence[float] | np.ndarray, q: float) -> float | None:
    """Linearly interpolated `q` quantile (0-1) of the values; None when there are none."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be within 0..1, got {q}")
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        return None
    return float(np.quantile(array, q))


def midranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n of the values, tied values sharing the mean of their ranks."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    # Start index of each run of equal values, and the run each sorted position belongs to.
    run_starts_here = np.r_[True, sorted_values[1:] != sorted_values[:-1]]
    starts = np.flatnonzero(run_starts_here)
    run_of = np.cumsum(run_starts_here) - 1
    ends = np.r_[starts[1:], values.size]  # exclusive
    mean_rank = (starts + 1 + ends) / 2.0  # mean of the 1-based ranks starts+1 .. ends
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = mean_rank[run_of]
    return ranks


def tie_sizes(values: np.ndarray) -> np.ndarray:
    """Sizes of the groups of equal values (1 for a value that is not tied)."""
    _, counts = np.unique(values, return_counts=True)
    return counts


def _divide_by_one_minus_q_power(counts: np.ndarray, power: int) -> np.ndarray:
    """Coefficients of counts(q) / (1 - q^power), truncated to len(counts): c_k = p_k + c_(k-power)."""
    size = counts.size
    padded = np.zeros(-(-size // power) * power, dtype=counts.dtype)
    padded[:size] = counts
    return np.cumsum(padded.reshape(-1, power), axis=0).reshape(-1)[:size]


@lru_cache(maxsize=128)
def _exact_u_cdf(n1: int, n2: int) -> np.ndarray:
    """P(U <= k) for k = 0..n1*n2 under the null hypothesis, no ties (read-only array).

    The number of rank assignments giving each U is a coefficient of the Gaussian binomial
    [n1+n2 choose m](q) = prod_{i=1..m} (1 - q^(n+i)) / (1 - q^i), m <= n the two sizes; each
    partial product is again such a polynomial, so the int64 arithmetic is exact while
    C(n1+n2, m) < 2**62.
    """
    m, n = sorted((n1, n2))  # U has the same distribution for (n1, n2) and (n2, n1)
    size = m * n + 1
    counts = np.zeros(size, dtype=np.int64)
    counts[0] = 1
    for i in range(1, m + 1):
        shift = n + i
        if shift < size:
            counts[shift:] -= counts[:-shift].copy()  # times (1 - q^shift)
        counts = _divide_by_one_minus_q_power(counts, i)
    cdf = np.cumsum(counts).astype(np.float64) / float(math.comb(n1 + n2, m))
    cdf.flags.writeable = False
    return cdf


def exact_is_feasible(n1: int, n2: int) -> bool:
    """Whether the exact null distribution of U is computed for these sample sizes."""
    m, n = sorted((n1, n2))
    return m * n <= EXACT_MAX_CELLS and math.comb(n1 + n2, m) < EXACT_MAX_ARRANGEMENTS


def _exact_p(u: float, n1: int, n2: int, alternative: Alternative) -> float:
    """Exact p-value of U under the null hypothesis (no ties)."""
    cdf = _exact_u_cdf(n1, n2)
    k = int(round(u))
    p_less = float(cdf[k])  # P(U <= u)
    p_greater = float(cdf[n1 * n2 - k])  # P(U >= u) = P(U <= n1 n2 - u): U is symmetric about n1 n2 / 2
    if alternative == "greater":
        return p_greater
    if alternative == "less":
        return p_less
    return min(1.0, 2.0 * min(p_greater, p_less))


def normal_sf(z: float) -> float:
    """P(Z > z) for a standard normal Z, accurate in the far tail."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def _asymptotic_p(u: float, n1: int, n2: int, ties: np.ndarray, alternative: Alternative) -> float:
    """Normal-approximation p-value with tie-corrected variance and continuity correction."""
    n = n1 + n2
    mean_u = n1 * n2 / 2.0
    tie_term = float(np.sum(ties.astype(np.float64) ** 3 - ties))
    variance = n1 * n2 / 12.0 * ((n + 1) - tie_term / (n * (n - 1)))
    if variance <= 0.0:  # every value equal: the samples cannot be told apart
        return 1.0
    if alternative == "greater":
        excess = u - mean_u
    elif alternative == "less":
        excess = mean_u - u
    else:
        excess = abs(u - mean_u)
    p = normal_sf((excess - 0.5) / math.sqrt(variance))
    return min(1.0, 2.0 * p) if alternative == "two-sided" else p


def mann_whitney_u(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray, *,
                   alternative: Alternative = "two-sided", method: Method = "auto") -> MannWhitneyResult:
    """Mann-Whitney U test of x against y; "greater" tests whether x tends to exceed y.

    `auto` is exact when nothing is tied and exact_is_feasible(n1, n2), else asymptotic.
    """
    x_values, y_values = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    n1, n2 = x_values.size, y_values.size
    if n1 == 0 or n2 == 0:
        raise ValueError("the Mann-Whitney U test needs at least one value in each sample")
    combined = np.concatenate([x_values, y_values])
    if not np.all(np.isfinite(combined)):
        raise ValueError("the Mann-Whitney U test needs finite values")
    u = float(midranks(combined)[:n1].sum() - n1 * (n1 + 1) / 2.0)
    ties = tie_sizes(combined)
    has_ties = bool(np.any(ties > 1))
    if method == "exact" and has_ties:
        raise ValueError("the exact Mann-Whitney distribution assumes no ties")
    if method == "exact" or (method == "auto" and not has_ties and exact_is_feasible(n1, n2)):
        if not exact_is_feasible(n1, n2):
            raise ValueError(f"no exact p-value for samples of {n1} and {n2} values (too many arrangements)")
        return MannWhitneyResult(u, _exact_p(u, n1, n2, alternative), "exact", alternative)
    return MannWhitneyResult(u, _asymptotic_p(u, n1, n2, ties, alternative), "asymptotic", alternative)
