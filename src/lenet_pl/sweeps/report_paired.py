"""The report's paired per-digit tests: two configurations' networks of the same seed on the same test digits.

Each run leaves `test_predictions.npz` (`lenet_pl.per_digit`). A factorial sweep compares its
classic corner (the first level of every axis) with its modern corner (the last level of every
axis), and its worst configuration with its best, both picked by validation accuracy; a path
sweep compares its first step with its last. Per seed, McNemar's exact test and Newcombe's
interval of the difference in error; over seeds, the t-interval of the per-seed differences
(`lenet_pl.sweeps.mcnemar.over_seeds`, whose docstring says why the seeds' digits are not pooled).
Runs of older versions have no predictions: the section then says so in one line. A damaged or
mismatched file is listed and its seed left out; it never stops the report.
"""

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from lenet_pl.per_digit import TEST_PREDICTIONS, RunPredictions, read_pair, read_test_predictions
from lenet_pl.runtime.errors import UserError
from lenet_pl.sweeps.jobs import Job
from lenet_pl.sweeps.mcnemar import over_seeds
from lenet_pl.sweeps.report_format import interval_cell, markdown_table, p_text, short, significant
from lenet_pl.sweeps.stats import Interval
from lenet_pl.sweeps.sweep import Sweep

SELECTION_METRIC = "val/acc_best"  # what picks the best and the worst configuration: never a test metric


@dataclass(frozen=True)
class Comparison:
    """Configuration A against configuration B, seed by seed: B's test error minus A's."""

    title: str
    label_a: str
    label_b: str
    runs_a: dict[int, Job]  # seed -> the run standing for A on that seed
    runs_b: dict[int, Job]
    note: str = ""  # how A and B were picked, where that needs saying


def _by_seed(jobs: Iterable[Job]) -> dict[int, Job]:
    """seed -> the finished run with a test error (the latest, where a resumed sweep left two)."""
    out: dict[int, Job] = {}
    for job in sorted(jobs, key=lambda j: j.num):
        if job.test_error is not None and job.seed is not None:
            out[job.seed] = job
    return out


def _label(config: Sequence[str]) -> str:
    return " / ".join(map(short, config))


def factorial_comparisons(sweep: Sweep) -> list[Comparison]:
    """Classic corner -> modern corner, and worst -> best configuration by mean validation accuracy."""
    axes, levels = sweep.config_axes, sweep.levels
    if not axes:
        return []
    classic = tuple(levels[a][0] for a in axes)
    modern = tuple(levels[a][-1] for a in axes)
    runs = {config: _by_seed(group) for config, group in sweep.groups.items()}
    comparisons = [
        Comparison(
            "classic corner -> modern corner",
            _label(classic),
            _label(modern),
            runs.get(classic, {}),
            runs.get(modern, {}),
        )
    ]
    scores = {}
    for config, by_seed in runs.items():
        known = [v for job in by_seed.values() if (v := job.metric(SELECTION_METRIC)) is not None]
        if known:
            scores[config] = statistics.fmean(known)
    if len(scores) >= 2:
        ranked = sorted(scores, key=lambda c: (scores[c], c))
        worst, best = ranked[0], ranked[-1]
        comparisons.append(
            Comparison(
                "worst -> best configuration by validation accuracy",
                _label(worst),
                _label(best),
                runs[worst],
                runs[best],
                f"mean {SELECTION_METRIC} of their result runs {100 * scores[worst]:.2f}% and "
                f"{100 * scores[best]:.2f}%, the lowest and highest of {len(scores)} configurations",
            )
        )
    return comparisons


def path_comparisons(sweep: Sweep) -> list[Comparison]:
    """The forward path's first step -> its last (as `lenet_pl.sweeps.sweep.path_data` orders the steps)."""
    steps: dict[tuple[int, str], list[Job]] = {}
    for job in sweep.jobs:
        if job.path_step is not None and str(job.path_step.get("view", "forward")) == "forward":
            key = (int(job.path_step.get("order", 0)), str(job.path_step["label"]))
            steps.setdefault(key, []).append(job)
    if len(steps) < 2:
        return []
    first, last = min(steps), max(steps)
    return [Comparison("first step -> last step", first[1], last[1], _by_seed(steps[first]), _by_seed(steps[last]))]


def _one_line(err: Exception) -> str:
    return " ".join(str(err).split())


def paired_section(comparisons: Sequence[Comparison]) -> tuple[list[str], list[dict[str, Any]]]:
    """The Markdown section and mcnemar.csv's rows (none when no run has predictions)."""
    heading = "## Paired per-digit tests (McNemar)"
    if not comparisons:
        return [], []
    involved = {job.path: job for c in comparisons for job in [*c.runs_a.values(), *c.runs_b.values()]}
    if not involved:
        return [heading, "Skipped: the compared configurations have no finished runs yet."], []
    with_file = [job for job in involved.values() if (job.path / TEST_PREDICTIONS).is_file()]
    if not with_file:
        return [
            heading,
            f"Skipped: none of the compared runs has `{TEST_PREDICTIONS}` (runs trained before the per-digit "
            "test predictions were saved have none), so there are no digits to pair.",
        ], []

    problems: dict[str, str] = {}  # what is left out -> why
    readable: dict[Any, RunPredictions] = {}
    for job in sorted(involved.values(), key=lambda j: j.num):
        if not (job.path / TEST_PREDICTIONS).is_file():
            problems[job.path.name] = (
                f"no {TEST_PREDICTIONS} (a run of an older version, or one whose test did not end)"
            )
            continue
        try:
            readable[job.path] = read_test_predictions(job.path)
        except UserError as err:
            problems[job.path.name] = f"damaged, left out: {_one_line(err)}"

    parts = [heading, _text(comparisons)]
    rows: list[dict[str, Any]] = []
    for c in comparisons:
        table, csv_rows = _compare(c, readable, problems)
        parts += table
        rows += csv_rows
    if problems:
        parts.append(
            "Prediction files left out (their seeds are missing from the comparisons above):\n"
            + "\n".join(f"- `{name}`: {why}" for name, why in problems.items())
        )
    return parts, rows


