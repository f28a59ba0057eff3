"""`python -m lenet_pl.report` on sweep dirs written here with known numbers: table, effects, failures, plots."""

import csv
import itertools
import json
from pathlib import Path

import matplotlib.image
import pytest

from conftest import REPO, run_cli
from lenet_pl.report import main, write_report

# test error (%) of each (activation, optimizer, seed) run: relu lowers it by 1 point, adam by 3 (seed 1: 5)
ERRORS = {
    ("tanh", "sgd", "0"): 8.0,
    ("tanh", "sgd", "1"): 10.0,
    ("tanh", "adam", "0"): 5.0,
    ("tanh", "adam", "1"): 5.0,
    ("relu", "sgd", "0"): 7.0,
    ("relu", "sgd", "1"): 9.0,
    ("relu", "adam", "0"): 4.0,
    ("relu", "adam", "1"): 4.0,
}


def write_job(sweep: Path, num: int, activation: str, optimizer: str, seed: str, finished: bool = True) -> Path:
    """A job dir as train.py leaves it: overrides, per-epoch CSV, and metrics.json once finished."""
    job = sweep / f"{num}_activation={activation},optimizer={optimizer},seed={seed}"
    (job / ".hydra").mkdir(parents=True)
    overrides = [f"activation={activation}", f"optimizer={optimizer}", f"seed={seed}", "sweep=ablation"]
    (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    error = ERRORS[activation, optimizer, seed]
    # validation accuracy climbs to the final accuracy over 4 epochs
    val_acc = [0.95, 0.975, 0.985, 1 - error / 100 + 0.001]
    (job / "csv").mkdir()
    with (job / "csv" / "metrics.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["epoch", "step", "train/loss", "val/acc"])
        for epoch, acc in enumerate(val_acc if finished else val_acc[:2]):
            writer.writerow([epoch, 10 * epoch + 5, 0.5, ""])  # a training row without val/acc
            writer.writerow([epoch, 10 * epoch + 9, "", acc])
    if finished:
        metrics = {"test/acc": 1 - error / 100, "val/acc_best": max(val_acc), "epochs": 4, "fit_seconds": 12.0}
        (job / "metrics.json").write_text(json.dumps({"hparams": {"seed": int(seed)}, "metrics": metrics}))
    return job


def write_sweep(sweep: Path, unfinished: tuple[int, ...] = (), missing: tuple[int, ...] = ()) -> Path:
    """The 2 x 2 x 2-seed sweep of ERRORS, in Hydra's job order; `missing` jobs never started."""
    sweep.mkdir(parents=True)
    (sweep / "multirun.yaml").write_text(
        "hydra:\n  sweeper:\n    params:\n      activation: tanh,relu\n      optimizer: sgd,adam\n      seed: 0,1,2\n"
        "  overrides:\n    task: [sweep=ablation, 'seed=0,1']\n"  # the command line narrowed the seeds
    )
    grid = itertools.product(["tanh", "relu"], ["sgd", "adam"], ["0", "1"])
    for num, (activation, optimizer, seed) in enumerate(grid):
        if num not in missing:
            write_job(sweep, num, activation, optimizer, seed, finished=num not in unfinished)
    return sweep


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_table_has_one_row_per_configuration_with_mean_and_std_over_seeds(tmp_path):
    write_report(write_sweep(tmp_path / "sweep"), tmp_path / "out")
    rows = {(r["activation"], r["optimizer"]): r for r in read_csv(tmp_path / "out" / "configurations.csv")}
    assert set(rows) == {("tanh", "sgd"), ("tanh", "adam"), ("relu", "sgd"), ("relu", "adam")}
    assert "seed" not in read_csv(tmp_path / "out" / "configurations.csv")[0]
    assert float(rows["tanh", "sgd"]["test_acc_mean"]) == pytest.approx(91.0)
    assert float(rows["tanh", "sgd"]["test_acc_std"]) == pytest.approx(1.41421, abs=1e-3)  # sample std of 92, 90
    assert float(rows["relu", "adam"]["test_error_mean"]) == pytest.approx(4.0)
    assert rows["relu", "adam"]["runs"] == "2/2"
    order = [r["activation"] + "/" + r["optimizer"] for r in read_csv(tmp_path / "out" / "configurations.csv")]
    assert order == ["relu/adam", "tanh/adam", "relu/sgd", "tanh/sgd"]  # best first
    # epochs to 98%: epoch 3 (0.985) for every run; no run reaches 99%
    assert rows["tanh", "sgd"]["epochs_to_98"] == "3.0"
    assert rows["tanh", "sgd"]["epochs_to_99"] == "-"
    assert float(rows["tanh", "sgd"]["fit_seconds_mean"]) == 12.0


def test_main_effects_pair_runs_that_differ_in_one_axis_with_a_t_interval_over_seeds(tmp_path):
    write_report(write_sweep(tmp_path / "sweep"), tmp_path / "out")
    effects = {r["axis"]: r for r in read_csv(tmp_path / "out" / "effects.csv")}
    assert set(effects) == {"activation", "optimizer"}
    assert effects["activation"]["change"] == "tanh -> relu"
    assert float(effects["activation"]["test_error_change_mean"]) == pytest.approx(-1.0)
    assert float(effects["activation"]["ci95_low"]) == pytest.approx(-1.0)  # -1 in every pair: no spread
    assert float(effects["activation"]["ci95_high"]) == pytest.approx(-1.0)
    assert effects["activation"]["pairs"] == "4"
    # sgd -> adam: -3, -3 on seed 0 and -5, -5 on seed 1 (over tanh and relu): per seed -3 and -5,
    # mean -4, 95% t-interval with 1 degree of freedom: -4 +- 12.706 * sqrt(2) / sqrt(2)
    assert float(effects["optimizer"]["test_error_change_mean"]) == pytest.approx(-4.0)
    assert float(effects["optimizer"]["ci95_low"]) == pytest.approx(-4.0 - 12.7062, abs=1e-3)
    assert float(effects["optimizer"]["ci95_high"]) == pytest.approx(-4.0 + 12.7062, abs=1e-3)
    assert effects["optimizer"]["seeds"] == "2" and effects["optimizer"]["pairs"] == "4"
    assert effects["optimizer"]["pairs_better"] == "4"
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "| optimizer | sgd -> adam | -4.00 | [-16.71, +8.71] | 2 | 4 | 4 |" in markdown


def test_partial_sweep_lists_failed_unfinished_and_unstarted_jobs(tmp_path):
    """A sweep cut short: job 4 failed, job 5 has a CSV but no metrics.json, jobs 6 and 7 never started."""
    sweep = write_sweep(tmp_path / "sweep", unfinished=(4, 5), missing=(6, 7))
    failure = {"error": "ConfigError", "message": "optimizer.lr=-1 is not allowed | really"}
    (next(sweep.glob("4_*")) / "failure.json").write_text(json.dumps(failure))
    markdown = write_report(sweep, tmp_path / "out")
    assert "6 job dirs of 8 jobs in the sweep; 4 finished, 1 failed, 1 running or stopped without a record." in markdown
    assert "2 jobs have not started." in markdown
    unfinished_section = markdown.split("## Runs without results")[1].split("##")[0]
    assert (
        "| 4_activation=relu,optimizer=sgd,seed=0 | failed: ConfigError: optimizer.lr=-1 is not allowed "
        "\\| really | 2 |" in unfinished_section
    )
    assert "| 5_activation=relu,optimizer=sgd,seed=1 | running, or stopped without a record | 2 | 97.50 |" in (
        unfinished_section
    )
    rows = {(r["activation"], r["optimizer"]): r for r in read_csv(tmp_path / "out" / "configurations.csv")}
    assert rows["relu", "sgd"]["runs"] == "0/2" and rows["relu", "sgd"]["test_acc_mean"] == ""
    assert ("relu", "adam") not in rows  # none of its jobs started
    # optimizer pairs now exist only for tanh (both seeds)
    effects = {r["axis"]: r for r in read_csv(tmp_path / "out" / "effects.csv")}
    assert effects["optimizer"]["pairs"] == "2"


def test_plots_are_png_images(tmp_path):
    write_report(write_sweep(tmp_path / "sweep"), tmp_path / "out")
    for name in ("val_acc.png", "effects.png", "budget.png", "interactions.png"):
        path = tmp_path / "out" / name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        height, width, _ = matplotlib.image.imread(path).shape
        assert height > 200 and width > 400


def test_cli_prints_the_report_and_writes_it_under_the_sweep(tmp_path, capsys):
    sweep = write_sweep(tmp_path / "sweep")
    assert main([str(sweep)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"# Sweep report: {sweep}")
    assert sorted(p.name for p in (sweep / "report").iterdir()) == [
        "budget.csv",
        "budget.png",
        "configurations.csv",
        "effects.csv",
        "effects.png",
        "interactions.csv",
        "interactions.png",
        "report.md",
        "val_acc.png",
    ]


def write_single_runs(folder: Path) -> Path:
    """A date folder of `python -m lenet_pl.train` runs (no -m), each finished, as Hydra leaves them."""
    for i, activation in enumerate(("tanh", "relu")):
        run = folder / f"12-00-0{i}"
        (run / ".hydra").mkdir(parents=True)
        (run / ".hydra" / "overrides.yaml").write_text(f"- activation={activation}\n")
        (run / ".hydra" / "hydra.yaml").write_text("hydra:\n  mode: RUN\n  job:\n    name: train\n")
        metrics = {"test/acc": 0.9, "val/acc_best": 0.9, "epochs": 1, "fit_seconds": 1.0}
        (run / "metrics.json").write_text(json.dumps({"hparams": {}, "metrics": metrics}))
    return folder


@pytest.mark.parametrize("make", ["missing", "empty", "job_dir", "single_runs"])
def test_cli_rejects_a_folder_that_is_not_a_sweep(tmp_path, make):
    if make == "missing":
        target = tmp_path / "nowhere"
    elif make == "empty":
        target = tmp_path / "empty"
        target.mkdir()
    elif make == "job_dir":
        target = write_sweep(tmp_path / "sweep") / "0_activation=tanh,optimizer=sgd,seed=0"
    else:
        target = write_single_runs(tmp_path / "outputs" / "2026-01-31")
    result = run_cli("lenet_pl.report", str(target), cwd=REPO)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ")
    assert str(target) in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1  # one paragraph
    if make == "single_runs":
        assert f"{target} is not a sweep: it holds single runs (12-00-00, 12-00-01)" in result.stderr
        assert not (target / "report").exists()


def test_axes_of_a_sweep_come_from_its_plan_before_every_value_has_run(tmp_path):
    """Only the tanh half has started: activation is still an axis, read from multirun.yaml."""
    markdown = write_report(write_sweep(tmp_path / "sweep", missing=(4, 5, 6, 7)), tmp_path / "out")
    assert "Axes: activation (2), optimizer (2); seeds: 0, 1." in markdown
    rows = read_csv(tmp_path / "out" / "configurations.csv")
    assert [(r["activation"], r["optimizer"]) for r in rows] == [("tanh", "adam"), ("tanh", "sgd")]
    assert "No two finished runs differ in activation alone" in markdown
