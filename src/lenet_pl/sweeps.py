"""A sweep's job dirs and its plan, read from its own files; the two stages of a tuned sweep; its configurations.

The report, the tuned sweeper (`hydra_plugins.lenet_pl_sweeper`) and the progress line
(`lenet_pl.progress`) all read a sweep through this module, so they agree on what a job is,
which jobs a sweep will launch, and which learning rate each configuration trains with.

A job is known by its own files, never by its folder's name: `.hydra/overrides.yaml` (what it
swapped), `.hydra/hydra.yaml` (its number), `.hydra/config.yaml` (a `path_step` marker, for
path sweeps), `metrics.json` (final metrics, written only once it finished), `failure.json`
(written by a run that failed), `csv/metrics.csv` (validation accuracy per epoch) and
`error_per_pass.csv` (runs with the ErrorPerPass callback), each read
through `lenet_pl.outputs`' readers. A job with a damaged file (empty, cut short, altered) is kept
as a fact about that job: `Job.damaged` says which file and what is wrong, and the job counts as
unfinished, like one that failed, so the report lists it and a resumed sweep runs it again.
"""

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.errors import HydraException

from lenet_pl import stats
from lenet_pl.errors import RunFileError, UserError
from lenet_pl.outputs import read_csv, read_json, read_metrics, read_yaml
from lenet_pl.per_pass import read_error_per_pass

SEED = "seed"
DEFAULT = "(default)"  # the value of an axis in a job that does not override it
# Overrides that say where or how fast a job runs, not what it runs: never an axis of a sweep, and
# ignored when a resumed sweep matches its planned jobs with the dirs an earlier attempt left.
NOT_PART_OF_THE_RUN = (
    "ckpt_path",
    "threads",
    "keep_freed_memory",
    "trainer.enable_progress_bar",
    "data.root",
    "data.verify",
    "paths.data_dir",
)

Identity = frozenset[tuple[str, str]]


@dataclass
class Job:
    """One job dir of a sweep, as its own files describe it."""

    path: Path
    num: int
    overrides: dict[str, str]
    metrics: dict[str, Any] | None  # None until the run finished
    failure: str | None  # the error of a run that failed
    failure_is_result: bool = True  # it diverged or its config is invalid: a rerun fails the same way
    val_by_epoch: dict[int, float] = field(default_factory=dict)  # epoch (0-based) -> validation accuracy
    path_step: dict[str, Any] | None = None  # the `path_step` of its config, in a path sweep
    hparams: dict[str, Any] = field(default_factory=dict)  # metrics.json's hparams, once finished
    per_pass: list[dict[str, float]] = field(default_factory=list)  # error_per_pass.csv (experiment=lenet1998)
    damaged: str | None = None  # a file of the job that is damaged, and how: the job has no result
    overrides_known: bool = True  # False when .hydra/overrides.yaml is damaged: no configuration to place it in

    @property
    def finished(self) -> bool:
        return self.metrics is not None

    @property
    def test_error(self) -> float | None:
        """Test error in %; None until finished, or when the run logged no finite test accuracy."""
        acc = self.metric("test/acc")
        return None if acc is None else 100 * (1 - acc)

    def metric(self, name: str) -> float | None:
        """A final metric of a finished run; None when absent or not finite.

        val/acc_best is the best per-epoch validation accuracy, so where metrics.json lacks it (a run
        resumed from a checkpoint written after its last epoch validates nothing more) it comes from
        the validation accuracy the run and the run it resumed logged.
        """
        if self.metrics is None:
            return None
        value = self.metrics.get(name)
        if value is None and name == "val/acc_best" and self.val_by_epoch:
            value = max(self.val_by_epoch.values())
        return float(value) if value is not None and math.isfinite(float(value)) else None

    @property
    def val_acc(self) -> list[float]:
        """Validation accuracy of epochs 1, 2, ... as far as they are known without a gap."""
        out = []
        while len(out) in self.val_by_epoch:
            out.append(self.val_by_epoch[len(out)])
        return out

    @property
    def seed(self) -> int | None:
        """The run's seed: its override, else (a sweep without a seed axis) the one metrics.json records."""
        value = self.overrides.get(SEED, self.hparams.get(SEED))
        return int(value) if value is not None and str(value).lstrip("-").isdigit() else None

    @property
    def identity(self) -> Identity:
        return identity(self.overrides)


def overrides_dict(items: Iterable[str]) -> dict[str, str]:
    """['activation=relu', '+x=1'] -> {'activation': 'relu', 'x': '1'}"""
    overrides = {}
    for item in items:
        key, _, value = str(item).partition("=")
        overrides[key.lstrip("+~")] = value
    return overrides


def _normal(value: str) -> str:
    """'0.0010' and '1e-3' are the same learning rate; names stay as they are."""
    try:
        return repr(float(value))
    except ValueError:
        return value.strip("'\"")


def identity(overrides: Mapping[str, str]) -> Identity:
    """What a job runs: its overrides without those in NOT_PART_OF_THE_RUN, numbers normalised."""
    return frozenset((k, _normal(v)) for k, v in overrides.items() if k not in NOT_PART_OF_THE_RUN)


def _read_optional(path: Path, expected: type = dict) -> Any:
    """A job's YAML file, None where the job has none (job dirs written by hand may lack hydra.yaml)."""
    return read_yaml(path, expected) if path.is_file() else None  # plain YAML: values may hold ${...}


