"""The linear-model analysis of a replicated two-level factorial: effects, their errors, p-values, power.

`lenet_pl.sweeps.stats` estimates each effect per seed and takes a t-interval over the seeds, which for
3 seeds has 2 degrees of freedom. The standard analysis of a 2^k factorial replicated over seeds
fits one linear model to every run instead:

    error = mean + seed block + sum over every set of factors S of beta_S * prod_{f in S} x_f + residual

with each factor coded x = -1 (its first level) / +1 (its second), products of codes for the
interactions, and the seed as a block (sum-to-zero coded: the seed effects add up to zero, so
the mean is the mean over seeds). The residual is then the seed-by-configuration interaction:
how much a seed's run deviates from what its configuration and its seed predict, the noise an
effect has to stand out from. With 16 configurations and 3 seeds there are 48 runs, 1 + 2 + 15
parameters and 30 residual degrees of freedom, where the per-seed t-interval has 2.

The 3- and 4-way interactions stay in the model by default, as in the standard analysis of a
replicated 2^k: each seed's runs are then fitted configuration by configuration, and the residual
holds only seed-to-seed noise, whether or not the higher-order interactions are real. Leaving them
out (`max_order=2`) would pool them into the residual: 5 more degrees of freedom, but a residual
inflated by any real 3-way interaction. An unreplicated factorial (one seed) has no residual at
all with every interaction in; there `max_order` is the usual way out, and the docstring of
`analyse` says what it then assumes.

An effect is reported in the units of the response (test error in points, say) as the change from
the low to the high level: effect = 2 * beta, which in a balanced design is the mean over the runs
at the high level minus the mean over those at the low level (for an interaction, the runs whose
product of codes is +1 minus those where it is -1). The two-way interaction AB is thus half the
difference between the effect of A with B high and with B low: AB = (A|B+ - A|B-) / 2 (the
Yates convention; `lenet_pl.sweeps.stats.Interaction.difference` is the whole difference, 2 * AB).

Each effect's standard error comes from the general OLS covariance s^2 (X'X)^-1, so a design with
a run missing (a diverged run, say) is analysed correctly: its effects are the least-squares
estimates, not differences of raw means, and their standard errors grow where the missing run
weighed. Nothing here reads files: the report turns job dirs into `Cells` and shows the result.
"""

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats as scipy_stats

from lenet_pl.sweeps.stats import CONFIDENCE, Cells

POWER = 0.8


@dataclass(frozen=True)
class Term:
    """One effect of the model: a main effect (one axis) or an interaction (several), high minus low."""

    axes: tuple[str, ...]
    effect: float  # 2 * beta, in the units of the response
    se: float  # its standard error, from the residual
    low: float  # the t confidence interval on the residual degrees of freedom
    high: float
    t: float  # effect / se
    p: float  # two-sided
    p_holm: float  # Holm-adjusted within the family of terms of the same order (see `analyse`)
    mde: float  # the smallest true effect found with probability `power` at two-sided alpha = 1 - confidence

    @property
    def name(self) -> str:
        return " x ".join(self.axes)

    @property
    def order(self) -> int:
        return len(self.axes)

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def text(self, digits: int = 2) -> str:
        """'+0.12 +- 0.05': the effect and the half-width of its interval."""
        return f"{self.effect:+.{digits}f} +- {self.half_width:.{digits}f}"


