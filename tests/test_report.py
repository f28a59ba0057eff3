"""`python -m lenet_pl.report` on sweep dirs written here with known numbers: table, effects, failures, plots."""

import csv
import itertools
import json
import math
from collections.abc import Iterable
from pathlib import Path

import matplotlib.image
import matplotlib.pyplot as plt
import numpy as np
import pytest
from scipy import stats as scipy_stats

from conftest import REPO, run_in_process
from lenet_pl.per_digit import TEST_PREDICTIONS, write_test_predictions
from lenet_pl.report import _per_pass_curves, main, write_report
from lenet_pl.sweeps import report_plots, stats
from lenet_pl.sweeps.factorial import analyse
from lenet_pl.sweeps.jobs import Job
from lenet_pl.sweeps.mcnemar import mcnemar_table
from lenet_pl.sweeps.report_format import p_text
from lenet_pl.sweeps.sweep import read_sweep

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


def write_job(
    sweep: Path,
    num: int,
    activation: str,
    optimizer: str,
    seed: str,
    finished: bool = True,
    val_acc: list[float] | None = None,
) -> Path:
    """A job dir as train.py leaves it: overrides, per-epoch CSV, and metrics.json once finished."""
    job = sweep / f"{num}_activation={activation},optimizer={optimizer},seed={seed}"
    (job / ".hydra").mkdir(parents=True)
    overrides = [f"activation={activation}", f"optimizer={optimizer}", f"seed={seed}", "sweep=ablation"]
    (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    error = ERRORS[activation, optimizer, seed]
    # validation accuracy climbs to the final accuracy over 4 epochs
    val_acc = val_acc or [0.95, 0.975, 0.985, 1 - error / 100 + 0.001]
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
    assert "| -4.00 [-16.71, +8.71] | 4 of 4 |" in markdown  # the seed-level t column beside the model's


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


def test_a_job_stopped_and_run_again_in_a_later_dir_counts_once(tmp_path):
    """A plain grid resumed: job 5 stopped midway, the resumed sweep ran it again as job 8."""
    sweep = write_sweep(tmp_path / "sweep", unfinished=(5,))
    stopped = next(sweep.glob("5_*"))
    again = write_job(sweep, 8, "relu", "sgd", "1")
    with (again / ".hydra" / "overrides.yaml").open("a") as f:
        f.write(f"- ckpt_path='{stopped}'\n")
    record = json.loads((again / "metrics.json").read_text())
    record["metrics"]["fit_seconds"] = 3.0  # it timed only the epochs after the checkpoint
    (again / "metrics.json").write_text(json.dumps(record))
    markdown = write_report(sweep, tmp_path / "out")
    assert "9 job dirs of 8 jobs in the sweep; 8 finished, 0 failed, 1 stopped and run again in a later dir" in markdown
    assert f"| {stopped.name} | stopped; run again in {again.name} |" in markdown
    rows = {(r["activation"], r["optimizer"]): r for r in read_csv(tmp_path / "out" / "configurations.csv")}
    assert rows["relu", "sgd"]["runs"] == "2/2" and float(rows["relu", "sgd"]["test_error_mean"]) == pytest.approx(8.0)
    assert float(rows["relu", "sgd"]["fit_seconds_mean"]) == pytest.approx(12.0)  # the resumed run's 3 s left out
    # the stopped dir stands for nothing: its configuration's runs (the plots' too) are the later one
    group = read_sweep(sweep).groups["relu", "sgd"]
    assert stopped not in [j.path for j in group] and again in [j.path for j in group] and len(group) == 2


def test_plots_are_png_images(tmp_path):
    write_report(write_sweep(tmp_path / "sweep"), tmp_path / "out")
    for name in ("val_acc.png", "effects.png", "budget.png", "interactions.png"):
        path = tmp_path / "out" / name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        height, width, _ = matplotlib.image.imread(path).shape
        assert height > 200 and width > 400


def test_epochs_to_and_the_zoom_follow_the_accuracy_a_data_set_reaches(tmp_path, monkeypatch):
    # Fashion-MNIST-like: nothing reaches 98%; the best configuration (relu/adam) ends at 91.2% on average.
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text(
        "hydra:\n  sweeper:\n    params:\n      activation: tanh,relu\n      seed: 0,1\n"
        "  overrides:\n    task: [sweep=ablation, optimizer=adam]\n"
    )
    finals = {"tanh": (0.880, 0.890), "relu": (0.908, 0.916)}
    for num, (activation, seed) in enumerate(itertools.product(["tanh", "relu"], ["0", "1"])):
        final = finals[activation][int(seed)]
        write_job(sweep, num, activation, "adam", seed, val_acc=[0.80, 0.86, 0.905 if final > 0.9 else 0.87, final])
    limits = {}

    def keep_zoom(fig, path):
        if path.name == "val_acc.png":
            limits[path.name] = (fig.axes[1].get_ylim(), fig.axes[1].get_title())
        plt.close(fig)

    monkeypatch.setattr(report_plots, "_save", keep_zoom)
    markdown = write_report(sweep, tmp_path / "out")
    rows = {r["activation"]: r for r in read_csv(tmp_path / "out" / "configurations.csv")}
    # round(91.2) = 91: the levels are 90% and 91%
    assert (rows["relu"]["epochs_to_90"], rows["relu"]["epochs_to_91"]) == ("3.0", "4.0 (1/2)")
    assert (rows["tanh"]["epochs_to_90"], rows["tanh"]["epochs_to_91"]) == ("-", "-")
    assert "epochs_to_98" not in rows["relu"] and "epochs to 91% val" in markdown
    assert limits["val_acc.png"] == ((89.0, 92.0), "zoom: 89-92%")  # the best mean curve peaks at 91.2%


def test_cli_prints_the_report_and_writes_it_under_the_sweep(tmp_path, capsys):
    sweep = write_sweep(tmp_path / "sweep")
    assert main([str(sweep)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"# Sweep report: {sweep}")
    assert sorted(p.name for p in (sweep / "report").iterdir()) == [
        "budget.csv",
        "budget.png",
        "conditional_effects.csv",
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
    result = run_in_process("lenet_pl.report", str(target), cwd=REPO)
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


# --- the linear model of a two-level factorial -------------------------------------------------


def test_the_linear_model_of_the_small_sweep_by_hand(tmp_path):
    """ERRORS fitted as mean + seed + activation + optimizer + their interaction: the residuals are +-0.5 on
    every run (the optimizer's effect is -3 on seed 0 and -5 on seed 1), s^2 = 8 x 0.25 / 3 on 8 - 5 = 3 df."""
    markdown = write_report(write_sweep(tmp_path / "sweep"), tmp_path / "out")
    effects = {r["axis"]: r for r in read_csv(tmp_path / "out" / "effects.csv")}
    se = 2 * math.sqrt(2 / 3) / math.sqrt(8)  # 2 sqrt(s^2 / n) for a +-1 column of 8 runs
    t3 = scipy_stats.t.ppf(0.975, 3)
    for axis, effect in (("activation", -1.0), ("optimizer", -4.0)):
        row = effects[axis]
        assert float(row["model_effect"]) == pytest.approx(effect)
        assert float(row["model_se"]) == pytest.approx(se, abs=1e-4)
        assert float(row["model_ci95_low"]) == pytest.approx(effect - t3 * se, abs=1e-4)
        assert float(row["model_ci95_high"]) == pytest.approx(effect + t3 * se, abs=1e-4)
        assert float(row["model_p"]) == pytest.approx(2 * scipy_stats.t.sf(abs(effect) / se, 3), rel=1e-3)
        assert float(row["model_mde80"]) == pytest.approx((t3 + scipy_stats.t.ppf(0.8, 3)) * se, abs=1e-4)
        assert row["model_df"] == "3"
    # relu's -1 is the same in every pair (a seed-level interval of width 0), but the model measures it
    # against the noise of all runs: [-2.84, +0.84], not resolved; Adam's -4 is
    assert (
        "- **activation tanh -> relu**: -1.00 points [-2.84, +0.84]: not resolved; the design resolves effects "
        "of 2.40 points or more (MDE at 80% power)." in markdown
    )
    assert "- **optimizer sgd -> adam** lowers test error by 4.00 points [2.16, 5.84]: resolved." in markdown
    assert (
        "| activation | tanh -> relu | -1.00 [-2.84, +0.84] | 0.182 | 0.182 | 2.40 | -1.00 [-1.00, -1.00] | 4 of 4 |"
        in markdown
    )


AXES3 = {"activation": ("tanh", "relu"), "pooling": ("avg", "max"), "optimizer": ("sgd", "adam")}
# Effects (high - low, points) built into the test errors, one interaction among them; the noise has sd 0.05,
# so the design resolves about 0.05 points: the optimizer's 0.02 is below that.
BUILT_IN = {("activation",): -0.5, ("pooling",): -0.2, ("optimizer",): 0.02, ("activation", "pooling"): 0.1}


def factorial_errors(seeds: int = 4, noise: float = 0.05, rng_seed: int = 5) -> dict[tuple[str, ...], dict[int, float]]:
    """configuration -> seed -> test error (%): 1.0 + the BUILT_IN effects + a seed offset + normal noise."""
    rng = np.random.default_rng(rng_seed)
    axes = list(AXES3)
    cells: dict[tuple[str, ...], dict[int, float]] = {}
    for config in itertools.product(*AXES3.values()):
        codes = {a: 1.0 if config[i] == AXES3[a][1] else -1.0 for i, a in enumerate(axes)}
        mean = 1.0 + sum(effect / 2 * math.prod(codes[a] for a in term) for term, effect in BUILT_IN.items())
        cells[config] = {seed: round(mean + 0.03 * seed + rng.normal(0, noise), 6) for seed in range(seeds)}
    return cells


def write_run(
    sweep: Path,
    num: int,
    overrides: dict[str, str],
    test_error: float,
    val_acc: float,
    wrong: Iterable[int] | None = None,
    digits: int = 200,
    images_seed: int = 0,
) -> Path:
    """A finished job dir; with `wrong` (the test digits it gets wrong), its test_predictions.npz too."""
    job = sweep / f"job{num:03d}"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {k}={v}\n" for k, v in overrides.items()))
    (job / "csv").mkdir()
    (job / "csv" / "metrics.csv").write_text(f"epoch,step,val/acc\n0,9,{val_acc - 0.01}\n1,19,{val_acc}\n")
    metrics = {"test/acc": 1 - test_error / 100, "val/acc_best": val_acc, "epochs": 2, "fit_seconds": 1.0}
    (job / "metrics.json").write_text(json.dumps({"hparams": {"seed": int(overrides["seed"])}, "metrics": metrics}))
    if wrong is not None:
        labels = np.arange(digits) % 10
        predicted = labels.copy()
        predicted[list(wrong)] = (labels[list(wrong)] + 1) % 10
        images = np.full((digits, 2, 2), images_seed, dtype=np.uint8)  # another images_seed: other digits
        write_test_predictions(job, predicted, images, labels)
    return job


def write_factorial_sweep(sweep: Path, cells: dict[tuple[str, ...], dict[int, float]], axes: dict) -> Path:
    sweep.mkdir(parents=True)
    seeds = sorted({s for by_seed in cells.values() for s in by_seed})
    params = {"seed": ",".join(map(str, seeds))} | {a: ",".join(levels) for a, levels in axes.items()}
    (sweep / "multirun.yaml").write_text(
        "hydra:\n  sweeper:\n    params:\n"
        + "".join(f"      {k}: {v}\n" for k, v in params.items())
        + "  overrides:\n    task: [sweep=ablation]\n"
    )
    num = 0
    for seed in seeds:
        for config, by_seed in cells.items():
            overrides = {"seed": str(seed), **dict(zip(axes, config, strict=True)), "sweep": "ablation"}
            write_run(sweep, num, overrides, by_seed[seed], 0.99)
            num += 1
    return sweep


def test_effects_and_interactions_are_the_linear_models_and_say_what_is_resolved(tmp_path):
    cells = factorial_errors()
    fit = analyse(cells, list(AXES3), AXES3)
    # the fabricated data are what they claim: each built-in effect within 3 standard errors, the rest near 0
    for term in fit.terms:
        assert abs(term.effect - BUILT_IN.get(term.axes, 0.0)) < 3 * term.se, term.name
    markdown = write_report(write_factorial_sweep(tmp_path / "sweep", cells, AXES3), tmp_path / "out")

    effects = {r["axis"]: r for r in read_csv(tmp_path / "out" / "effects.csv")}
    for term in fit.main_effects:
        row = effects[term.axes[0]]
        for column, value in (
            ("model_effect", term.effect),
            ("model_ci95_low", term.low),
            ("model_ci95_high", term.high),
            ("model_se", term.se),
            ("model_mde80", term.mde),
        ):
            assert float(row[column]) == pytest.approx(value, abs=1e-4), (term.name, column)
        assert float(row["model_p"]) == pytest.approx(term.p, rel=1e-3, abs=1e-12)
        assert float(row["model_p_holm"]) == pytest.approx(term.p_holm, rel=1e-3, abs=1e-12)
        assert int(row["model_df"]) == fit.residual_df == 32 - 1 - 3 - 7
        assert row["test_error_change_mean"] != "" and row["seeds"] == "4"  # the seed-level t column stays
        cell = f"{term.effect:+.2f} [{term.low:+.2f}, {term.high:+.2f}] | {p_text(term.p)} | {p_text(term.p_holm)}"
        assert cell in markdown
    assert "without_selection_seeds_mean" not in effects["activation"]  # not a tuned sweep

    resolved = markdown.split("## What the factorial resolves")[1].split("\n## ")[0]
    relu, max_pool, adam = fit.term("activation"), fit.term("pooling"), fit.term("optimizer")
    assert (
        f"- **activation tanh -> relu** lowers test error by {-relu.effect:.2f} points "
        f"[{-relu.high:.2f}, {-relu.low:.2f}]: resolved." in resolved
    )
    assert f"- **pooling avg -> max** lowers test error by {-max_pool.effect:.2f} points" in resolved
    assert (
        f"- **optimizer sgd -> adam**: {adam.effect:+.2f} points [{adam.low:+.2f}, {adam.high:+.2f}]: not resolved; "
        f"the design resolves effects of {adam.mde:.2f} points or more (MDE at 80% power)." in resolved
    )
    assert adam.low < 0 < adam.high and relu.high < 0 and max_pool.high < 0
    assert f"- The design resolves main effects of {adam.mde:.2f} points or more" in resolved
    ap = fit.term("activation", "pooling")
    assert f"resolved after Holm's correction: activation x pooling {ap.effect:+.2f} [" in resolved

    interactions = {r["term"]: r for r in read_csv(tmp_path / "out" / "interactions.csv")}
    assert set(interactions) == {t.name for t in fit.terms if t.order >= 2}
    for term in fit.terms[3:]:
        row = interactions[term.name]
        assert int(row["order"]) == term.order
        assert float(row["effect"]) == pytest.approx(term.effect, abs=1e-4)
        assert float(row["ci95_low"]) == pytest.approx(term.low, abs=1e-4)
        assert float(row["p_holm"]) == pytest.approx(term.p_holm, rel=1e-3, abs=1e-12)
    # the convention: half the difference of relu's effect with max-pooling and with average pooling
    conditional = stats.interactions(cells, list(AXES3), AXES3)
    relu_by_pooling = next(r for r in conditional if r.swap.axis == "activation" and r.by == "pooling")
    assert ap.effect == pytest.approx(relu_by_pooling.difference.mean / 2)
    assert "half the difference between A's effect at B's second level and at its first" in markdown
    three_way = fit.term("activation", "pooling", "optimizer")
    assert (
        f"Three-way (Holm within the 1): activation x pooling x optimizer {three_way.effect:+.2f} "
        f"[{three_way.low:+.2f}, {three_way.high:+.2f}], Holm p {p_text(three_way.p_holm)}." in markdown
    )
    assert "## Two-way interactions" not in markdown  # the seed-level table is in conditional_effects.csv
    assert len(read_csv(tmp_path / "out" / "conditional_effects.csv")) == 6


def test_without_two_levels_per_axis_the_report_says_why_and_keeps_the_seed_level_intervals(tmp_path):
    cells = {(a, o): {0: 1.0 + i + j, 1: 1.2 + i + j} for i, a in enumerate(("tanh", "relu", "gelu"))
             for j, o in enumerate(("sgd", "adam"))}  # fmt: skip
    axes = {"activation": ("tanh", "relu", "gelu"), "optimizer": ("sgd", "adam")}
    markdown = write_report(write_factorial_sweep(tmp_path / "sweep", cells, axes), tmp_path / "out")
    assert "No linear model: it needs two levels per axis (activation has 3)" in markdown
    assert "## What the factorial resolves" not in markdown and "## Two-way interactions" in markdown
    effects = read_csv(tmp_path / "out" / "effects.csv")
    assert "model_effect" not in effects[0] and float(effects[0]["test_error_change_mean"]) == pytest.approx(1.0)
    assert not (tmp_path / "out" / "interactions.csv").exists()


def test_the_effects_plot_draws_the_model(tmp_path):
    write_report(write_factorial_sweep(tmp_path / "sweep", factorial_errors(), AXES3), tmp_path / "out")
    height, width, _ = matplotlib.image.imread(tmp_path / "out" / "effects.png").shape
    assert height >= 300 and width >= 1000


# --- McNemar: the networks of two configurations, digit by digit ---------------------------------

# (activation, optimizer) -> (validation accuracy, the test digits each seed's run gets wrong, of 200).
# By test error relu/adam is best and tanh/sgd worst, but by validation tanh/adam is best and relu/sgd
# worst: the report must pick those.
PREDICTED = {
    ("tanh", "sgd"): (0.985, lambda seed: range(0, 20)),
    ("relu", "adam"): (0.990, lambda seed: range(10, 22 + seed)),
    ("tanh", "adam"): (0.995, lambda seed: range(100, 115)),
    ("relu", "sgd"): (0.980, lambda seed: range(150, 168)),
}


def write_predicted_sweep(sweep: Path) -> Path:
    sweep.mkdir(parents=True)
    (sweep / "multirun.yaml").write_text(
        "hydra:\n  sweeper:\n    params:\n      seed: 0,1,2\n      activation: tanh,relu\n      optimizer: sgd,adam\n"
        "  overrides:\n    task: [sweep=ablation]\n"
    )
    num = 0
    for seed in range(3):
        for (activation, optimizer), (val_acc, wrong) in PREDICTED.items():
            overrides = {"seed": str(seed), "activation": activation, "optimizer": optimizer, "sweep": "ablation"}
            write_run(sweep, num, overrides, 100 * len(wrong(seed)) / 200, val_acc, wrong(seed))
            num += 1
    return sweep


def test_mcnemar_compares_the_corners_and_the_best_and_worst_by_validation(tmp_path):
    markdown = write_report(write_predicted_sweep(tmp_path / "sweep"), tmp_path / "out")
    rows = read_csv(tmp_path / "out" / "mcnemar.csv")
    corners = [r for r in rows if r["comparison"] == "classic corner -> modern corner"]
    # tanh/sgd wrong on 0-19, relu/adam on 10-21 (+ seed): b = 20..21+seed, c = 0-9
    assert [(r["seed"], r["b"], r["c"]) for r in corners[:3]] == [("0", "2", "10"), ("1", "3", "10"), ("2", "4", "10")]
    for seed, row in enumerate(corners[:3]):
        b = 2 + seed
        assert (row["config_a"], row["config_b"]) == ("tanh / sgd", "relu / adam")
        assert float(row["p_exact"]) == pytest.approx(scipy_stats.binomtest(b, b + 10).pvalue, rel=1e-3)
        assert float(row["difference"]) == pytest.approx(100 * (b - 10) / 200)
        assert row["digits"] == "200" and int(row["both_wrong"]) == 10 - 0 and int(row["both_right"]) == 180 - b
    over = corners[3]
    differences = [100 * (2 + seed - 10) / 200 for seed in range(3)]
    assert over["seed"] == "mean over seeds" and over["seeds"] == "3"
    assert float(over["difference"]) == pytest.approx(stats.t_interval(differences).mean)
    assert float(over["ci95_low"]) == pytest.approx(stats.t_interval(differences).low, abs=1e-4)

    chosen = [r for r in rows if r["comparison"] == "worst -> best configuration by validation accuracy"]
    assert (chosen[0]["config_a"], chosen[0]["config_b"]) == ("relu / sgd", "tanh / adam")  # not relu/adam
    assert [(r["b"], r["c"]) for r in chosen[:3]] == [("15", "18")] * 3  # disjoint mistakes: 15 and 18 digits
    assert float(chosen[0]["p_exact"]) == pytest.approx(scipy_stats.binomtest(15, 33).pvalue, rel=1e-3)

    section = markdown.split("## Paired per-digit tests (McNemar)")[1].split("\n## ")[0]
    seed_0 = mcnemar_table(both_right=178, b=2, c=10, both_wrong=10)
    ci = f"[{100 * seed_0.low:+.2f}, {100 * seed_0.high:+.2f}]"
    assert f"| 0 | 2 | 10 | 10.00 -> 6.00 | -4.00 {ci} | {p_text(seed_0.p_value)} |" in section
    assert "A = relu / sgd, B = tanh / adam (mean val/acc_best of their result runs 98.00% and 99.50%" in section
    assert "never by test error: the test set chooses nothing" in section
    assert "left out" not in section


def test_runs_without_predictions_skip_mcnemar_in_one_line(tmp_path):
    markdown = write_report(write_sweep(tmp_path / "sweep"), tmp_path / "out")
    section = markdown.split("## Paired per-digit tests (McNemar)\n\n")[1].split("\n\n")[0]
    assert section.startswith("Skipped: none of the compared runs has `test_predictions.npz`")
    assert not (tmp_path / "out" / "mcnemar.csv").exists()


def test_damaged_and_mismatched_prediction_files_are_listed_and_the_report_goes_on(tmp_path, capsys):
    sweep = write_predicted_sweep(tmp_path / "sweep")
    damaged = sweep / "job004"  # tanh/sgd, seed 1: the classic corner
    data = (damaged / TEST_PREDICTIONS).read_bytes()
    (damaged / TEST_PREDICTIONS).write_bytes(data[: len(data) // 2])  # cut short
    other = sweep / "job010"  # tanh/adam, seed 2: on other digits
    write_run(tmp_path / "elsewhere", 0, {"seed": "2"}, 7.5, 0.995, range(100, 115), images_seed=9)
    (other / TEST_PREDICTIONS).write_bytes((tmp_path / "elsewhere" / "job000" / TEST_PREDICTIONS).read_bytes())

    assert main([str(sweep), "--output", str(tmp_path / "out")]) == 0
    markdown = (tmp_path / "out" / "report.md").read_text()
    section = markdown.split("## Paired per-digit tests (McNemar)")[1].split("\n## ")[0]
    assert "- `job004`: damaged, left out: " in section and "cannot be read as a run's test predictions" in section
    assert "- `job011 and job010`: " in section and "are not on the same test digits" in section
    rows = read_csv(tmp_path / "out" / "mcnemar.csv")
    seeds = {c: [r["seed"] for r in rows if r["comparison"].startswith(c)] for c in ("classic", "worst")}
    assert seeds == {"classic": ["0", "2", "mean over seeds"], "worst": ["0", "1", "mean over seeds"]}
    assert "| mean over 2 seeds |" in section


def test_where_each_runs_last_checkpoint_was_evaluated_the_report_adds_the_last_epochs_test_error(tmp_path):
    """`python -m lenet_pl.evaluate ckpt_path=<job>/checkpoints/last.ckpt` writes evaluation/last/evaluation.json;
    the report shows that error beside the best checkpoint's, and its main effects in the budget table."""
    from lenet_pl.report import LAST_EPOCH

    sweep = write_sweep(tmp_path / "sweep")
    for job in sorted(p for p in sweep.iterdir() if p.is_dir()):
        activation, optimizer, seed = (part.split("=")[1] for part in job.name.split("_", 1)[1].split(","))
        # after the last epoch: 0.5 points worse than the best checkpoint, and relu's advantage doubled
        last = ERRORS[activation, optimizer, seed] + 0.5 - (1.0 if activation == "relu" else 0.0)
        (job / LAST_EPOCH).parent.mkdir(parents=True)
        (job / LAST_EPOCH).write_text(json.dumps({"test/acc": 1 - last / 100}))
    (next(sweep.glob("0_*")) / LAST_EPOCH).write_text("{")  # damaged: left out, the run's own result stands
    markdown = write_report(sweep, tmp_path / "out")
    rows = {(r["activation"], r["optimizer"]): r for r in read_csv(tmp_path / "out" / "configurations.csv")}
    assert float(rows["relu", "adam"]["test_error_last_epoch_mean"]) == pytest.approx(3.5)
    assert float(rows["tanh", "sgd"]["test_error_last_epoch_mean"]) == pytest.approx(10.5)  # seed 1 alone
    assert float(rows["tanh", "sgd"]["test_error_mean"]) == pytest.approx(9.0)
    assert "test error %, last epoch" in markdown
    budget = {r["axis"]: r for r in read_csv(tmp_path / "out" / "budget.csv")}
    assert budget["activation"]["test error (best checkpoint)"].startswith("-1.00")
    # relu's advantage doubled, -2.00 on complete data; the damaged job 0 (tanh, sgd, seed 0) is left out and
    # the linear model, as for the main effects, fits the other seven runs by least squares
    last_cells: dict[tuple[str, ...], dict[int, float]] = {}
    for (activation, optimizer, seed), error in ERRORS.items():
        if (activation, optimizer, seed) != ("tanh", "sgd", "0"):
            value = error + 0.5 - (1.0 if activation == "relu" else 0.0)
            last_cells.setdefault((activation, optimizer), {})[int(seed)] = value
    levels = {"activation": ("tanh", "relu"), "optimizer": ("sgd", "adam")}
    term = analyse(last_cells, ["activation", "optimizer"], levels).term("activation")
    assert term.effect != pytest.approx(-2.0)  # the missing run moves the estimate off the balanced one
    assert budget["activation"]["test error (last epoch)"] == f"{term.effect:+.2f} [{term.low:+.2f}, {term.high:+.2f}]"


def test_a_measure_the_model_cannot_fit_gets_seed_level_intervals_and_says_so(tmp_path):
    """Last-epoch tests of three of the four configurations: no model of that measure (a corner is missing)."""
    from lenet_pl.report import LAST_EPOCH

    sweep = write_sweep(tmp_path / "sweep")
    for job in sorted(p for p in sweep.iterdir() if p.is_dir()):
        activation, optimizer, seed = (part.split("=")[1] for part in job.name.split("_", 1)[1].split(","))
        if (activation, optimizer) == ("relu", "adam"):
            continue
        (job / LAST_EPOCH).parent.mkdir(parents=True)
        (job / LAST_EPOCH).write_text(json.dumps({"test/acc": 1 - ERRORS[activation, optimizer, seed] / 100}))
    markdown = write_report(sweep, tmp_path / "out")
    assert "The model does not fit *test error (last epoch)*" in markdown
    assert "from the linear model of that measure" in markdown  # the other measures keep the model
    budget = {r["axis"]: r for r in read_csv(tmp_path / "out" / "budget.csv")}
    # seed-level: relu - tanh under sgd only (the adam pair has no relu run): seeds 0, 1: -1.0, -1.0
    assert budget["activation"]["test error (last epoch)"] == "-1.00 [-1.00, -1.00]"  # no spread between the seeds
    best = analyse(
        {(a, o): {int(s): e for (a2, o2, s), e in ERRORS.items() if (a2, o2) == (a, o)} for a, o, _ in ERRORS},
        ["activation", "optimizer"],
        {"activation": ("tanh", "relu"), "optimizer": ("sgd", "adam")},
    ).term("activation")
    assert (
        budget["activation"]["test error (best checkpoint)"]
        == f"{best.effect:+.2f} [{best.low:+.2f}, {best.high:+.2f}]"
    )


def test_without_last_epoch_evaluations_the_report_has_no_such_column(tmp_path):
    markdown = write_report(write_sweep(tmp_path / "sweep"), tmp_path / "out")
    assert "test error %, last epoch" not in markdown and "test error (last epoch)" not in markdown
    assert read_csv(tmp_path / "out" / "configurations.csv")[0]["test_error_last_epoch_mean"] == ""


def test_error_per_pass_curves_are_runs_up_to_ten_then_configuration_means():
    def job(num: int, seed: int, error: float, passes: int = 3) -> Job:
        rows = [{"pass": p, "train_error": error / p, "test_error": 2 * error / p} for p in range(1, passes + 1)]
        return Job(Path(f"{num}_run"), num, {"seed": str(seed)}, {}, None, per_pass=rows)

    # 4 configurations x 3 seeds = 12 runs: one curve per configuration, the mean of its runs per pass
    series = [(f"config{c}", [job(3 * c + s, s, 0.01 * (c + 1) + 0.003 * s) for s in range(3)]) for c in range(4)]
    curves = _per_pass_curves(series)
    assert list(curves) == [f"config{c} (mean of 3)" for c in range(4)]
    assert curves["config1 (mean of 3)"][1] == pytest.approx({"pass": 2, "train_error": 0.0115, "test_error": 0.023})
    # a shorter run limits its configuration to the passes every run reached
    series[0][1][0] = job(0, 0, 0.01, passes=2)
    curves = _per_pass_curves(series)
    assert [r["pass"] for r in curves["config0 (mean of 3)"]] == [1, 2]
    assert curves["config0 (mean of 3)"][0]["train_error"] == pytest.approx((0.01 + 0.013 + 0.016) / 3)
    # up to 10 runs: each run, named by configuration and seed
    few = _per_pass_curves(series[:3])
    assert list(few)[:4] == ["config0, seed 0", "config0, seed 1", "config0, seed 2", "config1, seed 0"]
    assert len(few) == 9 and few["config2, seed 1"] == series[2][1][1].per_pass
