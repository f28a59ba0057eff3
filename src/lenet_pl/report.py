"""Summarise a sweep: one row per configuration, effects with confidence intervals, and plots.

python -m lenet_pl.report outputs/multirun/2026-11-25/11-43-32              # writes <sweep dir>/report/
python -m lenet_pl.report outputs/multirun/2026-11-25/11-43-32 --output docs/results

Reads each job's own files, never its logs or its folder's name (lenet_pl.sweeps.jobs). Jobs without
metrics.json are listed, not dropped: failed (with the error), or still running / killed, so the
report also works on a sweep that is running or was cut short.

The axes of a sweep are the override keys whose values differ between its jobs; `seed` repeats
a configuration. Three kinds of sweep get sections of their own:
- a tuned sweep (`sweep=fair`, `hydra/sweeper=tuned` with `tune`): the learning rate of each
  configuration is chosen on validation (`lenet_pl.sweeps.stats.select`, the same choice the sweeper
  made), and everything after that uses only the runs at the chosen rate;
- every sweep with two or more configurations: main effects with 95% confidence intervals, the
  effects after 1, 5 and 20 epochs (validation error from each run's CSV), and the two-way
  interactions. A two-level factorial on several seeds is fitted as one linear model
  (`lenet_pl.sweeps.report_effects`, `lenet_pl.sweeps.factorial`): its effects, interactions, p-values and
  minimum detectable effect come first, the seed-level t-intervals of `lenet_pl.sweeps.stats` beside them;
- a path sweep (`sweep=path`, `sweep=path_reverse`: presets with a `path_step`): a waterfall of
  test error along the path, and the modern end point with one change undone at a time.

Where the runs saved their per-digit test predictions, McNemar's paired test compares two
configurations' networks seed by seed on the same digits (`lenet_pl.sweeps.report_paired`).
"""

import dataclasses
import math
import statistics
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lenet_pl.per_pass import plot_error_per_pass
from lenet_pl.runtime.cli import ArgumentParser, command
from lenet_pl.runtime.errors import RunFileError
from lenet_pl.runtime.outputs import read_json
from lenet_pl.sweeps import report_effects, report_paired, report_plots, stats
from lenet_pl.sweeps.jobs import SEED, Job, reruns
from lenet_pl.sweeps.report_format import interval_cell, markdown_table, short, write_csv
from lenet_pl.sweeps.sweep import Sweep, path_data, read_sweep

BUDGETS = (1, 5, 20)  # epochs at which the effects are measured again


def _epochs_to(runs: list[Job], threshold: float) -> str:
    """Mean epochs to first reach `threshold` validation accuracy; '(k/n)' when only k of n runs got there."""
    reached = [next((i + 1 for i, acc in enumerate(r.val_acc) if acc >= threshold), None) for r in runs]
    hits = [e for e in reached if e is not None]
    if not hits:
        return "-"
    text = f"{statistics.fmean(hits):.1f}"
    return text if len(hits) == len(runs) else f"{text} ({len(hits)}/{len(runs)})"


def accuracy_thresholds(sweep: Sweep) -> tuple[float, float]:
    """The two validation accuracies whose first epoch the table reports: the whole percentage nearest
    the best configuration's mean best validation accuracy, and one point below it (MNIST: 98% and
    99%; Fashion-MNIST: 90% and 91%). Fixed levels would leave the columns empty on harder data."""
    means = []
    for group in sweep.groups.values():
        accuracies = [acc for j in group if (acc := j.metric("val/acc_best")) is not None]
        if accuracies:
            means.append(statistics.fmean(accuracies))
    top = min(math.floor(round(100 * max(means), 6) + 0.5), 100) if means else 99
    return (top - 1) / 100, top / 100


def _epochs_to_key(threshold: float) -> str:
    return f"epochs_to_{round(threshold * 100)}"


