"""Sweeps through the CLI: the ablation grid on the joblib launcher (and its report), Optuna, submitit."""

import csv
import json
import shlex
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf
from PIL import Image

from conftest import run_in_process, synthetic_digits, write_dataset
from lenet_pl import CONFIG_DIR
from lenet_pl.runtime.naming import job_name, sweep_size


def tiny_sweep_args(data_root: Path, sweep_dir: Path, *overrides: str) -> list[str]:
    """Overrides for sweep jobs of a few seconds each on a synthetic data root."""
    return [
        "-m",
        f"data.root={data_root}",
        "data.verify=false",
        "data.val_size=100",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=6",
        "trainer.enable_progress_bar=false",
        "logger=csv",  # the report reads the CSV; TensorBoard is tested in test_train.py
        f"hydra.sweep.dir={sweep_dir}",
        *overrides,
    ]


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def metrics(job_dir: Path) -> dict:
    return json.loads((job_dir / "metrics.json").read_text())


def compose_with_hydra(*overrides: str):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides), return_hydra_config=True)


def sweep_jobs(cfg) -> list[list[str]]:
    """The jobs the basic sweeper launches for a composed config (its params, then the command line)."""
    params = [f"{k}={v}" for k, v in cfg.hydra.sweeper.params.items()]
    overrides = OverridesParser.create().parse_overrides(params)
    return [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]


def test_ablation_is_the_full_factorial_of_four_axes_over_three_seeds():
    cfg = compose_with_hydra("sweep=ablation")
    jobs = sweep_jobs(cfg)
    assert len(jobs) == 16 * 3
    assert jobs[0] == ["seed=0", "activation=tanh", "pooling=avg", "loss=mse", "optimizer=sgd"]
    assert jobs[15] == ["seed=0", "activation=relu", "pooling=max", "loss=cross_entropy", "optimizer=adam"]
    assert cfg.trainer.max_epochs == 5
    assert cfg.threads == 1


@pytest.mark.parametrize("launcher", ["joblib", "slurm", "submitit_local"])
def test_launcher_configs_compose(launcher):
    launcher_cfg = compose_with_hydra("sweep=ablation", f"hydra/launcher={launcher}").hydra.launcher
    target = {
        "joblib": "JoblibLauncher",
        "slurm": "SlurmLauncher",
        "submitit_local": "LocalLauncher",
    }[launcher]
    assert launcher_cfg._target_.endswith(target)
    if launcher == "joblib":
        assert launcher_cfg.n_jobs == -1  # one job per core
    if launcher == "slurm":  # the fields users edit for their cluster
        assert {"partition", "account", "gpus_per_node", "cpus_per_task", "mem_gb", "timeout_min", "setup"} <= set(
            launcher_cfg
        )
        assert launcher_cfg.gpus_per_node == 1


@pytest.fixture(scope="module")
def tiny_ablation(tmp_path_factory) -> tuple[Path, object]:
    """A 2 x 2 ablation (activation x pooling, 1 seed) on the joblib launcher, in which job 0 fails.

    `data.eval_batch_size=${hydra:job.num}` gives job 0 an eval batch size of 0, which the data
    module rejects once the job has started; jobs 1-3 evaluate in batches of 1-3 images.
    """
    tmp = tmp_path_factory.mktemp("ablation")
    root = write_dataset(tmp / "data")
    sweep = tmp / "sweep"
    args = tiny_sweep_args(
        root,
        sweep,
        "sweep=ablation",
        "hydra/launcher=joblib",
        "seed=0",
        "activation=tanh,relu",
        "pooling=avg,max",
        "loss=cross_entropy",
        "optimizer=adam",
        "data.eval_batch_size=${hydra:job.num}",
    )
    return sweep, run_in_process("lenet_pl.train", *args, cwd=tmp)


def test_ablation_on_joblib_runs_every_job_and_records_the_failed_one(tiny_ablation):
    sweep, result = tiny_ablation
    job_dirs = sorted(p for p in sweep.iterdir() if (p / ".hydra").is_dir())
    assert [p.name.split("_")[0] for p in job_dirs] == ["0", "1", "2", "3"]
    assert result.returncode != 0  # Hydra re-raises the failed job's error once the others finished
    assert "data.eval_batch_size=0 is not allowed" in result.stderr
    assert not (job_dirs[0] / "metrics.json").exists()
    finished = [metrics(p) for p in job_dirs[1:]]
    assert [(m["hparams"]["activation"], m["hparams"]["pooling"]) for m in finished] == [
        ("tanh", "max"),
        ("relu", "avg"),
        ("relu", "max"),
    ]
    assert all(m["hparams"]["optimizer"] == "adam" and m["hparams"]["seed"] == 0 for m in finished)
    assert all(0 <= m["metrics"]["test/acc"] <= 1 and m["metrics"]["epochs"] == 1 for m in finished)
    # the console holds one progress line per change, not the jobs' layer tables; each job's log holds those
    assert "LeNet-5 layers" not in result.stdout + result.stderr
    assert "sweep: 4/4 jobs returned (1 failed, 0 running; best val acc" in result.stderr
    assert "LeNet-5 layers" in (job_dirs[1] / "train.log").read_text()
    assert "ConfigError: data.eval_batch_size=0 is not allowed" in (job_dirs[0] / "train.log").read_text()


