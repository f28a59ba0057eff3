"""Sweep statistics on plain data: learning-rate selection, confidence intervals, effects, interactions, paths.

Nothing here reads files or draws: `lenet_pl.report` turns job dirs into the mappings below and
prints what these functions return, and `lenet_pl.sweeps.plan` uses the same selection to pick the
learning rate of a tuned sweep's second stage, so the report and the sweep always agree.

The unit of replication is the seed. A main effect (say tanh -> relu) is estimated per seed as
the mean change in test error over the configurations that differ in that axis alone (matched
on every other axis and on the seed, and the same configurations for every seed), and its 95%
confidence interval is the t-interval over those per-seed estimates (n - 1 degrees of freedom
for n seeds). Each seed replicates the whole factorial, so the per-seed estimates are draws of
the same average effect: the interval reflects seed-to-seed noise only, not how much the effect
differs between configurations (the interaction table shows that). In a tuned sweep the seed that
chose the learning rates is not quite such a draw (its runs won a contest on validation), so the
report also gives the effects without it. With one seed there is an estimate but no interval.
`lenet_pl.sweeps.factorial` fits the whole factorial as one linear model instead, whose residual gives
every effect the same error term with far more degrees of freedom (30 for 16 configurations on 3 seeds).
"""

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from scipy import stats as scipy_stats

CONFIDENCE = 0.95

# One value (test error %, say) per configuration and seed: configuration (its levels, in the order
# of `axes`) -> seed -> value.
Cells = Mapping[tuple[str, ...], Mapping[int, float]]


@dataclass(frozen=True)
class Interval:
    """A mean with its t confidence interval over `n` values (low = high = nan when n < 2)."""

    mean: float
    low: float
    high: float
    n: int
    confidence: float = CONFIDENCE

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    @property
    def has_interval(self) -> bool:
        return not math.isnan(self.low)

    def text(self, digits: int = 2, signed: bool = False) -> str:
        """'-1.23 +- 0.45', '-1.23 (1 seed)' without an interval, '-' without values."""
        if self.n == 0:
            return "-"
        mean = f"{self.mean:+.{digits}f}" if signed else f"{self.mean:.{digits}f}"
        if self.n == 1:
            return f"{mean} (1 seed)"
        if not self.has_interval:
            return f"{mean} +- n/a"
        return f"{mean} +- {self.half_width:.{digits}f}"


def t_interval(values: Iterable[float], confidence: float = CONFIDENCE) -> Interval:
    """Mean of `values` with the two-sided Student-t interval: mean +- t(n-1) * s / sqrt(n)."""
    values = list(values)
    n = len(values)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0, confidence)
    mean = statistics.fmean(values)
    if n == 1:
        return Interval(mean, math.nan, math.nan, 1, confidence)
    half = scipy_stats.t.ppf((1 + confidence) / 2, n - 1) * statistics.stdev(values) / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n, confidence)


def paired_difference(before: Mapping[int, float], after: Mapping[int, float]) -> Interval:
    """`after - before` over the seeds both have, with the paired t-interval."""
    return t_interval(after[seed] - before[seed] for seed in sorted(before.keys() & after.keys()))


# ---------------------------------------------------------------------------------------------
# Learning-rate selection


@dataclass(frozen=True)
class Trial:
    """One run of a candidate value (a learning rate) on one selection seed."""

    value: float
    seed: int
    score: float | None  # the selection metric (validation accuracy); None: no result
    failure: str | None = None  # why it failed (diverged, ...), when it did


SCREENED_OUT = "screened out"  # how Selection.lost words a candidate that ran on the first seed only


@dataclass(frozen=True)
class Selection:
    """The candidate a configuration trains with, and why."""

    chosen: float | None  # None: every candidate lost, or some have no result yet (pending)
    scores: dict[float, float]  # candidate -> mean selection score over the selection seeds (the finalists')
    lost: dict[float, str]  # candidate -> why it could not be chosen
    pending: tuple[float, ...] = ()  # candidates whose runs have not all reported yet
    at_edge: bool = False  # chosen is the smallest or largest candidate: the grid may not bracket the best
    first_seed: dict[float, float] = field(default_factory=dict)  # candidate -> the first selection seed's score
    first_seed_choice: float | None = None  # what the first selection seed alone would have chosen

    @property
    def status(self) -> str:
        if self.chosen is not None:
            return "chosen"
        return "pending" if self.pending else "all candidates lost"

    @property
    def screened_out(self) -> list[float]:
        """Candidates that ran on the first selection seed only, not being among its `top` best."""
        return sorted(v for v, why in self.lost.items() if why.startswith(SCREENED_OUT))

    @property
    def changed_by_more_seeds(self) -> bool:
        """The later selection seeds moved the choice away from the first seed's."""
        return self.chosen is not None and self.first_seed_choice is not None and self.chosen != self.first_seed_choice


