"""Summarise a sweep: one row per configuration, the main effect of each axis, and plots.

python -m lenet_pl.report outputs/multirun/2026-11-25/11-43-32              # writes <sweep dir>/report/
python -m lenet_pl.report outputs/multirun/2026-11-25/11-43-32 --out docs/results

Reads each job's own files, never its logs: `.hydra/overrides.yaml` (what the job swapped),
`metrics.json` (final metrics, written only once the run finished), `failure.json` (written by a
run that failed with a user error) and `csv/metrics.csv` (validation accuracy per epoch). Jobs
without metrics.json are listed, not dropped: failed (with the error), or still running / killed,
so the report also works on a sweep that is running or was cut short.

The axes of a sweep are the override keys whose values differ between its jobs; `seed` repeats
a configuration. The main effect of swapping one axis from its first value (the first one the
sweep ran, e.g. tanh) to another is the change in test error between runs that agree on every
other axis and on the seed, averaged over all such pairs; its spread is their standard deviation.
"""

import argparse
import csv
import json
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser

from lenet_pl.error_per_pass import plot_error_per_pass, read_error_per_pass
from lenet_pl.errors import UserError

SEED = "seed"
THRESHOLDS = (0.98, 0.99)  # validation accuracies whose first epoch the table reports


@dataclass
class Job:
    """One job dir of a sweep, as its own files describe it."""

    path: Path
    num: int
    overrides: dict[str, str]
    metrics: dict[str, Any] | None  # None until the run finished
    failure: str | None  # the error of a run that failed
    val_acc: list[float] = field(default_factory=list)  # per epoch, as far as it got

    @property
    def finished(self) -> bool:
        return self.metrics is not None

    @property
    def test_error(self) -> float:
        assert self.metrics is not None
        return 100 * (1 - self.metrics["test/acc"])


def _overrides_dict(items: list[str]) -> dict[str, str]:
    """['activation=relu', '+x=1'] -> {'activation': 'relu', 'x': '1'}"""
    overrides = {}
    for item in items:
        key, _, value = str(item).partition("=")
        overrides[key.lstrip("+~")] = value
    return overrides


def _read_overrides(path: Path) -> dict[str, str]:
    return _overrides_dict(yaml.safe_load(path.read_text()) or [])  # plain YAML: values may hold ${...}


def _read_val_acc(path: Path) -> list[float]:
    """Validation accuracy per epoch from Lightning's CSVLogger file (missing or partial: what is there)."""
    if not path.is_file():
        return []
    by_epoch: dict[int, float] = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            if row.get("val/acc") and row.get("epoch"):
                by_epoch[int(float(row["epoch"]))] = float(row["val/acc"])
    return [by_epoch[e] for e in sorted(by_epoch)]


def _read_failure(path: Path) -> str | None:
    if not path.is_file():
        return None
    failure = json.loads(path.read_text())
    return f"{failure.get('error', 'Error')}: {failure.get('message', '')}"


def load_jobs(sweep_dir: Path) -> list[Job]:
    """Every job dir of `sweep_dir` (a dir holding .hydra/overrides.yaml), in launch order."""
    if not sweep_dir.is_dir():
        raise UserError(f"{sweep_dir} is not a folder. Give a sweep dir, e.g. outputs/multirun/<date>/<time>.")
    jobs = []
    for overrides_file in sweep_dir.glob("*/.hydra/overrides.yaml"):
        job_dir = overrides_file.parent.parent
        num = job_dir.name.split("_", 1)[0]
        metrics_file = job_dir / "metrics.json"
        jobs.append(
            Job(
                path=job_dir,
                num=int(num) if num.isdigit() else len(jobs),
                overrides=_read_overrides(overrides_file),
                metrics=json.loads(metrics_file.read_text())["metrics"] if metrics_file.is_file() else None,
                failure=_read_failure(job_dir / "failure.json"),
                val_acc=_read_val_acc(job_dir / "csv" / "metrics.csv"),
            )
        )
    if not jobs:
        raise UserError(
            f"{sweep_dir} holds no job dirs (sub-folders with .hydra/overrides.yaml). Give the dir of a "
            "multirun, e.g. outputs/multirun/<date>/<time>, not one of its jobs or its parent."
        )
    single_runs = [job.path.name for job in jobs if _hydra_mode(job.path) == "RUN"]
    if single_runs and not (sweep_dir / "multirun.yaml").is_file():
        raise UserError(
            f"{sweep_dir} is not a sweep: it holds single runs ({', '.join(sorted(single_runs)[:3])}"
            f"{', ...' if len(single_runs) > 3 else ''}), each started without -m, not the jobs of one multirun, "
            "so there are no axes to compare. Give the dir of a multirun, e.g. outputs/multirun/<date>/<time> "
            "(`python -m lenet_pl.train -m ...` prints it), or compare single runs in TensorBoard."
        )
    return sorted(jobs, key=lambda job: job.num)