def configuration_rows(sweep: Sweep, thresholds: tuple[float, float]) -> list[dict[str, Any]]:
    """One row per configuration, best mean test accuracy first (tuned: at the chosen learning rate);
    `thresholds`: the validation accuracies whose first epoch it reports (`accuracy_thresholds`)."""
    chosen = {sweep.key(t.config): t.selection for t in sweep.tuned}
    rows = []
    for values, group in sweep.groups.items():
        scored = [(j, acc) for j in group if (acc := j.metric("test/acc")) is not None]  # finite test accuracy
        done = [j for j, _ in scored]
        row: dict[str, Any] = dict(zip(sweep.config_axes, values, strict=True))
        if values in chosen:
            selection = chosen[values]
            row["chosen_lr"] = selection.chosen if selection.chosen is not None else selection.status
            row["chosen_at_edge"] = selection.at_edge
        row["runs"] = f"{len(done)}/{len(group)}"
        if done:
            accuracies = [100 * acc for _, acc in scored]
            acc = stats.t_interval(accuracies)
            row.update(
                test_acc_mean=round(acc.mean, 3),
                test_acc_std=round(statistics.stdev(accuracies), 3) if len(done) > 1 else 0.0,
                test_error_mean=round(100 - acc.mean, 3),
                test_acc_ci95=round(acc.half_width, 3) if acc.has_interval else "",
                val_acc_best_mean=_mean_or_blank([j.metric("val/acc_best") for j in done]),
                test_error_last_epoch_mean=_mean_or_blank([_last_epoch_error(j) for j in done], scale=1),
                **{_epochs_to_key(t): _epochs_to(done, t) for t in thresholds},
                epochs=round(statistics.fmean(j.metrics["epochs"] for j in done), 1),
                # a run resumed from a checkpoint timed only what it trained after it
                fit_seconds_mean=_mean_or_blank(
                    [j.metrics["fit_seconds"] for j in done if "ckpt_path" not in j.overrides], scale=1, digits=1
                ),
            )
        rows.append(row)
    if sweep.tuned:  # configurations without a choice (all candidates failed, or pending) are rows too
        for t in sweep.tuned:
            if sweep.key(t.config) not in sweep.groups:
                rows.append(
                    dict(zip(sweep.config_axes, sweep.key(t.config), strict=True))
                    | {"chosen_lr": t.selection.status, "chosen_at_edge": False, "runs": "0/0"}
                )
    return sorted(rows, key=lambda r: -r.get("test_acc_mean", -1.0))


def _per_pass_curves(series: list[tuple[str, list[Job]]], most_runs: int = 10) -> dict[str, list[dict[str, float]]]:
    """The error-per-pass curves to draw: each run (label: configuration and seed) up to `most_runs` runs,
    else one curve per configuration, the mean over its runs of each pass they all reached."""
    groups = [(label, [j for j in jobs if j.per_pass and not j.damaged]) for label, jobs in series]
    groups = [(label, jobs) for label, jobs in groups if jobs]
    if sum(len(jobs) for _, jobs in groups) <= most_runs:
        return {
            f"{label}, seed {j.seed}" if j.seed is not None else f"{label}, {j.path.name}": j.per_pass
            for label, jobs in groups
            for j in jobs
        }
    curves = {}
    for label, jobs in groups:
        passes = sorted(set.intersection(*({r["pass"] for r in j.per_pass} for j in jobs)))
        by_pass = [{r["pass"]: r for r in j.per_pass} for j in jobs]
        curves[f"{label} (mean of {len(jobs)})"] = [
            {"pass": p, **{k: statistics.fmean(rows[p][k] for rows in by_pass) for k in ("train_error", "test_error")}}
            for p in passes
        ]
    return curves


def _mean_or_blank(values: list[float | None], scale: float = 100, digits: int = 3) -> float | str:
    known = [v for v in values if v is not None]
    return round(scale * statistics.fmean(known), digits) if known else ""


def _test_error(job: Job) -> float | None:
    return job.test_error


# The network after the last epoch, where `python -m lenet_pl.evaluate ckpt_path=<job>/checkpoints/last.ckpt`
# has tested it: a robustness check on the best-validation checkpoint, which 5,000 digits choose.
LAST_EPOCH = Path("evaluation") / "last" / "evaluation.json"


