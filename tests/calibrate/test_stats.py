"""The calibration statistics on fixed tables, against intervals computed by hand."""

from __future__ import annotations

import math

import pytest

from proxy.calibrate.stats import (
    mean_interval,
    paired_difference,
    sign_test,
    t_quantile,
    wilson,
)


@pytest.mark.parametrize(
    ("df", "expected"),
    [(1, 12.706205), (2, 4.302653), (9, 2.262157), (29, 2.045230), (59, 2.000995)],
)
def test_t_quantiles_match_the_table(df: int, expected: float) -> None:
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=1e-6)


def test_wilson_interval_by_hand() -> None:
    # 6 of 20: p = 0.3, z = 1.959964, z^2 = 3.841459
    # centre = (0.3 + 3.841459/40) / (1 + 3.841459/20) = 0.396036 / 1.192073 = 0.332225
    # half = 1.959964 * sqrt(0.21/20 + 3.841459/1600) / 1.192073 = 0.186748
    low, high = wilson(6, 20)
    assert (low, high) == pytest.approx((0.145477, 0.518973), abs=1e-6)
    # The interval stays inside [0, 1] at the edges, where a normal interval collapses.
    assert wilson(0, 60) == pytest.approx((0.0, 0.060172), abs=1e-6)
    assert wilson(60, 60) == pytest.approx((0.939828, 1.0), abs=1e-6)


def test_pass_fail_cells_use_wilson_scaled_to_ten() -> None:
    interval = mean_interval([10.0] * 6 + [0.0] * 14)
    assert interval.method == "wilson"
    assert interval.n == 20
    assert interval.mean == pytest.approx(3.0)
    assert (interval.low, interval.high) == pytest.approx((1.45477, 5.18973), abs=1e-5)


def test_graded_cells_use_the_t_interval_clipped_to_the_scale() -> None:
    # 3, 5, 7, 9: mean 6, s = sqrt(20/3) = 2.581989, se = 1.290994, t(0.975, 3) = 3.182446
    interval = mean_interval([3.0, 5.0, 7.0, 9.0])
    assert interval.method == "t"
    assert interval.low == pytest.approx(6 - 3.182446 * 1.290994, abs=1e-5)  # 1.891479
    assert interval.high == 10.0  # 10.108521, clipped
    assert math.isnan(mean_interval([]).mean)


def test_paired_difference_by_hand() -> None:
    after = [10.0, 10.0, 0.0, 10.0, 0.0]
    before = [0.0, 10.0, 0.0, 0.0, 0.0]
    # differences 10, 0, 0, 10, 0: mean 4, s = sqrt(120/4) = 5.477226, se = 2.449490,
    # t(0.975, 4) = 2.776445 -> 4 -/+ 6.800874
    diff = paired_difference(after, before)
    assert (diff.n, diff.mean, diff.better, diff.worse) == (5, 4.0, 2, 0)
    assert (diff.low, diff.high) == pytest.approx((-2.800874, 10.800874), abs=1e-5)
    assert not diff.distinguishable
    assert diff.verdict() == "no difference shown"
    assert diff.p_value == 0.5  # 2 of 2 changed questions got better: 2 * (1/4)


def test_a_consistent_loss_is_distinguishable() -> None:
    # 12 of 40 questions lost, none gained: differences -10 x 12, 0 x 28.
    # mean -3, s = sqrt((12 * 49 + 28 * 9) / 39) = 4.640955, se = 0.733798,
    # t(0.975, 39) = 2.022691 -> -3 -/+ 1.484245
    diff = paired_difference([0.0] * 12 + [5.0] * 28, [10.0] * 12 + [5.0] * 28)
    assert diff.mean == -3.0
    assert (diff.better, diff.worse) == (0, 12)
    assert (diff.low, diff.high) == pytest.approx((-4.484245, -1.515755), abs=1e-5)
    assert diff.distinguishable
    assert diff.verdict() == "worse"
    assert diff.p_value == pytest.approx(2 / 2**12)


def test_no_change_at_all() -> None:
    diff = paired_difference([10.0, 0.0, 0.0], [10.0, 0.0, 0.0])
    assert (diff.mean, diff.low, diff.high, diff.p_value) == (0.0, 0.0, 0.0, 1.0)
    assert diff.verdict() == "no difference shown"


def test_sign_test_is_exact() -> None:
    # 1 better, 7 worse: 2 * (C(8,0) + C(8,1)) / 2^8 = 2 * 9 / 256
    assert sign_test(1, 7) == pytest.approx(18 / 256)
    assert sign_test(0, 0) == 1.0
    with pytest.raises(ValueError, match="two equally long"):
        paired_difference([1.0], [1.0, 2.0])


def test_only_gains_the_interval_shows_are_written_when_asked() -> None:
    from proxy.calibrate.scores import Calibration, Cell

    ids = [f"q{i}" for i in range(40)]
    lost = tuple((q, 0.0 if i < 12 else 5.0) for i, q in enumerate(ids))
    draft = tuple((q, 10.0 if i < 12 else 5.0) for i, q in enumerate(ids))
    one_better = tuple((q, 10.0 if i == 0 else 0.0) for i, q in enumerate(ids))
    nothing = tuple((q, 0.0) for q in ids)
    cells = (
        Cell("math", "m", 0, draft, 0),
        Cell("math", "m", 1, lost, 0),  # 12 of 40 lost: distinguishable (see above)
        Cell("creative", "m", 0, nothing, 0),
        Cell("creative", "m", 1, one_better, 0),  # 1 of 40 better: not distinguishable
    )
    calibration = Calibration(None, 1, cells, ())
    assert calibration.quality_lists()["m"] == {
        "math": ([6.5, 3.5], [40, 40]),
        "creative": ([0.0, 0.25], [40, 40]),
    }
    assert calibration.quality_lists(significant_only=True)["m"] == {
        "math": ([6.5, 3.5], [40, 40]),  # the loss is shown, so it is kept
        "creative": ([0.0, 0.0], [40, 40]),  # the gain is not: written as Q0
    }