def _hydra_mode(job_dir: Path) -> str | None:
    """RUN or MULTIRUN, as the job's .hydra/hydra.yaml records how it was started (None without the file)."""
    path = job_dir / ".hydra" / "hydra.yaml"
    if not path.is_file():
        return None
    return str((yaml.safe_load(path.read_text()) or {}).get("hydra", {}).get("mode") or "") or None


def sweep_plan(sweep_dir: Path) -> tuple[int | None, list[dict[str, str]]]:
    """From the sweep's multirun.yaml: how many jobs it launches, and each job's overrides where a
    grid fixes them in advance (the basic sweeper; Optuna draws its trials as it goes).
    (None, []) when there is no multirun.yaml."""
    path = sweep_dir / "multirun.yaml"
    if not path.is_file():
        return None, []
    hydra = yaml.safe_load(path.read_text())["hydra"]
    sweeper = hydra["sweeper"]
    if "n_trials" in sweeper:  # Optuna
        return int(sweeper["n_trials"]), []
    params = [f"{key}={value}" for key, value in (sweeper.get("params") or {}).items()]
    overrides = OverridesParser.create().parse_overrides(params + list(hydra["overrides"]["task"]))
    grid = [_overrides_dict(job) for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]
    return len(grid), grid  # the command line replaced the config's lists, as in Hydra


def sweep_axes(jobs: list[dict[str, str]]) -> dict[str, list[str]]:
    """Override keys whose values differ between jobs -> their values in the order the sweep runs them."""
    axes: dict[str, list[str]] = {}
    for job in jobs:
        for key in job:
            axes.setdefault(key, [])
    for key in axes:
        for job in jobs:
            value = job.get(key, "(default)")
            if value not in axes[key]:
                axes[key].append(value)
    return {key: values for key, values in axes.items() if len(values) > 1}


def _short(value: str) -> str:
    """Optuna's long floats as 3 significant digits; names as they are."""
    try:
        number = float(value)
    except ValueError:
        return value
    return value if value.lstrip("-").isdigit() else f"{number:.3g}"


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _epochs_to(runs: list[Job], threshold: float) -> str:
    """Mean epochs to first reach `threshold` validation accuracy; '(k/n)' when only k of n runs got there."""
    reached = [next((i + 1 for i, acc in enumerate(r.val_acc) if acc >= threshold), None) for r in runs]
    hits = [e for e in reached if e is not None]
    if not hits:
        return "-"
    text = f"{statistics.fmean(hits):.1f}"
    return text if len(hits) == len(runs) else f"{text} ({len(hits)}/{len(runs)})"


def configuration_rows(jobs: list[Job], axes: dict[str, list[str]]) -> list[dict[str, Any]]:
    """One row per configuration (the non-seed axes), best mean test accuracy first."""
    config_axes = [a for a in axes if a != SEED]
    groups: dict[tuple[str, ...], list[Job]] = {}
    for job in jobs:
        groups.setdefault(tuple(job.overrides.get(a, "(default)") for a in config_axes), []).append(job)
    rows = []
    for values, group in groups.items():
        done = [j for j in group if j.finished]
        row: dict[str, Any] = dict(zip(config_axes, values, strict=True))
        row["runs"] = f"{len(done)}/{len(group)}"
        if done:
            acc_mean, acc_std = _mean_std([100 * j.metrics["test/acc"] for j in done])
            row.update(
                test_acc_mean=round(acc_mean, 3),
                test_acc_std=round(acc_std, 3),
                test_error_mean=round(100 - acc_mean, 3),
                # Runs with no validation split (data.val_size=0, the 1998 protocol) have no best validation accuracy.
                val_acc_best_mean=round(statistics.fmean(100 * j.metrics["val/acc_best"] for j in done), 3)
                if all("val/acc_best" in j.metrics for j in done)
                else None,
                **{f"epochs_to_{round(t * 100)}": _epochs_to(done, t) for t in THRESHOLDS},
                epochs=round(statistics.fmean(j.metrics["epochs"] for j in done), 1),
                fit_seconds_mean=round(statistics.fmean(j.metrics["fit_seconds"] for j in done), 1),
            )
        rows.append(row)
    return sorted(rows, key=lambda r: -r.get("test_acc_mean", -1.0))