def test_report_on_the_ablation(tiny_ablation):
    sweep, _ = tiny_ablation
    out = sweep / "report"
    result = run_in_process("lenet_pl.report", str(sweep), "--output", str(out), cwd=sweep)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "4 job dirs of 4 jobs in the sweep; 3 finished, 1 failed, 0 running" in result.stdout
    failed = result.stdout.split("## Runs without results")[1].split("##")[0]
    assert "0_activation-tanh" in failed and "1_activation" not in failed
    assert "failed: ConfigError: data.eval_batch_size=0 is not allowed" in failed

    rows = read_csv(out / "configurations.csv")
    assert list(rows[0])[:4] == ["activation", "pooling", "runs", "test_acc_mean"]
    by_config = {(r["activation"], r["pooling"]): r for r in rows}
    assert len(by_config) == 4  # the failed configuration is a row without results
    assert by_config["tanh", "avg"]["runs"] == "0/1" and by_config["tanh", "avg"]["test_acc_mean"] == ""
    job = {p.name.split("_")[0]: p for p in sweep.iterdir() if (p / ".hydra").is_dir()}
    relu_max_acc = 100 * metrics(job["3"])["metrics"]["test/acc"]
    assert by_config["relu", "max"]["runs"] == "1/1"
    assert float(by_config["relu", "max"]["test_acc_mean"]) == pytest.approx(relu_max_acc, abs=1e-3)

    # only tanh/max vs relu/max differ in activation alone (tanh/avg failed); likewise relu/avg vs relu/max
    effects = {r["axis"]: r for r in read_csv(out / "effects.csv")}
    tanh_max_error = 100 * (1 - metrics(job["1"])["metrics"]["test/acc"])
    assert effects["activation"]["change"] == "tanh -> relu"
    assert float(effects["activation"]["test_error_change_mean"]) == pytest.approx(
        (100 - relu_max_acc) - tanh_max_error, abs=1e-3
    )
    assert effects["activation"]["pairs"] == "1" and effects["pooling"]["pairs"] == "1"
    for name in ("val_acc.png", "effects.png"):
        assert matplotlib.image.imread(out / name).shape[2] in (3, 4)


