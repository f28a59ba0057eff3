"""The report's main effects and interactions: the factorial's linear model first, the seed-level t-intervals beside it.

A sweep whose configuration axes have two levels each, run on two or more seeds (`sweep=fair`,
a 2^k `sweep=ablation`), is analysed as one linear model (`lenet_pl.sweeps.factorial`): every effect is
measured against the residual of all runs, with many more degrees of freedom than the seed-level
t-interval of `lenet_pl.sweeps.stats` (the number of seeds less one). That interval stays as a column:
it does not assume that the noise is the same in every configuration. Other sweeps (an axis with
three levels, one seed, a corner of the design missing) get the seed-level intervals alone, with
a sentence saying why.
"""

from collections.abc import Sequence
from typing import Any

from lenet_pl.sweeps import stats
from lenet_pl.sweeps.factorial import FactorialAnalysis, Term, analyse
from lenet_pl.sweeps.jobs import SEED
from lenet_pl.sweeps.report_format import interval_cell, markdown_table, p_text, short, significant
from lenet_pl.sweeps.sweep import Sweep

ORDER_NAMES = {3: "Three-way", 4: "Four-way", 5: "Five-way"}


def fit_model(sweep: Sweep, cells: stats.Cells) -> tuple[FactorialAnalysis | None, str]:
    """The linear model of the sweep's test errors (`cells`), or None and one sentence on why there is none."""
    axes, levels = sweep.config_axes, sweep.levels
    if not axes:
        return None, "The sweep has no configuration axis: no factorial model."
    many = [f"{a} has {len(levels[a])}" for a in axes if len(levels[a]) != 2]
    if many:
        return None, (
            f"No linear model: it needs two levels per axis ({', '.join(many)}); the intervals below are "
            "the seed-level t-intervals alone."
        )
    if len(sweep.axes.get(SEED, [])) < 2:
        return None, (
            "No linear model: the sweep runs one seed, and the model needs replicates for its residual; "
            "the effects below are single differences without intervals."
        )
    try:
        return analyse(cells, axes, levels), ""
    except ValueError as err:
        return None, (
            f"No linear model for these runs ({err}); the intervals below are the seed-level t-intervals alone."
        )


def selection_seeds_in_results(sweep: Sweep, cells: stats.Cells) -> list[int]:
    """The selection seeds of a tuned sweep that also have result runs (none in `sweep=fair`: it chooses on
    seeds that it reports nothing of)."""
    if sweep.plan.tune is None:
        return []
    used = {seed for by_seed in cells.values() for seed in by_seed}
    return [seed for seed in sweep.plan.tune.seeds if seed in used]


def held_out_effects(sweep: Sweep, cells: stats.Cells) -> dict[tuple[str, str], stats.Effect]:
    """Main effects on the seeds that chose nothing, where some result runs are on a selection seed: those
    runs at the chosen rate won a contest on validation, which may flatter them ({} otherwise)."""
    chosen_on = set(selection_seeds_in_results(sweep, cells))
    if not chosen_on:
        return {}
    held = {config: {s: v for s, v in by_seed.items() if s not in chosen_on} for config, by_seed in cells.items()}
    return {(e.axis, e.swap): e for e in stats.main_effects(held, sweep.config_axes, sweep.levels)}


def _round(value: float, digits: int = 4) -> float | str:
    return "" if value != value else round(value, digits)