@dataclass(frozen=True)
class FactorialAnalysis:
    """The fitted model: every term up to `max_order`, the seed blocks, the residual."""

    axes: tuple[str, ...]
    levels: dict[str, tuple[str, str]]  # axis -> (low, high): coded -1 and +1
    terms: tuple[Term, ...]  # by order, then in the order of `axes`
    mean: float  # the intercept: the mean over configurations and seeds the model predicts
    seed_effects: dict[int, float]  # each seed's block effect (they sum to zero); empty without blocks
    residual_sd: float
    residual_df: int
    runs: int
    configurations: int  # distinct configurations among the runs
    max_order: int
    blocked: bool
    confidence: float = CONFIDENCE
    power: float = POWER
    left_out: tuple[tuple[tuple[str, ...], int], ...] = field(default=())  # (configuration, seed): no finite value

    @property
    def main_effects(self) -> list[Term]:
        return [term for term in self.terms if term.order == 1]

    @property
    def interactions(self) -> list[Term]:
        """The two-way interactions."""
        return [term for term in self.terms if term.order == 2]

    def term(self, *axes: str) -> Term:
        """The term of these axes, in any order: `fit.term("activation", "optimizer")`."""
        wanted = set(axes)
        for term in self.terms:
            if set(term.axes) == wanted and len(term.axes) == len(axes):
                return term
        raise KeyError(
            f"no term {' x '.join(axes)} in the model (axes {', '.join(self.axes)}, up to order {self.max_order})"
        )


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given.

    Sorted ascending, the i-th smallest of m (from 0) is multiplied by m - i, capped at 1, and made
    no smaller than the adjusted value before it, so that rejecting where adjusted p <= alpha
    controls the family-wise error rate at alpha.
    """
    m = len(p_values)
    adjusted = [0.0] * m
    running = 0.0
    for rank, index in enumerate(sorted(range(m), key=lambda i: p_values[i])):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def minimum_detectable_effect(se: float, df: int, confidence: float = CONFIDENCE, power: float = POWER) -> float:
    """The true effect a two-sided t-test at alpha = 1 - confidence finds with probability `power`.

    The usual approximation (t_{1-alpha/2, df} + t_{power, df}) * se: 2.84 standard errors at 30 df
    for 80% power at alpha 0.05. Computed from the observed residual sd, it describes this
    experiment's resolution, not a promise about the true one.
    """
    return float((scipy_stats.t.ppf((1 + confidence) / 2, df) + scipy_stats.t.ppf(power, df)) * se)


def analyse(
    cells: Cells,
    axes: Sequence[str],
    levels: Mapping[str, Sequence[str]],
    *,
    block: bool = True,
    max_order: int | None = None,
    confidence: float = CONFIDENCE,
    power: float = POWER,
) -> FactorialAnalysis:
    """Fit the factorial model to one value per run (`cells`: configuration -> seed -> value).

    Args:
        cells: the runs; a non-finite value (a diverged run's) is left out and listed in `left_out`.
        axes: the factors, in the order of each configuration's levels.
        levels: each axis' two levels, (low, high): the effect is high - low.
        block: the seed as a block. Without it the seeds are plain replicates, and anything
            a seed shares across its runs (its initialisation, its data order) stays in the residual.
        max_order: the highest interaction kept in the model (default: every one, up to all axes).
            Terms above it are assumed zero and pooled into the residual.
        confidence: of the intervals; alpha = 1 - confidence for the minimum detectable effect.
        power: of the minimum detectable effect.

    Multiplicity: the p-values are Holm-adjusted within each order separately. The main effects
    are one family (the questions the factorial was designed to answer, 4 of them for a 2^4), the
    two-way interactions another (6 for a 2^4), the 3-way and 4-way interactions each a family of
    their own. Each family controls its own family-wise error rate; nothing is adjusted across
    families. The raw p-values are there for a reader who treats the interactions as exploratory.

    Raises ValueError when the design cannot estimate the model: an axis with other than two levels
    among the runs, a level not in `levels`, fewer runs than parameters plus one (no residual
    degrees of freedom), or runs that cannot separate two terms (a missing corner of the design).
    """
    axes = tuple(axes)
    k = len(axes)
    if k == 0:
        raise ValueError("a factorial needs at least one axis")
    coded: dict[str, tuple[str, str]] = {}
    for axis in axes:
        pair = tuple(levels[axis])
        if len(pair) != 2 or pair[0] == pair[1]:
            raise ValueError(
                f"axis {axis!r} has levels {list(pair)}: a two-level factorial needs exactly two distinct levels"
            )
        coded[axis] = (pair[0], pair[1])
    order = k if max_order is None else max_order
    if not 1 <= order <= k:
        raise ValueError(f"max_order={max_order} is not allowed: give 1 to {k}, the number of axes")

    runs: list[tuple[tuple[str, ...], int, float]] = []
    left_out: list[tuple[tuple[str, ...], int]] = []
    for config in sorted(cells):
        if len(config) != k:
            raise ValueError(f"configuration {config} has {len(config)} levels for {k} axes ({', '.join(axes)})")
        for i, axis in enumerate(axes):
            if config[i] not in coded[axis]:
                raise ValueError(f"configuration {config}: {config[i]!r} is not a level of {axis!r} ({coded[axis]})")
        for seed in sorted(cells[config]):
            value = float(cells[config][seed])
            if math.isfinite(value):
                runs.append((config, seed, value))
            else:
                left_out.append((config, seed))
    for i, axis in enumerate(axes):
        present = {config[i] for config, _, _ in runs}
        if len(present) < 2:
            raise ValueError(
                f"axis {axis!r} has only {sorted(present) or 'no'} level(s) among the runs: "
                "its effect cannot be estimated"
            )

    subsets = [s for r in range(1, order + 1) for s in itertools.combinations(range(k), r)]
    seeds = sorted({seed for _, seed, _ in runs}) if block else []
    codes = np.array(
        [[1.0 if config[i] == coded[axis][1] else -1.0 for i, axis in enumerate(axes)] for config, _, _ in runs]
    )
    columns = [np.ones(len(runs))]
    names = ["mean"]
    # Sum-to-zero seed blocks: seed j's column is +1 on its runs and -1 on the last seed's.
    for seed in seeds[:-1]:
        columns.append(np.array([1.0 if s == seed else -1.0 if s == seeds[-1] else 0.0 for _, s, _ in runs]))
        names.append(f"seed {seed}")
    for subset in subsets:
        columns.append(np.prod(codes[:, list(subset)], axis=1))
        names.append(" x ".join(axes[i] for i in subset))
    x = np.column_stack(columns)
    y = np.array([value for _, _, value in runs])
    n, p = x.shape
    if n <= p:
        raise ValueError(
            f"{n} runs cannot fit a model of {p} parameters (mean, {len(seeds) - 1 if seeds else 0} seed blocks, "
            f"{len(subsets)} effects up to order {order}) with any residual degrees of freedom left: add seeds, "
            "or lower max_order"
        )
    _check_estimable(x, names)

    q, r = np.linalg.qr(x)
    beta = np.linalg.solve(r, q.T @ y)
    residuals = y - x @ beta
    df = n - p
    sd = math.sqrt(float(residuals @ residuals) / df)
    r_inv = np.linalg.solve(r, np.eye(p))
    variances = np.sum(r_inv**2, axis=1) * sd**2  # diag of s^2 (X'X)^-1, with (X'X)^-1 = R^-1 R^-T
    t_crit = float(scipy_stats.t.ppf((1 + confidence) / 2, df))

    first = 1 + max(len(seeds) - 1, 0)
    raw = []
    for j, subset in enumerate(subsets, start=first):
        effect, se = 2 * float(beta[j]), 2 * math.sqrt(float(variances[j]))
        t = effect / se if se > 0 else (math.copysign(math.inf, effect) if effect else 0.0)
        raw.append((subset, effect, se, t, float(2 * scipy_stats.t.sf(abs(t), df))))
    adjusted: dict[tuple[int, ...], float] = {}
    for r_order in range(1, order + 1):
        family = [row for row in raw if len(row[0]) == r_order]
        adjusted.update(zip((row[0] for row in family), holm([row[4] for row in family]), strict=True))
    terms = tuple(
        Term(
            axes=tuple(axes[i] for i in subset),
            effect=effect,
            se=se,
            low=effect - t_crit * se,
            high=effect + t_crit * se,
            t=t,
            p=p_value,
            p_holm=adjusted[subset],
            mde=minimum_detectable_effect(se, df, confidence, power),
        )
        for subset, effect, se, t, p_value in raw
    )
    seed_effects = {seed: float(beta[1 + j]) for j, seed in enumerate(seeds[:-1])}
    if seeds:
        seed_effects[seeds[-1]] = -sum(seed_effects.values())
    return FactorialAnalysis(
        axes=axes,
        levels=coded,
        terms=terms,
        mean=float(beta[0]),
        seed_effects=seed_effects,
        residual_sd=sd,
        residual_df=df,
        runs=n,
        configurations=len({config for config, _, _ in runs}),
        max_order=order,
        blocked=block,
        confidence=confidence,
        power=power,
        left_out=tuple(left_out),
    )


def _check_estimable(x: np.ndarray, names: Sequence[str]) -> None:
    """Raise ValueError naming the first column the ones before it already explain (the design aliases it)."""
    scale = max(x.shape) * np.finfo(float).eps
    for j in range(x.shape[1]):
        if np.linalg.matrix_rank(x[:, : j + 1], tol=scale * np.linalg.norm(x[:, : j + 1], 2)) <= j:
            raise ValueError(
                f"the runs cannot separate '{names[j]}' from the terms before it: the configurations present do "
                "not cover the design (a whole corner is missing); run the missing configurations, or lower max_order"
            )
