"""The fair factorial and the 1998 -> modern path: configs, the report on hand-made sweeps, one tiny real sweep."""

import csv
import functools
import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import matplotlib.figure
import matplotlib.image
import numpy as np
import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import OmegaConf
from scipy import stats as scipy_stats

from conftest import run_in_process, write_dataset
from lenet_pl import CONFIG_DIR
from lenet_pl.divergence import TrainingDiverged
from lenet_pl.per_digit import write_test_predictions
from lenet_pl.report import write_report
from lenet_pl.runtime.compose import compose_config
from lenet_pl.runtime.errors import ConfigError, OutputError, UserError
from lenet_pl.runtime.values import validate
from lenet_pl.sweeps import report_plots
from lenet_pl.sweeps.factorial import analyse
from lenet_pl.sweeps.jobs import identity, load_jobs, overrides_dict
from lenet_pl.sweeps.plan import (
    Plan,
    Tune,
    configurations,
    grid_jobs,
    selection_jobs,
    sweep_plan,
    tuned_configurations,
    tuned_total,
)
from lenet_pl.sweeps.stats import Trial, select
from lenet_pl.train import record_failure

T2 = 4.302653  # t(0.975, 2 degrees of freedom): three seeds


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def assert_png(path: Path, min_height: int = 250, min_width: int = 450) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    height, width, channels = matplotlib.image.imread(path).shape
    assert height >= min_height and width >= min_width and channels in (3, 4), (path, height, width)