def ranked(scores: Mapping[float, float]) -> list[float]:
    """The candidates, best score first; ties go to the smaller value (the one tie-break of every choice here)."""
    return sorted(sorted(scores), key=lambda v: -scores[v])  # a stable sort keeps equal scores smallest first


def finalists(first_seed: Mapping[float, float], top: int | None) -> list[float]:
    """The `top` candidates by the first selection seed's score (`ranked`); all when None."""
    best = ranked(first_seed)
    return sorted(best if top is None else best[:top])


def select(
    trials: Iterable[Trial],
    grid: Sequence[float],
    seeds: Sequence[int],
    complete: bool = False,
    top: int | None = None,
) -> Selection:
    """Pick the candidate of `grid` with the highest mean score over the selection `seeds`.

    Only validation scores enter: a Trial has no test metric to look at. A candidate with a
    failed run (diverged, say) on any selection seed loses and is listed with the failure. A
    candidate without a result on every seed is pending, and nothing is chosen while any is
    pending, unless `complete` (every run has returned), where a missing result loses too. Ties
    go to the smaller value, so the choice never depends on the order of the runs.

    `top`: every candidate runs on the first seed, and only the `top` best of them (by that seed's
    score) on the other seeds, which then choose among those by the mean over all seeds: a second
    seed where the choice is close, at a fraction of the runs. The others lose, "screened out".
    """
    seeds = list(seeds)
    by_candidate: dict[float, dict[int, Trial]] = {float(v): {} for v in grid}
    for trial in trials:
        if float(trial.value) in by_candidate and trial.seed in seeds:
            by_candidate[float(trial.value)][trial.seed] = trial
    lost: dict[float, str] = {}
    pending: list[float] = []

    def judge(value: float, on: Sequence[int]) -> bool:
        """Record why `value` cannot be scored on the seeds `on` (lost or pending); True if it can."""
        runs = by_candidate[value]
        failures = [f"seed {s}: {runs[s].failure}" for s in on if s in runs and runs[s].failure]
        missing = [s for s in on if s not in runs or (runs[s].score is None and not runs[s].failure)]
        if failures:
            lost[value] = "; ".join(failures)
        elif missing and complete:
            lost[value] = f"no result for seed {', '.join(map(str, missing))}"
        elif missing:
            pending.append(value)
        return not (failures or missing)

    first = seeds[0]
    first_runs = {v: runs[first] for v, runs in by_candidate.items() if first in runs}
    first_seed = {v: float(t.score) for v, t in first_runs.items() if t.score is not None and not t.failure}
    first_missing = [v for v in by_candidate if v not in first_seed and not (v in first_runs and first_runs[v].failure)]
    first_seed_choice = ranked(first_seed)[0] if first_seed and (complete or not first_missing) else None
    kwargs: dict[str, Any] = {"first_seed": first_seed, "first_seed_choice": first_seed_choice}
    screened = top is not None and len(seeds) > 1
    if screened and first_missing and not complete:  # the finalists are not known yet
        return Selection(None, {}, {}, tuple(first_missing), **kwargs)
    final = finalists(first_seed, top) if screened else list(by_candidate)
    for value in by_candidate:
        if value not in final and judge(value, [first]):
            lost[value] = f"{SCREENED_OUT}: not among the {top} best on seed {first}"
    scores = {
        v: statistics.fmean(by_candidate[v][s].score for s in seeds)  # type: ignore[misc]
        for v in final
        if judge(v, seeds)
    }
    if pending or not scores:
        return Selection(None, scores, lost, tuple(pending), **kwargs)
    chosen = ranked(scores)[0]
    candidates = sorted(by_candidate)
    at_edge = len(candidates) > 1 and chosen in (candidates[0], candidates[-1])
    return Selection(chosen, scores, lost, (), at_edge, **kwargs)


# ---------------------------------------------------------------------------------------------
# Effects and interactions


@dataclass(frozen=True)
class Effect:
    """Mean change in the value when `axis` goes from `base` to `level`, all else (and the seed) equal."""

    axis: str
    base: str
    level: str
    interval: Interval  # over seeds, of the per-seed mean change
    pairs: int  # matched (configuration, seed) pairs behind it
    pairs_better: int  # pairs whose value went down (lower error is better)
    where: tuple[tuple[str, str], ...] = ()  # the other axes held at these levels (interaction cells)
    per_seed: dict[int, float] = field(default_factory=dict)
    left_out: int = 0  # matched pairs left out so that every seed averages the same configurations

    @property
    def swap(self) -> str:
        return f"{self.base} -> {self.level}"


