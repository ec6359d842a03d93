"""Quantiles and the Mann-Whitney U test against hand-computed cases and published values."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from analytics.stats import exact_is_feasible, mann_whitney_u, midranks, quantile, tie_sizes


def test_quantiles_interpolate_linearly_between_order_statistics() -> None:
    # [1, 2, 3, 4]: position q * (n - 1); P50 at 1.5 -> 2.5, P95 at 2.85 -> 3 + 0.85 * (4 - 3).
    assert quantile([4, 1, 3, 2], 0.5) == pytest.approx(2.5)
    assert quantile([4, 1, 3, 2], 0.95) == pytest.approx(3.85)
    assert quantile([7.0], 0.95) == 7.0
    assert quantile([], 0.5) is None
    with pytest.raises(ValueError):
        quantile([1.0], 1.5)


def test_midranks_share_the_mean_rank_of_ties() -> None:
    # sorted: 1 (rank 1), 2 (rank 2), 3 3 3 (ranks 3, 4, 5 -> 4 each)
    assert midranks(np.array([3.0, 1.0, 3.0, 2.0, 3.0])).tolist() == [4.0, 1.0, 4.0, 2.0, 4.0]
    assert sorted(tie_sizes(np.array([3.0, 1.0, 3.0, 2.0, 3.0])).tolist()) == [1, 1, 3]


def test_u_counts_the_pairs_where_x_exceeds_y() -> None:
    x, y = [1.0, 2.0, 3.0], [4.0, 5.0, 6.0]
    assert mann_whitney_u(x, y).u == 0.0
    assert mann_whitney_u(y, x).u == 9.0
    # ties count one half: x = [1, 2, 2] vs y = [2, 3] -> (2 vs 2) twice -> 0.5 + 0.5
    assert mann_whitney_u([1.0, 2.0, 2.0], [2.0, 3.0]).u == 1.0


def test_exact_p_values_of_the_smallest_separated_samples() -> None:
    # 3 vs 3 with no overlap: 1 of the C(6, 3) = 20 equally likely rank assignments.
    x, y = [1.0, 2.0, 3.0], [4.0, 5.0, 6.0]
    less = mann_whitney_u(x, y, alternative="less")
    assert (less.method, less.p_value) == ("exact", pytest.approx(1 / 20))
    assert mann_whitney_u(x, y, alternative="greater").p_value == pytest.approx(1.0)
    assert mann_whitney_u(x, y, alternative="two-sided").p_value == pytest.approx(2 / 20)


def test_known_example_exact_and_asymptotic() -> None:
    # The classic example (also SciPy's documentation): U = 17, exact two-sided p = 14/126,
    # normal approximation with continuity correction p = 0.11134688653314041.
    males, females = [19.0, 22.0, 16.0, 29.0, 24.0], [20.0, 11.0, 17.0, 12.0]
    exact = mann_whitney_u(males, females)
    assert (exact.u, exact.method) == (17.0, "exact")
    assert exact.p_value == pytest.approx(14 / 126, rel=1e-12)
    asymptotic = mann_whitney_u(males, females, method="asymptotic")
    assert asymptotic.p_value == pytest.approx(0.11134688653314041, rel=1e-9)


def samples_with_u(pairs_won: list[int], n2: int) -> tuple[list[float], list[float]]:
    """x and y = 0..n2-1 without ties, where x_i exceeds exactly pairs_won[i] values of y."""
    x = [won - 0.5 + i * 1e-3 for i, won in enumerate(pairs_won)]
    return x, [float(v) for v in range(n2)]


@pytest.mark.parametrize(("u", "alpha", "within"), [
    (19, 0.01, True), (20, 0.01, False),  # one-tailed 0.01 critical value of U for 10 and 10: 19
    (27, 0.05, True), (28, 0.05, False),  # one-tailed 0.05 critical value: 27
])
def test_exact_p_values_match_the_published_critical_values(u: int, alpha: float, within: bool) -> None:
    won = [0] * 10
    for i in range(u):  # spread u won pairs over the 10 x values, at most 10 each
        won[i % 10] += 1
    x, y = samples_with_u(won, 10)
    result = mann_whitney_u(x, y, alternative="less")
    assert result.u == u
    assert (result.p_value <= alpha) is within


def brute_force_p_less(n1: int, n2: int, u: int) -> float:
    """P(U <= u) by enumerating every assignment of ranks 1..n1+n2 to the first sample."""
    n = n1 + n2
    at_most = sum(1 for ranks in itertools.combinations(range(1, n + 1), n1)
                  if sum(ranks) - n1 * (n1 + 1) // 2 <= u)
    return at_most / math.comb(n, n1)


@pytest.mark.parametrize(("n1", "n2"), [(4, 5), (3, 7), (6, 2), (1, 4)])
def test_exact_distribution_equals_brute_force_enumeration(n1: int, n2: int) -> None:
    y = [float(v) for v in range(n2)]
    for u in range(n1 * n2 + 1):
        won = [min(n2, max(0, u - n2 * i)) for i in range(n1)]  # any split of u over the x values
        x, _ = samples_with_u(won, n2)
        less = mann_whitney_u(x, y, alternative="less")
        greater = mann_whitney_u(x, y, alternative="greater")
        assert less.u == u
        assert less.p_value == pytest.approx(brute_force_p_less(n1, n2, u), rel=1e-12)
        assert greater.p_value == pytest.approx(1 - brute_force_p_less(n1, n2, u - 1), rel=1e-12, abs=1e-15)


def test_ties_use_the_tie_corrected_normal_approximation() -> None:
    # x = [1, 2, 2], y = [2, 3]: U = 1, mean 3; one tie group of 3 -> sum(t^3 - t) = 24,
    # variance = 3*2/12 * ((5 + 1) - 24 / (5 * 4)) = 2.4; "less": z = (3 - 1 - 0.5) / sqrt(2.4).
    result = mann_whitney_u([1.0, 2.0, 2.0], [2.0, 3.0], alternative="less")
    assert result.method == "asymptotic"
    assert result.p_value == pytest.approx(0.5 * math.erfc(1.5 / math.sqrt(2.4) / math.sqrt(2)), rel=1e-12)
    with pytest.raises(ValueError):
        mann_whitney_u([1.0, 2.0, 2.0], [2.0, 3.0], method="exact")


def test_all_values_equal_give_no_evidence() -> None:
    assert mann_whitney_u([3.0] * 6, [3.0] * 12, alternative="greater").p_value == 1.0


def test_asymptotic_p_values_approach_exact_ones() -> None:
    rng = np.random.default_rng(7)
    for shift in (0.0, 0.5, 1.0):
        x, y = rng.normal(shift, 1, 25), rng.normal(0, 1, 25)
        exact = mann_whitney_u(x, y, alternative="greater", method="exact").p_value
        asymptotic = mann_whitney_u(x, y, alternative="greater", method="asymptotic").p_value
        assert asymptotic == pytest.approx(exact, abs=0.005)


def test_one_sided_p_values_mirror_each_other() -> None:
    rng = np.random.default_rng(3)
    x, y = rng.lognormal(0, 0.3, 8), rng.lognormal(0.2, 0.3, 40)
    assert mann_whitney_u(x, y, alternative="greater").p_value == pytest.approx(
        mann_whitney_u(y, x, alternative="less").p_value)
    big_x, big_y = rng.normal(0, 1, 300), rng.normal(0.3, 1, 2000)
    result = mann_whitney_u(big_x, big_y, alternative="less")
    assert result.method == "asymptotic"  # far too many arrangements to enumerate
    assert result.p_value < 1e-3


def test_exact_is_used_within_its_bounds_only() -> None:
    assert exact_is_feasible(10, 70) and exact_is_feasible(5, 35)
    assert not exact_is_feasible(33, 33) and not exact_is_feasible(300, 2000)
    with pytest.raises(ValueError):
        mann_whitney_u(list(range(40)), [v + 0.5 for v in range(40)], method="exact")


def test_refuses_empty_or_non_finite_samples() -> None:
    with pytest.raises(ValueError):
        mann_whitney_u([], [1.0])
    with pytest.raises(ValueError):
        mann_whitney_u([1.0, math.nan], [1.0, 2.0])