def _last_epoch_error(job: Job) -> float | None:
    path = job.path / LAST_EPOCH
    if not job.finished or not path.is_file():
        return None
    try:
        acc = read_json(path).get("test/acc")
    except RunFileError:
        return None  # a damaged evaluation leaves the column blank; the run's own result stands
    return 100 * (1 - acc) if isinstance(acc, int | float) and math.isfinite(acc) else None


def _val_error_at(epoch: int) -> Any:
    def value(job: Job) -> float | None:
        acc = job.val_by_epoch.get(epoch - 1)
        return None if acc is None else 100 * (1 - acc)

    return value


def budget_effects(sweep: Sweep, modelled: bool = False) -> tuple[dict[str, list[stats.Effect]], list[str]]:
    """Main effects on validation error after each budget the runs reached, and on the final test error.

    `modelled`: each interval from the factorial's linear model of that measure (as the main effects
    table has it), where the model fits; the seed-level t-interval otherwise. Also returns the
    measures the model was asked for and did not fit (e.g. a configuration none of whose runs was
    tested after its last epoch).
    """
    longest = max((len(j.val_by_epoch) for runs in sweep.groups.values() for j in runs if j.finished), default=0)
    measures = {f"val error, epoch {b}": _val_error_at(b) for b in BUDGETS if b <= longest}
    measures["test error (best checkpoint)"] = _test_error
    measures["test error (last epoch)"] = _last_epoch_error
    out, seed_level = {}, []
    for measure, value in measures.items():
        cells = sweep.cells(value)
        if not cells:
            continue  # no run's last.ckpt was tested
        effects = stats.main_effects(cells, *_axes(sweep))
        fit = report_effects.fit_model(sweep, cells)[0] if modelled else None
        if modelled and fit is None:
            seed_level.append(measure)
        if fit is not None:
            terms = {t.axes[0]: t for t in fit.main_effects}
            effects = [
                dataclasses.replace(e, interval=stats.Interval(t.effect, t.low, t.high, e.interval.n))
                if (t := terms.get(e.axis)) is not None
                else e
                for e in effects
            ]
        out[measure] = effects
    return out, seed_level


def _axes(sweep: Sweep) -> tuple[list[str], dict[str, list[str]]]:
    return sweep.config_axes, sweep.levels


# ---------------------------------------------------------------------------------------------
# Sections


def _status(sweep: Sweep) -> str:
    jobs, expected = sweep.jobs, sweep.plan.total
    unfinished = [j for j in jobs if not j.finished]
    damaged = [j for j in unfinished if j.damaged]
    failed = [j for j in unfinished if j.failure and not j.damaged]
    again = reruns(jobs)
    stopped = [j for j in unfinished if not (j.failure or j.damaged) and j.path in again]
    status = f"{len(jobs)} job dirs" + (f" of {expected} jobs in the sweep" if expected is not None else "")
    status += (
        f"; {len(jobs) - len(unfinished)} finished, {len(failed)} failed, "
        + (f"{len(damaged)} with a damaged file (listed below), " if damaged else "")
        + (f"{len(stopped)} stopped and run again in a later dir (listed below), " if stopped else "")
        + f"{len(unfinished) - len(failed) - len(damaged) - len(stopped)} running or stopped without a record."
    )
    if expected is not None and len(jobs) < expected:
        status += f" {expected - len(jobs)} jobs have not started."
    return status


def _seeds_phrase(sweep: Sweep) -> str:
    """The seeds, in order; a tuned sweep's selection seeds apart from the seeds its results come from."""
    seeds = sorted(sweep.axes.get(SEED, []), key=lambda s: (len(s), s))  # numeric order for whole numbers
    tune = sweep.plan.tune
    if tune is None or not (choosing := [s for s in seeds if s in {str(t) for t in tune.seeds}]):
        return f"; seeds: {', '.join(seeds)}" if seeds else ""
    results = ", ".join(s for s in seeds if s not in choosing) or "none yet"
    return f"; seeds: {results} (results), {', '.join(choosing)} (choose {tune.key} only)"


