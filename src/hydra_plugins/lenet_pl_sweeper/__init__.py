"""`hydra/sweeper=tuned`: a grid sweep that picks each configuration's learning rate on validation, and resumes.

Hydra finds sweepers only in the `hydra_plugins` package, so this class lives here; what it
launches comes from `lenet_pl.sweeps.plan`, which the report reads the sweep with too.

- Without `tune` it runs the grid of `params` and the command line, like Hydra's basic sweeper.
- With `tune` it runs in two stages. Stage 1: every configuration (a grid job without its seed)
  at every candidate of `tune.grid` on the `tune.seeds`. Then, per configuration, the candidate
  with the best mean `tune.metric` (a validation metric) wins: a candidate whose run failed or
  diverged loses; ties go to the smaller value (`lenet_pl.sweeps.stats.select`). The choice is written
  to <sweep dir>/selection.yaml. With `tune.top` and several seeds, stage 1 runs every candidate
  on the first seed, then only its `top` best on the other seeds, which choose among those by the
  mean over all selection seeds: a second opinion where it matters, for a fraction of the runs.
  Stage 2: each grid job at its configuration's chosen value (the selection seeds' runs at that
  value are reused, not run again).
- Run again into the same sweep dir (`hydra.sweep.dir=<it>`) it resumes: jobs with a result
  (metrics.json, or a failure.json that is one: the run diverged or its config is invalid) are
  kept, a job stopped midway or failed otherwise (a bug, a full disk) continues from its own
  `checkpoints/last.ckpt` in a new job dir, and the rest start afresh.
- A job that fails with a user error (lenet_pl.runtime.errors.UserError, e.g. TrainingDiverged) is a
  result, logged in one line; the sweep goes on and exits 0. Any other exception is raised once
  every job has returned, as Hydra's basic sweeper does.
"""

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


