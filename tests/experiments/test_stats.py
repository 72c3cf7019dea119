"""experiments.stats against hand-worked values (Student-t tables, closed forms, worked intervals)."""

import math

import pytest
from rljax.experiments import stats


@pytest.mark.parametrize(
    "p, df, expected",
    [
        # Two-sided 95% critical values from a t table (and the one-sided 95% one for df = 5).
        (0.975, 1, 12.706205),
        (0.975, 2, 4.302653),
        (0.975, 4, 2.776445),
        (0.975, 10, 2.228139),
        (0.975, 30, 2.042272),
        (0.95, 5, 2.015048),
        (0.025, 2, -4.302653),
        (0.5, 7, 0.0),
    ],
)
def test_t_quantile_matches_tables(p, df, expected):
    assert stats.t_quantile(p, df) == pytest.approx(expected, abs=2e-6)


def test_t_cdf_closed_forms():
    # df = 1 is the Cauchy distribution: 1/2 + atan(t)/pi; df = 2: 1/2 + t / (2 sqrt(2 + t^2)).
    for t in (-3.0, -0.5, 0.0, 1.0, 2.5):
        assert stats.t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-12)
        assert stats.t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), abs=1e-12)


def test_betainc_closed_forms():
    assert stats.betainc(1.0, 1.0, 0.3) == pytest.approx(0.3, abs=1e-14)
    assert stats.betainc(3.0, 1.0, 0.6) == pytest.approx(0.6**3, abs=1e-14)
    # I_0.4(2, 3) = sum_{j=2..4} C(4, j) 0.4^j 0.6^(4-j) = 0.3456 + 0.1536 + 0.0256.
    assert stats.betainc(2.0, 3.0, 0.4) == pytest.approx(0.5248, abs=1e-13)
    assert stats.betainc(2.0, 2.0, 0.5) == pytest.approx(0.5, abs=1e-14)
    with pytest.raises(ValueError, match="0 <= x <= 1"):
        stats.betainc(1.0, 1.0, 1.5)


def test_t_interval_hand_worked():
    # [1, 2, 3]: mean 2, sd 1, half-width t_{0.975,2} / sqrt(3) = 4.302653 / 1.732051 = 2.484138.
    interval = stats.t_interval([1.0, 2.0, 3.0])
    assert interval.mean == pytest.approx(2.0)
    assert interval.sd == pytest.approx(1.0)
    assert interval.low == pytest.approx(-0.484138, abs=1e-6)
    assert interval.high == pytest.approx(4.484138, abs=1e-6)
    assert interval.n == 3 and interval.level == 0.95


def test_t_interval_single_value_has_no_interval():
    interval = stats.t_interval([0.7])
    assert interval.mean == 0.7
    assert interval.sd is None and interval.low is None and interval.high is None


def test_paired_difference_pairs_by_seed_not_by_order():
    # Differences by seed: 0.1, 0.2, 0.0 -> mean 0.1, sd 0.1, half 4.302653 * 0.1 / sqrt(3).
    treatment = {2: 0.6, 0: 0.5, 1: 0.7}
    baseline = {0: 0.4, 1: 0.5, 2: 0.6}
    diff = stats.paired_difference(treatment, baseline)
    assert diff.mean == pytest.approx(0.1)
    assert diff.sd == pytest.approx(0.1)
    assert diff.low == pytest.approx(0.1 - 0.248414, abs=1e-6)
    assert diff.high == pytest.approx(0.1 + 0.248414, abs=1e-6)
    # Paired is narrower than comparing the two means as if independent: the seed effect cancels.
    unpaired_sd = math.sqrt(
        stats.mean_sd([0.5, 0.7, 0.6])[1] ** 2 + stats.mean_sd([0.4, 0.5, 0.6])[1] ** 2
    )
    assert diff.sd < unpaired_sd


def test_paired_difference_rejects_unpaired_seeds():
    with pytest.raises(ValueError, match="same seeds"):
        stats.paired_difference({0: 1.0, 1: 2.0}, {0: 1.0, 2: 2.0})
