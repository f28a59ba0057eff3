"""`python -m lenet_pl.train` as a user runs it: outputs, TensorBoard contents, multiruns, bad input."""

import json
import socket
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from conftest import run_cli, run_in_process, tiny_args


def events(run_dir: Path) -> EventAccumulator:
    files = list(run_dir.glob("events.out.tfevents.*"))
    assert files, f"no TensorBoard event file in {run_dir}"
    accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    accumulator.Reload()
    return accumulator


def logged_hparams(accumulator: EventAccumulator) -> dict:
    content = accumulator.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = HParamsPluginData.FromString(content).session_start_info.hparams
    return {k: v.string_value or v.number_value for k, v in hparams.items()}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[Path, object]:
    """A 2-epoch run on synthetic digits through the CLI (the classic default config)."""
    from conftest import write_dataset

    tmp = tmp_path_factory.mktemp("tiny_run")
    root = write_dataset(tmp / "data")
    result = run_cli("lenet_pl.train", *tiny_args(root, tmp / "run", "optimizer.lr=0.1"), cwd=tmp)
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp / "run", result


def test_run_prints_layer_table_and_test_accuracy(tiny_run):
    run_dir, result = tiny_run
    output = result.stdout + result.stderr
    assert "C5                 120      48,120        48,120" in output
    metrics = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    assert f"Test accuracy: {100 * metrics['test/acc']:.2f}%" in output


def test_run_dir_holds_config_checkpoints_and_metrics(tiny_run):
    run_dir, _ = tiny_run
    config = (run_dir / ".hydra" / "config.yaml").read_text()
    assert "lr: 0.1" in config and "_target_: torch.nn.Tanh" in config
    saved = json.loads((run_dir / "metrics.json").read_text())
    metrics, hparams = saved["metrics"], saved["hparams"]
    assert metrics["epochs"] == 2 and metrics["global_step"] == 2 * 20  # 1000 train images / batch 50
    assert 0.9 < metrics["test/acc"] <= 1.0  # synthetic digits are easy
    assert metrics["val/acc_best"] >= metrics["val/acc"] - 1e-9
    assert hparams["activation"] == "tanh" and hparams["pooling"] == "avg" and hparams["optimizer.lr"] == 0.1
    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").glob("*.ckpt"))
    assert "last.ckpt" in checkpoints and len(checkpoints) == 2
    assert metrics["best_checkpoint"].endswith(".ckpt") and Path(metrics["best_checkpoint"]).is_file()
    best = torch.load(metrics["best_checkpoint"], weights_only=True)
    assert best["state_dict"]["net.C1.0.weight"].shape == (6, 1, 5, 5)
    assert (run_dir / "csv" / "metrics.csv").is_file()


def test_tensorboard_has_curves_learning_rate_test_accuracy_and_hparams(tiny_run):
    run_dir, _ = tiny_run
    accumulator = events(run_dir)
    scalars = set(accumulator.Tags()["scalars"])
    expected = {"train/loss_step", "train/loss_epoch", "train/acc", "val/loss", "val/acc", "test/acc", "test/loss"}
    assert expected <= scalars
    assert any(tag.startswith("lr-") for tag in scalars)  # LearningRateMonitor
    assert {"final/test_acc", "final/val_acc_best"} <= scalars
    assert "hp_metric" not in scalars
    assert len(accumulator.Scalars("val/acc")) == 2  # one point per epoch
    metrics = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    assert accumulator.Scalars("final/test_acc")[0].value == pytest.approx(metrics["test/acc"])
    hparams = logged_hparams(accumulator)
    assert hparams["activation"] == "tanh" and hparams["optimizer"] == "sgd" and hparams["seed"] == 42


