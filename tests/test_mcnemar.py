"""lenet_pl.sweeps.mcnemar: a published paired table, statsmodels' exact McNemar, counts by hand, seeds kept apart."""

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from lenet_pl.sweeps.mcnemar import mcnemar, mcnemar_table, over_seeds
from lenet_pl.sweeps.stats import t_interval


def test_a_published_paired_table_gives_its_published_interval():
    """Cavo et al. (2012), worked in Fagerland, Lydersen & Laake, Statistical Analysis of Contingency Tables (2017),
    ch. 8: 59 both, 6 first only, 16 second only, 80 neither; Newcombe's interval -0.0621 (-0.1186 to -0.0046)."""
    table = mcnemar_table(both_right=59, b=6, c=16, both_wrong=80)  # "success" = right, A = the first occasion
    assert table.n == 161 and table.difference == pytest.approx(-10 / 161)
    assert round(table.difference, 4) == -0.0621
    assert (round(table.low, 4), round(table.high, 4)) == (-0.1186, -0.0046)
    assert round(table.p_value, 3) == 0.052  # the exact conditional McNemar test's P for this table


@pytest.mark.parametrize(
    "counts", [(59, 6, 16, 80), (9000, 40, 25, 35), (9900, 3, 0, 97), (50, 7, 7, 1), (10, 0, 1, 0)]
)
def test_p_value_is_statsmodels_exact_mcnemar(counts):
    from statsmodels.stats.contingency_tables import mcnemar as statsmodels_mcnemar

    both_right, b, c, both_wrong = counts
    expected = statsmodels_mcnemar([[both_right, b], [c, both_wrong]], exact=True).pvalue
    assert mcnemar_table(*counts).p_value == pytest.approx(expected)


def test_counts_from_predictions_match_a_hand_count():
    labels = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    a = np.array([0, 1, 2, 3, 4, 5, 6, 0, 0, 0])  # right on 0-6
    b = np.array([0, 1, 2, 0, 0, 5, 6, 7, 8, 0])  # right on 0-2, 5-8
    table = mcnemar(a, b, labels)
    # both right: 0, 1, 2, 5, 6; A only: 3, 4; B only: 7, 8; neither: 9
    assert (table.both_right, table.b, table.c, table.both_wrong) == (5, 2, 2, 1)
    assert (table.error_a, table.error_b, table.difference) == (0.3, 0.3, 0.0)
    assert table.p_value == 1.0 and table.low < 0 < table.high
    worse = mcnemar(a, np.full(10, 9), labels)  # B right on digit 9 only
    assert (worse.b, worse.c) == (7, 1) and worse.difference == pytest.approx(0.6)
    assert worse.p_value == pytest.approx(2 * scipy_stats.binom.cdf(1, 8, 0.5))  # 2 x 9/256


def test_newcombes_interval_agrees_with_wald_when_discordant_digits_are_many():
    table = mcnemar_table(both_right=9750, b=120, c=80, both_wrong=50)
    n, b, c = 10_000, 120, 80
    wald = 1.959964 * math.sqrt(b + c - (b - c) ** 2 / n) / n  # paired Wald half-width
    assert table.difference == pytest.approx(0.004)
    assert (table.low, table.high) == pytest.approx((0.004 - wald, 0.004 + wald), abs=2e-4)


def test_no_discordant_digits_give_p_one_and_still_an_interval():
    table = mcnemar_table(both_right=95, b=0, c=0, both_wrong=5)
    assert table.p_value == 1.0 and table.difference == 0.0 and table.low < 0 < table.high


def test_refuses_what_cannot_be_paired():
    with pytest.raises(ValueError, match="cannot be paired"):
        mcnemar(np.zeros(5), np.zeros(4), np.zeros(5))
    with pytest.raises(ValueError, match="not all 0"):
        mcnemar_table(0, 0, 0, 0)


def test_over_seeds_reports_each_seed_and_the_seed_level_interval():
    labels = np.arange(1000) % 10

    def network(first_wrong: int, count: int) -> np.ndarray:
        predicted = labels.copy()
        predicted[first_wrong : first_wrong + count] += 1
        return predicted % 10

    a = {0: network(0, 20), 1: network(0, 22), 2: network(0, 20)}  # wrong on digits 0-19, 0-21, 0-19
    b = {0: network(500, 10), 1: network(500, 10), 2: network(500, 12), 3: network(0, 1)}  # seed 3: no partner
    result = over_seeds(a, b, labels)
    assert sorted(result.per_seed) == [0, 1, 2]
    assert [(result.per_seed[s].b, result.per_seed[s].c) for s in (0, 1, 2)] == [(10, 20), (10, 22), (12, 20)]
    differences = [-0.010, -0.012, -0.008]
    assert [result.per_seed[s].difference for s in (0, 1, 2)] == pytest.approx(differences)
    assert result.difference == t_interval([result.per_seed[s].difference for s in (0, 1, 2)])
    # mean -0.010, sd 0.002 over 3 seeds: half-width t(0.975, 2) x 0.002 / sqrt(3) = 0.00497
    assert result.difference.mean == pytest.approx(-0.010)
    assert result.difference.half_width == pytest.approx(4.302653 * 0.002 / math.sqrt(3), rel=1e-5)