def write_job(
    sweep: Path,
    num: int,
    overrides: dict[str, str],
    val_acc: float | None,
    test_acc: float | None,
    failure: str | None = None,
    path_step: dict | None = None,
    epochs: int = 5,
) -> Path:
    """A job dir as train.py leaves it (named unlike train.py names them: the report must not read the name)."""
    job = sweep / f"job{num:03d}"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"{k}={v}" for k, v in overrides.items()]))
    (job / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"job": {"num": num}}}))
    (job / ".hydra" / "config.yaml").write_text(
        yaml.safe_dump({"seed": 0, **({"path_step": path_step} if path_step else {})})
    )
    if val_acc is not None:  # validation accuracy climbs to its best over the epochs
        (job / "csv").mkdir()
        with (job / "csv" / "metrics.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["epoch", "step", "val/acc"])
            for epoch in range(epochs):
                writer.writerow([epoch, epoch * 10 + 9, val_acc - 0.01 * (epochs - 1 - epoch)])
    if failure is not None:
        (job / "failure.json").write_text(json.dumps({"error": "TrainingDiverged", "message": failure}))
    elif test_acc is not None:
        metrics = {"test/acc": test_acc, "val/acc_best": val_acc, "epochs": epochs, "fit_seconds": 10.0}
        (job / "metrics.json").write_text(json.dumps({"hparams": {"seed": int(overrides["seed"])}, "metrics": metrics}))
    return job


# --- the fair factorial: a hand-made tuned sweep -----------------------------------------------

GRID = {"sgd": [0.01, 0.1, 1.0], "adam": [0.0001, 0.001, 0.01]}
# Stage 1 on seed 0: (val acc, test acc) per configuration and learning rate. Validation and test
# disagree on purpose: for tanh/sgd, 0.1 has the best validation accuracy and 0.01 the best test
# accuracy; the largest SGD rate diverges.
STAGE1 = {
    ("tanh", "sgd"): {0.01: (0.980, 0.990), 0.1: (0.985, 0.950), 1.0: None},
    ("relu", "sgd"): {0.01: (0.970, 0.999), 0.1: (0.990, 0.960), 1.0: None},
    ("tanh", "adam"): {0.0001: (0.980, 0.980), 0.001: (0.990, 0.970), 0.01: (0.990, 0.999)},  # tie: 0.001
    ("relu", "adam"): {0.0001: (0.995, 0.975), 0.001: (0.990, 0.999), 0.01: (0.980, 0.999)},
}
CHOSEN = {("tanh", "sgd"): 0.1, ("relu", "sgd"): 0.1, ("tanh", "adam"): 0.001, ("relu", "adam"): 0.0001}
# test accuracy of seeds 1 and 2 at the chosen rate
STAGE2 = {
    ("tanh", "sgd"): (0.952, 0.948),
    ("relu", "sgd"): (0.962, 0.964),
    ("tanh", "adam"): (0.972, 0.968),
    ("relu", "adam"): (0.978, 0.976),
}


def write_tuned_sweep(sweep: Path, stage2: bool = True, result_seeds: str = "0,1,2") -> Path:
    """`result_seeds="1,2"`: as in sweep=fair, the selection seed 0 has no result run."""
    sweep.mkdir(parents=True)
    multirun = {
        "hydra": {
            "sweeper": {
                "_target_": "hydra_plugins.lenet_pl_sweeper.TunedSweeper",
                "params": {"seed": result_seeds, "activation": "tanh,relu", "optimizer": "sgd,adam"},
                "tune": {
                    "key": "optimizer.lr",
                    "by": "optimizer",
                    "grid": GRID,
                    "seeds": [0],
                    "metric": "val/acc_best",
                },
            },
            "overrides": {"task": ["sweep=fair"]},
        }
    }
    (sweep / "multirun.yaml").write_text(yaml.safe_dump(multirun))
    num = 0
    for (activation, optimizer), runs in STAGE1.items():
        for lr, result in runs.items():
            overrides = {"activation": activation, "optimizer": optimizer, "sweep": "fair", "optimizer.lr": repr(lr)}
            if result is None:
                write_job(sweep, num, overrides | {"seed": "0"}, 0.5, None, failure=f"loss inf at lr {lr}")
            else:
                write_job(sweep, num, overrides | {"seed": "0"}, *result)
            num += 1
    if stage2:
        for (activation, optimizer), accs in STAGE2.items():
            for seed, acc in zip((1, 2), accs, strict=True):
                lr = CHOSEN[activation, optimizer]
                overrides = {"activation": activation, "optimizer": optimizer, "sweep": "fair"}
                write_job(sweep, num, overrides | {"optimizer.lr": repr(lr), "seed": str(seed)}, 0.99, acc)
                num += 1
    return sweep


def test_selection_picks_by_validation_never_by_test(tmp_path):
    sweep = write_tuned_sweep(tmp_path / "sweep")
    markdown = write_report(sweep, tmp_path / "out")
    selection = {(r["activation"], r["optimizer"]): r for r in read_csv(tmp_path / "out" / "selection.csv")}
    assert {k: float(r["chosen"].split()[0]) for k, r in selection.items()} == CHOSEN
    # tanh/sgd: 0.01 tested best (99.0%) but validated worse than 0.1; the diverged 1.0 lost
    assert selection["tanh", "sgd"]["candidates"].startswith("0.01: 98.00; 0.1: 98.50 (chosen); 1: lost (seed 0: ")
    assert "TrainingDiverged: loss inf at lr 1.0" in selection["tanh", "sgd"]["candidates"]
    assert selection["tanh", "adam"]["chosen"] == "0.001"  # tied with 0.01 on validation: the smaller wins
    assert selection["relu", "adam"]["chosen"] == "0.0001 (edge)"
    assert "## Learning-rate selection (validation only)" in markdown
    # the diverged runs are listed as failed, and the report did not crash on them
    assert markdown.count("failed: TrainingDiverged: loss inf at lr 1.0") == 2


def test_the_selection_plot_draws_screened_out_rates_hollow_at_their_first_seed_score_and_failures_as_x(
    tmp_path, monkeypatch
):
    first = [Trial(0.03, 0, 0.950), Trial(0.1, 0, 0.980), Trial(0.3, 0, 0.981), Trial(1.0, 0, None, "diverged")]
    later = [Trial(0.1, 6, 0.984), Trial(0.3, 6, 0.977)]
    selection = select([*first, *later], [0.03, 0.1, 0.3, 1.0], seeds=[0, 6], top=2)
    tune = SimpleNamespace(
        by="optimizer",
        key="optimizer.lr",
        metric="val/acc_best",
        seeds=[0, 6],
        candidates=lambda c: [0.03, 0.1, 0.3, 1.0],
    )
    tuned = [SimpleNamespace(config={"optimizer": "sgd", "activation": "relu"}, selection=selection)]
    figures = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda fig, *a, **k: figures.append(fig))
    report_plots.plot_selection(tuned, tune, ["activation", "optimizer"], tmp_path / "lr_selection.png")
    [ax] = figures[0].axes
    drawn = {
        (line.get_marker(), line.get_markerfacecolor() == "none"): list(zip(*line.get_data(), strict=True))
        for line in ax.get_lines()
        if len(line.get_xdata())
    }
    floor = 97.9  # the axis starts at the lowest mean (within 3 points of the best)
    assert drawn["o", False] == [(0.1, pytest.approx(98.2)), (0.3, pytest.approx(97.9))]  # the mean over seeds 0, 6
    assert drawn["v", True] == [(0.03, pytest.approx(floor))]  # seed 0's 95.0, below the axis: not "lost"
    assert drawn["x", False] == [(1.0, pytest.approx(floor))]  # the diverged rate
    assert any("hollow: scored on seed 0 alone" in text.get_text() for text in figures[0].texts)


def test_configurations_are_reported_at_the_chosen_rate_with_a_95_percent_interval(tmp_path):
    write_report(write_tuned_sweep(tmp_path / "sweep"), tmp_path / "out")
    rows = {(r["activation"], r["optimizer"]): r for r in read_csv(tmp_path / "out" / "configurations.csv")}
    tanh_sgd = rows["tanh", "sgd"]
    assert float(tanh_sgd["chosen_lr"]) == 0.1 and tanh_sgd["runs"] == "3/3"
    # seeds 0, 1, 2 at lr 0.1: 95.0, 95.2, 94.8 -> mean 95.0, s 0.2
    assert float(tanh_sgd["test_acc_mean"]) == pytest.approx(95.0)
    assert float(tanh_sgd["test_acc_ci95"]) == pytest.approx(T2 * 0.2 / math.sqrt(3), abs=1e-3)
    assert float(rows["relu", "adam"]["test_acc_mean"]) == pytest.approx((97.5 + 97.8 + 97.6) / 3, abs=1e-3)


