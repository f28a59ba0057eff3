"""lenet_pl.sweeps.factorial: a textbook 2^4, statsmodels' OLS, and data whose effects and noise are known by design."""

import itertools
import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from lenet_pl.sweeps.factorial import analyse, holm, minimum_detectable_effect

AXES = ("A", "B", "C", "D")
LEVELS = {axis: ("-", "+") for axis in AXES}
CORNERS = list(itertools.product("-+", repeat=4))


def code(config: tuple[str, ...], *axes: str) -> float:
    """The product of the ±1 codes of `axes` in `config`."""
    return math.prod(1.0 if config[AXES.index(axis)] == "+" else -1.0 for axis in axes)


# Montgomery, Design and Analysis of Experiments, Example 6.2: filtration rate of a chemical in a
# pilot plant, an unreplicated 2^4 in temperature (A), pressure (B), concentration (C) and stirring
# rate (D). Runs in standard order, named by their factors at the high level.
FILTRATION = {
    "(1)": 45, "a": 71, "b": 48, "ab": 65, "c": 68, "ac": 60, "bc": 80, "abc": 65,
    "d": 43, "ad": 100, "bd": 45, "abd": 104, "cd": 75, "acd": 86, "bcd": 70, "abcd": 96,
}  # fmt: skip
FILTRATION_EFFECTS = {  # the book's effect estimates (Table 6.11)
    ("A",): 21.625, ("B",): 3.125, ("C",): 9.875, ("D",): 14.625,
    ("A", "B"): 0.125, ("A", "C"): -18.125, ("A", "D"): 16.625,
    ("B", "C"): 2.375, ("B", "D"): -0.375, ("C", "D"): -1.125,
}  # fmt: skip


def filtration_config(run: str) -> tuple[str, ...]:
    return tuple("+" if axis.lower() in run else "-" for axis in AXES)


def test_the_textbook_2_4_gives_the_books_effects():
    """Unreplicated: the 3- and 4-way interactions are taken as the error (max_order=2, 5 df)."""
    cells = {filtration_config(run): {0: float(y)} for run, y in FILTRATION.items()}
    fit = analyse(cells, AXES, LEVELS, max_order=2)
    assert {term.axes: term.effect for term in fit.terms} == pytest.approx(FILTRATION_EFFECTS)
    assert fit.mean == pytest.approx(70.0625) and fit.residual_df == 16 - 11
    assert [term.name for term in fit.interactions] == ["A x B", "A x C", "A x D", "B x C", "B x D", "C x D"]


def test_the_textbook_projection_gives_the_books_anova():
    """B is inert, so the book drops it: a 2^3 in A, C, D replicated twice (Table 6.13: MS_E 22.44 on 8 df)."""
    cells: dict[tuple[str, ...], dict[int, float]] = {}
    for run, y in FILTRATION.items():
        config = filtration_config(run)
        cells.setdefault((config[0], config[2], config[3]), {})[int("b" in run)] = float(y)
    fit = analyse(cells, ("A", "C", "D"), {a: ("-", "+") for a in "ACD"}, block=False)
    assert fit.residual_df == 8 and fit.residual_sd**2 == pytest.approx(179.5 / 8)
    assert fit.term("A").effect == pytest.approx(21.625) and fit.term("C", "A").effect == pytest.approx(-18.125)
    published_f = {("A",): 83.36, ("C",): 17.38, ("D",): 38.13, ("A", "C"): 58.56, ("A", "D"): 49.27}
    assert {axes: fit.term(*axes).t ** 2 for axes in published_f} == pytest.approx(published_f, abs=0.01)
    assert fit.term("C", "D").t ** 2 < 1 and fit.term("A", "C", "D").t ** 2 < 1
    # every effect of a balanced 2^3 with 16 runs has the same standard error: 2 sqrt(MS_E / 16)
    assert [term.se for term in fit.terms] == pytest.approx([2 * math.sqrt(22.4375 / 16)] * 7)