def effect_rows(
    effects: Sequence[stats.Effect],
    fit: FactorialAnalysis | None,
    held_out: dict[tuple[str, str], stats.Effect] | None = None,
) -> list[dict[str, Any]]:
    """effects.csv: each main effect from the linear model (model_*), then its seed-level t-interval
    (test_error_change_mean, ci95_low, ci95_high, as before the model), and, where some result runs
    are on a selection seed, the t-interval without them (without_selection_seeds_*)."""
    rows = []
    for e in effects:
        row: dict[str, Any] = {"axis": e.axis, "change": f"{short(e.base)} -> {short(e.level)}"}
        if fit is not None:
            term = fit.term(e.axis)
            row |= {
                "model_effect": _round(term.effect),
                "model_ci95_low": _round(term.low),
                "model_ci95_high": _round(term.high),
                "model_se": _round(term.se),
                "model_p": significant(term.p),
                "model_p_holm": significant(term.p_holm),
                "model_mde80": _round(term.mde),
                "model_df": fit.residual_df,
            }
        row |= {
            "test_error_change_mean": _round(e.interval.mean) if e.interval.n else "",
            "ci95_low": _round(e.interval.low),
            "ci95_high": _round(e.interval.high),
            "seeds": e.interval.n,
            "pairs": e.pairs,
            "pairs_better": e.pairs_better,
            "pairs_left_out": e.left_out,
        }
        if held_out and (other := held_out.get((e.axis, e.swap))) is not None:
            row |= {
                "without_selection_seeds_mean": _round(other.interval.mean) if other.interval.n else "",
                "without_selection_seeds_ci95_low": _round(other.interval.low),
                "without_selection_seeds_ci95_high": _round(other.interval.high),
            }
        rows.append(row)
    return rows


def term_cell(term: Term) -> str:
    """'+0.12 [+0.05, +0.19]'."""
    return f"{term.effect:+.2f} [{term.low:+.2f}, {term.high:+.2f}]"


def _df(df: int) -> str:
    return f"{df} degree{'s' if df != 1 else ''} of freedom"


def _model_text(fit: FactorialAnalysis) -> str:
    seeds = len(fit.seed_effects)
    planned = fit.configurations * seeds
    missing = ""
    if fit.runs < planned:
        missing = (
            f"; {planned - fit.runs} of the {planned} runs are missing, so the estimates are least-squares fits "
            "and the terms the missing runs weighed on have wider intervals"
        )
    sentences = [
        "Change in test error (percentage points) when one axis goes from its first level to its second, all "
        "else equal; negative is better.",
        f"The estimate, its {fit.confidence:.0%} CI and p come from one linear model of all {fit.runs} runs "
        f"({fit.configurations} configurations x {seeds} seeds{missing}): each axis coded -1/+1, every "
        "interaction, and the seed as a block (`lenet_pl.sweeps.factorial`).",
        f"Its residual, sd {fit.residual_sd:.3f} points on {_df(fit.residual_df)}, is the seed-to-seed noise "
        "every effect is measured against; in a balanced design the estimate is the mean change over the matched "
        "pairs.",
    ]
    if len(fit.main_effects) > 1:
        sentences.append(f"Holm p: adjusted over the {len(fit.main_effects)} main effects.")
    sentences += [
        f"MDE: the smallest true effect the design finds with {fit.power:.0%} power at the "
        f"{1 - fit.confidence:.0%} level.",
        "Seed-level t: per seed the mean change over the matched configurations, then a t-interval over the seeds "
        "(seeds - 1 degrees of freedom), a check that does not assume the same noise in every configuration.",
    ]
    return " ".join(sentences)


