"""A full or read-only output disk, at any point of a run: one paragraph, the last good checkpoint, no partial files.

The disk is a small tmpfs where this machine lets the tests mount one (root, Linux); elsewhere, and
for faults at one chosen file, a sitecustomize in the run's process makes writes fail the same way.
"""

import errno
import json
import os
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch

from conftest import run_cli, run_in_process, tiny_args, write_dataset
from lenet_pl.runtime.errors import OutputError
from lenet_pl.runtime.outputs import disk_error, last_good_checkpoint, output_error, write_atomically

# Loaded into the run's process through PYTHONPATH: writes under LENET_TEST_DISK fail once the files
# there hold LENET_TEST_DISK_BYTES (a full disk), or at once with LENET_TEST_DISK_READ_ONLY=1; writes to
# files matching LENET_TEST_FAIL_GLOB fail with ENOSPC wherever they are.
FAULTS = r'''
import builtins, errno, fnmatch, io, os

_open, _mkdir = io.open, os.mkdir
_folder = os.path.realpath(os.environ.get("LENET_TEST_DISK", "/nonexistent"))
_capacity = int(os.environ.get("LENET_TEST_DISK_BYTES", "0")) or None
_read_only = os.environ.get("LENET_TEST_DISK_READ_ONLY") == "1"
_glob = os.environ.get("LENET_TEST_FAIL_GLOB")


def _inside(path):
    path = os.path.realpath(os.fsdecode(path))
    return path == _folder or path.startswith(_folder + os.sep)


def _used():
    total = 0
    for folder, _, files in os.walk(_folder):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(folder, name))
            except OSError:
                pass
    return total


def _fail(code, path=None):
    raise OSError(code, os.strerror(code), *([os.fsdecode(path)] if path is not None else []))


class _Limited:
    """A file whose writes fail once the folder is full, as on a full disk."""

    def __init__(self, f):
        self._f = f

    def write(self, data):
        if _used() + len(data) > _capacity:
            _fail(errno.ENOSPC)
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._f.__exit__(*exc)

    def __iter__(self):
        return iter(self._f)


def open(file, mode="r", *args, **kwargs):
    if isinstance(file, (str, bytes, os.PathLike)) and any(c in mode for c in "wax+"):
        if _glob and fnmatch.fnmatch(os.fsdecode(file), _glob):
            _fail(errno.ENOSPC, file)
        if _inside(file):
            if _read_only:
                _fail(errno.EROFS, file)
            if _capacity:
                return _Limited(_open(file, mode, *args, **kwargs))
    return _open(file, mode, *args, **kwargs)


def mkdir(path, *args, **kwargs):
    if _read_only and _inside(path):
        _fail(errno.EROFS, path)
    return _mkdir(path, *args, **kwargs)


builtins.open = io.open = open
os.mkdir = mkdir
'''

CHECKPOINT_KB = 260  # a checkpoint of the default LeNet-5 (weights, metric states): ~258 KB


def faults_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    hook = tmp_path / "faults_hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(FAULTS)
    env = dict(os.environ, **settings)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(hook), env.get("PYTHONPATH")]))
    return env


def can_mount() -> bool:
    return os.name == "posix" and os.geteuid() == 0 and shutil.which("mount") is not None