# Known by construction: 3 seeds x 16 configurations, effects A = 0.3, B = -0.2, AB = 0.1, AC = 0.02,
# seed blocks (0.05, -0.02, -0.03), and a residual d * (+1, -1, 0)[seed] * x_A x_B x_C x_D, which is
# orthogonal to every column of the model, so the fit leaves exactly it: SS_E = 32 d^2 on 48 - 18 = 30 df.
D = 0.04
KNOWN = {("A",): 0.3, ("B",): -0.2, ("A", "B"): 0.1, ("A", "C"): 0.02}
SEED_EFFECTS = {0: 0.05, 1: -0.02, 2: -0.03}


def known_cells() -> dict[tuple[str, ...], dict[int, float]]:
    return {
        config: {
            seed: 5.0
            + sum(effect / 2 * code(config, *axes) for axes, effect in KNOWN.items())
            + SEED_EFFECTS[seed]
            + D * (1, -1, 0)[seed] * code(config, *AXES)
            for seed in SEED_EFFECTS
        }
        for config in CORNERS
    }


def test_known_effects_residual_and_intervals_come_back_exactly():
    fit = analyse(known_cells(), AXES, LEVELS)
    expected = {axes: KNOWN.get(axes, 0.0) for axes in (term.axes for term in fit.terms)}
    assert {term.axes: term.effect for term in fit.terms} == pytest.approx(expected, abs=1e-12)  # 2 * beta
    assert fit.mean == pytest.approx(5.0) and fit.seed_effects == pytest.approx(SEED_EFFECTS)
    assert (fit.runs, fit.configurations, fit.residual_df) == (48, 16, 30)
    sd = math.sqrt(32 * D**2 / 30)
    assert fit.residual_sd == pytest.approx(sd)
    se = 2 * sd / math.sqrt(48)  # Var(beta) = s^2 / 48 for each orthogonal ±1 column
    t975 = scipy_stats.t.ppf(0.975, 30)
    assert t975 == pytest.approx(2.0423, abs=1e-4)
    for term in fit.terms:
        assert term.se == pytest.approx(se)
        assert (term.low, term.high) == pytest.approx((term.effect - t975 * se, term.effect + t975 * se))
        assert term.t == pytest.approx(term.effect / se, abs=1e-9)
        assert term.p == pytest.approx(2 * scipy_stats.t.sf(abs(term.effect) / se, 30), abs=1e-12)
    ac = fit.term("A", "C")
    assert ac.t == pytest.approx(0.02 / se) and 0.05 < ac.p < 0.2  # t = 1.68: not resolved at 30 df
    assert fit.term("A", "B").text() == f"+0.10 +- {t975 * se:.2f}"


def test_holm_adjusts_each_order_as_its_own_family():
    fit = analyse(known_cells(), AXES, LEVELS)
    for order in (1, 2, 3):
        family = [term for term in fit.terms if term.order == order]
        assert [term.p_holm for term in family] == pytest.approx(holm([term.p for term in family]))
    ab, ac = fit.term("A", "B"), fit.term("A", "C")
    assert ac.p_holm == pytest.approx(5 * ac.p)  # second smallest of the 6 two-way interactions
    assert ab.p_holm == pytest.approx(6 * ab.p)
    assert fit.term("B", "C").p_holm == 1.0


def test_holm_by_hand_and_against_statsmodels():
    from statsmodels.stats.multitest import multipletests

    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> monotone: 0.06 for the last
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.4]) == [0.8, 0.8] and holm([]) == []
    p = np.random.default_rng(1).uniform(0, 0.1, size=9)
    assert holm(list(p)) == pytest.approx(multipletests(p, method="holm")[1])


def test_minimum_detectable_effect_by_hand():
    fit = analyse(known_cells(), AXES, LEVELS)
    se = fit.term("A").se
    # t(0.975, 30) + t(0.8, 30) = 2.0423 + 0.8538
    assert fit.term("A").mde == pytest.approx((2.042272 + 0.853767) * se, rel=1e-5)
    assert minimum_detectable_effect(0.05, 30) == pytest.approx(2.896039 * 0.05, rel=1e-5)
    assert minimum_detectable_effect(0.05, 30, power=0.5) == pytest.approx(2.042272 * 0.05, rel=1e-5)


