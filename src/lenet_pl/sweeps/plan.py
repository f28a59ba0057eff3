"""A sweep's plan, from its multirun.yaml, and the two stages of a tuned sweep.

What a sweep launches (`sweep_plan`: the basic sweeper's grid, Optuna's trial count, or a tuned
sweep's `Tune`), the jobs of each stage of a tuned sweep (`selection_jobs`, `final_jobs`), and
the learning rate each configuration trains with, chosen on validation (`tuned_configurations`,
with `stats.select`'s rule). The tuned sweeper, the report and the progress line all count and
choose through this module.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.errors import HydraException

from lenet_pl.runtime.errors import RunFileError, UserError
from lenet_pl.runtime.outputs import read_yaml
from lenet_pl.sweeps import stats
from lenet_pl.sweeps.jobs import SEED, Identity, Job, identity, overrides_dict


@dataclass(frozen=True)
class Tune:
    """A learning rate (or any value) chosen per configuration on validation: `hydra.sweeper.tune`."""

    key: str  # the override it sets, e.g. optimizer.lr
    grid: Mapping[str, Sequence[float]] | Sequence[float]  # candidates, per value of `by` or for all
    seeds: tuple[int, ...]  # the seeds that choose
    by: str | None = None  # the override whose value picks the candidates, e.g. optimizer
    metric: str = "val/acc_best"  # maximised; a validation metric (the test set never chooses)
    top: int | None = None  # the seeds after the first run only the `top` best candidates of the first

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> "Tune":
        grid = cfg["grid"]
        if isinstance(grid, Mapping):
            grid = {str(k): [float(v) for v in values] for k, values in grid.items()}
        else:
            grid = [float(v) for v in grid]
        metric = str(cfg.get("metric") or "val/acc_best")
        if metric.startswith("test"):
            raise UserError(f"hydra.sweeper.tune.metric={metric}: choose on a validation metric, never on test.")
        if not metric.startswith("val/") or any(word in metric for word in ("loss", "err")):
            raise UserError(
                f"hydra.sweeper.tune.metric={metric}: the sweeper maximises this metric, so it must be a "
                "validation score where higher is better, e.g. val/acc_best or val/acc (not a loss or an error, "
                "and never a test metric)."
            )
        seeds = tuple(int(s) for s in cfg["seeds"])
        top = cfg.get("top")
        if top is not None and (isinstance(top, bool) or not isinstance(top, int) or top < 1):
            raise UserError(
                f"hydra.sweeper.tune.top={top!r}: give how many of the best candidates on the first selection "
                "seed run on the other selection seeds, a whole number of at least 1 (or null: all of them)."
            )
        if not seeds or len(set(seeds)) != len(seeds):
            raise UserError(f"hydra.sweeper.tune.seeds={list(seeds)}: give one or more different seeds that choose.")
        return cls(str(cfg["key"]), grid, seeds, cfg.get("by"), metric, top)

    @property
    def screened(self) -> bool:
        """The first selection seed screens the candidates; the others run the `top` best only."""
        return self.top is not None and len(self.seeds) > 1

    def candidates(self, config: Mapping[str, str]) -> list[float]:
        if not isinstance(self.grid, Mapping):
            return list(self.grid)
        choice = config.get(self.by or "")
        if choice not in self.grid:
            raise UserError(
                f"hydra.sweeper.tune.grid has no candidates for {self.by}={choice}: give a list for each of "
                f"{', '.join(self.grid)} (or one list for every configuration)."
            )
        return list(self.grid[choice])


@dataclass(frozen=True)
class Plan:
    """How many jobs a sweep launches, and the grid it was asked for (before any tuning)."""

    total: int | None  # None: unknown (no multirun.yaml)
    grid: list[dict[str, str]]  # each grid job's overrides, where a grid fixes them in advance
    tune: Tune | None = None


def grid_jobs(params: Mapping[str, Any] | None, arguments: Sequence[str], config_loader: Any = None) -> list[list[str]]:
    """The jobs Hydra's basic sweeper makes of `params` and the command line (which replaces their lists).

    `config_loader` (a sweeper's) lets sweeps over config groups, e.g. `activation=glob(*)`, list the group.
    """
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params_conf = [f"{key}={value}" for key, value in (params or {}).items()]
    overrides = OverridesParser.create(config_loader).parse_overrides(params_conf + list(arguments))
    return [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]


def configurations(grid: Sequence[Mapping[str, str]]) -> list[dict[str, str]]:
    """The grid's configurations: its jobs without the seed, each once, in launch order."""
    seen: dict[Identity, dict[str, str]] = {}
    for job in grid:
        config = {k: v for k, v in job.items() if k != SEED}
        seen.setdefault(identity(config), config)
    return list(seen.values())


def selection_jobs(
    grid: Sequence[Mapping[str, str]], tune: Tune, finalists: Mapping[Identity, Sequence[float]] | None = None
) -> list[dict[str, str]]:
    """Stage 1: every configuration at every candidate, on each selection seed.

    A screened tune (`tune.top`) runs stage 1 in two launches: without `finalists`, every candidate on the
    first seed; with them (configuration -> the candidates that passed the screen), those on the other seeds.
    """
    if not tune.screened:
        return [
            {**config, tune.key: repr(value), SEED: str(seed)}
            for config in configurations(grid)
            for value in tune.candidates(config)
            for seed in tune.seeds
        ]
    if finalists is None:
        return [
            {**config, tune.key: repr(value), SEED: str(tune.seeds[0])}
            for config in configurations(grid)
            for value in tune.candidates(config)
        ]
    return [
        {**config, tune.key: repr(value), SEED: str(seed)}
        for config in configurations(grid)
        for value in finalists.get(identity(config), ())
        for seed in tune.seeds[1:]
    ]


def final_jobs(grid: Sequence[Mapping[str, str]], tune: Tune, chosen: Mapping[Identity, float]) -> list[dict[str, str]]:
    """Stage 2: each grid job (configuration and seed) at its configuration's chosen value.

    Seeds that chose ran at every candidate in stage 1 already; configurations without a choice
    (every candidate failed) have no final runs.
    """
    jobs = []
    for job in grid:
        config = {k: v for k, v in job.items() if k != SEED}
        value = chosen.get(identity(config))
        if value is not None and int(job.get(SEED, tune.seeds[0])) not in tune.seeds:
            jobs.append({**config, tune.key: repr(value), SEED: job[SEED]})
    return jobs


def tuned_total(grid: Sequence[Mapping[str, str]], tune: Tune) -> int:
    """Jobs of a tuned sweep when every configuration gets a choice (and, screened, `top` finalists)."""
    finals = sum(int(job.get(SEED, tune.seeds[0])) not in tune.seeds for job in grid)
    if not tune.screened:
        return len(selection_jobs(grid, tune)) + finals
    assert tune.top is not None
    later = sum(min(tune.top, len(tune.candidates(c))) for c in configurations(grid)) * (len(tune.seeds) - 1)
    return len(selection_jobs(grid, tune)) + later + finals


def sweep_plan(sweep_dir: Path) -> Plan:
    """The plan in `sweep_dir`/multirun.yaml: the basic sweeper's grid, Optuna's trial count, or a tuned sweep."""
    path = sweep_dir / "multirun.yaml"
    if not path.is_file():
        return Plan(None, [])
    hydra = read_yaml(path).get("hydra")
    sweeper = hydra.get("sweeper") if isinstance(hydra, dict) else None
    task = (hydra.get("overrides") or {}).get("task") if isinstance(hydra, dict) else None
    if not isinstance(sweeper, dict) or not isinstance(task, list):
        raise RunFileError(path, "has no hydra.sweeper or hydra.overrides.task, which Hydra writes when a sweep starts")
    if "n_trials" in sweeper:  # Optuna draws its trials as it goes
        return Plan(int(sweeper["n_trials"]), [])
    try:
        grid = [overrides_dict(job) for job in grid_jobs(sweeper.get("params"), task)]
    except HydraException as err:
        raise RunFileError(path, f"holds overrides Hydra cannot read ({' '.join(str(err).split())})") from err
    if sweeper.get("tune"):
        tune = Tune.from_config(sweeper["tune"])
        return Plan(tuned_total(grid, tune), grid, tune)
    return Plan(len(grid), grid)


# The learning rate of each configuration of a tuned sweep


@dataclass
class Tuned:
    """One configuration of a tuned sweep: its candidates' runs, the choice, and its runs at the choice."""

    config: dict[str, str]
    selection: stats.Selection
    trials: list[Job]  # the selection seeds' runs, every candidate
    final: list[Job]  # every run at the chosen value (the selection seeds' included), one per seed
    top: int | None = None  # a screened tune's number of finalists

    @property
    def finalists(self) -> list[float]:
        """The candidates the later selection seeds run: the `top` best on the first (all, unscreened)."""
        return stats.finalists(self.selection.first_seed, self.top)


def best_per_identity(jobs: Iterable[Job]) -> dict[Identity, Job]:
    """One job per identity: a finished one, else a failed one, else the latest (a sweep resumed in place)."""
    best: dict[Identity, Job] = {}
    rank = lambda job: (job.finished, job.failure is not None, job.num)  # noqa: E731
    for job in jobs:
        key = job.identity
        if key not in best or rank(job) > rank(best[key]):
            best[key] = job
    return best


def _no_score(job: Job, metric: str) -> str | None:
    """Why a finished run cannot be scored (it logged no finite `metric`), so its candidate loses."""
    if job.finished and job.metric(metric) is None:
        return f"finished without a finite {metric} (no validation set, or a NaN)"
    return None


def tuned_configurations(jobs: Sequence[Job], plan: Plan, complete: bool = False) -> list[Tuned]:
    """Selection on validation for each configuration of `plan`'s grid, and its runs at the chosen value.

    `complete`: every stage-1 job has returned, so a candidate without a result lost (the sweeper
    after stage 1); otherwise such a candidate is pending (the report of a running sweep).
    """
    assert plan.tune is not None
    tune = plan.tune
    latest = best_per_identity(jobs)
    out = []
    for config in configurations(plan.grid):
        trials = []
        for value in tune.candidates(config):
            for seed in tune.seeds:
                job = latest.get(identity({**config, tune.key: repr(value), SEED: str(seed)}))
                if job is not None:
                    trials.append(job)
        selection = stats.select(
            [
                stats.Trial(
                    float(job.overrides[tune.key]),
                    int(job.overrides[SEED]),
                    job.metric(tune.metric),
                    job.failure or job.damaged or _no_score(job, tune.metric),
                )
                for job in trials
            ],
            tune.candidates(config),
            tune.seeds,
            complete=complete,
            top=tune.top,
        )
        final = []
        if selection.chosen is not None:
            # the grid's seeds (those among the selection seeds reuse their stage-1 run); without a seed axis, these
            grid_seeds = [int(job[SEED]) for job in plan.grid if SEED in job]
            for seed in dict.fromkeys(grid_seeds or tune.seeds):
                job = latest.get(identity({**config, tune.key: repr(selection.chosen), SEED: str(seed)}))
                if job is not None:
                    final.append(job)
        out.append(Tuned(config, selection, trials, final, tune.top if tune.screened else None))
    return out
