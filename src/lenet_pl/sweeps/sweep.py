"""A sweep as the report sees it: its axes, and the runs that stand for each configuration."""

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lenet_pl.sweeps import stats
from lenet_pl.sweeps.jobs import DEFAULT, NOT_PART_OF_THE_RUN, SEED, Job, load_jobs, reruns
from lenet_pl.sweeps.plan import Plan, Tuned, sweep_plan, tuned_configurations


def sweep_axes(jobs: list[dict[str, str]]) -> dict[str, list[str]]:
    """Override keys whose values differ between jobs -> their values in the order the sweep runs them."""
    axes: dict[str, list[str]] = {}
    for job in jobs:
        for key in job:
            if key not in NOT_PART_OF_THE_RUN:
                axes.setdefault(key, [])
    for key in axes:
        for job in jobs:
            value = job.get(key, DEFAULT)
            if value not in axes[key]:
                axes[key].append(value)
    return {key: values for key, values in axes.items() if len(values) > 1}


@dataclass
class Sweep:
    """A sweep as the report sees it: its configurations, and the runs that stand for each."""

    jobs: list[Job]
    plan: Plan
    axes: dict[str, list[str]]  # every axis, seed and tuned key included
    config_axes: list[str]  # the axes that make a configuration
    groups: dict[tuple[str, ...], list[Job]]  # configuration -> its runs (tuned: at the chosen value)
    tuned: list[Tuned]  # per configuration, in tuned sweeps

    @property
    def levels(self) -> dict[str, list[str]]:
        return {a: self.axes[a] for a in self.config_axes}

    def key(self, overrides: dict[str, str]) -> tuple[str, ...]:
        return tuple(overrides.get(a, DEFAULT) for a in self.config_axes)

    def cells(self, value: Callable[[Job], float | None]) -> stats.Cells:
        """configuration -> seed -> value(job) over the finished runs standing for it (None values left out)."""
        cells: dict[tuple[str, ...], dict[int, float]] = {}
        for config, runs in self.groups.items():
            for job in runs:
                v = value(job) if job.finished else None
                if v is not None and math.isfinite(v) and job.seed is not None:
                    cells.setdefault(config, {})[job.seed] = v
        return cells


def read_sweep(sweep_dir: Path) -> Sweep:
    """The job dirs and plan of `sweep_dir`, grouped by configuration (tuned sweeps: the runs at the chosen value)."""
    jobs = load_jobs(sweep_dir)
    plan = sweep_plan(sweep_dir)
    placed = [job for job in jobs if job.overrides_known]  # a job whose overrides.yaml is damaged: no configuration
    axes = sweep_axes(plan.grid + [job.overrides for job in placed])  # the plan names axes no job has reached yet
    tune_key = plan.tune.key if plan.tune else None
    config_axes = [a for a in axes if a not in (SEED, tune_key)]
    sweep = Sweep(jobs, plan, axes, config_axes, {}, [])
    if plan.tune is not None:
        sweep.tuned = tuned_configurations(jobs, plan)
        for t in sweep.tuned:
            sweep.groups.setdefault(sweep.key(t.config), []).extend(t.final)
    else:  # a job stopped midway and run again in a later dir is that later job (as `t.final` keeps the latest)
        again = reruns(jobs)
        for job in placed:
            if job.path not in again:
                sweep.groups.setdefault(sweep.key(job.overrides), []).append(job)
    return sweep


def path_data(sweep: Sweep) -> tuple[list[tuple[str, dict[int, float]]], list[tuple[str, dict[int, float]]]]:
    """The forward steps and the undone changes of a path sweep, each as (label, seed -> test error %)."""
    steps: dict[tuple[str, int, str], dict[int, float]] = {}
    for job in sweep.jobs:
        if job.path_step is None or job.test_error is None or job.seed is None:
            continue
        key = (
            str(job.path_step.get("view", "forward")),
            int(job.path_step.get("order", 0)),
            str(job.path_step["label"]),
        )
        steps.setdefault(key, {})[job.seed] = job.test_error
    forward = [(label, values) for (view, _, label), values in sorted(steps.items()) if view == "forward"]
    reverse = [(label, values) for (view, _, label), values in sorted(steps.items()) if view == "reverse"]
    return forward, reverse