def random_runs(seed: int, missing: int) -> dict[tuple[str, ...], dict[int, float]]:
    rng = np.random.default_rng(seed)
    cells = {config: {s: float(rng.normal(1.0, 0.2)) for s in range(3)} for config in CORNERS}
    for index in rng.choice(48, size=missing, replace=False):
        del cells[CORNERS[index // 3]][int(index % 3)]
    return cells


@pytest.mark.parametrize(("seed", "missing", "max_order"), [(0, 0, None), (1, 1, None), (2, 3, None), (3, 2, 2)])
def test_unbalanced_runs_agree_with_statsmodels_ols(seed, missing, max_order):
    import pandas as pd
    import statsmodels.formula.api as smf

    cells = random_runs(seed, missing)
    fit = analyse(cells, AXES, LEVELS, max_order=max_order)
    frame = pd.DataFrame(
        [
            {**{a.lower(): code(c, a) for a in AXES}, "seed": s, "y": y}
            for c, by_seed in cells.items()
            for s, y in by_seed.items()
        ]
    )
    terms = "a*b*c*d" if max_order is None else "(a+b+c+d)**2"  # lower case: a column C would hide patsy's C()
    ols = smf.ols(f"y ~ C(seed, Sum) + {terms}", frame).fit()
    assert fit.residual_df == ols.df_resid == 48 - missing - (1 + 2 + len(fit.terms))
    assert fit.residual_sd == pytest.approx(math.sqrt(ols.mse_resid))
    assert fit.mean == pytest.approx(ols.params["Intercept"])
    for term in fit.terms:
        name = ":".join(term.axes).lower()
        assert term.effect == pytest.approx(2 * ols.params[name])
        assert term.se == pytest.approx(2 * ols.bse[name])
        assert term.p == pytest.approx(ols.pvalues[name])
        assert (term.low, term.high) == pytest.approx(tuple(2 * ols.conf_int().loc[name]))


def test_a_diverged_run_is_left_out_and_named():
    cells = known_cells()
    cells[("+", "-", "-", "+")][1] = math.nan
    fit = analyse(cells, AXES, LEVELS)
    assert fit.left_out == ((("+", "-", "-", "+"), 1),) and fit.runs == 47 and fit.residual_df == 29
    # the remaining runs weigh more: (X'X)^-1 grows from 1/48 on the diagonal
    assert all(term.se / fit.residual_sd > 2 / math.sqrt(48) for term in fit.terms)


def test_without_blocks_the_seed_offsets_are_residual():
    fit = analyse(known_cells(), AXES, LEVELS, block=False)
    assert fit.residual_df == 32 and fit.seed_effects == {}
    # the seed offsets (sum of squares 16 x (0.05^2 + 0.02^2 + 0.03^2)) join the residual
    assert fit.residual_sd**2 == pytest.approx((32 * D**2 + 16 * (0.05**2 + 0.02**2 + 0.03**2)) / 32)


def test_designs_that_cannot_be_estimated_are_refused():
    one_seed = {config: {0: by_seed[0]} for config, by_seed in known_cells().items()}
    with pytest.raises(ValueError, match="16 runs cannot fit a model of 16 parameters"):
        analyse(one_seed, AXES, LEVELS)
    with pytest.raises(ValueError, match="'A' has only \\['-'\\]"):
        analyse({c: v for c, v in known_cells().items() if c[0] == "-"}, AXES, LEVELS)
    with pytest.raises(ValueError, match="cannot fit"):
        analyse({("-", "-", "-", "-"): {0: 1.0}, ("+", "+", "+", "+"): {0: 2.0}}, AXES, LEVELS, max_order=1)
    no_corner = {c: v for c, v in known_cells().items() if not (c[0] == "+" and c[1] == "+")}
    with pytest.raises(ValueError, match="cannot separate 'A x B'"):
        analyse(no_corner, AXES, LEVELS)
    with pytest.raises(ValueError, match="exactly two distinct levels"):
        analyse(known_cells(), AXES, {**LEVELS, "B": ("-", "+", "0")})
    with pytest.raises(ValueError, match="'x' is not a level of 'D'"):
        analyse({**known_cells(), ("-", "-", "-", "x"): {0: 1.0}}, AXES, LEVELS)
    with pytest.raises(ValueError, match="max_order=5"):
        analyse(known_cells(), AXES, LEVELS, max_order=5)