def test_main_effects_interactions_and_budgets_use_only_the_tuned_runs(tmp_path):
    markdown = write_report(write_tuned_sweep(tmp_path / "sweep"), tmp_path / "out")
    effects = {r["axis"]: r for r in read_csv(tmp_path / "out" / "effects.csv")}
    # test error per seed at the chosen rates (tanh/sgd, relu/sgd, tanh/adam, relu/adam):
    # seed 0: 5.0, 4.0, 3.0, 2.5; seed 1: 4.8, 3.8, 2.8, 2.2; seed 2: 5.2, 3.6, 3.2, 2.4
    # relu - tanh per seed: mean(-1.0, -0.5) = -0.75, mean(-1.0, -0.6) = -0.8, mean(-1.6, -0.8) = -1.2
    assert float(effects["activation"]["test_error_change_mean"]) == pytest.approx((-0.75 - 0.8 - 1.2) / 3, abs=1e-4)
    assert effects["activation"]["seeds"] == "3" and effects["activation"]["pairs"] == "6"
    # seed 0 chose the rates; without it: mean(-0.8, -1.2) = -1.0, s 0.283, t(1 df) 12.71
    assert float(effects["activation"]["without_selection_seeds_mean"]) == pytest.approx(-1.0, abs=1e-4)
    assert float(effects["activation"]["without_selection_seeds_ci95_high"]) == pytest.approx(
        -1.0 + 12.7062 * 0.2828427 / math.sqrt(2), abs=1e-3
    )
    conditional = read_csv(tmp_path / "out" / "conditional_effects.csv")
    relu_by_optimizer = next(r for r in conditional if r["swap"].startswith("activation") and r["by"] == "optimizer")
    # relu under sgd: -1.0, -1.0, -1.6 (mean -1.2); under adam: -0.5, -0.6, -0.8 (mean -0.633)
    assert relu_by_optimizer["under_base"].startswith("sgd: -1.20 [")
    assert relu_by_optimizer["under_level"].startswith("adam: -0.63 [")
    assert relu_by_optimizer["difference"].startswith("+0.57 [")
    # the model's interaction is half that difference: (-0.633 - -1.2) / 2
    interactions = {r["term"]: r for r in read_csv(tmp_path / "out" / "interactions.csv")}
    assert float(interactions["activation x optimizer"]["effect"]) == pytest.approx((-0.6333 + 1.2) / 2, abs=1e-3)
    assert float(effects["activation"]["model_effect"]) == pytest.approx((-0.75 - 0.8 - 1.2) / 3, abs=1e-4)
    budget = {r["axis"]: r for r in read_csv(tmp_path / "out" / "budget.csv")}
    assert set(budget["optimizer"]) >= {"val error, epoch 1", "val error, epoch 5", "test error (best checkpoint)"}
    assert "## Interactions" in markdown and "## Effects against the training budget" in markdown
    assert "without seed 0 (seed-level t [95% CI])" in markdown  # seed 0 chose the rates and has result runs
    for name in ("val_acc.png", "lr_selection.png", "effects.png", "budget.png", "interactions.png"):
        assert_png(tmp_path / "out" / name)


def test_a_fair_design_reports_the_linear_model_and_no_held_out_column(tmp_path):
    """As in sweep=fair, the selection seed has no result run: nothing to hold out."""
    markdown = write_report(write_tuned_sweep(tmp_path / "sweep", result_seeds="1,2"), tmp_path / "out")
    cells = {
        config: {seed: 100 * (1 - acc) for seed, acc in zip((1, 2), accs, strict=True)}
        for config, accs in STAGE2.items()
    }
    fit = analyse(cells, ["activation", "optimizer"], {"activation": ("tanh", "relu"), "optimizer": ("sgd", "adam")})
    assert fit.runs == 8 and fit.residual_df == 3
    effects = {r["axis"]: r for r in read_csv(tmp_path / "out" / "effects.csv")}
    for axis in ("activation", "optimizer"):
        term = fit.term(axis)
        assert float(effects[axis]["model_effect"]) == pytest.approx(term.effect, abs=1e-4)
        assert float(effects[axis]["model_ci95_low"]) == pytest.approx(term.low, abs=1e-4)
        assert float(effects[axis]["model_ci95_high"]) == pytest.approx(term.high, abs=1e-4)
        assert float(effects[axis]["model_p"]) == pytest.approx(term.p, rel=1e-3)
        assert float(effects[axis]["model_mde80"]) == pytest.approx(term.mde, abs=1e-4)
        assert effects[axis]["seeds"] == "2"
        assert "without_selection_seeds_mean" not in effects[axis]
    assert "without seed" not in markdown and "which may flatter it" not in markdown
    assert "Axes: activation (2), optimizer (2); seeds: 1, 2 (results), 0 (choose optimizer.lr only)." in markdown
    # the budget table's intervals come from the same model, fitted to each measure
    budget = {r["axis"]: r for r in read_csv(tmp_path / "out" / "budget.csv")}
    term = fit.term("activation")
    assert (
        budget["activation"]["test error (best checkpoint)"]
        == f"{term.effect:+.2f} [{term.low:+.2f}, {term.high:+.2f}]"
    )
    assert "from the linear model of that measure" in markdown
    interaction = fit.term("activation", "optimizer")
    assert f"| activation x optimizer | {interaction.effect:+.2f} [{interaction.low:+.2f}, " in markdown