def effects_section(
    sweep: Sweep,
    cells: stats.Cells,
    effects: Sequence[stats.Effect],
    fit: FactorialAnalysis | None,
    why_not: str,
    held_out: dict[tuple[str, str], stats.Effect],
) -> list[str]:
    shown = [e for e in effects if e.pairs]
    rows = []
    for e in shown:
        row = {
            "axis": e.axis,
            "change": f"{short(e.base)} -> {short(e.level)}",
            "mean": f"{e.interval.mean:+.2f}" if e.interval.n else "-",
            "ci": f"[{e.interval.low:+.2f}, {e.interval.high:+.2f}]" if e.interval.has_interval else "-",
            "seed_t": interval_cell(e.interval),
            "seeds": e.interval.n,
            "pairs": e.pairs,
            "pairs_better": e.pairs_better,
            "better_of": f"{e.pairs_better} of {e.pairs}",
            "held_out": interval_cell(held_out[(e.axis, e.swap)].interval) if (e.axis, e.swap) in held_out else "-",
        }
        if fit is not None:
            term = fit.term(e.axis)
            row |= {"model": term_cell(term), "p": p_text(term.p), "p_holm": p_text(term.p_holm)}
            row["mde"] = f"{term.mde:.2f}"
        rows.append(row)
    if fit is not None:
        columns = {
            "axis": "axis",
            "change": "swap",
            "model": "test error change, points [95% CI]",
            "p": "p",
            "p_holm": "Holm p",
            "mde": "MDE (80% power)",
            "seed_t": "seed-level t [95% CI]",
            "better_of": "pairs better",
        }
        text = _model_text(fit)
    else:
        columns = {
            "axis": "axis",
            "change": "swap",
            "mean": "test error change (points)",
            "ci": "95% CI",
            "seeds": "seeds",
            "pairs": "pairs",
            "pairs_better": "pairs better",
        }
        text = (
            "Change in test error (percentage points) when one axis is swapped from its first value, all else "
            "(including the seed) equal; negative is better. Per seed, the mean change over the matched "
            "configurations (the same ones for every seed); then the mean over seeds with its 95% t-interval "
            "(n - 1 degrees of freedom), which measures seed-to-seed noise (how an effect varies between "
            "configurations is in the interactions). " + why_not
        )
    if held_out:
        seeds = ", ".join(map(str, selection_seeds_in_results(sweep, cells)))
        columns["held_out"] = f"without seed {seeds} (seed-level t [95% CI])"
        text += (
            f" Seed {seeds} also chose each configuration's learning rate, so its run at the chosen rate is the "
            "best of several on validation, which may flatter it; the last column leaves it out."
        )
    left_out = sum(e.left_out for e in effects)
    if left_out:
        text += (
            f" {left_out} matched pairs are left out of the seed-level intervals so that every seed averages the "
            "same configurations (some configurations lack some seeds: a sweep cut short, or runs that failed)."
        )
    parts = [
        "## Main effects" + (" (at each configuration's chosen learning rate)" if sweep.tuned else ""),
        text,
        markdown_table(rows, columns) if rows else "No runs differ in one axis only.",
    ]
    unpaired = sorted({e.axis for e in effects if not e.pairs})
    if unpaired:
        parts.append(
            f"No two finished runs differ in {', '.join(unpaired)} alone (Optuna trials change several values "
            "at once; a sweep cut short may lack the pairs): compare those in the configurations table."
        )
    return parts


def _swap(fit: FactorialAnalysis, axis: str) -> str:
    low, high = fit.levels[axis]
    return f"{axis} {short(low)} -> {short(high)}"


def resolved_lines(fit: FactorialAnalysis) -> list[str]:
    """One plain sentence per main effect, resolved (its CI excludes 0) or not, and what the design can resolve."""
    alpha = 1 - fit.confidence
    family = len(fit.main_effects)
    lines = []
    for term in fit.main_effects:
        name = f"**{_swap(fit, term.axes[0])}**"
        if term.p < alpha:
            verb = "lowers" if term.effect < 0 else "raises"
            low, high = sorted((abs(term.low), abs(term.high)))
            line = f"{name} {verb} test error by {abs(term.effect):.2f} points [{low:.2f}, {high:.2f}]: resolved"
            if term.p_holm >= alpha:
                holm = p_text(term.p_holm)
                line += f", though not after Holm's correction over the {family} main effects (Holm p {holm})"
        else:
            line = (
                f"{name}: {term_cell(term).replace(' [', ' points [')}: not resolved; the design resolves effects of "
                f"{term.mde:.2f} points or more (MDE at {fit.power:.0%} power)"
            )
        lines.append(f"- {line}.")
    mdes = [term.mde for term in fit.main_effects]
    span = f"{min(mdes):.2f}" if max(mdes) - min(mdes) < 0.005 else f"{min(mdes):.2f}-{max(mdes):.2f}"
    lines.append(
        f"- The design resolves main effects of {span} points or more: the minimum detectable effect at "
        f"{fit.power:.0%} power and the {alpha:.0%} level (two-sided), from the residual sd "
        f"{fit.residual_sd:.3f} points on {_df(fit.residual_df)}. A smaller effect may be there "
        "and be missed; an interval that includes 0 is not evidence of no effect."
    )
    found = [t for t in fit.interactions if t.p_holm < alpha]
    if fit.interactions:
        lines.append(
            "- Two-way interactions resolved after Holm's correction: "
            + (", ".join(f"{t.name} {term_cell(t)} (Holm p {p_text(t.p_holm)})" for t in found) if found else "none")
            + "."
        )
    return [
        "## What the factorial resolves",
        f"Read off the linear model above: an effect is resolved when its {fit.confidence:.0%} CI excludes 0.",
        "\n".join(lines),
    ]