def selection_section(sweep: Sweep) -> tuple[list[str], list[dict[str, Any]]]:
    tune = sweep.plan.tune
    assert tune is not None
    first = tune.seeds[0]
    rows = []
    for t in sweep.tuned:
        s = t.selection
        candidates = []
        for value in tune.candidates(t.config):
            if value in s.scores:
                candidates.append(
                    f"{value:g}: {100 * s.scores[value]:.2f}" + (" (chosen)" if value == s.chosen else "")
                )
            elif tune.screened and value in s.lost and value in s.first_seed and value not in t.finalists:
                candidates.append(f"{value:g}: ({100 * s.first_seed[value]:.2f} on seed {first} alone)")  # screened out
            elif value in s.lost:
                candidates.append(f"{value:g}: lost ({textwrap.shorten(s.lost[value], 100)})")
            elif value in s.first_seed and len(tune.seeds) > 1:  # the later seeds have not reported yet
                candidates.append(f"{value:g}: {100 * s.first_seed[value]:.2f} on seed {first}, later seeds pending")
            else:
                candidates.append(f"{value:g}: pending")
        row = dict(zip(sweep.config_axes, map(short, sweep.key(t.config)), strict=True)) | {
            "candidates": "; ".join(candidates),
            "chosen": (f"{s.chosen:g}" + (" (edge)" if s.at_edge else "")) if s.chosen is not None else s.status,
        }
        if len(tune.seeds) > 1:
            row["first_seed_choice"] = f"{s.first_seed_choice:g}" if s.first_seed_choice is not None else ""
        rows.append(row)
    seeds = ", ".join(map(str, tune.seeds))
    text = (
        f"Per configuration, the mean `{tune.metric}` (%) of each candidate `{tune.key}` on seed(s) {seeds}; "
        "the highest wins, ties go to the smaller value, and a candidate whose run failed or diverged loses. "
        "The test set chooses nothing. `(edge)`: the choice is the smallest or largest of its grid, so the grid "
        "may not bracket the best value."
    )
    if tune.screened:
        text += (
            f" Every candidate ran on seed {first}; only its {tune.top} best there ran on seed(s) "
            f"{', '.join(map(str, tune.seeds[1:]))}, and the mean over all selection seeds chose among those "
            "(the others show their one score in brackets)."
        )
    decided = [t.selection for t in sweep.tuned if t.selection.chosen is not None]
    if len(tune.seeds) > 1 and decided:
        changed = sum(s.changed_by_more_seeds for s in decided)
        text += (
            f" Seed {first} alone would have chosen differently in **{changed} of {len(decided)}** configurations "
            f"(column `seed {first} alone`): a measure of how close the choice is."
        )
    columns = {a: a for a in sweep.config_axes} | {"candidates": f"{tune.key}: {tune.metric} %", "chosen": "chosen"}
    if len(tune.seeds) > 1:
        columns["first_seed_choice"] = f"seed {first} alone"
    return ["## Learning-rate selection (validation only)", text, markdown_table(rows, columns)], rows


def budget_section(
    by_budget: dict[str, list[stats.Effect]], modelled: bool = False, seed_level: Sequence[str] = ()
) -> tuple[list[str], list[dict[str, Any]]]:
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for measure, effects in by_budget.items():
        for e in effects:
            row = rows.setdefault((e.axis, e.swap), {"axis": e.axis, "change": f"{short(e.base)} -> {short(e.level)}"})
            row[measure] = interval_cell(e.interval)
    columns = {"axis": "axis", "change": "swap"} | {m: m for m in by_budget}
    text = (
        "Main effects again, on the validation error (points) each run logged after that many epochs, and on "
        "the final test error (of the best-validation checkpoint and, where `lenet_pl.evaluate` tested each "
        "run's `last.ckpt`, of the network after the last epoch); "
        + (
            "each with its 95% CI from the linear model of that measure, fitted as for the main effects above. "
            if modelled
            else "mean [95% CI] over seeds (the seed-level t-intervals). "
        )
        + "The runs are the same "
        "full-length runs (tuned sweeps: learning rates chosen for the full budget), looked at earlier, not runs "
        "tuned for each budget."
    )
    if seed_level:
        text += (
            f" The model does not fit {', '.join(f'*{m}*' for m in seed_level)} (a configuration has no run "
            "with that measure), so that column shows the seed-level t-intervals."
        )
    return ["## Effects against the training budget", text, markdown_table(list(rows.values()), columns)], list(
        rows.values()
    )