def test_a_tuned_sweep_in_stage_1_counts_the_jobs_to_come_and_reports_what_it_has(tmp_path):
    sweep = write_tuned_sweep(tmp_path / "sweep", stage2=False)
    assert sweep_plan(sweep).total == 4 * 3 + 4 * 2
    markdown = write_report(sweep, tmp_path / "out")
    assert "12 job dirs of 20 jobs in the sweep; 10 finished, 2 failed" in markdown
    assert "8 jobs have not started." in markdown
    rows = {(r["activation"], r["optimizer"]): r for r in read_csv(tmp_path / "out" / "configurations.csv")}
    assert rows["tanh", "sgd"]["runs"] == "1/1" and rows["tanh", "sgd"]["test_acc_ci95"] == ""


def test_a_resumed_job_takes_its_earlier_epochs_from_the_dir_it_resumed(tmp_path):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    killed = write_job(sweep, 0, {"seed": "0", "activation": "tanh"}, 0.95, None, epochs=3)
    resumed = write_job(sweep, 1, {"seed": "0", "activation": "tanh", "ckpt_path": f"'{killed}'"}, 0.99, 0.99)
    with (resumed / "csv" / "metrics.csv").open("w", newline="") as f:  # only the epochs after the checkpoint
        f.write("epoch,step,val/acc\n3,39,0.97\n4,49,0.99\n")
    jobs = {job.num: job for job in load_jobs(sweep)}
    assert jobs[1].val_acc == pytest.approx([0.93, 0.94, 0.95, 0.97, 0.99])
    assert jobs[0].identity == jobs[1].identity  # ckpt_path is not part of what a job runs
    # the sweep dir copied elsewhere (an archive of its runs, the original still there), then moved:
    # the resumed dir is found by its name among the copy's jobs
    copied = shutil.copytree(sweep, tmp_path / "elsewhere" / "sweep")
    archived = {job.num: job for job in load_jobs(copied)}
    assert archived[1].val_acc == pytest.approx([0.93, 0.94, 0.95, 0.97, 0.99])
    assert archived[1].val_by_epoch[0] == pytest.approx(0.93)
    shutil.rmtree(sweep)
    moved = {job.num: job for job in load_jobs(copied)}
    assert moved[1].val_acc == pytest.approx([0.93, 0.94, 0.95, 0.97, 0.99])
    # a sibling of the same name that is another configuration is not the dir it resumed
    (copied / killed.name / ".hydra" / "overrides.yaml").write_text("- seed=0\n- activation=relu\n")
    assert {job.num: job for job in load_jobs(copied)}[1].val_acc == []


def test_fair_sweep_chooses_on_two_selection_seeds_and_reports_five_others():
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["sweep=fair"], return_hydra_config=True)
    assert cfg.trainer.max_epochs == 20 and cfg.threads == 1
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher")
    tune = Tune.from_config(OmegaConf.to_container(cfg.hydra.sweeper.tune))
    assert tune.key == "optimizer.lr" and tune.metric.startswith("val/") and tune.seeds == (0, 6) and tune.top == 2
    for optimizer in ("sgd", "adam"):
        rates = tune.grid[optimizer]
        assert len(rates) >= 4 and max(rates) / min(rates) >= 30 - 1e-9
    grid = [overrides_dict(job) for job in grid_jobs(cfg.hydra.sweeper.params, ["sweep=fair"])]
    assert len(grid) == 16 * 5 and {job["seed"] for job in grid} == {"1", "2", "3", "4", "5"}
    assert not {int(job["seed"]) for job in grid} & set(tune.seeds)  # no selection seed's run enters a result
    n_rates = {optimizer: len(rates) for optimizer, rates in tune.grid.items()}
    # 8 configurations per optimizer at each of its rates on seed 0, their 2 best on seed 6, then 5 seeds
    assert tuned_total(grid, tune) == 8 * (n_rates["sgd"] + n_rates["adam"]) + 16 * 2 + 16 * 5 == 176
    configs = configurations(grid)
    first = selection_jobs(grid, tune)
    assert len(first) == 64 and {j["seed"] for j in first} == {"0"}
    finalists = {identity(c): tune.candidates(c)[:2] for c in configs}
    later = selection_jobs(grid, tune, finalists)
    assert len(later) == 32 and {j["seed"] for j in later} == {"6"}


def test_the_loss_regularised_sweep_is_a_full_factorial_on_the_fair_sweeps_result_seeds():
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["sweep=loss_regularised"], return_hydra_config=True)
        fair = compose(config_name="train", overrides=["sweep=fair"], return_hydra_config=True)
    assert cfg.trainer.max_epochs == fair.trainer.max_epochs == 20 and cfg.hydra.sweeper.tune is None
    grid = [overrides_dict(job) for job in grid_jobs(cfg.hydra.sweeper.params, ["sweep=loss_regularised"])]
    assert len(grid) == 24 and len({tuple(sorted(job.items())) for job in grid}) == 24
    assert {job["seed"] for job in grid} <= {str(s) for s in fair.hydra.sweeper.params.seed.split(",")}
    assert {(job["loss"], job["optimizer.weight_decay"], job["loss.label_smoothing"]) for job in grid} == {
        (loss, wd, ls) for loss in ("mse", "cross_entropy") for wd in ("0.0", "0.0005") for ls in ("0.0", "0.1")
    }
    for job in grid:  # every job composes, and both losses take the smoothing
        run = compose_config([f"{k}={v}" for k, v in job.items()])
        validate(run)
        loss = instantiate(run.loss)
        assert loss.label_smoothing == float(job["loss.label_smoothing"])
        assert run.optimizer.weight_decay == float(job["optimizer.weight_decay"]) and run.optimizer.lr == 0.1