def interaction_rows(fit: FactorialAnalysis) -> list[dict[str, Any]]:
    """interactions.csv: every interaction of the model, two-way first; effect = (A|B2 - A|B1) / 2."""
    return [
        {
            "term": term.name,
            "order": term.order,
            "effect": _round(term.effect),
            "ci95_low": _round(term.low),
            "ci95_high": _round(term.high),
            "se": _round(term.se),
            "p": significant(term.p),
            "p_holm": significant(term.p_holm),
            "mde80": _round(term.mde),
            "df": fit.residual_df,
        }
        for term in fit.terms
        if term.order >= 2
    ]


def interaction_section(fit: FactorialAnalysis) -> tuple[list[str], list[dict[str, Any]]]:
    """The two-way interactions of the model in a table; higher orders one line each."""
    two_way = fit.interactions
    rows = [
        {
            "term": term.name,
            "effect": term_cell(term),
            "p": p_text(term.p),
            "p_holm": p_text(term.p_holm),
            "mde": f"{term.mde:.2f}",
        }
        for term in two_way
    ]
    text = (
        "From the same linear model. **Convention:** the interaction A x B is half the difference between A's "
        "effect at B's second level and at its first, (A|B2 - A|B1) / 2, in points of test error (the Yates "
        "convention, the model's 2 beta), and the same seen from B: +0.05 means that A's swap changes the error "
        "0.10 points more when B is at its second level than at its first. The conditional effects themselves "
        "(each swap at each level of another axis, seed-level intervals) are in `conditional_effects.csv` and "
        "the heat-map; their difference is twice the interaction here. Holm p: adjusted over the "
        f"{len(two_way)} two-way interactions, one family; each higher order is a family of its own."
    )
    parts = [
        "## Interactions",
        text,
        markdown_table(
            rows,
            {
                "term": "interaction",
                "effect": "effect, points [95% CI]",
                "p": "p",
                "p_holm": "Holm p (two-way)",
                "mde": "MDE (80% power)",
            },
        ),
    ]
    for order in range(3, fit.max_order + 1):
        terms = [t for t in fit.terms if t.order == order]
        listed = "; ".join(f"{t.name} {term_cell(t)}, Holm p {p_text(t.p_holm)}" for t in terms)
        parts.append(f"{ORDER_NAMES.get(order, f'{order}-way')} (Holm within the {len(terms)}): {listed}.")
    return parts, interaction_rows(fit)


def conditional_rows(rows: Sequence[stats.Interaction]) -> list[dict[str, Any]]:
    """conditional_effects.csv: each swap under each level of another axis, seed-level t-intervals."""
    return [
        {
            "swap": f"{r.swap.axis}: {short(r.swap.base)} -> {short(r.swap.level)}",
            "by": r.by,
            "under_base": f"{short(r.by_base)}: {interval_cell(r.under_base.interval)}",
            "under_level": f"{short(r.by_level)}: {interval_cell(r.under_level.interval)}",
            "difference": interval_cell(r.difference),
        }
        for r in rows
    ]


def conditional_section(rows: Sequence[stats.Interaction]) -> list[str]:
    """The seed-level view of the interactions, for sweeps without the linear model."""
    text = (
        "The effect of each swap (change in test error, points; mean [95% CI] over seeds) when another axis "
        "is held at each of its levels, and the difference between the two (the effect at the other level "
        "minus the effect at the first, paired by seed: twice the model's interaction, where there is a model). "
        "A difference whose interval excludes 0 suggests that the swap's effect depends on that axis. A and B's "
        "interaction appears twice (A under B, B under A), with the same difference when every run finished; "
        "with k axes there are k(k-1)/2 distinct ones, each at 95% without correction for testing several, so "
        "with 4 axes about 0.3 of them exclude 0 by chance alone."
    )
    columns = {
        "swap": "swap",
        "by": "under",
        "under_base": "effect at its first level",
        "under_level": "effect at the other level",
        "difference": "difference",
    }
    return ["## Two-way interactions", text, markdown_table(conditional_rows(rows), columns)]