def effect(
    cells: Cells,
    axes: Sequence[str],
    axis: str,
    base: str,
    level: str,
    where: Mapping[str, str] | None = None,
) -> Effect:
    """The change `base -> level` of `axis`: per seed, the mean over matched configurations; then t over seeds.

    `where` restricts the configurations to those with the given levels of other axes (the effect
    of activation when the optimizer is Adam, say).
    """
    i = axes.index(axis)
    held = [(axes.index(k), v) for k, v in (where or {}).items()]
    matched: dict[tuple[str, ...], dict[int, float]] = {}  # base configuration -> seed -> change
    for config, by_seed in cells.items():
        if config[i] != base or any(config[j] != v for j, v in held):
            continue
        other = cells.get((*config[:i], level, *config[i + 1 :]))
        if other is not None and (changes := {s: other[s] - by_seed[s] for s in by_seed.keys() & other.keys()}):
            matched[config] = changes
    configs, seeds = _balanced(matched)
    per_seed = {seed: statistics.fmean(matched[c][seed] for c in configs) for seed in seeds}
    diffs = [matched[c][seed] for c in configs for seed in seeds]
    return Effect(
        axis=axis,
        base=base,
        level=level,
        interval=t_interval(per_seed.values()),
        pairs=len(diffs),
        pairs_better=sum(d < 0 for d in diffs),
        where=tuple((where or {}).items()),
        per_seed=per_seed,
        left_out=sum(map(len, matched.values())) - len(diffs),
    )


def _balanced(matched: Mapping[tuple[str, ...], Mapping[int, float]]) -> tuple[list[tuple[str, ...]], list[int]]:
    """The configurations and seeds to average: every configuration present on every seed used.

    Per-seed means over different sets of configurations are not draws of one quantity (a seed
    missing a configuration with a large change would look like seed noise), so a sweep cut short
    is reduced to its largest balanced block: the configurations that have every seed, or every
    configuration on the seeds they share, or one seed alone, whichever keeps the most pairs.
    """
    if not matched:
        return [], []
    every_seed = sorted(set().union(*matched.values()))
    shared = sorted(set.intersection(*(set(d) for d in matched.values())))
    blocks = [([c for c, d in matched.items() if d.keys() >= set(every_seed)], every_seed), (list(matched), shared)]
    blocks += [([c for c, d in matched.items() if seed in d], [seed]) for seed in every_seed]
    return max(blocks, key=lambda block: (len(block[0]) * len(block[1]), len(block[1])))


def main_effects(cells: Cells, axes: Sequence[str], levels: Mapping[str, Sequence[str]]) -> list[Effect]:
    """For each axis, the effect of going from its first level to each of the others."""
    return [effect(cells, axes, axis, levels[axis][0], level) for axis in axes for level in levels[axis][1:]]


@dataclass(frozen=True)
class Interaction:
    """The effect of one swap under two levels of another axis, and how much it differs between them."""

    swap: Effect  # the main effect, over every level of `by`
    by: str
    by_base: str
    by_level: str
    under_base: Effect
    under_level: Effect
    difference: Interval  # under_level - under_base, per seed, t over seeds


def interactions(cells: Cells, axes: Sequence[str], levels: Mapping[str, Sequence[str]]) -> list[Interaction]:
    """Every swap of every axis, under each level of each other axis (against that axis' first level)."""
    rows = []
    for swap in main_effects(cells, axes, levels):
        for by in axes:
            if by == swap.axis:
                continue
            under_base = effect(cells, axes, swap.axis, swap.base, swap.level, {by: levels[by][0]})
            for by_level in levels[by][1:]:
                under_level = effect(cells, axes, swap.axis, swap.base, swap.level, {by: by_level})
                rows.append(
                    Interaction(
                        swap=swap,
                        by=by,
                        by_base=levels[by][0],
                        by_level=by_level,
                        under_base=under_base,
                        under_level=under_level,
                        difference=paired_difference(under_base.per_seed, under_level.per_seed),
                    )
                )
    return rows


# ---------------------------------------------------------------------------------------------
# A path of configurations, one change at a time


@dataclass(frozen=True)
class PathStep:
    """One point of a path: its value over seeds, and the change from the point before it."""

    label: str
    level: Interval
    change: Interval | None  # None for the start
    from_start: Interval | None


def path(steps: Sequence[tuple[str, Mapping[int, float]]]) -> list[PathStep]:
    """Each step's mean (t-interval over seeds) and its paired change from the previous step and from the start.

    Only the seeds every step has are used (when there are any), so that a step's change is exactly
    the difference of its level and the level before it, as a waterfall draws them.
    """
    shared = set.intersection(*(set(values) for _, values in steps)) if steps else set()
    if shared:
        steps = [(label, {s: v for s, v in values.items() if s in shared}) for label, values in steps]
    out = []
    for k, (label, values) in enumerate(steps):
        out.append(
            PathStep(
                label=label,
                level=t_interval(values[s] for s in sorted(values)),
                change=paired_difference(steps[k - 1][1], values) if k else None,
                from_start=paired_difference(steps[0][1], values) if k else None,
            )
        )
    return out


def undone(
    reference: Mapping[int, float], variants: Sequence[tuple[str, Mapping[int, float]]]
) -> list[tuple[str, Interval]]:
    """The reverse view: each variant (the end point with one change undone) minus the end point, paired by seed."""
    return [(label, paired_difference(reference, values)) for label, values in variants]