@pytest.mark.parametrize("top", [0, -1, 1.5, True, "2"])
def test_a_tune_top_that_is_not_a_positive_whole_number_is_refused(top):
    with pytest.raises(UserError, match=rf"tune.top={top!r}: .*whole number of at least 1"):
        Tune.from_config({"key": "optimizer.lr", "grid": [0.1, 1.0], "seeds": [0, 1], "top": top})


@pytest.mark.parametrize("metric", ["test/acc", "val/loss", "val/error", "train/acc", "acc"])
def test_tune_on_anything_but_a_validation_score_is_refused(metric):
    with pytest.raises(UserError, match=rf"metric={metric}: .*(never on test|a validation score)"):
        Tune.from_config({"key": "optimizer.lr", "grid": [0.1, 1.0], "seeds": [0], "metric": metric})


def test_runs_without_a_finite_score_lose_or_are_listed_and_never_crash_the_report(tmp_path):
    sweep = write_tuned_sweep(tmp_path / "sweep")
    by_name = {job.path.name: job for job in load_jobs(sweep)}
    relu_adam_best = next(  # relu/adam's chosen rate on seed 0 finished, but with NaN validation accuracy
        j
        for j in by_name.values()
        if j.overrides
        == {"activation": "relu", "optimizer": "adam", "sweep": "fair", "optimizer.lr": "0.0001", "seed": "0"}
    )
    record = json.loads((relu_adam_best.path / "metrics.json").read_text())
    record["metrics"]["val/acc_best"] = float("nan")
    (relu_adam_best.path / "metrics.json").write_text(json.dumps(record))
    (relu_adam_best.path / "csv" / "metrics.csv").unlink()
    tanh_sgd_seed1 = next(
        j
        for j in by_name.values()
        if j.overrides.get("seed") == "1" and j.overrides["activation"] == "tanh" and j.overrides["optimizer"] == "sgd"
    )
    record = json.loads((tanh_sgd_seed1.path / "metrics.json").read_text())
    record["metrics"]["test/acc"] = float("nan")
    (tanh_sgd_seed1.path / "metrics.json").write_text(json.dumps(record))

    markdown = write_report(sweep, tmp_path / "out")
    selection = {(r["activation"], r["optimizer"]): r for r in read_csv(tmp_path / "out" / "selection.csv")}
    assert "0.0001: lost (seed 0: finished without a finite val/acc_best" in selection["relu", "adam"]["candidates"]
    assert selection["relu", "adam"]["chosen"] == "0.001"
    assert f"| {tanh_sgd_seed1.path.name} | finished without a finite test accuracy |" in markdown
    rows = {(r["activation"], r["optimizer"]): r for r in read_csv(tmp_path / "out" / "configurations.csv")}
    assert float(rows["tanh", "sgd"]["test_acc_mean"]) == pytest.approx((95.0 + 94.8) / 2)  # seeds 0 and 2


@pytest.mark.parametrize(
    ("error", "is_result"),
    [
        (TrainingDiverged("loss inf"), True),
        (ConfigError("optimizer.lr=-1"), True),
        (InstantiationException("wrapped"), True),
        (OutputError("disk full"), False),
        (RuntimeError("CUDA out of memory"), False),
    ],
)
def test_failure_json_says_whether_a_resumed_sweep_keeps_the_failure(tmp_path, error, is_result):
    if isinstance(error, InstantiationException):
        error.__cause__ = TrainingDiverged("loss inf")
    record_failure(tmp_path, error)
    failure = json.loads((tmp_path / "failure.json").read_text())
    assert failure["error"] == type(error).__name__ and failure["is_result"] is is_result


def test_every_configuration_without_a_choice_gets_no_final_runs(tmp_path):
    sweep = write_tuned_sweep(tmp_path / "sweep", stage2=False)
    plan = sweep_plan(sweep)
    tuned = tuned_configurations(load_jobs(sweep), Plan(plan.total, plan.grid, plan.tune), complete=True)
    assert [t.selection.chosen for t in tuned] == [0.1, 0.001, 0.1, 0.0001]  # the grid's order: tanh first
    assert all(len(t.final) == 1 and t.final[0].overrides["seed"] == "0" for t in tuned)


# --- the path ---------------------------------------------------------------------------------

FORWARD = ["path/0_lenet1998", "path/1_adam", "path/2_softmax", "path/3_dense_c3", "path/4_max_pool", "path/5_relu"]
FORWARD += ["path/6_modern"]
REVERSE = ["path/undo1_training", "path/undo2_rbf", "path/undo3_table_c3", "path/undo4_subsampling"]
REVERSE += ["path/undo5_scaled_tanh", "path/undo6_init"]


@functools.cache
def composed(experiment: str, *overrides: str) -> dict:
    """The resolved config of a preset (cached: composing takes a second on a busy machine; callers only read it)."""
    cfg = compose_config([f"experiment={experiment}", "paths.output_dir=unused", *overrides])
    return OmegaConf.to_container(cfg, resolve=True)


