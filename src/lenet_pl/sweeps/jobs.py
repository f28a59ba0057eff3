"""A sweep's job dirs, read from their own files: what each job swapped, and how it ended.

The report, the tuned sweeper (`hydra_plugins.lenet_pl_sweeper`) and the progress line
(`lenet_pl.sweeps.progress`) all read jobs through this module, so they agree on what a job is;
`plan.py` says which jobs a sweep will launch and which learning rate each configuration trains with.

A job is known by its own files, never by its folder's name: `.hydra/overrides.yaml` (what it
swapped), `.hydra/hydra.yaml` (its number), `.hydra/config.yaml` (a `path_step` marker, for
path sweeps), `metrics.json` (final metrics, written only once it finished), `failure.json`
(written by a run that failed), `csv/metrics.csv` (validation accuracy per epoch) and
`error_per_pass.csv` (runs with the ErrorPerPass callback), each read
through `lenet_pl.runtime.outputs`' readers. A job with a damaged file (empty, cut short, altered) is kept
as a fact about that job: `Job.damaged` says which file and what is wrong, and the job counts as
unfinished, like one that failed, so the report lists it and a resumed sweep runs it again.
"""

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lenet_pl.per_pass import read_error_per_pass
from lenet_pl.runtime.errors import RunFileError, UserError
from lenet_pl.runtime.outputs import read_csv, read_json, read_metrics, read_yaml

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
    epochs after the checkpoint: the earlier epochs are taken from the dir it resumed, found by its
    path or, in a sweep dir that has since been copied or moved, by its name among the sweep's jobs
    (a job of the same configuration and seed).
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
    by_name = {job.path.name: job for job in jobs}  # a sweep dir copied or moved: the resumed dir is a sibling
    for job in sorted(jobs, key=lambda j: j.num):
        resumed = job.overrides.get("ckpt_path", "").strip("'\"")
        earlier = None
        if resumed:
            path = Path(resumed)
            earlier = by_dir.get(path.resolve())
            sibling = by_name.get(path.name)
            if earlier is None and sibling is not None and sibling.identity == job.identity:
                earlier = sibling  # the sweep dir was copied or moved (the original may still exist elsewhere)
        if earlier is not None and earlier is not job:
            job.val_by_epoch = earlier.val_by_epoch | job.val_by_epoch
    return sorted(jobs, key=lambda job: job.num)


def reruns(jobs: list[Job]) -> dict[Path, Job]:
    """Each job stopped midway, or failed for a reason that is not a result, that a resumed sweep ran again
    (from its checkpoint, or afresh) in a later dir: its dir -> that later job."""
    latest = {}
    for job in sorted(jobs, key=lambda j: j.num):
        if job.finished or job.failure:
            latest[job.identity] = job
    out = {}
    for job in jobs:
        if job.finished or (job.failure and job.failure_is_result) or not job.overrides_known:
            continue
        again = latest.get(job.identity)
        if again is not None and again.num > job.num:
            out[job.path] = again
    return out


def _hydra_mode(job_dir: Path) -> str | None:
    """RUN or MULTIRUN, as the job's .hydra/hydra.yaml records how it was started (None without the file)."""
    try:
        hydra_cfg = _read_optional(job_dir / ".hydra" / "hydra.yaml")
    except RunFileError:
        return None  # the job is marked damaged; its mode is not known
    return str(((hydra_cfg or {}).get("hydra") or {}).get("mode") or "") or None