def test_optuna_search_runs_its_trials_and_returns_the_best(tmp_path):
    root = write_dataset(tmp_path / "data")
    sweep = tmp_path / "sweep"
    args = tiny_sweep_args(root, sweep, "hparams_search=optuna", "hydra.sweeper.n_trials=2", "experiment=modern")
    result = run_in_process("lenet_pl.train", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    trials = [json.loads(p.read_text()) for p in sweep.glob("*/metrics.json")]
    assert len(trials) == 2
    for trial in trials:
        assert 1e-4 <= trial["hparams"]["optimizer.lr"] <= 0.1
        assert trial["hparams"]["data.batch_size"] in (32, 64, 128, 256)
        assert trial["hparams"]["optimizer"] == "adam"  # the preset's, searched around
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(max(t["metrics"]["val/acc_best"] for t in trials))
    # the trials land in the same report format
    report = run_in_process("lenet_pl.report", str(sweep), cwd=tmp_path)
    assert report.returncode == 0, report.stderr[-3000:]
    assert "2 job dirs; 2 finished" in report.stdout
    assert "optimizer.lr" in (sweep / "report" / "configurations.csv").read_text().splitlines()[0]


def test_submitit_local_launcher_runs_a_job(tmp_path):
    root = write_dataset(tmp_path / "data")
    sweep = tmp_path / "sweep"
    args = tiny_sweep_args(root, sweep, "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5")
    result = run_in_process("lenet_pl.train", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (job_dir,) = [p for p in sweep.iterdir() if (p / "metrics.json").is_file()]
    assert metrics(job_dir)["metrics"]["epochs"] == 1
    assert "sweep: 1/1 jobs returned" in result.stderr
    assert "LeNet-5 layers" in (job_dir / "train.log").read_text()  # the job's output, written in submitit's process
    # submitit ran it in its own process and kept its logs and result beside the sweep
    assert list((sweep / ".submitit").glob("*/*_0_result.pkl"))
    assert list((sweep / ".submitit").glob("*/*_0_log.out"))


EXCLUDED = ["data.root", "ckpt_path"]


@pytest.mark.parametrize(
    ("num", "overrides", "size", "expected"),
    [
        (7, ["seed=0", "activation=relu", "loss=mse"], 48, "07_activation-relu+loss-mse+seed-0"),
        (3, ["activation=relu"], 4, "3_activation-relu"),
        (7, ["seed=0"], 1000, "007_seed-0"),
        (7, ["seed=0"], None, "007_seed-0"),  # size unknown: three digits
        (0, [], 2, "0"),
        (1, ["optimizer.lr=1e-3", "seed=-1"], 2, "1_optimizer.lr-1e-3+seed--1"),
        (
            1,
            ["optimizer.betas=[0.9,0.99]", "+trainer.profiler=simple"],
            2,
            "1_optimizer.betas-0.9_0.99+trainer.profiler-simple",
        ),
        (
            1,
            ["data.eval_batch_size=${hydra:job.num}", "~callbacks.model_graph"],
            2,
            "1_callbacks.model_graph-deleted+data.eval_batch_size-hydra_job.num",
        ),
        (1, ["data.root=/some/where", "ckpt_path=last", "note='a b/c'"], 2, "1_note-a_b_c"),
    ],
)
def test_job_names_sort_and_survive_the_shell_and_hydras_grammar(num, overrides, size, expected):
    name = job_name(num, overrides, EXCLUDED, size)
    assert name == expected
    assert shlex.quote(name) == name  # nothing the shell would interpret
    parsed = OverridesParser.create().parse_override(f"ckpt_path=outputs/multirun/2026-01-31/12-00-00/{name}")
    assert parsed.value() == f"outputs/multirun/2026-01-31/12-00-00/{name}"


def test_job_numbers_are_padded_to_the_sweeps_size_so_they_sort():
    names = [job_name(n, ["seed=0"], [], 48) for n in range(48)]
    assert names[0] == "00_seed-0" and names[47] == "47_seed-0"
    assert sorted(names) == names


def test_a_long_job_name_is_cut_and_stays_unique():
    long = [f"x{i}=" + "v" * 40 for i in range(10)]
    name = job_name(3, long, [], 10)
    assert len(name) < 255 and name != job_name(3, [*long[:-1], "x9=" + "w" * 40], [], 10)


def test_sweep_size_reads_the_grid_or_the_number_of_trials(tmp_path):
    (tmp_path / "multirun.yaml").write_text(
        "hydra:\n  sweeper:\n    params:\n      activation: tanh,relu\n      seed: 0,1,2\n"
        "  overrides:\n    task: [sweep=ablation, 'optimizer=sgd,adam,adamw', 'seed=0,1']\n"
    )
    assert sweep_size(tmp_path) == 2 * 3 * 2  # the command line narrowed the seeds, as in Hydra
    assert sweep_size(tmp_path / "none") is None
    assert sweep_size(tmp_path / "none", OmegaConf.create({"n_trials": 20})) == 20


def test_sweep_job_dirs_work_as_ckpt_path_on_the_command_line_as_written(tmp_path):
    """A real sweep; its job dir given, unquoted, to evaluate, predict, export and train (resume)."""
    root = write_dataset(tmp_path / "data", n_train=600, n_test=100)
    sweep = tmp_path / "sweep"
    args = tiny_sweep_args(root, sweep, "activation=tanh,relu", "trainer.limit_train_batches=3", "threads=1")
    result = run_in_process("lenet_pl.train", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    names = sorted(p.name for p in sweep.iterdir() if (p / "checkpoints").is_dir())
    assert names == [
        "0_activation-tanh+data.val_size-100+logger-csv+threads-1+trainer.limit_train_batches-3+trainer.max_epochs-1",
        "1_activation-relu+data.val_size-100+logger-csv+threads-1+trainer.limit_train_batches-3+trainer.max_epochs-1",
    ]
    job = sweep / names[1]

    # evaluate through the shell, unquoted, as a user pastes it; predict, export and resume beside it
    command = f"{shlex.quote(sys.executable)} -m lenet_pl.evaluate ckpt_path={job} output={tmp_path / 'eval'}"
    digit = Image.fromarray(synthetic_digits(1, seed=3)[0][0].numpy())
    digit.save(tmp_path / "digit.png")
    train_args = [a for a in tiny_sweep_args(root, sweep) if a != "-m" and not a.startswith("hydra.sweep")]
    evaluated = subprocess.run(command, shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    predicted = run_in_process("lenet_pl.predict", f"ckpt_path={job}", f"inputs={tmp_path / 'digit.png'}", cwd=tmp_path)
    exported = run_in_process(
        "lenet_pl.export", f"ckpt_path={job}", "format=torchscript", f"output={tmp_path / 'm.pt'}", cwd=tmp_path
    )
    resumed = run_in_process(
        "lenet_pl.train",
        *train_args,
        "activation=relu",
        "trainer.limit_train_batches=3",
        "trainer.max_epochs=2",
        f"ckpt_path={job}",
        f"hydra.run.dir={tmp_path / 'resumed'}",
        cwd=tmp_path,
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    report = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    assert report["test/acc"] == pytest.approx(metrics(job)["metrics"]["test/acc"], abs=1e-6)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert "digit.png" in predicted.stdout
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert (tmp_path / "m.pt").is_file()
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Resuming from {job}/checkpoints/last.ckpt (epoch 0" in resumed.stdout + resumed.stderr
    assert metrics(tmp_path / "resumed")["metrics"]["epochs"] == 2