def flat(config: dict, prefix: str = "") -> dict[str, object]:
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out |= flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


# What each step may change, besides `path_step` (and what hangs off a swapped group).
STEP_CHANGES = {
    "path/1_adam": ("optimizer.", "scheduler.", "data.batch_size", "callbacks.sdlm_curvature."),
    "path/2_softmax": ("model.head.", "loss."),
    "path/3_dense_c3": ("model.c3.",),
    "path/4_max_pool": ("pooling.", "model.pooling."),
    "path/5_relu": ("activation.", "model.activation.", "pooling.activation", "model.pooling.activation"),
    "path/6_modern": ("model.init", "data.mean", "data.std"),
}


@pytest.mark.parametrize("step", range(1, 7))
def test_each_path_step_changes_one_thing(step):
    before, after = flat(composed(FORWARD[step - 1])), flat(composed(FORWARD[step]))
    changed = {
        k for k in before.keys() | after.keys() if before.get(k) != after.get(k) and not k.startswith("path_step")
    }
    allowed = STEP_CHANGES[FORWARD[step]]
    assert changed and all(k.startswith(allowed) for k in changed), sorted(changed)


def test_the_path_starts_at_lenet1998_under_the_factorial_s_protocol_and_ends_at_modern():
    start, lenet1998, default = composed(FORWARD[0]), composed("lenet1998"), composed("classic")
    for key in ("model", "activation", "pooling", "loss", "optimizer", "scheduler"):
        assert start[key] == lenet1998[key]
    assert start["data"] | {"val_size": 0} == lenet1998["data"] | {"val_size": 0}
    assert start["data"]["val_size"] == default["data"]["val_size"] == 5000  # not the preset's own protocol
    # the best-validation checkpoint is tested, as in the factorial
    assert start["callbacks"]["model_checkpoint"] == default["callbacks"]["model_checkpoint"]
    assert start["trainer"]["max_epochs"] == 20 and start["path_step"]["order"] == 0
    end, modern = composed(FORWARD[-1]), composed("modern", "trainer.max_epochs=20")
    for key in ("activation", "pooling", "loss", "optimizer", "scheduler", "data", "trainer"):
        assert end[key] == modern[key], key
    nets = []
    for experiment, extra in ((FORWARD[-1], []), ("modern", ["trainer.max_epochs=20"])):
        torch.manual_seed(0)
        nets.append(instantiate(compose_config([f"experiment={experiment}", *extra]).model))
    for (name, a), (_, b) in zip(nets[0].state_dict().items(), nets[1].state_dict().items(), strict=True):
        assert torch.equal(a, b), name  # the same network, initialised the same way


@pytest.mark.parametrize("undo", REVERSE)
def test_each_reverse_step_is_the_end_point_with_one_step_s_change_undone(undo):
    order = int(undo[len("path/undo")])
    end, variant = flat(composed(FORWARD[-1])), flat(composed(undo))
    before, after = flat(composed(FORWARD[order - 1])), flat(composed(FORWARD[order]))
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k) and not k.startswith("path_")}
    squashing = ("pooling.activation", "model.pooling.activation")  # subsampling squashes with the end point's ReLU
    for key in changed:  # the keys the forward step changed are back at their value before that step
        if not key.startswith(squashing):
            assert variant.get(key) == before.get(key), key
    others = {k for k in end.keys() | variant.keys() if k not in changed and not k.startswith("path_step")}
    assert not {k for k in others if end.get(k) != variant.get(k) and not k.startswith(squashing)}


def write_path_sweep(sweep: Path, reverse: bool = True, forward: bool = True) -> Path:
    """Three forward steps and two undone ones, three seeds each: test error (%) known per seed.

    `forward=False`: what sweep=path_reverse runs, the end point (the last forward step) and the undone ones.
    """
    sweep.mkdir(parents=True)
    errors = {
        ("forward", 0, "1998"): (1.00, 1.10, 0.90),
        ("forward", 1, "SDLM -> Adam"): (0.90, 0.95, 0.85),
        ("forward", 2, "RBF -> softmax"): (0.80, 0.95, 0.80),
    }
    if not forward:
        errors = {("forward", 2, "RBF -> softmax"): errors["forward", 2, "RBF -> softmax"]}
    if reverse:
        errors |= {
            ("reverse", 1, "modern, but SDLM"): (1.00, 1.10, 0.95),
            ("reverse", 2, "modern, but RBF"): (0.85, 0.9, 0.8),
        }
    num = 0
    for seed in range(3):
        for (view, order, label), by_seed in errors.items():
            step = {"view": view, "order": order, "label": label}
            overrides = {"seed": str(seed), "experiment": f"{view}{order}", "sweep": "path"}
            write_job(sweep, num, overrides, 0.99, 1 - by_seed[seed] / 100, path_step=step)
            num += 1
    return sweep