@contextmanager
def small_disk(
    tmp_path: Path, kbytes: int, read_only: bool = False, emulate: bool = False
) -> Iterator[tuple[Path, dict[str, str]]]:
    """A disk of `kbytes` mounted at tmp_path/disk (tmpfs), or emulated; yields (its folder, the environment of a
    run that must see the emulated disk, or None for a real one)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if not emulate and can_mount():
        options = f"size={kbytes}k" + (",ro" if read_only else "")
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(disk)], capture_output=True)
        if mounted.returncode == 0:
            try:
                yield disk, None
            finally:
                subprocess.run(["umount", "-l", str(disk)], check=False)
            return
    settings = {"LENET_TEST_DISK": str(disk), "LENET_TEST_DISK_BYTES": str(kbytes * 1024)}
    if read_only:
        settings["LENET_TEST_DISK_READ_ONLY"] = "1"
    yield disk, faults_env(tmp_path, **settings)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("data"), n_train=700, n_test=100)


def train(*args: str, cwd: Path, env: dict[str, str] | None) -> subprocess.CompletedProcess:
    """`python -m lenet_pl.train <args>`: in this process, or in a new one whose environment emulates the disk."""
    if env is None:
        return run_in_process("lenet_pl.train", *args, cwd=cwd)
    return run_cli("lenet_pl.train", *args, cwd=cwd, env=env)


def one_paragraph_error(result: subprocess.CompletedProcess) -> str:
    """The `error: ...` line the run printed (its log, or stderr); fails the test on a traceback or a zero exit."""
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    assert "Traceback" not in output and "Logging error" not in output, output[-3000:]
    *_, line = [line for line in output.splitlines() if "error: " in line]  # a sweep: its summary, last
    return line.split("error: ", 1)[1]


def assert_no_partial_files(folder: Path) -> None:
    assert not [p for p in folder.rglob(".*.tmp")], "a temporary file was left"
    for ckpt in folder.rglob("*.ckpt"):
        torch.load(ckpt, weights_only=True)  # every checkpoint left is whole


@pytest.mark.parametrize("disk_kind", ["tmpfs", "emulated"])
def test_full_disk_while_saving_a_checkpoint_names_the_last_good_one_and_how_to_resume(tmp_path, data_root, disk_kind):
    if disk_kind == "tmpfs" and not can_mount():
        pytest.skip("mounting a tmpfs needs root on Linux; the emulated disk covers the same")
    # Room for epoch 0's two checkpoints (best and last), not for a third one in epoch 1.
    with small_disk(tmp_path, 2 * CHECKPOINT_KB + 120, emulate=disk_kind == "emulated") as (disk, env):
        run = disk / "run"
        args = tiny_args(data_root, run, "logger=csv", "threads=1", "trainer.limit_train_batches=4")
        message = one_paragraph_error(train(*args, cwd=tmp_path, env=env))
        assert message.startswith(f"Could not write {run}/checkpoints/")
        assert ": the disk is full (No space left on device)." in message
        last = run / "checkpoints" / "last.ckpt"
        assert f"The last good checkpoint is {last} (epoch 0, step 4); no partial checkpoint was left." in message
        assert_no_partial_files(run)
        failure = json.loads((run / "failure.json").read_text())
        assert failure["error"] == "OutputError" and failure["message"] == message
        command = shlex.split(message.split("resume with: ", 1)[1])
        assert command[:3] == ["python", "-m", "lenet_pl.train"] and command[-1] == f"ckpt_path={last}"
        if disk_kind == "tmpfs":  # make room, then resume exactly as the message says
            subprocess.run(["mount", "-o", "remount,size=8m", str(disk)], check=True)
            resumed = train(*command[3:], f"hydra.run.dir={disk / 'resumed'}", cwd=tmp_path, env=env)
            assert resumed.returncode == 0, resumed.stderr[-3000:]
            assert f"Resuming from {last} (epoch 0, step 4)" in resumed.stdout + resumed.stderr
            assert json.loads((disk / "resumed" / "metrics.json").read_text())["metrics"]["epochs"] == 2


def test_full_disk_before_the_run_starts_leaves_nothing(tmp_path, data_root):
    with small_disk(tmp_path, 16) as (disk, env):
        (disk / "filler").write_bytes(b"\0" * 12 * 1024)  # 4 KB left: not enough for Hydra's .hydra/ files
        run = disk / "outputs" / "run"
        message = one_paragraph_error(train(*tiny_args(data_root, run), cwd=tmp_path, env=env))
        assert f"Could not write {run}" in message or f"Could not write to {run}" in message
        assert "the disk is full (No space left on device). Nothing was run: free some space, or set " in message
        assert not run.exists()  # Hydra's half-written start-up files went with the folder


def test_read_only_output_folder_is_said_to_be_read_only(tmp_path, data_root):
    with small_disk(tmp_path, 64, read_only=True) as (disk, env):
        args = tiny_args(data_root, disk / "outputs" / "run")
        message = one_paragraph_error(train(*args, cwd=tmp_path, env=env))
        assert message.startswith(f"Could not write {disk}/outputs")
        assert "the file system is read-only (Read-only file system). Nothing was run: make it writable, or " in message


def test_full_disk_at_tensorboards_event_file_is_one_paragraph(tmp_path, data_root):
    run = tmp_path / "run"
    env = faults_env(tmp_path, LENET_TEST_FAIL_GLOB="*/events.out.tfevents.*")
    args = tiny_args(data_root, run, "logger=tensorboard", "threads=1", "trainer.limit_train_batches=4")
    message = one_paragraph_error(train(*args, cwd=tmp_path, env=env))
    assert message.startswith(f"Could not write {run}/events.out.tfevents.")
    assert "the disk is full" in message and "No checkpoint had been written yet" in message
    assert_no_partial_files(run)


def test_in_a_sweep_a_job_that_cannot_write_metrics_fails_like_any_failed_job(tmp_path, data_root):
    """metrics.json, the last file a run writes: both jobs fail, are recorded and reported; nothing partial."""
    sweep = tmp_path / "sweep"
    env = faults_env(tmp_path, LENET_TEST_FAIL_GLOB="*metrics.json*")  # its temporary file
    args = [a for a in tiny_args(data_root, sweep, "logger=csv", "threads=1") if not a.startswith("hydra.run")]
    result = run_cli(
        "lenet_pl.train",
        "-m",
        *args,
        "trainer.max_epochs=1",
        "seed=1,2",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        env=env,
    )
    message = one_paragraph_error(result)
    assert message.startswith("a job of the sweep failed (the others ran; each failed job's dir holds failure.json)")
    assert "metrics.json: the disk is full" in message and "The last good checkpoint is " in message
    jobs = sorted(p for p in sweep.iterdir() if (p / ".hydra").is_dir())
    assert [p.name.split("_")[0] for p in jobs] == ["0", "1"]
    for job in jobs:
        assert not (job / "metrics.json").exists()
        assert json.loads((job / "failure.json").read_text())["error"] == "OutputError"
        assert_no_partial_files(job)
    report = run_in_process("lenet_pl.report", str(sweep), cwd=tmp_path)
    assert "2 finished" not in report.stdout and "0 finished, 2 failed" in report.stdout


def test_write_atomically_leaves_the_old_file_and_no_temporary_one(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    target.write_text("old")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as raised:
        write_atomically(target, b"new")
    assert raised.value.filename == str(target) and raised.value.errno == errno.ENOSPC
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_only_write_problems_of_the_outputs_count_as_disk_errors(tmp_path):
    full = OSError(errno.ENOSPC, "No space left on device")
    assert disk_error(RuntimeError("wrapped").with_traceback(None), tmp_path) is None
    wrapped = RuntimeError("while saving")
    wrapped.__cause__ = full
    assert disk_error(wrapped, tmp_path) is full
    assert disk_error(PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "run" / "x")), tmp_path)
    assert disk_error(PermissionError(errno.EACCES, "Permission denied", "/data/mnist/x"), tmp_path) is None
    assert disk_error(FileNotFoundError(errno.ENOENT, "No such file", str(tmp_path)), tmp_path) is None


def test_the_last_good_checkpoint_skips_a_damaged_one(tmp_path):
    good, damaged = tmp_path / "epoch001.ckpt", tmp_path / "last.ckpt"
    torch.save({"state_dict": {}, "epoch": 1, "global_step": 40}, good)
    damaged.write_bytes(good.read_bytes()[:100])  # newer, but cut short
    assert last_good_checkpoint([tmp_path]) == (good, 1, 40)
    error = output_error(OSError(errno.ENOSPC, "No space left on device", "x.ckpt"), tmp_path, ["seed=1"], [tmp_path])
    assert isinstance(error, OutputError)
    assert f"resume with: python -m lenet_pl.train seed=1 ckpt_path={good}" in str(error)


# ---------------------------------------------------------------------------------------------
# A damaged run file: the report marks its job, a command about one run refuses in one paragraph

DAMAGES = ["empty", "truncated", "invalid", "binary"]


def damage(path: Path, how: str) -> None:
    """`path` as a crash, a copy cut short, or a wrong file written in its place leaves it. Cut short inside
    a line: a CSV log cut exactly at a line break is whole rows, fewer of them, which nothing can tell."""
    content = path.read_bytes()
    cut = len(content) // 2
    while cut > 1 and content[cut - 1 : cut] in (b"\n", b"\r"):
        cut -= 1
    path.write_bytes(
        {
            "empty": b"",
            "truncated": content[:cut],
            "invalid": b"<html>\n<body>502 Bad Gateway</body>\n</html>\n",  # an error page saved in its place
            "binary": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe",
        }[how]
    )


def one_paragraph(code: int, stderr: str, expected_code: int = 2) -> str:
    assert code == expected_code, stderr
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


def complete_jobs(sweep: Path) -> None:
    """What the fabricated jobs of test_report lack and real ones have: hydra.yaml (with the overrides again),
    config.yaml, and the per-pass CSV of experiment=lenet1998."""
    import yaml

    for job in sorted(sweep.glob("*/.hydra/overrides.yaml")):
        num = int(job.parent.parent.name.split("_")[0])
        overrides = yaml.safe_load(job.read_text())
        hydra = {"hydra": {"mode": "MULTIRUN", "job": {"num": num}, "overrides": {"task": overrides}}}
        (job.parent / "hydra.yaml").write_text(yaml.safe_dump(hydra))
        (job.parent / "config.yaml").write_text(yaml.safe_dump({"seed": 0, "trainer": {"max_epochs": 4}}))
        rows = "".join(f"{p},{0.05 / p:.4f},{0.06 / p:.4f}\r\n" for p in range(1, 5))
        if (job.parent.parent / "metrics.json").is_file():
            (job.parent.parent / "error_per_pass.csv").write_text("pass,train_error,test_error\r\n" + rows)


JOB_FILES = [
    "metrics.json",
    ".hydra/overrides.yaml",
    ".hydra/hydra.yaml",
    ".hydra/config.yaml",
    "csv/metrics.csv",
    "error_per_pass.csv",
    "failure.json",
]


@pytest.mark.parametrize("name", JOB_FILES)
def test_the_report_marks_each_job_with_a_damaged_file_and_reports_the_rest(tmp_path, name, capsys):
    """Four jobs get `name` damaged, each another way (empty, cut short, an error page, binary); the other
    four are reported as before. failure.json is damaged in four failed jobs."""
    from lenet_pl.report import main
    from test_report import read_csv, write_sweep

    failed = (0, 2, 5, 7)
    sweep = write_sweep(tmp_path / "sweep", unfinished=failed if name == "failure.json" else ())
    complete_jobs(sweep)
    jobs = {int(p.name.split("_")[0]): p for p in sweep.iterdir() if p.is_dir()}
    for num, how in zip(failed, DAMAGES, strict=True):
        if name == "failure.json":
            (jobs[num] / name).write_text(json.dumps({"error": "TrainingDiverged", "message": "loss is nan"}))
        damage(jobs[num] / name, how)
    assert main([str(sweep), "--output", str(tmp_path / "out")]) == 0
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "4 finished, 0 failed, 4 with a damaged file (listed below), 0 running" in markdown
    for num in failed:
        assert f"| {jobs[num].name} | damaged, left out: {jobs[num] / name} " in markdown
    rows = {(r["activation"], r["optimizer"]): r for r in read_csv(tmp_path / "out" / "configurations.csv")}
    assert all(r["activation"] != "(default)" and r["optimizer"] != "(default)" for r in rows.values())
    # jobs 0, 2, 5, 7: tanh/sgd seed 0, tanh/adam seed 0, relu/sgd seed 1, relu/adam seed 1
    placed = "1/1" if name == ".hydra/overrides.yaml" else "1/2"  # without its overrides a job has no configuration
    assert [rows[c]["runs"] for c in sorted(rows)] == [placed] * 4
    assert float(rows["relu", "adam"]["test_error_mean"]) == pytest.approx(4.0)  # seed 0 alone
    assert (tmp_path / "out" / "effects.csv").is_file() and (tmp_path / "out" / "val_acc.png").is_file()
    if name == "error_per_pass.csv" or name == "failure.json":
        assert "After the last pass, mean over 4 runs" in markdown  # only the jobs whose files are whole
    assert "Traceback" not in capsys.readouterr().err


def test_a_log_of_a_run_that_diverged_before_its_first_metric_is_whole(tmp_path):
    """Lightning writes the epoch column only with the first metric the module logs: a run that diverged
    before it has logged its learning rate alone, and that log is whole, not damaged."""
    from lenet_pl.runtime.errors import RunFileError
    from lenet_pl.sweeps.jobs import read_val_acc

    log = tmp_path / "metrics.csv"
    log.write_text("lr-SGD,step\n10000.0,0\n")
    assert read_val_acc(log) == {}
    log.write_text("epoch,lr-SGD,step,val/acc\n,0.1,0,\n0,,9,0.91\n1,,19,0.95\n")
    assert read_val_acc(log) == {0: 0.91, 1: 0.95}
    log.write_text("epoch,step,val/acc\n,9,0.91\n")
    with pytest.raises(RunFileError, match="val/acc value without its epoch"):
        read_val_acc(log)


def test_overrides_cut_at_a_line_break_are_caught_by_hydra_yaml(tmp_path):
    """A YAML list cut after a whole line still parses: hydra.yaml, which holds the same list, says so."""
    from lenet_pl.sweeps.jobs import load_jobs
    from test_report import write_sweep

    sweep = write_sweep(tmp_path / "sweep")
    complete_jobs(sweep)
    overrides = next(sweep.glob("3_*")) / ".hydra" / "overrides.yaml"
    overrides.write_text("".join(overrides.read_text().splitlines(keepends=True)[:-1]))  # sweep=ablation is gone
    job = {job.num: job for job in load_jobs(sweep)}[3]
    assert not job.finished and not job.overrides_known
    assert job.damaged == (
        f"{overrides} lists 3 overrides where hydra.yaml beside it lists 4 (activation=tanh optimizer=adam "
        "seed=1 sweep=ablation): one of the two was cut short or altered."
    )


@pytest.mark.parametrize("how", DAMAGES)
def test_a_report_on_a_sweep_whose_plan_is_damaged_refuses_in_one_paragraph(tmp_path, how):
    from test_report import write_sweep

    sweep = write_sweep(tmp_path / "sweep")
    damage(sweep / "multirun.yaml", how)
    from lenet_pl.report import main

    with _captured() as err:
        code = main([str(sweep)])
    message = one_paragraph(code, err.getvalue())
    assert message.startswith(f"error: {sweep / 'multirun.yaml'} ")
    assert not (sweep / "report").exists()


@contextmanager
def _captured() -> Iterator[Any]:
    import io
    from contextlib import redirect_stderr, redirect_stdout

    err = io.StringIO()
    with redirect_stdout(io.StringIO()), redirect_stderr(err):
        yield err


COMMANDS = ["evaluate", "predict", "export", "inside"]


@pytest.fixture
def run_copy(rbf_run: Path, tmp_path: Path) -> Path:
    """A copy of the shared trained run that a test may damage."""
    return Path(shutil.copytree(rbf_run, tmp_path / "run"))


def command_main(command: str, run_dir: Path, tmp_path: Path) -> tuple[int, str]:
    import importlib

    from PIL import Image

    from conftest import synthetic_digits

    digit = tmp_path / "digit.png"
    Image.fromarray(synthetic_digits(1, seed=3)[0][0].numpy()).save(digit)
    extra = {
        "evaluate": [f"output={tmp_path / 'eval'}"],
        "predict": [f"inputs={digit}"],
        "export": [f"output={tmp_path / 'model.onnx'}"],
        "inside": [f"output={tmp_path / 'inside.png'}"],
    }[command]
    with _captured() as err:
        code = importlib.import_module(f"lenet_pl.{command}").main([f"ckpt_path={run_dir}", *extra])
    return code, err.getvalue()


@pytest.mark.parametrize("how", DAMAGES)
@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("name", ["metrics.json", "best checkpoint"])
def test_a_command_about_one_run_refuses_a_damaged_run_file_in_one_paragraph(run_copy, tmp_path, command, name, how):
    metrics = json.loads((run_copy / "metrics.json").read_text())["metrics"]
    path = (
        run_copy / "metrics.json"
        if name == "metrics.json"
        else run_copy / "checkpoints" / Path(metrics["best_checkpoint"]).name
    )
    damage(path, how)
    before = path.read_bytes()
    message = one_paragraph(*command_main(command, run_copy, tmp_path))
    assert str(path) in message
    if name == "metrics.json":
        assert "give the .ckpt file itself, e.g. ckpt_path=" in message
    assert path.read_bytes() == before
    assert not any((tmp_path / out).exists() for out in ("eval", "model.onnx", "inside.png"))


def test_files_no_command_reads_may_be_damaged(run_copy, tmp_path):
    """TensorBoard's and the CSV logger's hparams.yaml and the log are written for people and tools, and
    read by no command here: evaluate works with all of them damaged."""
    for name in ("hparams.yaml", "csv/hparams.yaml", "train.log"):
        if (run_copy / name).is_file():
            damage(run_copy / name, "truncated")
    code, err = command_main("evaluate", run_copy, tmp_path)
    assert code == 0, err
    assert (tmp_path / "eval" / "evaluation.json").is_file()


@pytest.mark.parametrize("how", DAMAGES)
def test_error_per_pass_refuses_a_damaged_csv_in_one_paragraph(tmp_path, how):
    from lenet_pl.error_per_pass import main

    runs = []
    for name in ("good", "bad"):
        run = tmp_path / name
        run.mkdir()
        (run / "error_per_pass.csv").write_text("pass,train_error,test_error\r\n1,0.05,0.06\r\n2,0.03,0.04\r\n")
        runs.append(str(run))
    damage(tmp_path / "bad" / "error_per_pass.csv", how)
    with _captured() as err:
        code = main([*runs, "--output", str(tmp_path / "fig.png")])
    message = one_paragraph(code, err.getvalue())
    assert message.startswith(f"error: {tmp_path / 'bad' / 'error_per_pass.csv'} ")
    assert not (tmp_path / "fig.png").exists()


@pytest.mark.parametrize("how", DAMAGES)
def test_resuming_with_ckpt_path_last_refuses_an_earlier_runs_damaged_config(
    tmp_path, rbf_run, train_in_process, capfd, how
):
    """ckpt_path=last compares configs; one it cannot read might be the run to resume, so it says so."""
    outputs = tmp_path / "outputs"
    earlier = Path(shutil.copytree(rbf_run, outputs / "2026-01-31" / "12-00-00"))
    damage(earlier / ".hydra" / "config.yaml", how)
    run = outputs / "resumed"
    args = tiny_args(write_dataset(tmp_path / "data"), run, f"paths.output_root={outputs}", "ckpt_path=last")
    code = train_in_process(*args)
    output = "".join(capfd.readouterr())
    assert code == 2 and "Traceback" not in output
    failure = json.loads((run / "failure.json").read_text())
    assert failure["error"] == "RunFileError" and not failure["is_result"]
    assert failure["message"].startswith(f"{earlier / '.hydra' / 'config.yaml'} ")
    assert "ckpt_path=last compares this run's config with that of every earlier run" in failure["message"]
    assert f"ckpt_path={earlier / 'checkpoints' / 'last.ckpt'}" in failure["message"]
    assert not (run / "checkpoints").exists()