def test_fast_dev_run_through_the_cli_even_without_loggers(tmp_path, synthetic_root):
    args = tiny_args(synthetic_root, tmp_path / "run", "trainer=debug", "logger=none")
    result = run_in_process("lenet_pl.train", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Test accuracy:" in result.stdout + result.stderr
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["metrics"]["global_step"] == 1


def test_multirun_puts_each_job_under_one_sweep_dir_named_by_its_overrides(tmp_path, synthetic_root):
    sweep = tmp_path / "sweep"
    args = [a for a in tiny_args(synthetic_root, tmp_path / "unused") if not a.startswith("hydra.run")]
    result = run_in_process(
        "lenet_pl.train",
        "-m",
        *args,
        "trainer.max_epochs=1",
        "activation=tanh,relu",
        "pooling=avg,max",
        "trainer.limit_train_batches=4",  # what is checked is where each job's files go, not its training
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert len(jobs) == 4
    for activation in ("tanh", "relu"):
        for pooling in ("avg", "max"):
            (job,) = [j for j in jobs if f"activation-{activation}" in j and f"pooling-{pooling}" in j]
            run = sweep / job
            assert logged_hparams(events(run))["activation"] == activation
            assert json.loads((run / "metrics.json").read_text())["hparams"]["pooling"] == pooling
    assert all("data.root" not in job for job in jobs)  # paths stay out of run names


def test_unknown_choice_fails_before_training_with_the_valid_options(tmp_path):
    result = run_in_process("lenet_pl.train", "activation=swish", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 2  # a user error, as in every command
    assert "error: In 'train': Could not find 'activation/swish'. Available options in 'activation': " in result.stderr
    assert "relu" in result.stderr and "scaled_tanh" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_unknown_choice_in_a_sweep_fails_before_any_job_with_hydras_message(tmp_path):
    result = run_in_process(
        "lenet_pl.train", "-m", "activation=swish,relu", f"hydra.sweep.dir={tmp_path / 's'}", cwd=tmp_path
    )
    assert result.returncode == 2
    assert "error: In 'train': Could not find 'activation/swish'" in result.stderr
    assert "a job of the sweep failed" not in result.stderr  # nothing ran: composing the sweep failed
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        # one case per class of bad value, through the command; the messages of the other values of each
        # class are checked on the config (test_configs.py, test_module.py)
        (["data.batch_size=0"], "error: data.batch_size=0 is not allowed: it must be a whole number of at least 1."),
        (
            ["optimizer=adam", "optimizer.betas=[0.9,1.5]"],
            "error: optimizer.betas=[0.9, 1.5] is not allowed: give two numbers, each in [0, 1)",
        ),
        # refused by torch itself, reported through the one wrapper of every config node
        (
            ["+optimizer.nesterov=true"],
            "error: optimizer.momentum=0.0, optimizer.nesterov=True are not allowed: torch.optim.SGD refuses them",
        ),
        # the model against the data set, when the run is built
        (["data.image_size=28"], "error: model.input_size=32 does not fit data.image_size=28"),
        # an interpolation typed on the command line that points nowhere
        (["optimizer.lr=${nope}"], "error: Interpolation key 'nope' not found full_key: optimizer.lr"),
    ],
)
def test_bad_value_is_one_line_on_stderr_and_exit_2(tmp_path, synthetic_root, overrides, message):
    result = run_in_process("lenet_pl.train", *tiny_args(synthetic_root, tmp_path / "run", *overrides), cwd=tmp_path)
    assert result.returncode == 2
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert line.startswith(message) and "Traceback" not in result.stdout + result.stderr
    assert line in (tmp_path / "run" / "train.log").read_text()  # the run's log keeps it too
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_missing_data_without_network_says_how_to_point_data_root(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise socket.gaierror(-3, "Temporary failure in name resolution (network disabled by the test)")

    monkeypatch.setattr(socket, "getaddrinfo", offline)  # every download fails, as on a machine with no network
    empty = tmp_path / "no-data"
    result = run_in_process(
        "lenet_pl.train",
        f"data.root={empty}",
        "trainer=debug",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    assert result.returncode == 2
    output = result.stdout + result.stderr
    assert f"MNIST is not in {empty}/MNIST/raw and downloading it failed" in output
    assert "data.root=/path/to/data" in output and "Traceback" not in output


# 20 s: a whole epoch of real MNIST. The default suite trains the same preset on real MNIST for 250 steps
# (conftest's mnist_run) and test_evaluate.py checks its test accuracy (> 90%).
@pytest.mark.slow
def test_modern_preset_reaches_95_percent_on_real_mnist_in_one_epoch(tmp_path, real_mnist_root):
    result = run_in_process(
        "lenet_pl.train",
        "experiment=modern",
        "trainer.max_epochs=1",
        f"data.root={real_mnist_root}",
        "trainer.enable_progress_bar=false",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())["metrics"]
    assert metrics["test/acc"] > 0.95
    assert metrics["epochs"] == 1