def test_path_report_draws_the_steps_and_the_reverse_view(tmp_path):
    markdown = write_report(write_path_sweep(tmp_path / "sweep"), tmp_path / "out")
    rows = read_csv(tmp_path / "out" / "path.csv")
    forward = [r for r in rows if r["view"] == "forward"]
    assert [r["label"] for r in forward] == ["1998", "SDLM -> Adam", "RBF -> softmax"]
    assert forward[0]["test_error"] == f"1.00 +- {T2 * 0.1 / math.sqrt(3):.2f}"
    assert forward[1]["change"].startswith("-0.10 [") and forward[2]["from_start"].startswith("-0.15 [")
    reverse = [r for r in rows if r["view"] == "reverse"]
    # against the end point (0.80, 0.95, 0.80): +0.20, +0.15, +0.15 and +0.05, -0.05, 0.00
    assert reverse[0]["change"].startswith("+0.17 [") and reverse[1]["change"].startswith("+0.00 [")
    assert "## The path, one change at a time" in markdown and "## Main effects" not in markdown
    assert "## The reverse view" in markdown
    assert_png(tmp_path / "out" / "path.png")
    assert_png(tmp_path / "out" / "path_reverse.png", min_height=200)


def test_path_report_compares_the_first_and_the_last_step_digit_by_digit(tmp_path):
    sweep = write_path_sweep(tmp_path / "sweep", reverse=False)
    labels = np.arange(1000) % 10
    images = np.zeros((1000, 2, 2), dtype=np.uint8)
    for job in load_jobs(sweep):
        order = job.path_step["order"]
        if order in (0, 2):  # the 1998 step wrong on digits 0-9; the last step on 5-12 (seed 1: 5-13)
            wrong = np.arange(10) if order == 0 else np.arange(5, 13 + (job.seed == 1))
            predicted = labels.copy()
            predicted[wrong] = (labels[wrong] + 1) % 10
            write_test_predictions(job.path, predicted, images, labels)
    markdown = write_report(sweep, tmp_path / "out")
    rows = read_csv(tmp_path / "out" / "mcnemar.csv")
    assert {(r["comparison"], r["config_a"], r["config_b"]) for r in rows} == {
        ("first step -> last step", "1998", "RBF -> softmax")
    }
    per_seed = [(r["seed"], r["b"], r["c"]) for r in rows[:3]]
    assert per_seed == [("0", "3", "5"), ("1", "4", "5"), ("2", "3", "5")]  # b: 10-12 (13); c: 0-4
    assert float(rows[0]["p_exact"]) == pytest.approx(scipy_stats.binomtest(3, 8).pvalue, rel=1e-5)  # 0.727
    assert float(rows[1]["difference"]) == pytest.approx(100 * (4 - 5) / 1000)
    assert rows[3]["seed"] == "mean over seeds" and float(rows[3]["difference"]) == pytest.approx(
        (-0.2 - 0.1 - 0.2) / 3, abs=1e-4
    )
    assert "### first step -> last step\n\nA = 1998, B = RBF -> softmax; 1,000 test digits." in markdown


def test_a_reverse_only_sweep_reports_the_undone_changes_against_its_end_point(tmp_path):
    markdown = write_report(write_path_sweep(tmp_path / "sweep", forward=False), tmp_path / "out")
    assert "## The path, one change at a time" not in markdown and not (tmp_path / "out" / "path.png").exists()
    end_point = f"0.85 +- {T2 * math.sqrt(0.0075) / math.sqrt(3):.2f}"  # 0.80, 0.95, 0.80: s^2 = 0.0075
    assert f"RBF -> softmax: test error {end_point}%" in markdown
    reverse = read_csv(tmp_path / "out" / "path.csv")
    assert [r["view"] for r in reverse] == ["reverse", "reverse"] and reverse[0]["change"].startswith("+0.17 [")
    assert_png(tmp_path / "out" / "path_reverse.png", min_height=200)


def test_path_sweep_configs_run_every_step_on_three_seeds():
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        for name, steps in (("path", FORWARD), ("path_reverse", [FORWARD[-1], *REVERSE])):
            cfg = compose(config_name="train", overrides=[f"sweep={name}"], return_hydra_config=True)
            grid = [overrides_dict(job) for job in grid_jobs(cfg.hydra.sweeper.params, [])]
            assert [job["experiment"] for job in grid[: len(steps)]] == steps
            assert len(grid) == 3 * len(steps) and {job["seed"] for job in grid} == {"0", "1", "2"}


# --- one tiny real tuned sweep through the CLI ------------------------------------------------


@pytest.fixture(scope="module")
def tiny_fair(tmp_path_factory) -> tuple[Path, object, list[str]]:
    """sweep=fair narrowed to tanh/avg/cross_entropy x sgd/adam, 2 rates each on selection seed 0, the
    best of them on selection seed 6, then seeds 1 and 2 at the chosen rate.

    SGD's second rate (1e4) diverges: it loses the selection and the sweep goes on. The jobs run in
    this process (the basic launcher: no worker start-up); test_sweeps.py runs joblib and submitit.
    """
    tmp = tmp_path_factory.mktemp("fair")
    root = write_dataset(tmp / "data")
    args = [
        "-m",
        "sweep=fair",
        "hydra/launcher=basic",
        f"data.root={root}",
        "data.verify=false",
        "data.val_size=100",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=6",
        "logger=csv",
        "seed=1,2",
        "hydra.sweeper.tune.top=1",
        "activation=tanh",
        "pooling=avg",
        "loss=cross_entropy",
        "hydra.sweeper.tune.grid.sgd=[0.05,10000.0]",
        "hydra.sweeper.tune.grid.adam=[0.001,0.01]",
        f"hydra.sweep.dir={tmp / 'sweep'}",
    ]
    return tmp / "sweep", run_in_process("lenet_pl.train", *args, cwd=tmp), args


