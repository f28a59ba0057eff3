"""A run that is killed, diverges, is mistyped or is rerun loses nothing and says what happened."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from conftest import run_cli, run_in_process, tiny_args, write_dataset
from lenet_pl.divergence import DivergenceGuard, TrainingDiverged
from lenet_pl.module import LeNetModule
from lenet_pl.runtime.checkpoints import adopt_checkpoint, check_compatible, load_checkpoint, resolve_checkpoint
from lenet_pl.runtime.compose import compose_config
from lenet_pl.runtime.errors import ConfigError
from lenet_pl.runtime.naming import unique_dir

# Deterministic on CPU: one thread, so reductions always run in the same order.
RUN = ("threads=1", "trainer.max_epochs=4", "optimizer.lr=0.05", "seed=7")
FINAL = ("test/acc", "test/loss", "val/acc_best", "val/acc", "epochs", "global_step")


def metrics_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())["metrics"]


def weights_of(ckpt: Path) -> dict[str, torch.Tensor]:
    return torch.load(ckpt, weights_only=True)["state_dict"]


def files_of(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()
    }


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("data"), n_train=3200, n_test=300)  # 60 steps an epoch


@pytest.fixture(scope="module")
def reference_runs(tmp_path_factory, data_root) -> dict[str, Path]:
    """Three uninterrupted runs: seed 7 in a process of its own and again in this one, and seed 8."""
    tmp = tmp_path_factory.mktemp("reference")
    seeds = {"a": 7, "b": 7, "other_seed": 8}
    for name, seed in seeds.items():
        run = run_cli if name == "a" else run_in_process
        result = run("lenet_pl.train", *tiny_args(data_root, tmp / name, *RUN, f"seed={seed}"), cwd=tmp)
        assert result.returncode == 0, result.stderr[-3000:]
    return {name: tmp / name for name in seeds}


def test_same_seed_gives_identical_metrics_and_another_seed_does_not(reference_runs):
    a, b, other = (metrics_of(reference_runs[k]) for k in ("a", "b", "other_seed"))
    assert {k: a[k] for k in FINAL} == {k: b[k] for k in FINAL}
    assert a["test/loss"] != other["test/loss"]
    for name in weights_of(reference_runs["a"] / "checkpoints" / "last.ckpt"):
        assert torch.equal(
            weights_of(reference_runs["a"] / "checkpoints" / "last.ckpt")[name],
            weights_of(reference_runs["b"] / "checkpoints" / "last.ckpt")[name],
        )
    assert json.loads((reference_runs["a"] / "metrics.json").read_text())["hparams"]["seed"] == 7


def test_run_killed_mid_training_resumes_to_the_same_weights_and_metrics(tmp_path, data_root, reference_runs):
    killed = tmp_path / "outputs" / "killed"
    command = [sys.executable, "-m", "lenet_pl.train", *tiny_args(data_root, killed, *RUN)]
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = killed / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    while not last.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)  # no polite stop: no teardown, no final save
    process.wait()
    assert last.exists() and not (killed / "metrics.json").exists(), "the run was not killed mid-training"
    killed_epoch = load_checkpoint(last)["epoch"]
    assert killed_epoch < 3
    before = files_of(killed)

    # `last`: the newest last.ckpt of an earlier run of the same config under outputs/
    resumed = tmp_path / "outputs" / "resumed"
    result = run_in_process("lenet_pl.train", *tiny_args(data_root, resumed, *RUN, "ckpt_path=last"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Resuming from {last}" in result.stdout + result.stderr

    reference = reference_runs["a"]
    assert {k: metrics_of(resumed)[k] for k in FINAL} == {k: metrics_of(reference)[k] for k in FINAL}
    ours, theirs = (
        weights_of(resumed / "checkpoints" / "last.ckpt"),
        weights_of(reference / "checkpoints" / "last.ckpt"),
    )
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert files_of(killed) == before  # the killed run's files are left as they were


def test_a_run_dir_names_its_last_checkpoint(reference_runs, tmp_path):
    cfg = compose_config(["paths.output_dir=x"])
    run = reference_runs["a"]
    assert resolve_checkpoint(str(run), cfg, tmp_path, tmp_path / "new") == run / "checkpoints" / "last.ckpt"
    assert resolve_checkpoint(str(run / "checkpoints" / "last.ckpt"), cfg, tmp_path, tmp_path / "new").is_file()
    with pytest.raises(ConfigError, match=r"ckpt_path=.*nope does not exist: give a .ckpt file, a run dir, or `last`"):
        resolve_checkpoint(str(tmp_path / "nope"), cfg, tmp_path, tmp_path / "new")
    with pytest.raises(ConfigError, match=r"is a folder without checkpoints/last.ckpt"):
        resolve_checkpoint(str(tmp_path), cfg, tmp_path, tmp_path / "new")
    with pytest.raises(ConfigError, match=r"ckpt_path=last found no earlier run of this config"):
        resolve_checkpoint("last", cfg, tmp_path / "empty", tmp_path / "new")


KILL_DURING_SECOND_SAVE = """
import builtins, io, os, signal
_open = io.open
class _HalfThenKilled:
    def __init__(self, f):
        self._f = f
    def write(self, data):
        self._f.write(bytes(data)[: len(data) // 2])
        self._f.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    def __getattr__(self, name):
        return getattr(self._f, name)
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        return self._f.__exit__(*exc)
def open(file, mode="r", *args, **kwargs):
    f = _open(file, mode, *args, **kwargs)
    name = os.fsdecode(file) if isinstance(file, (str, bytes, os.PathLike)) else ""
    folder, base = os.path.split(name)
    # the checkpoint's bytes going to the temporary file beside last.ckpt, once a last.ckpt exists
    if "w" in mode and base.startswith(".last.ckpt.") and os.path.exists(os.path.join(folder, "last.ckpt")):
        return _HalfThenKilled(f)
    return f
builtins.open = io.open = open
"""


def test_a_kill_while_saving_leaves_the_previous_last_checkpoint_whole(tmp_path, data_root):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(KILL_DURING_SECOND_SAVE)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")])))
    run = tmp_path / "run"
    result = run_cli("lenet_pl.train", *tiny_args(data_root, run, *RUN), cwd=tmp_path, env=env)
    assert result.returncode == -signal.SIGKILL
    checkpoint = load_checkpoint(run / "checkpoints" / "last.ckpt")  # loads: not the half-written one
    assert checkpoint["epoch"] == 0


def diverging_run(tmp_path: Path, data_root: Path, *overrides: str) -> tuple[int, str, Path]:
    run = tmp_path / "run"
    tmp_path.mkdir(exist_ok=True)
    result = run_in_process(
        "lenet_pl.train", *tiny_args(data_root, run, "optimizer.lr=1e4", "threads=1", *overrides), cwd=tmp_path
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]  # the run's result, not a user error (2)
    assert "error: Training diverged at step" in result.stderr and "Traceback" not in output
    return int(output.split("Training diverged at step ")[1].split()[0]), output, run


def test_diverging_run_stops_at_once_names_the_step_and_saves_nothing(tmp_path, data_root):
    step, output, run = diverging_run(tmp_path, data_root)
    assert step < 60  # within the first epoch, not at its end
    assert "learning rate 10000.0" in output
    failure = json.loads((run / "failure.json").read_text())
    assert failure["error"] == "TrainingDiverged"
    assert not list(run.glob("checkpoints/*.ckpt"))  # diverged before the first validation: nothing saved


def test_guard_checking_on_the_device_names_the_same_first_bad_step_and_saves_nothing(tmp_path, data_root):
    # The GPU way (no host sync per step), run on the CPU: the host reads the device's record only
    # at the epoch's end, yet the error names the first bad step and no checkpoint is written.
    step, _, _ = diverging_run(tmp_path / "now", data_root)
    deferred = ["+callbacks.divergence_guard.deferred=true", "callbacks.divergence_guard.sync_every_n_steps=1000"]
    deferred_step, output, run = diverging_run(tmp_path / "deferred", data_root, *deferred)
    assert deferred_step == step
    assert "the training loss is" in output
    assert not list(run.glob("checkpoints/*.ckpt"))


@pytest.mark.parametrize("max_loss", [1e4, None])
def test_guard_judges_a_loss_the_same_read_on_the_host_or_kept_on_the_device(max_loss):
    guard = DivergenceGuard(max_loss=max_loss)
    values = [0.0, 2.3, 9999.0, 10001.0, 1e30, float("inf"), float("-inf"), float("nan")]
    on_host = [guard._bad(v) for v in values]
    on_device = guard._bad(torch.tensor(values)).tolist()
    assert on_host == on_device
    explodes = max_loss is not None
    assert on_host == [False, False, False, explodes, explodes, True, True, True]


@pytest.mark.parametrize("deferred", [False, True])
def test_guard_judges_a_loss_per_sample_by_its_worst_value(deferred):
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    guard = DivergenceGuard(deferred=deferred, sync_every_n_steps=1)
    guard.on_train_batch_end(trainer, None, {"loss": torch.tensor([0.3, 2.0])}, None, 0)  # fine: no error
    with pytest.raises(TrainingDiverged, match=r"at step 0 .*the training loss is nan"):
        guard.on_train_batch_end(trainer, None, {"loss": torch.tensor([0.3, float("nan")])}, None, 0)


def test_guard_refuses_to_save_non_finite_weights_but_not_metric_states():
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    cfg = compose_config([])
    module = LeNetModule(net=instantiate(cfg.model), loss=torch.nn.CrossEntropyLoss(), optimizer=torch.optim.SGD)
    checkpoint = {"state_dict": module.state_dict()}
    assert checkpoint["state_dict"]["val_acc_best.max_value"] == float("-inf")  # before any validation
    DivergenceGuard().on_save_checkpoint(trainer, module, checkpoint)
    with torch.no_grad():
        module.net.C1[0].weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(TrainingDiverged, match=r"the weights net.C1.0.weight hold NaN or inf"):
        DivergenceGuard().on_save_checkpoint(trainer, module, {"state_dict": module.state_dict()})


def test_in_a_multirun_a_diverging_job_fails_and_the_others_finish(tmp_path, data_root):
    sweep = tmp_path / "sweep"
    args = [a for a in tiny_args(data_root, tmp_path) if not a.startswith("hydra.run")]
    result = run_in_process(
        "lenet_pl.train", "-m", *args, "threads=1", "optimizer.lr=1e4,0.05", f"hydra.sweep.dir={sweep}", cwd=tmp_path
    )
    assert result.returncode != 0
    (bad,) = sweep.glob("*optimizer.lr-10000.0*")
    (good,) = sweep.glob("*optimizer.lr-0.05*")
    assert "Training diverged" in json.loads((bad / "failure.json").read_text())["message"]
    assert metrics_of(good)["test/acc"] > 0.5
    assert "Training diverged at step" in result.stdout + result.stderr


def test_checkpoint_of_another_model_config_is_refused_with_the_shapes(tmp_path, reference_runs):
    ckpt = reference_runs["a"] / "checkpoints" / "last.ckpt"
    result = run_in_process(
        "lenet_pl.train",
        "model.input_size=28",
        f"ckpt_path={ckpt}",
        "trainer=debug",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    assert result.returncode == 2
    output = result.stdout + result.stderr
    assert "was trained with a different model config than this run's" in output
    assert "net.C5.0.weight: checkpoint (120, 16, 5, 5) vs this config (120, 16, 4, 4)" in output
    assert "Traceback" not in output


def test_files_that_are_not_checkpoints_are_refused(tmp_path, reference_runs):
    text = tmp_path / "notes.ckpt"
    text.write_text("hello")
    with pytest.raises(ConfigError, match=r"notes.ckpt is not a checkpoint this project can load"):
        load_checkpoint(text)
    good = (reference_runs["a"] / "checkpoints" / "last.ckpt").read_bytes()
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good[: len(good) // 3])
    with pytest.raises(ConfigError, match=r"truncated.ckpt is not a checkpoint"):
        load_checkpoint(truncated)
    # A pickle that would run code on load: weights_only refuses it.
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": Path("/")}, evil)
    with pytest.raises(ConfigError, match=r"weights_only=True"):
        load_checkpoint(evil)
    not_lightning = tmp_path / "plain.ckpt"
    torch.save({"weights": torch.ones(3)}, not_lightning)
    with pytest.raises(ConfigError, match=r"is not a Lightning checkpoint \(it has no state_dict\)"):
        load_checkpoint(not_lightning)


def test_check_compatible_lists_missing_and_extra_tensors():
    cfg = compose_config([])
    module = LeNetModule(net=instantiate(cfg.model), loss=torch.nn.CrossEntropyLoss(), optimizer=torch.optim.SGD)
    state = {k: v for k, v in module.state_dict().items() if k != "net.F6.0.bias"}
    state["net.extra.weight"] = torch.ones(1)
    with pytest.raises(ConfigError) as info:
        check_compatible({"state_dict": state}, module, "x.ckpt")
    assert "net.extra.weight: only in the checkpoint" in str(info.value)
    assert "net.F6.0.bias: only in this config's model" in str(info.value)


def test_unique_dir_never_reuses_a_folder(tmp_path):
    first = unique_dir(str(tmp_path / "12-00-00"))
    second = unique_dir(str(tmp_path / "12-00-00"))
    assert Path(first).name == "12-00-00" and Path(second).name == "12-00-00-1"
    assert Path(first).is_dir() and Path(second).is_dir()


def test_runs_started_together_and_a_rerun_sweep_keep_every_earlier_run(tmp_path, data_root):
    args = [a for a in tiny_args(data_root, tmp_path) if not a.startswith("hydra.run")]
    command = [sys.executable, "-m", "lenet_pl.train", *args, "trainer=debug"]
    processes = [
        subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(2)
    ]
    assert all(p.wait() == 0 for p in processes)
    runs = [p.parent for p in (tmp_path / "outputs").glob("*/*/metrics.json")]
    assert len(runs) == 2  # two run dirs, even when both started in the same second

    sweep = tmp_path / "sweep"
    for _ in range(2):
        result = run_in_process(
            "lenet_pl.train",
            "-m",
            *args,
            "trainer=debug",
            "activation=tanh,relu",
            f"hydra.sweep.dir={sweep}",
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stderr[-3000:]
    jobs = sorted(p.parent.name for p in sweep.glob("*/metrics.json"))
    assert len(jobs) == 4 and sum(job.endswith("-1") for job in jobs) == 2


def test_ddp_on_two_cpu_processes_writes_one_run_dir_with_exact_test_metrics(tmp_path, data_root):
    run = tmp_path / "run"
    result = run_cli(
        "lenet_pl.train",
        *tiny_args(data_root, run, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "threads=1"),
        cwd=tmp_path,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert [p.name for p in tmp_path.iterdir() if p.is_dir()] == ["run"]  # the DDP workers joined the one run dir
    metrics = metrics_of(run)
    assert metrics["global_step"] == 2 * 30  # each of the 2 processes took half of every epoch's 60 batches

    # Evaluate the same checkpoint in a single process.
    cfg = OmegaConf.load(run / ".hydra" / "config.yaml")
    cfg.paths.output_dir = str(run)
    datamodule = instantiate(cfg.data)
    module = LeNetModule(net=instantiate(cfg.model), loss=instantiate(cfg.loss), optimizer=instantiate(cfg.optimizer))
    module.load_state_dict(torch.load(metrics["best_checkpoint"], weights_only=True)["state_dict"])
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    (single,) = trainer.test(module, datamodule=datamodule, verbose=False)
    assert single["test/acc"] == pytest.approx(metrics["test/acc"], abs=1e-6)
    assert single["test/loss"] == pytest.approx(metrics["test/loss"], abs=1e-6)


@pytest.mark.slow  # 26 s: two DDP processes twice; resuming is checked without DDP in the default suite
def test_ddp_run_resumes_under_ddp_into_a_new_run_dir_and_leaves_the_old_one_alone(tmp_path, data_root):
    ddp = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "threads=1"]
    first, resumed = tmp_path / "first", tmp_path / "resumed"
    result = run_cli("lenet_pl.train", *tiny_args(data_root, first, *ddp, "trainer.max_epochs=1"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    before = {p.name: p.read_bytes() for p in (first / "checkpoints").glob("*.ckpt")}
    assert "last.ckpt" in before

    result = run_cli(
        "lenet_pl.train", *tiny_args(data_root, resumed, *ddp, f"ckpt_path={first}"), cwd=tmp_path, timeout=900
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert metrics_of(resumed)["global_step"] == 2 * 30  # epoch 0 from the checkpoint, epoch 1 trained here
    assert metrics_of(resumed)["epochs"] == 2
    assert {p.name: p.read_bytes() for p in (first / "checkpoints").glob("*.ckpt")} == before
    assert load_checkpoint(resumed / "checkpoints" / "last.ckpt")["epoch"] == 1

    # The other DDP processes of a node only learn where the copy is: nothing is written twice.
    checkpoint = load_checkpoint(first / "checkpoints" / "last.ckpt")
    target = tmp_path / "other_rank" / "checkpoints"
    copy = adopt_checkpoint(checkpoint, first / "checkpoints" / "last.ckpt", target, copy_files=False)
    assert copy == target.resolve() / "last.ckpt" and not target.exists()


def test_last_means_the_newest_run_of_the_same_config(tmp_path):
    def fake_run(name: str, overrides: list[str]) -> Path:
        run = tmp_path / "outputs" / name
        (run / "checkpoints").mkdir(parents=True)
        (run / ".hydra").mkdir()
        OmegaConf.save(compose_config([*overrides, f"paths.output_dir={run}"]), run / ".hydra" / "config.yaml")
        (run / "checkpoints" / "last.ckpt").write_bytes(b"")
        return run / "checkpoints" / "last.ckpt"

    older = fake_run("older", ["activation=relu"])
    newer = fake_run("newer", ["activation=relu", "threads=1"])  # threads and paths do not make another run
    os.utime(older, (1, 1))
    fake_run("other", ["activation=tanh"])
    cfg = compose_config(["activation=relu", "ckpt_path=last", "paths.output_dir=new"])
    assert resolve_checkpoint("last", cfg, tmp_path / "outputs", tmp_path / "outputs" / "new") == newer
    cfg = compose_config(["activation=sigmoid", "paths.output_dir=new"])
    with pytest.raises(ConfigError, match=r"ckpt_path=last found no earlier run of this config"):
        resolve_checkpoint("last", cfg, tmp_path / "outputs", tmp_path / "outputs" / "new")