def main_effects(jobs: list[Job], axes: dict[str, list[str]]) -> list[dict[str, Any]]:
    """For each axis and each of its values after the first: the paired change in test error (points)."""
    done = [j for j in jobs if j.finished]
    effects = []
    for axis, values in axes.items():
        if axis == SEED:
            continue
        others = [a for a in axes if a != axis]
        baseline = {tuple(j.overrides.get(a) for a in others): j for j in done if j.overrides.get(axis) == values[0]}
        for value in values[1:]:
            diffs = [
                j.test_error - baseline[key].test_error
                for j in done
                if j.overrides.get(axis) == value and (key := tuple(j.overrides.get(a) for a in others)) in baseline
            ]
            mean, std = _mean_std(diffs) if diffs else (float("nan"), float("nan"))
            effects.append(
                {
                    "axis": axis,
                    "change": f"{_short(values[0])} -> {_short(value)}",
                    "test_error_change_mean": round(mean, 4),
                    "test_error_change_std": round(std, 4),
                    "pairs": len(diffs),
                    "pairs_better": sum(d < 0 for d in diffs),
                }
            )
    return effects


def _label(row: dict[str, Any], config_axes: list[str]) -> str:
    return " / ".join(_short(str(row[a])) for a in config_axes) or "(one configuration)"