def _is_walk(forward: list[Any], reverse: list[Any]) -> bool:
    """A forward path to draw: more than its end point, which a reverse-only sweep (sweep=path_reverse) runs alone."""
    return len(forward) > 1 or (len(forward) == 1 and not reverse)


def path_section(
    forward: list[tuple[str, dict[int, float]]], reverse: list[tuple[str, dict[int, float]]]
) -> tuple[list[str], list[dict[str, Any]]]:
    parts: list[str] = []
    rows: list[dict[str, Any]] = []
    if _is_walk(forward, reverse):
        for k, step in enumerate(stats.path(forward)):
            rows.append(
                {
                    "view": "forward",
                    "step": k,
                    "label": step.label,
                    "test_error": step.level.text(),
                    "test_error_mean": round(step.level.mean, 4),
                    "change": interval_cell(step.change) if step.change else "",
                    "from_start": interval_cell(step.from_start) if step.from_start else "",
                    "seeds": step.level.n,
                }
            )
        parts += [
            "## The path, one change at a time",
            "Test error (%) of each step (mean +- 95% CI half-width over seeds), and its change from the step "
            "before and from the start (points, mean [95% CI], paired by seed).",
            markdown_table(
                rows,
                {
                    "step": "step",
                    "label": "change",
                    "test_error": "test error %",
                    "change": "change from previous step",
                    "from_start": "change from start",
                    "seeds": "seeds",
                },
            ),
        ]
    if reverse:
        reference = forward[-1] if forward else None
        if reference is None:
            parts.append("## The reverse view\nNo run of the end point (the last forward step) to compare with.")
        else:
            reverse_rows = [
                {
                    "view": "reverse",
                    "label": label,
                    "test_error": stats.t_interval(values[s] for s in sorted(values)).text(),
                    "change": interval_cell(change),
                    "seeds": change.n,
                }
                for (label, values), (_, change) in zip(reverse, stats.undone(reference[1], reverse), strict=True)
            ]
            rows += reverse_rows
            parts += [
                "## The reverse view: the end point with one change undone",
                f"Change in test error (points, mean [95% CI], paired by seed) against the end point "
                f"(the forward path's last step, {reference[0]}: test error "
                f"{stats.t_interval(reference[1][s] for s in sorted(reference[1])).text()}%): what each change "
                "still buys once all the others are made.",
                markdown_table(
                    reverse_rows,
                    {
                        "label": "variant",
                        "test_error": "test error %",
                        "change": "change vs end point",
                        "seeds": "seeds",
                    },
                ),
            ]
    return parts, rows


def unfinished_section(jobs: list[Job]) -> list[str]:
    unfinished = [j for j in jobs if j.test_error is None]
    parts = ["## Runs without results (no metrics.json, no finite test accuracy in it, or a damaged file)"]
    if not unfinished:
        return [*parts, "None."]
    run_again = reruns(jobs)
    rows = []
    for j in unfinished:
        if j.damaged:
            status = f"damaged, left out: {j.damaged}"
        elif j.finished:
            status = "finished without a finite test accuracy"
        else:
            status = f"failed: {j.failure}" if j.failure else "running, or stopped without a record"
        if (again := run_again.get(j.path)) is not None:
            status = f"{'stopped' if not (j.failure or j.damaged) else status}; run again in {again.path.name}"
        rows.append(
            {
                "job": j.path.name,
                "status": status,
                "epochs logged": len(j.val_acc),
                "last val acc": f"{100 * j.val_acc[-1]:.2f}" if j.val_acc else "-",
            }
        )
    columns = {"job": "job dir", "status": "status", "epochs logged": "epochs logged", "last val acc": "last val acc %"}
    return [*parts, markdown_table(rows, columns)]


