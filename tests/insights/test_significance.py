"""The experiment comparison: rates, uplift, and the test scipy runs for it."""

import pytest
from scipy import stats

from insights.significance import compare


def test_large_difference_is_significant_with_chi2_matching_the_z_test():
    c = compare(treated=1000, treated_converted=120, control=1000, control_converted=80)
    assert c.treated_rate == pytest.approx(0.12)
    assert c.control_rate == pytest.approx(0.08)
    assert c.uplift_points == pytest.approx(4.0)
    assert c.uplift_relative == pytest.approx(0.5)
    # the two-proportion z-test's p-value, computed by hand from the pooled rate
    pooled = 200 / 2000
    se = (pooled * (1 - pooled) * (1 / 1000 + 1 / 1000)) ** 0.5
    z = (0.12 - 0.08) / se
    assert c.test == "chi2"
    assert c.p_value == pytest.approx(2 * stats.norm.sf(z), rel=1e-9)
    assert c.significant is True
    assert c.ci_low_points < 4.0 < c.ci_high_points


def test_small_difference_is_not_significant():
    c = compare(treated=200, treated_converted=22, control=200, control_converted=20)
    assert c.significant is False
    assert c.p_value > 0.05
    assert c.ci_low_points < 0 < c.ci_high_points


def test_small_groups_use_fisher_exact():
    c = compare(treated=20, treated_converted=6, control=10, control_converted=0)
    assert c.test == "fisher"
    assert c.p_value == pytest.approx(stats.fisher_exact([[6, 14], [0, 10]]).pvalue)
    assert c.uplift_relative is None  # control converted nobody: no relative uplift


def test_empty_group_gives_no_verdict():
    c = compare(treated=50, treated_converted=5, control=0, control_converted=0)
    assert c.control_rate is None
    assert c.p_value is None and c.uplift_points is None
    assert c.significant is False


def test_nobody_converted_is_not_significant():
    c = compare(treated=500, treated_converted=0, control=50, control_converted=0)
    assert c.p_value == 1.0 and c.significant is False


def test_impossible_counts_are_refused():
    with pytest.raises(ValueError):
        compare(treated=10, treated_converted=11, control=10, control_converted=1)