class TunedSweeper(Sweeper):
    def __init__(
        self,
        params: Mapping[str, str] | None = None,
        tune: Mapping[str, Any] | None = None,
        max_batch_size: int | None = None,
    ) -> None:
        super().__init__()
        self.params = dict(params or {})
        self.tune_cfg = OmegaConf.to_container(tune) if isinstance(tune, DictConfig) else tune
        self.max_batch_size = max_batch_size
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.launcher: Any = None
        self.next_job_idx = 0
        self.errors: list[BaseException] = []

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> list[Sequence[JobReturn]]:
        from lenet_pl.sweeps.jobs import SEED, identity, job_dirs, load_jobs, overrides_dict
        from lenet_pl.sweeps.plan import (
            Plan,
            Tune,
            final_jobs,
            grid_jobs,
            selection_jobs,
            tuned_configurations,
            tuned_total,
        )

        assert self.config is not None and self.hydra_context is not None
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        grid = [overrides_dict(job) for job in grid_jobs(self.params, arguments, self.hydra_context.config_loader)]
        earlier = load_jobs(sweep_dir) if job_dirs(sweep_dir) else []
        self.next_job_idx = max((job.num + 1 for job in earlier), default=0)
        if earlier:
            log.info("Resuming the sweep in %s: %d job dirs from earlier attempts", sweep_dir, len(earlier))

        if not self.tune_cfg:
            returns = [self._launch(sweep_dir, grid, "grid")]
        else:
            tune = Tune.from_config(self.tune_cfg)
            if not any(SEED in job for job in grid):
                log.info("No seed axis: the configurations are tuned and reported on the selection seeds alone.")
            stage1 = selection_jobs(grid, tune)
            plan = Plan(tuned_total(grid, tune), grid, tune)
            if not tune.screened:
                returns = [self._launch(sweep_dir, stage1, "stage 1 (learning-rate selection on validation)")]
            else:
                first = f"stage 1 (every candidate on selection seed {tune.seeds[0]})"
                returns = [self._launch(sweep_dir, stage1, first)]
                screened = tuned_configurations(load_jobs(sweep_dir), plan, complete=True)
                finalists = {identity(t.config): t.finalists for t in screened}
                later = ", ".join(map(str, tune.seeds[1:]))
                stage1b = selection_jobs(grid, tune, finalists)
                returns.append(self._launch(sweep_dir, stage1b, f"stage 1 (the {tune.top} best on seed {later})"))
            tuned = tuned_configurations(load_jobs(sweep_dir), plan, complete=True)
            self._write_selection(sweep_dir, tune, tuned)
            chosen = {identity(t.config): t.selection.chosen for t in tuned if t.selection.chosen is not None}
            stage2 = final_jobs(grid, tune, chosen)
            returns.append(self._launch(sweep_dir, stage2, "stage 2 (the other seeds at the chosen values)"))
        if self.errors:
            raise self.errors[0]
        return returns

    def _launch(self, sweep_dir: Path, jobs: list[dict[str, str]], what: str) -> Sequence[JobReturn]:
        """Launch the `jobs` that have no result in `sweep_dir` yet; a stopped one resumes from its last.ckpt."""
        from lenet_pl.runtime.errors import UserError
        from lenet_pl.sweeps.jobs import identity, job_dirs, load_jobs
        from lenet_pl.sweeps.plan import best_per_identity

        earlier = best_per_identity(load_jobs(sweep_dir)) if job_dirs(sweep_dir) else {}
        todo, kept, resumed = [], 0, 0
        for job in jobs:
            found = earlier.get(identity(job))
            if found is not None and (found.finished or (found.failure and found.failure_is_result)):
                kept += 1
                continue
            overrides = [f"{key}={value}" for key, value in job.items() if key != "ckpt_path"]
            if found is not None and (found.path / "checkpoints" / "last.ckpt").is_file():
                overrides.append(f"ckpt_path='{found.path.resolve()}'")  # quoted: job dir names hold = and ,
                resumed += 1
            todo.append(overrides)
        log.info(
            "%s: %d jobs, %d to launch%s%s",
            what,
            len(jobs),
            len(todo),
            f", {kept} kept from earlier attempts" if kept else "",
            f", {resumed} resumed from their last checkpoint" if resumed else "",
        )
        if not todo:
            return []
        self.validate_batch_is_legal(todo)
        returns: list[JobReturn] = []
        size = self.max_batch_size or len(todo)
        for start in range(0, len(todo), size):
            batch = todo[start : start + size]
            returns += self.launcher.launch(batch, initial_job_idx=self.next_job_idx)
            self.next_job_idx += len(batch)
        for ret in returns:
            if ret.status == JobStatus.FAILED:
                error = ret._return_value
                overrides = " ".join(o for o in ret.overrides if not o.startswith("ckpt_path="))
                first_line = (str(error).strip().splitlines() or [""])[0]
                log.warning("Job failed (%s): %s: %s", overrides, type(error).__name__, first_line)
                if not isinstance(error, UserError):
                    self.errors.append(error)
        return returns

    @staticmethod
    def _write_selection(sweep_dir: Path, tune: Any, tuned: list[Any]) -> None:
        """<sweep dir>/selection.yaml: per configuration, the candidates' validation scores and the choice."""
        import yaml

        varying = [
            k for k in dict.fromkeys(k for t in tuned for k in t.config) if len({t.config.get(k) for t in tuned}) > 1
        ]
        rows = []
        for t in tuned:
            s = t.selection
            config = {k: t.config.get(k) for k in varying}
            rows.append(
                {
                    "config": config,
                    "chosen": s.chosen,
                    "at_edge_of_grid": s.at_edge,
                    tune.metric: {repr(v): round(score, 6) for v, score in sorted(s.scores.items())},
                    "lost": {repr(v): reason for v, reason in sorted(s.lost.items())},
                    "first_seed_choice": s.first_seed_choice,
                }
            )
            log.info(
                "%s: %s=%s (%s)",
                " ".join(f"{k}={v}" for k, v in config.items()) or "the configuration",
                tune.key,
                s.chosen,
                ", ".join(f"{v:g}: {score:.4f}" for v, score in sorted(s.scores.items()))
                + "".join(f", {v:g}: lost" for v in sorted(s.lost)),
            )
        text = yaml.safe_dump({"key": tune.key, "metric": tune.metric, "seeds": list(tune.seeds), "choices": rows})
        (sweep_dir / "selection.yaml").write_text(
            "# Written by the tuned sweeper after stage 1; lenet_pl.report recomputes it from the job dirs.\n" + text
        )