def _text(comparisons: Sequence[Comparison]) -> str:
    text = (
        "Two configurations' networks of the same seed, tested on the same digits: b counts the digits A gets "
        "right and B wrong, c those A gets wrong and B right, and McNemar's exact p is the binomial test of b "
        "against b + c. The difference is B's test error minus A's (points; < 0: B is better), with Newcombe's "
        "95% interval. A seed's p says whether these two trained networks differ on this test set, not whether "
        "the configurations do: another training seed moves a network by about as much. The last row of each "
        "table, the mean of the per-seed differences with its t-interval over seeds (seeds - 1 degrees of "
        "freedom), holds that seed-to-seed noise (`lenet_pl.sweeps.mcnemar`)."
    )
    if any(c.title.startswith("worst") for c in comparisons):
        text += (
            f" The best and the worst configuration are picked by the mean validation accuracy ({SELECTION_METRIC}) "
            "of their result runs, never by test error: the test set chooses nothing."
        )
    return text


def _compare(
    c: Comparison, readable: dict[Any, RunPredictions], problems: dict[str, str]
) -> tuple[list[str], list[dict[str, Any]]]:
    """One comparison's table and CSV rows; pairs that cannot be compared go to `problems`."""
    heading = f"### {c.title}"
    which = f"A = {c.label_a}, B = {c.label_b}" + (f" ({c.note})" if c.note else "")
    seeds = sorted(c.runs_a.keys() & c.runs_b.keys())
    pairs: dict[int, tuple[RunPredictions, RunPredictions]] = {}
    reference: tuple[int, str] | None = None  # over_seeds pairs every seed on one set of labels
    for seed in seeds:
        job_a, job_b = c.runs_a[seed], c.runs_b[seed]
        if job_a.path not in readable or job_b.path not in readable:
            continue
        try:
            pair = read_pair(job_a.path, job_b.path)
        except UserError as err:
            problems[f"{job_a.path.name} and {job_b.path.name}"] = _one_line(err)
            continue
        if reference is None:
            reference = (seed, pair[0].digest)
        elif pair[0].digest != reference[1]:
            problems[f"{job_a.path.name} and {job_b.path.name}"] = (
                f"tested on other digits than seed {reference[0]}'s runs (another digest), so not paired with them"
            )
            continue
        pairs[seed] = pair
    if not pairs:
        if not c.runs_a or not c.runs_b:
            why = f"{'A' if not c.runs_a else 'B'} has no finished run"
        elif not seeds:
            why = "no seed has runs of both"
        else:
            why = "no seed has both runs' predictions readable and on the same digits (listed below)"
        return [heading, f"{which}. Not compared: {why}."], []
    labels = next(iter(pairs.values()))[0].labels
    result = over_seeds(
        {s: a.predicted for s, (a, _) in pairs.items()}, {s: b.predicted for s, (_, b) in pairs.items()}, labels
    )
    rows, csv_rows = [], []
    for seed, m in result.per_seed.items():
        rows.append(
            {
                "seed": seed,
                "b": m.b,
                "c": m.c,
                "errors": f"{100 * m.error_a:.2f} -> {100 * m.error_b:.2f}",
                "difference": f"{100 * m.difference:+.2f} [{100 * m.low:+.2f}, {100 * m.high:+.2f}]",
                "p": p_text(m.p_value),
            }
        )
        csv_rows.append(
            {
                "comparison": c.title,
                "config_a": c.label_a,
                "config_b": c.label_b,
                "seed": seed,
                "run_a": c.runs_a[seed].path.name,
                "run_b": c.runs_b[seed].path.name,
                "digits": m.n,
                "both_right": m.both_right,
                "b": m.b,
                "c": m.c,
                "both_wrong": m.both_wrong,
                "error_a": round(100 * m.error_a, 4),
                "error_b": round(100 * m.error_b, 4),
                "difference": round(100 * m.difference, 4),
                "ci95_low": round(100 * m.low, 4),
                "ci95_high": round(100 * m.high, 4),
                "p_exact": significant(m.p_value),
            }
        )
    mean = result.difference
    points = Interval(100 * mean.mean, 100 * mean.low, 100 * mean.high, mean.n, mean.confidence)
    rows.append({"seed": f"mean over {mean.n} seed{'s' if mean.n != 1 else ''}", "difference": interval_cell(points)})
    csv_rows.append(
        {
            "comparison": c.title,
            "config_a": c.label_a,
            "config_b": c.label_b,
            "seed": "mean over seeds",
            "seeds": mean.n,
            "difference": round(points.mean, 4),
            "ci95_low": round(points.low, 4) if points.has_interval else "",
            "ci95_high": round(points.high, 4) if points.has_interval else "",
        }
    )
    digits = {m.n for m in result.per_seed.values()}
    columns = {
        "seed": "seed",
        "b": "b: A right, B wrong",
        "c": "c: A wrong, B right",
        "errors": "test error A -> B, %",
        "difference": "difference, points [95% CI]",
        "p": "exact p",
    }
    which += f"; {'/'.join(f'{n:,}' for n in sorted(digits))} test digits."
    return [heading, which, markdown_table(rows, columns)], csv_rows