def plot_val_acc(jobs: list[Job], axes: dict[str, list[str]], rows: list[dict[str, Any]], path: Path) -> None:
    """Validation accuracy per epoch, averaged over seeds, one line per configuration (all runs with a CSV)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    config_axes = [a for a in axes if a != SEED]
    fig, panels = plt.subplots(1, 2, figsize=(14, 6), sharex=True)
    colors = plt.get_cmap("tab20")
    for i, row in enumerate(rows):
        runs = [j for j in jobs if all(j.overrides.get(a, "(default)") == row[a] for a in config_axes) and j.val_acc]
        n_epochs = max((len(j.val_acc) for j in runs), default=0)
        epochs = list(range(1, n_epochs + 1))
        mean = [100 * statistics.fmean(j.val_acc[e - 1] for j in runs if len(j.val_acc) >= e) for e in epochs]
        for panel in panels:
            color = colors((2 * i) % 20 + (2 * i // 20) % 2)  # dark hues first, so neighbours in the ranking differ
            panel.plot(epochs, mean, marker="o", markersize=3, color=color, label=_label(row, config_axes))
    panels[0].set_title("validation accuracy per epoch (mean over seeds)")
    panels[1].set_title("zoom: 97-100%")
    panels[1].set_ylim(97, 100)
    for panel in panels:
        panel.xaxis.set_major_locator(MaxNLocator(integer=True))
        panel.set_xlabel("epoch")
        panel.set_ylabel("validation accuracy (%)")
        panel.grid(alpha=0.3)
    panels[1].legend(title=" / ".join(config_axes), fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_effects(effects: list[dict[str, Any]], path: Path) -> None:
    """Horizontal bars: mean change in test error per swap, with its standard deviation over pairs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [e for e in effects if e["pairs"]]
    fig, ax = plt.subplots(figsize=(8, 1 + 0.6 * max(len(shown), 1)))
    labels = [f"{e['axis']}: {e['change']}" for e in shown]
    means = [e["test_error_change_mean"] for e in shown]
    ax.barh(
        labels,
        means,
        xerr=[e["test_error_change_std"] for e in shown],
        color=["tab:green" if m < 0 else "tab:red" for m in means],
        capsize=4,
    )
    ax.axvline(0, color="black", linewidth=0.8)
    ax.invert_yaxis()
    ax.set_xlabel("change in test error (percentage points; < 0 is better), mean +- std over paired runs")
    ax.set_title("main effect of swapping one axis" if shown else "no paired runs to compare")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _cell(value: Any) -> str:
    """A value as one Markdown table cell: an error message may hold a '|' or a line break."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def _markdown_table(rows: list[dict[str, Any]], columns: dict[str, str]) -> str:
    lines = ["| " + " | ".join(columns.values()) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(key, "")) for key in columns) + " |" for row in rows]
    return "\n".join(lines)


def _write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    fields = list(dict.fromkeys(key for row in rows for key in row))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def write_report(sweep_dir: Path, out_dir: Path) -> str:
    """Write report.md, configurations.csv, effects.csv, val_acc.png and effects.png; return the Markdown."""
    jobs = load_jobs(sweep_dir)
    expected, plan = sweep_plan(sweep_dir)
    axes = sweep_axes(plan + [job.overrides for job in jobs])  # the plan names axes no job has reached yet
    config_axes = [a for a in axes if a != SEED]
    rows = configuration_rows(jobs, axes)
    effects = main_effects(jobs, axes)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_csv(rows, out_dir / "configurations.csv")
    _write_csv(effects or [{"axis": "", "change": "", "pairs": 0}], out_dir / "effects.csv")
    plot_val_acc(jobs, axes, rows, out_dir / "val_acc.png")
    plot_effects(effects, out_dir / "effects.png")
    per_pass = {j.path.name: read_error_per_pass(j.path / "error_per_pass.csv") for j in jobs}
    per_pass = {name: rows_ for name, rows_ in per_pass.items() if rows_}
    if per_pass:  # runs with the ErrorPerPass callback (experiment=lenet1998)
        plot_error_per_pass(per_pass, out_dir / "error_per_pass.png")

    finished = [j for j in jobs if j.finished]
    unfinished = [j for j in jobs if not j.finished]
    status = f"{len(jobs)} job dirs" + (f" of {expected} jobs in the sweep" if expected is not None else "")
    failed = [j for j in unfinished if j.failure]
    status += (
        f"; {len(finished)} finished, {len(failed)} failed, "
        f"{len(unfinished) - len(failed)} running or stopped without a record."
    )
    if expected is not None and len(jobs) < expected:
        status += f" {expected - len(jobs)} jobs have not started."

    for row in rows:  # display forms of the CSV's numbers
        if "test_acc_mean" in row:
            row["test_acc"] = f"{row['test_acc_mean']:.2f} +- {row['test_acc_std']:.2f}"
            row["test_error"] = f"{row['test_error_mean']:.2f}"
        row.update({a: _short(str(row[a])) for a in config_axes})
    paired = [
        e | {"change_text": f"{e['test_error_change_mean']:+.2f}", "std_text": f"{e['test_error_change_std']:.2f}"}
        for e in effects
        if e["pairs"]
    ]
    unpaired = sorted({e["axis"] for e in effects if not e["pairs"]})
    columns = {a: a for a in config_axes} | {
        "runs": "runs done",
        "test_acc": "test acc % (mean +- std)",
        "test_error": "test error %",
        "epochs_to_98": "epochs to 98% val",
        "epochs_to_99": "epochs to 99% val",
        "epochs": "epochs",
        "fit_seconds_mean": "fit s",
    }
    effect_columns = {
        "axis": "axis",
        "change": "swap",
        "change_text": "test error change (points)",
        "std_text": "std",
        "pairs": "pairs",
        "pairs_better": "pairs better",
    }
    seeds = axes.get(SEED, [])
    parts = [
        f"# Sweep report: {sweep_dir}",
        status,
        f"Axes: {', '.join(f'{a} ({len(axes[a])})' for a in config_axes) or 'none'}"
        + (f"; seeds: {', '.join(seeds)}" if seeds else "")
        + ".",
        "## Configurations (best first)",
        _markdown_table(rows, columns),
        "## Main effects",
        "Change in test error when one axis is swapped from the first value to another, all else "
        "(including the seed) equal; negative is better. Mean and standard deviation over the pairs.",
        _markdown_table(paired, effect_columns) if paired else "No runs differ in one axis only.",
    ]
    if unpaired:
        parts.append(
            f"No two finished runs differ in {', '.join(unpaired)} alone (Optuna trials change several values "
            "at once; a sweep cut short may lack the pairs): compare those in the configurations table."
        )
    parts += [
        "## Runs without results (no metrics.json)",
    ]
    if unfinished:
        parts.append(
            _markdown_table(
                [
                    {
                        "job": j.path.name,
                        "status": f"failed: {j.failure}" if j.failure else "running, or stopped without a record",
                        "epochs logged": len(j.val_acc),
                        "last val acc": _last(j.val_acc),
                    }
                    for j in unfinished
                ],
                {
                    "job": "job dir",
                    "status": "status",
                    "epochs logged": "epochs logged",
                    "last val acc": "last val acc %",
                },
            )
        )
    else:
        parts.append("None.")
    parts += ["## Plots", "![validation accuracy per epoch](val_acc.png)", "![main effects](effects.png)"]
    if per_pass:
        last = [rows_[-1] for rows_ in per_pass.values()]
        parts += [
            "## Error per pass (as the paper's Fig. 5: the test set monitored, never used to choose)",
            f"After the last pass, mean over {len(last)} runs: training error "
            f"{100 * statistics.fmean(r['train_error'] for r in last):.2f}%, test error "
            f"{100 * statistics.fmean(r['test_error'] for r in last):.2f}%.",
            "![training and test error per pass](error_per_pass.png)",
        ]
    markdown = "\n\n".join(parts) + "\n"
    (out_dir / "report.md").write_text(markdown)
    return markdown


def _last(values: list[float]) -> str:
    return f"{100 * values[-1]:.2f}" if values else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lenet_pl.report", description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="a multirun dir, e.g. outputs/multirun/<date>/<time>")
    parser.add_argument("--out", type=Path, help="where to write the report (default: <sweep_dir>/report)")
    args = parser.parse_args(argv)
    try:
        markdown = write_report(args.sweep_dir, args.out or args.sweep_dir / "report")
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(markdown)
    print(f"Report written to {args.out or args.sweep_dir / 'report'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