def _paired(comparisons: list[report_paired.Comparison], out_dir: Path) -> list[str]:
    """The McNemar section, and mcnemar.csv where there are tables."""
    section, rows = report_paired.paired_section(comparisons)
    if rows:
        write_csv(rows, out_dir / "mcnemar.csv")
    return section


# ---------------------------------------------------------------------------------------------


def write_report(sweep_dir: Path, out_dir: Path) -> str:
    """Write report.md, the CSV tables and the PNG plots to `out_dir`; return the Markdown."""
    sweep = read_sweep(sweep_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    thresholds = accuracy_thresholds(sweep)
    rows = configuration_rows(sweep, thresholds)
    forward, reverse = path_data(sweep)
    is_path = bool(forward or reverse)
    cells = sweep.cells(_test_error)
    effects = stats.main_effects(cells, *_axes(sweep)) if not is_path else []
    fit, why_not = report_effects.fit_model(sweep, cells) if not is_path else (None, "")
    held_out = report_effects.held_out_effects(sweep, cells)
    write_csv(rows, out_dir / "configurations.csv")
    effect_rows = report_effects.effect_rows(effects, fit, held_out)
    write_csv(effect_rows or [{"axis": "", "change": "", "pairs": 0}], out_dir / "effects.csv")
    series = []
    for row in rows:  # best first, as in the table
        config = tuple(row[a] for a in sweep.config_axes)
        series.append((" / ".join(map(short, config)) or "(one configuration)", sweep.groups.get(config, [])))
    report_plots.plot_val_acc(series, " / ".join(sweep.config_axes), out_dir / "val_acc.png")
    plots = ["![validation accuracy per epoch](val_acc.png)"]
    per_pass = {j.path.name: j.per_pass for j in sweep.jobs if j.per_pass and not j.damaged}
    if per_pass:  # runs with the ErrorPerPass callback (experiment=lenet1998)
        plot_error_per_pass(_per_pass_curves(series), out_dir / "error_per_pass.png")

    display = []
    for row in rows:  # display forms of the CSV's numbers
        shown = dict(row) | {a: short(str(row[a])) for a in sweep.config_axes}
        if "test_acc_mean" in row:
            ci = f"{row['test_acc_ci95']:.2f}" if row["test_acc_ci95"] != "" else "n/a (1 seed)"
            shown["test_acc"] = f"{row['test_acc_mean']:.2f} +- {ci}"
            shown["test_error"] = f"{row['test_error_mean']:.2f}"
            last = row["test_error_last_epoch_mean"]
            shown["test_error_last"] = f"{last:.2f}" if last != "" else ""
        if "chosen_lr" in row:
            lr = row["chosen_lr"]
            shown["chosen_lr"] = (
                f"{lr:g}" + (" (edge)" if row["chosen_at_edge"] else "") if isinstance(lr, float) else lr
            )
        display.append(shown)
    columns = {a: a for a in sweep.config_axes}
    if sweep.tuned:
        columns["chosen_lr"] = f"chosen {sweep.plan.tune.key}"  # type: ignore[union-attr]
    columns |= {
        "runs": "runs done",
        "test_acc": "test acc % (mean +- 95% CI)",
        "test_error": "test error %",
        **(
            {"test_error_last": "test error %, last epoch"}
            if any(r.get("test_error_last_epoch_mean") for r in rows)
            else {}
        ),
        **{_epochs_to_key(t): f"epochs to {round(t * 100)}% val" for t in thresholds},
        "epochs": "epochs",
        "fit_seconds_mean": "fit s",
    }
    parts = [
        f"# Sweep report: {sweep_dir}",
        _status(sweep),
        f"Axes: {', '.join(f'{a} ({len(sweep.axes[a])})' for a in sweep.config_axes) or 'none'}"
        + _seeds_phrase(sweep)
        + ".",
    ]
    if sweep.tuned:
        section, selection_rows = selection_section(sweep)
        parts += section
        write_csv(selection_rows, out_dir / "selection.csv")
        report_plots.plot_selection(sweep.tuned, sweep.plan.tune, sweep.config_axes, out_dir / "lr_selection.png")
        plots.append("![validation accuracy per candidate learning rate](lr_selection.png)")
    parts += [
        "## Configurations" + (" at the chosen learning rate" if sweep.tuned else "") + " (best first)",
        markdown_table(display, columns),
    ]
    if is_path:
        section, path_rows = path_section(forward, reverse)
        parts += section
        write_csv(path_rows, out_dir / "path.csv")
        if _is_walk(forward, reverse):
            report_plots.plot_waterfall(stats.path(forward), out_dir / "path.png")
            plots.append("![test error along the path](path.png)")
        if forward and reverse:
            end = forward[-1][1]
            end_point = stats.t_interval(end[s] for s in sorted(end))
            report_plots.plot_reverse(stats.undone(end, reverse), out_dir / "path_reverse.png", end_point)
            plots.append("![the end point with one change undone](path_reverse.png)")
        parts += _paired(report_paired.path_comparisons(sweep), out_dir)
    else:
        parts += report_effects.effects_section(sweep, cells, effects, fit, why_not, held_out)
        report_plots.plot_effects(effects, out_dir / "effects.png", fit)
        plots.append("![main effects with 95% confidence intervals](effects.png)")
        if fit is not None:
            parts += report_effects.resolved_lines(fit)
        if any(e.pairs for e in effects):
            by_budget, seed_level = budget_effects(sweep, modelled=fit is not None)
            section, budget_rows = budget_section(by_budget, modelled=fit is not None, seed_level=seed_level)
            parts += section
            write_csv(budget_rows, out_dir / "budget.csv")
            report_plots.plot_budget(by_budget, out_dir / "budget.png")
            plots.append("![main effects against the training budget](budget.png)")
            if len(sweep.config_axes) >= 2:
                found = stats.interactions(cells, *_axes(sweep))
                if fit is not None:
                    section, interaction_rows = report_effects.interaction_section(fit)
                    parts += section
                    write_csv(interaction_rows, out_dir / "interactions.csv")
                else:
                    parts += report_effects.conditional_section(found)
                write_csv(report_effects.conditional_rows(found), out_dir / "conditional_effects.csv")
                report_plots.plot_interactions(effects, found, out_dir / "interactions.png")
                plots.append("![each swap under each level of another axis](interactions.png)")
        parts += _paired(report_paired.factorial_comparisons(sweep), out_dir)
    if per_pass:
        last = [rows_[-1] for rows_ in per_pass.values()]
        parts += [
            "## Error per pass (as the paper's Fig. 5: the test set monitored, never used to choose)",
            f"After the last pass, mean over {len(last)} runs: training error "
            f"{100 * statistics.fmean(r['train_error'] for r in last):.2f}%, test error "
            f"{100 * statistics.fmean(r['test_error'] for r in last):.2f}%.",
        ]
        plots.append("![training and test error per pass](error_per_pass.png)")
    parts += unfinished_section(sweep.jobs)
    parts += ["## Plots", *plots]
    markdown = "\n\n".join(parts) + "\n"
    (out_dir / "report.md").write_text(markdown)
    return markdown


def arguments() -> ArgumentParser:
    """The command's arguments; `--help` prints them with the module's docstring."""
    parser = ArgumentParser("report", __doc__)
    parser.add_argument("sweep_dir", type=Path, help="a multirun dir, e.g. outputs/multirun/<date>/<time>")
    parser.add_argument("--output", type=Path, help="the folder to write the report to (default: <sweep_dir>/report)")
    return parser


def run(args: list[str]) -> int:
    options = arguments().parse_args(args)
    output = options.output or options.sweep_dir / "report"
    print(write_report(options.sweep_dir, output))
    print(f"Report written to {output}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    return command(run, argv, lambda: arguments().format_help(), renamed=("--out",))


if __name__ == "__main__":
    sys.exit(main())