def test_tiny_fair_sweep_runs_both_stages_and_keeps_job_output_out_of_the_console(tiny_fair):
    sweep, result, _ = tiny_fair
    assert result.returncode == 0, result.stderr[-3000:]  # the diverged candidate is a result, not a crash
    jobs = load_jobs(sweep)
    # 4 runs on selection seed 0, the best rate of each optimizer on seed 6, then seeds 1 and 2 at it
    assert len(jobs) == 2 * 2 + 2 + 2 * 2
    assert [j.overrides["seed"] for j in sorted(jobs, key=lambda j: j.num)] == ["0"] * 4 + ["6"] * 2 + ["1"] * 2 + [
        "2"
    ] * 2
    diverged = [j for j in jobs if j.failure]
    assert len(diverged) == 1 and diverged[0].overrides["optimizer.lr"] == "10000.0"
    assert "Training diverged" in diverged[0].failure
    second = {j.overrides["optimizer"]: j.overrides["optimizer.lr"] for j in jobs if j.overrides["seed"] == "6"}
    selection = yaml.safe_load((sweep / "selection.yaml").read_text())
    chosen = {c["config"]["optimizer"]: c["chosen"] for c in selection["choices"]}
    assert chosen["sgd"] == 0.05 and second["sgd"] == "0.05" and float(second["adam"]) == chosen["adam"]
    for seed in ("1", "2"):
        final = {
            j.overrides["optimizer"]: float(j.overrides["optimizer.lr"]) for j in jobs if j.overrides["seed"] == seed
        }
        assert final == chosen
    # one progress line, not the jobs' layer tables and Lightning tables; those are in each job's train.log
    assert "LeNet-5 layers" not in result.stdout + result.stderr
    assert "sweep: 10/10 jobs returned (1 failed, 0 running;" in result.stderr
    assert f"Sweep {sweep}: 9 jobs finished, 1 failed" in result.stderr
    log = (jobs[0].path / "train.log").read_text()
    assert "LeNet-5 layers" in log and "Test accuracy" in log and "test/acc" in log  # Lightning's test table too
    assert "Traceback" in (diverged[0].path / "train.log").read_text()


def test_tiny_fair_sweep_report(tiny_fair):
    sweep, _, _ = tiny_fair
    result = run_in_process("lenet_pl.report", str(sweep), cwd=sweep)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "10 job dirs of 10 jobs in the sweep; 9 finished, 1 failed, 0 running" in result.stdout
    assert "| sgd | 0.05: " in result.stdout and "10000: lost (seed 0: TrainingDiverged: Training diverged" in (
        result.stdout
    )
    rows = {r["optimizer"]: r for r in read_csv(sweep / "report" / "configurations.csv")}
    assert float(rows["sgd"]["chosen_lr"]) == 0.05 and rows["sgd"]["runs"] == "2/2"
    assert "## Main effects (at each configuration's chosen learning rate)" in result.stdout
    for name in ("val_acc.png", "lr_selection.png", "effects.png", "budget.png"):
        assert_png(sweep / "report" / name)


def test_a_killed_tuned_sweep_resumes_in_its_dir_keeping_what_finished(tiny_fair):
    sweep, _, args = tiny_fair
    jobs = load_jobs(sweep)
    stopped = next(j for j in jobs if j.overrides["seed"] == "1" and j.overrides["optimizer"] == "adam")
    (stopped.path / "metrics.json").unlink()  # as if killed after its last checkpoint
    # as if it had failed for a reason that is not its config's (a bug, a full disk): run again
    crashed = next(j for j in jobs if j.overrides["seed"] == "1" and j.overrides["optimizer"] == "sgd")
    (crashed.path / "metrics.json").unlink()
    failure = {"error": "RuntimeError", "message": "CUDA out of memory", "is_result": False}
    (crashed.path / "failure.json").write_text(json.dumps(failure))
    diverged = next(j for j in jobs if j.failure)
    assert json.loads((diverged.path / "failure.json").read_text())["is_result"] is True  # kept: a result
    before = {j.path.name for j in jobs}
    result = run_in_process("lenet_pl.train", *args, cwd=sweep.parent)
    assert result.returncode == 0, result.stderr[-3000:]
    after = load_jobs(sweep)
    new = {j.identity: j for j in after if j.path.name not in before}
    assert new.keys() == {stopped.identity, crashed.identity} and all(j.finished for j in new.values())
    for old in (stopped, crashed):  # each resumed from its own checkpoint
        assert new[old.identity].overrides["ckpt_path"].strip("'") == str(old.path.resolve())
        assert "Resuming from" in (new[old.identity].path / "train.log").read_text()
    new = [new[stopped.identity]]
    markdown = write_report(sweep, sweep / "report2")
    rows = {r["optimizer"]: r for r in read_csv(sweep / "report2" / "configurations.csv")}
    assert rows["adam"]["runs"] == "2/2"
    assert f"| {stopped.path.name} | stopped; run again in {new[0].path.name} |" in markdown
    # the summary line counts it apart from jobs still running: nothing of this sweep is running now
    assert "1 stopped and run again in a later dir (listed below), 0 running or stopped without a record." in markdown