def read_val_acc(path: Path) -> dict[int, float]:
    """Validation accuracy per epoch from Lightning's CSVLogger file ({} without one; a RunFileError if damaged)."""
    if not path.is_file():
        return {}
    # Only `step` is always there: a run that diverged before its first validation logged its learning
    # rate alone, and Lightning adds the epoch column with the first metric the module logs.
    rows = read_csv(path, columns=("step",), numbers=("epoch", "step", "val/acc"))
    if any(row["val/acc"] is not None and row["epoch"] is None for row in rows):
        raise RunFileError(path, "has a val/acc value without its epoch: it was altered")
    return {int(row["epoch"]): row["val/acc"] for row in rows if row["val/acc"] is not None}


def _read_failure(path: Path) -> tuple[str | None, bool]:
    """failure.json's error and whether it is the run's result (files written before that flag: yes)."""
    if not path.is_file():
        return None, True
    failure = read_json(path)
    return f"{failure.get('error', 'Error')}: {failure.get('message', '')}", bool(failure.get("is_result", True))


def _read_overrides(job_dir: Path, hydra_cfg: dict[str, Any] | None) -> dict[str, str]:
    """.hydra/overrides.yaml, checked against the same list in hydra.yaml when that has one: a list cut at
    a line break still parses, and would put the job in the wrong configuration."""
    path = job_dir / ".hydra" / "overrides.yaml"
    overrides = read_yaml(path, list)
    task = ((hydra_cfg or {}).get("hydra") or {}).get("overrides", {}).get("task")
    if isinstance(task, list) and [str(o) for o in task] != [str(o) for o in overrides]:
        raise RunFileError(
            path,
            f"lists {len(overrides)} overrides where hydra.yaml beside it lists {len(task)} "
            f"({' '.join(map(str, task))}): one of the two was cut short or altered",
        )
    return overrides_dict(overrides)


def _job_num(hydra_cfg: dict[str, Any] | None, job_dir: Path, fallback: int) -> int:
    num = ((hydra_cfg or {}).get("hydra") or {}).get("job", {}).get("num")
    if isinstance(num, int):
        return num
    prefix = job_dir.name.split("_", 1)[0]
    return int(prefix) if prefix.isdigit() else fallback


def read_job(job_dir: Path, fallback_num: int = 0) -> Job:
    """The job in `job_dir` as its files describe it; a damaged file makes it a job without a result (`damaged`)."""
    problems: list[str] = []

    def attempt(read: Callable[[], Any], default: Any) -> Any:
        try:
            return read()
        except RunFileError as err:
            problems.append(str(err))
            return default

    hydra_cfg = attempt(lambda: _read_optional(job_dir / ".hydra" / "hydra.yaml"), None)
    overrides = attempt(lambda: _read_overrides(job_dir, hydra_cfg), None)
    record = attempt(lambda: read_metrics(job_dir), None)
    config = attempt(lambda: _read_optional(job_dir / ".hydra" / "config.yaml"), None) or {}
    failure, failure_is_result = attempt(lambda: _read_failure(job_dir / "failure.json"), (None, True))
    val_by_epoch = attempt(lambda: read_val_acc(job_dir / "csv" / "metrics.csv"), {})
    per_pass = attempt(lambda: read_error_per_pass(job_dir / "error_per_pass.csv"), [])
    return Job(
        path=job_dir,
        num=_job_num(hydra_cfg, job_dir, fallback_num),
        overrides=overrides or {},
        metrics=None if problems or record is None else record["metrics"],
        hparams=record["hparams"] if record else {},
        failure=failure,
        failure_is_result=failure_is_result and not problems,
        val_by_epoch=val_by_epoch,
        per_pass=per_pass,
        path_step=config.get("path_step"),
        damaged=" ".join(problems) or None,
        overrides_known=overrides is not None,
    )


def job_dirs(sweep_dir: Path) -> list[Path]:
    """The dirs of `sweep_dir` holding .hydra/overrides.yaml, whatever they are named."""
    return sorted(p.parent.parent for p in sweep_dir.glob("*/.hydra/overrides.yaml"))


def load_jobs(sweep_dir: Path) -> list[Job]:
    """Every job dir of `sweep_dir`, in launch order.

    A job that resumed another (its overrides name the other's dir as ckpt_path) logged only the
    epochs after the checkpoint: the earlier epochs are taken from the dir it resumed.
    """
    if not sweep_dir.is_dir():
        raise UserError(f"{sweep_dir} is not a folder. Give a sweep dir, e.g. outputs/multirun/<date>/<time>.")
    jobs = [read_job(d, i) for i, d in enumerate(job_dirs(sweep_dir))]
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
    by_dir = {job.path.resolve(): job for job in jobs}
    for job in sorted(jobs, key=lambda j: j.num):
        resumed = job.overrides.get("ckpt_path", "").strip("'\"")
        earlier = by_dir.get(Path(resumed).resolve()) if resumed else None
        if earlier is not None and earlier is not job:
            job.val_by_epoch = earlier.val_by_epoch | job.val_by_epoch
    return sorted(jobs, key=lambda job: job.num)


def _hydra_mode(job_dir: Path) -> str | None:
    """RUN or MULTIRUN, as the job's .hydra/hydra.yaml records how it was started (None without the file)."""
    try:
        hydra_cfg = _read_optional(job_dir / ".hydra" / "hydra.yaml")
    except RunFileError:
        return None  # the job is marked damaged; its mode is not known
    return str(((hydra_cfg or {}).get("hydra") or {}).get("mode") or "") or None


# ---------------------------------------------------------------------------------------------
# The plan: what a sweep launches, from its multirun.yaml


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


# ---------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------
# A sweep as the report sees it


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
    else:
        for job in placed:
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
