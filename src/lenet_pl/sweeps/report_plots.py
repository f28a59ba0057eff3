"""The report's plots (PNG, matplotlib's Agg backend): each takes what `lenet_pl.report` computed, draws, saves.

Lower test error is better everywhere: improvements are green, deteriorations red.
"""

import math
import statistics
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.colors import TwoSlopeNorm
from matplotlib.ticker import MaxNLocator

from lenet_pl.sweeps import stats
from lenet_pl.sweeps.factorial import FactorialAnalysis
from lenet_pl.sweeps.jobs import Job
from lenet_pl.sweeps.report_format import p_text

BETTER, WORSE, NEUTRAL = "tab:green", "tab:red", "tab:gray"
DPI = 100


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def _short(value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return str(value) if str(value).lstrip("-").isdigit() else f"{number:.3g}"


def _color(change: float) -> str:
    return BETTER if change < 0 else WORSE if change > 0 else NEUTRAL


def _label_bar(ax: Any, y: float, interval: stats.Interval) -> None:
    """'mean +- half-width' beside a horizontal bar, beyond the end of its interval, away from 0."""
    negative = interval.mean < 0
    end = (interval.low if negative else interval.high) if interval.has_interval else interval.mean
    ax.annotate(
        interval.text(signed=True),
        (end, y),
        xytext=(-6 if negative else 6, 0),
        textcoords="offset points",
        ha="right" if negative else "left",
        va="center",
        fontsize=8,
    )


def _errors(intervals: Sequence[stats.Interval]) -> list[list[float]] | None:
    """Matplotlib's asymmetric error bars; none where an interval is missing (one seed)."""
    if not any(i.has_interval for i in intervals):
        return None
    return [
        [i.mean - i.low if i.has_interval else 0.0 for i in intervals],
        [i.high - i.mean if i.has_interval else 0.0 for i in intervals],
    ]


def plot_val_acc(series: list[tuple[str, list[Job]]], legend_title: str, path: Path) -> None:
    """Validation accuracy per epoch, averaged over seeds, one line per configuration (all runs with a CSV)."""
    fig, panels = plt.subplots(1, 2, figsize=(14, 6), sharex=True)
    colors = plt.get_cmap("tab20")
    top = 0.0
    for i, (label, jobs) in enumerate(series):
        runs = [j for j in jobs if j.val_acc]
        n_epochs = max((len(j.val_acc) for j in runs), default=0)
        epochs = list(range(1, n_epochs + 1))
        mean = [100 * statistics.fmean(j.val_acc[e - 1] for j in runs if len(j.val_acc) >= e) for e in epochs]
        color = colors((2 * i) % 20 + (2 * i // 20) % 2)  # dark hues first, so neighbours in the ranking differ
        top = max([top, *mean])
        for panel in panels:
            panel.plot(epochs, mean, marker="o", markersize=3, color=color, label=label)
    # The zoom shows the 3 points below the first whole percentage a quarter point above the best curve
    # (MNIST: 97-100%, Fashion-MNIST: 89-92%), where the configurations differ.
    high = min(math.ceil(top + 0.25), 100) if top > 0 else 100
    panels[0].set_title("validation accuracy per epoch (mean over seeds)")
    panels[1].set_title(f"zoom: {high - 3}-{high}%")
    panels[1].set_ylim(high - 3, high)
    for panel in panels:
        panel.xaxis.set_major_locator(MaxNLocator(integer=True))
        panel.set_xlabel("epoch")
        panel.set_ylabel("validation accuracy (%)")
        panel.grid(alpha=0.3)
    if series:
        panels[1].legend(title=legend_title, fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
    _save(fig, path)


def plot_effects(effects: list[stats.Effect], path: Path, fit: FactorialAnalysis | None = None) -> None:
    """Horizontal bars: the change in test error per swap with its 95% CI; with `fit`, the linear model's
    estimate and CI, the seed-level t-interval below each bar in gray, and the minimum detectable effect."""
    shown = [e for e in effects if e.pairs]
    if fit is None:
        intervals = [e.interval for e in shown]
    else:  # the model's estimate and interval, drawn like the seed-level ones
        terms = [fit.term(e.axis) for e in shown]
        intervals = [stats.Interval(t.effect, t.low, t.high, fit.runs, fit.confidence) for t in terms]
    fig, ax = plt.subplots(figsize=(11 if fit else 9, max(3.2, 1.6 + (0.9 if fit else 0.6) * len(shown))))
    means = [i.mean for i in intervals]
    labels = [f"{e.axis}:\n{_short(e.base)} -> {_short(e.level)}" for e in shown]
    ys = list(range(len(shown)))
    ax.barh(ys, means, height=0.5 if fit else 0.8, xerr=_errors(intervals), color=[_color(m) for m in means], capsize=4)
    ax.set_yticks(ys)
    ax.set_yticklabels(labels)
    if fit is None:
        for y, interval in zip(ys, intervals, strict=True):
            _label_bar(ax, y, interval)
        ax.set_xlabel("change in test error (percentage points; < 0 is better): mean over seeds, 95% CI")
    else:
        column = ax.get_yaxis_transform()  # x in axes coordinates, y in data: a column right of the plot
        ax.text(1.02, -0.55, "linear model [95% CI], p", transform=column, fontsize=8, fontweight="bold", va="center")
        for y, term, e in zip(ys, terms, shown, strict=True):
            ax.text(
                1.02,
                y,
                f"{term.effect:+.2f} [{term.low:+.2f}, {term.high:+.2f}]\n"
                f"p {p_text(term.p)}, Holm {p_text(term.p_holm)}",
                transform=column,
                fontsize=8,
                va="center",
            )
            seed_t = e.interval
            if seed_t.has_interval:
                ax.errorbar(
                    [seed_t.mean],
                    [y + 0.38],
                    xerr=[[seed_t.mean - seed_t.low], [seed_t.high - seed_t.mean]],
                    fmt="o",
                    markersize=3,
                    color=NEUTRAL,
                    capsize=3,
                    linewidth=1,
                    label="seed-level t, 95% CI" if y == 0 else None,
                )
        mde = statistics.fmean(t.mde for t in terms) if terms else 0.0
        for side in (-1, 1):
            ax.axvline(
                side * mde, color=NEUTRAL, linestyle=":", linewidth=1, label="+- MDE (80% power)" if side > 0 else None
            )
        ax.set_xlabel(
            f"change in test error (percentage points; < 0 is better): linear model, 95% CI "
            f"({fit.residual_df} residual df)"
        )
        ax.legend(fontsize=8, loc="best")
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_ylim(max(len(shown), 1) - 0.4, -0.6)  # the first swap on top
    ax.use_sticky_edges = False  # room on both sides of 0 for the labels beside the bars
    ax.margins(x=0.35 if fit is None else 0.1)
    ax.set_title("main effect of swapping one axis" if shown else "no paired runs to compare")
    ax.grid(axis="x", alpha=0.3)
    _save(fig, path)


def _budget_tick(measure: str) -> str:
    """The x label of a budget: its epochs (validation error), or the test error of the best or last network."""
    if measure.startswith("val"):
        return measure.removeprefix("val error, epoch ")
    return "test\nlast" if "last epoch" in measure else "test\nbest"


def plot_budget(by_budget: dict[str, list[stats.Effect]], path: Path) -> None:
    """One panel per swap: its effect after each budget (validation error) and on the final test error."""
    measures = list(by_budget)
    swaps = [(e.axis, e.base, e.level) for e in next(iter(by_budget.values()), [])]
    n = max(len(swaps), 1)
    fig, panels = plt.subplots(1, n, figsize=(max(6.5, 3.4 * n + 0.8), 4.2), squeeze=False)
    for k, (axis, base, level) in enumerate(swaps):
        ax = panels[0][k]
        found = [next(e for e in by_budget[m] if (e.axis, e.base, e.level) == (axis, base, level)) for m in measures]
        xs = [i for i, e in enumerate(found) if e.interval.n]
        intervals = [found[i].interval for i in xs]
        errors = _errors(intervals)
        colors = [_color(iv.mean) for iv in intervals]
        ax.axhline(0, color="black", linewidth=0.8)
        budgets = [j for j, x in enumerate(xs) if measures[x].startswith("val")]  # a line through the budgets only
        ax.plot([xs[j] for j in budgets], [intervals[j].mean for j in budgets], color=NEUTRAL, linewidth=1, zorder=1)
        if len(budgets) < len(measures):
            ax.axvline(len(measures) - 1.5, color=NEUTRAL, linestyle=":", linewidth=1)
        for j, x in enumerate(xs):
            yerr = None if errors is None else [[errors[0][j]], [errors[1][j]]]
            ax.errorbar([x], [intervals[j].mean], yerr=yerr, fmt="o", color=colors[j], capsize=4, zorder=2)
        ax.set_xticks(range(len(measures)))
        ax.set_xticklabels([_budget_tick(m) for m in measures])
        ax.set_xlabel("epochs (validation error) | test", fontsize=8)
        ax.set_title(f"{axis}: {_short(base)} -> {_short(level)}", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.margins(x=0.15)
        if k == 0:
            ax.set_ylabel("change in error (points; < 0 is better)")
    fig.suptitle(
        "main effects against the training budget\n(validation error after 1, 5, 20 epochs; the final test error)"
    )
    _save(fig, path)


def plot_interactions(effects: list[stats.Effect], rows: list[stats.Interaction], path: Path) -> None:
    """Heat-map: each swap's effect overall and under each level of each other axis (mean, 95% CI half-width)."""
    swaps = [e for e in effects if e.pairs]
    columns: list[tuple[str, str]] = [("", "all")]  # (axis held, its level); ("", "all") is the main effect
    for r in rows:
        for column in ((r.by, r.by_base), (r.by, r.by_level)):
            if column not in columns:
                columns.append(column)
    under: dict[tuple[str, str, str, str, str], stats.Effect] = {}
    for r in rows:
        under[(r.swap.axis, r.swap.base, r.swap.level, r.by, r.by_base)] = r.under_base
        under[(r.swap.axis, r.swap.base, r.swap.level, r.by, r.by_level)] = r.under_level
    grid: list[list[stats.Effect | None]] = []
    for e in swaps:
        grid.append([e if by == "" else under.get((e.axis, e.base, e.level, by, level)) for by, level in columns])
    values = [[c.interval.mean if c is not None and c.interval.n else float("nan") for c in row] for row in grid]
    limit = max((abs(v) for row in values for v in row if v == v), default=1.0) or 1.0
    fig, ax = plt.subplots(figsize=(1.25 * len(columns) + 3.2, 0.9 * max(len(swaps), 1) + 2.0))
    cmap = plt.get_cmap("RdYlGn_r").with_extremes(bad="#dddddd")
    image = ax.imshow(values, cmap=cmap, norm=TwoSlopeNorm(vcenter=0, vmin=-limit, vmax=limit), aspect="auto")
    for i, row in enumerate(grid):
        for j, cell in enumerate(row):
            if cell is None or not cell.interval.n:
                ax.text(j, i, "-", ha="center", va="center", fontsize=8, color="#777777")
                continue
            text = f"{cell.interval.mean:+.2f}"
            if cell.interval.has_interval:
                text += f"\n+-{cell.interval.half_width:.2f}"
            dark = abs(cell.interval.mean) > 0.6 * limit  # the colormap's ends are dark: white text there
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if dark else "black")
    ax.set_xticks(range(len(columns)))
    # a dotted key (optimizer.weight_decay) breaks at its dots, so that neighbouring labels do not overlap
    ax.set_xticklabels(
        ["main effect" if by == "" else "=\n".join((by.replace(".", ".\n"), _short(level))) for by, level in columns],
        fontsize=8,
    )
    ax.set_yticks(range(len(swaps)))
    ax.set_yticklabels([f"{e.axis}:\n{_short(e.base)} -> {_short(e.level)}" for e in swaps], fontsize=9)
    for j in range(1, len(columns)):  # separate the held axes
        if columns[j][0] != columns[j - 1][0]:
            ax.axvline(j - 0.5, color="white", linewidth=3)
    fig.colorbar(image, ax=ax, label="change in test error (points; < 0 is better)", shrink=0.8)
    ax.set_title("effect of each swap (rows) with another axis held at one level (columns)\nmean over seeds, +- 95% CI")
    _save(fig, path)


def plot_selection(tuned: list[Any], tune: Any, config_axes: list[str], path: Path) -> None:
    """Validation score per candidate, one panel per candidate grid (optimizer), one line per configuration."""
    panels_by: dict[str, list[Any]] = {}
    for t in tuned:
        panels_by.setdefault(str(t.config.get(tune.by, "")) if tune.by else "", []).append(t)
    n = max(len(panels_by), 1)
    fig, panels = plt.subplots(1, n, figsize=(6 * n + 3, 5), squeeze=False)
    colors = plt.get_cmap("tab10")
    others = [a for a in config_axes if a != tune.by]
    screened_anywhere = False
    for k, (by_value, group) in enumerate(panels_by.items()):
        ax = panels[0][k]
        scored = [100 * v for t in group for v in t.selection.scores.values()]
        # A run stuck near chance (a dead ReLU net at 11%) would squash the others into one line:
        # the axis shows 3 points below the best, and anything lower sits on its floor as a "v".
        floor = max(min(scored, default=0.0), max(scored, default=0.0) - 3.0)
        clipped = False
        for i, t in enumerate(group):
            grid = tune.candidates(t.config)
            s = t.selection
            xs = [v for v in grid if v in s.scores]
            ys = [max(100 * s.scores[v], floor) for v in xs]
            label = " / ".join(_short(t.config.get(a, "")) for a in others) or by_value or "configuration"
            ax.plot(xs, ys, marker="o", color=colors(i % 10), label=label)
            below = [v for v in xs if 100 * s.scores[v] < floor]
            ax.plot(below, [floor] * len(below), marker="v", linestyle="", markersize=10, color=colors(i % 10))
            if s.chosen is not None:
                ax.plot([s.chosen], [100 * s.scores[s.chosen]], marker="*", markersize=16, color=colors(i % 10))
            # Screened out: scored on the first seed alone, which ruled it out: hollow, at that score.
            screened = {v: 100 * s.first_seed[v] for v in grid if v in s.screened_out and v in s.first_seed}
            screened_anywhere |= bool(screened)
            above = [v for v in screened if screened[v] >= floor]
            below = [v for v in screened if screened[v] < floor]
            hollow = {"markerfacecolor": "none", "linestyle": "", "color": colors(i % 10)}
            ax.plot(above, [screened[v] for v in above], marker="o", markersize=7, **hollow)
            ax.plot(below, [floor] * len(below), marker="v", markersize=10, **hollow)
            clipped |= bool(below)
            lost = [v for v in grid if v in s.lost and v not in screened]
            ax.plot(lost, [floor] * len(lost), marker="x", linestyle="", markersize=10, color=colors(i % 10))
        ax.set_xscale("log")
        clipped |= any(v < floor for v in scored)
        ax.set_xlabel(f"{tune.key} (log scale)" + (f"; v: below {floor:.1f}%" if clipped else ""))
        seeds = ", ".join(map(str, tune.seeds))
        ax.set_ylabel(f"{tune.metric} (%), " + (f"mean over seeds {seeds}" if len(tune.seeds) > 1 else f"seed {seeds}"))
        ax.set_title(f"{tune.by}={by_value}" if tune.by else "candidates")
        ax.grid(alpha=0.3)
    handles, labels = panels[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, title=" / ".join(others), fontsize=8, loc="center right")
    fig.suptitle("learning-rate selection on validation (one line per configuration)")
    key = "star: chosen; x: lost (failed or diverged)"
    if screened_anywhere:
        key += f"; hollow: scored on seed {tune.seeds[0]} alone, not among its best (screened out)"
    fig.text(0.5, 0.01, key, ha="center", fontsize=9)
    fig.tight_layout(rect=(0, 0.04, 1 - 2.6 / (6 * n + 3), 1))
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def plot_waterfall(steps: list[stats.PathStep], path: Path) -> None:
    """Test error along a path: the start as a bar, then each change as a floating bar from the level before it."""
    fig, ax = plt.subplots(figsize=(1.9 * len(steps) + 2.0, 6))
    top = max(s.level.high if s.level.has_interval else s.level.mean for s in steps)
    for k, step in enumerate(steps):
        level = step.level.mean
        if k == 0:
            ax.bar(k, level, color=NEUTRAL, width=0.6)
        else:
            before = steps[k - 1].level.mean
            ax.bar(k, level - before, bottom=before, color=BETTER if level < before else WORSE, width=0.6)
            ax.plot([k - 1 + 0.3, k - 0.3], [before, before], color="black", linewidth=0.8, linestyle=":")
        if step.level.has_interval:
            ax.errorbar(
                [k], [level], yerr=[[level - step.level.low], [step.level.high - level]], color="black", capsize=5
            )
        text = f"{level:.2f}%"
        if step.change is not None:
            change = step.change
            text = f"{change.mean:+.2f}" + (f"\n[{change.low:+.2f}, {change.high:+.2f}]" if change.has_interval else "")
            text += f"\n= {level:.2f}%"
        # above everything drawn at k: the level's CI, and a falling bar's top (the level before it)
        above = max(level, step.level.high if step.level.has_interval else level, steps[k - 1].level.mean if k else 0)
        ax.annotate(
            text,
            (k, above),
            xytext=(0, 6),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.set_xticks(range(len(steps)))
    ax.set_xticklabels([textwrap.fill(s.label, 18) for s in steps], fontsize=8)
    ax.set_ylim(0, top * 1.3)
    ax.set_ylabel("test error (%): mean over seeds, 95% CI")
    ax.set_title(
        "test error along the path, one change at a time\n(each bar: the change [95% CI] = the level after it)"
    )
    ax.grid(axis="y", alpha=0.3)
    _save(fig, path)


def plot_reverse(undone: list[tuple[str, stats.Interval]], path: Path, end_point: stats.Interval | None = None) -> None:
    """The end point with one change undone: the change in test error, with its 95% CI."""
    fig, ax = plt.subplots(figsize=(11, max(3.0, 1.6 + 0.6 * len(undone))))
    intervals = [iv for _, iv in undone]
    means = [iv.mean for iv in intervals]
    ax.barh(
        [textwrap.fill(label, 45) for label, _ in undone],
        means,
        xerr=_errors(intervals),
        color=[WORSE if m > 0 else BETTER for m in means],
        capsize=4,
    )
    for y, iv in enumerate(intervals):
        _label_bar(ax, y, iv)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.invert_yaxis()
    ax.use_sticky_edges = False
    ax.margins(x=0.3)
    ax.set_xlabel("change in test error vs the end point (points; > 0: undoing the change hurts), 95% CI")
    level = f" (test error {end_point.text()}%)" if end_point is not None else ""
    ax.set_title(f"the end point of the path{level}, with one change undone ({len(undone)} variants)")
    _save(fig, path)
