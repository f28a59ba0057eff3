"""lenet_pl.sweeps.progress: the sweep's one progress line, read from job dirs, and each job's output in its log."""

import io
import logging
import pickle
import sys
import time
from pathlib import Path

import yaml

from lenet_pl.sweeps.progress import JobOutput, SweepProgress, SweepWatch
from test_fair_and_path import write_job


def write_sweep(sweep: Path) -> Path:
    """A 6-job grid: 2 finished, 1 failed, 1 running, and 1 dir of an earlier attempt that never finished."""
    sweep.mkdir()
    params = {"seed": "0", "activation": "tanh,relu,sigmoid", "pooling": "avg,max"}
    (sweep / "multirun.yaml").write_text(
        yaml.safe_dump({"hydra": {"sweeper": {"params": params}, "overrides": {"task": []}}})
    )
    old = write_job(sweep, 0, {"seed": "0", "activation": "tanh", "pooling": "avg"}, None, None)
    earlier = time.time() - 3600
    for path in (old, old / ".hydra"):
        import os

        os.utime(path, (earlier, earlier))
    write_job(sweep, 1, {"seed": "0", "activation": "tanh", "pooling": "max"}, 0.97, 0.96)
    write_job(sweep, 2, {"seed": "0", "activation": "relu", "pooling": "avg"}, 0.99, 0.98)
    write_job(sweep, 3, {"seed": "0", "activation": "relu", "pooling": "max"}, 0.5, None, failure="loss is nan")
    write_job(sweep, 4, {"seed": "0", "activation": "sigmoid", "pooling": "avg"}, None, None)  # running
    return sweep


def test_counts_come_from_the_job_dirs_and_the_plan(tmp_path):
    watch = SweepWatch(write_sweep(tmp_path / "sweep"), io.StringIO(), bar=False)
    watch.started = time.time() - 60
    counts = watch.count()
    assert (counts.total, counts.finished, counts.failed, counts.running) == (6, 2, 1, 1)
    assert counts.best == (0.99, "job 2")


def test_without_a_terminal_it_writes_a_line_when_the_counts_change(tmp_path):
    sweep = write_sweep(tmp_path / "sweep")
    stream = io.StringIO()
    watch = SweepWatch(sweep, stream, bar=False)
    watch.started = time.time() - 60
    watch.refresh()
    watch.refresh()  # nothing changed: no second line
    write_job(sweep, 5, {"seed": "0", "activation": "sigmoid", "pooling": "max"}, 0.90, 0.90)
    watch.refresh()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("sweep: 3/6 jobs returned (1 failed, 1 running; best val acc 99.00% (job 2)); 0:01:00")
    assert lines[1].startswith("sweep: 4/6 jobs returned (1 failed, 1 running;")
    assert "left" in lines[1]


def test_on_a_terminal_it_draws_one_bar_and_notes_failures_above_it(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "160")  # a narrower terminal cuts the bar's text short
    sweep = write_sweep(tmp_path / "sweep")
    stream = io.StringIO()
    watch = SweepWatch(sweep, stream, bar=True)
    watch.refresh()
    write_job(sweep, 5, {"seed": "0", "activation": "sigmoid", "pooling": "max"}, 0.5, None, failure="diverged")
    watch.refresh()
    watch.stop()
    text = stream.getvalue()
    assert "sweep 3/6 jobs" in text and "sweep 4/6 jobs" in text
    assert "best val acc 99.00% (job 2)" in text
    assert "job 5 failed: TrainingDiverged: diverged" in text  # earlier failures are not repeated
    assert "job 3 failed" not in text
    assert f"Sweep {sweep}: 2 jobs finished, 2 failed" in text


def test_job_output_goes_to_the_job_log_and_the_console_is_restored(tmp_path, capsys):
    log_file = tmp_path / "train.log"
    lightning_like = logging.getLogger("lenet_pl_test_nonpropagating")
    lightning_like.propagate = False
    handler = logging.StreamHandler(sys.stderr)
    lightning_like.addHandler(handler)
    lightning_like.setLevel(logging.INFO)
    try:
        output = JobOutput(log_file)
        output.start()
        print("a layer table")
        lightning_like.info("GPU available: False")
        print("a Lightning warning", file=sys.stderr)  # where warnings.showwarning writes
        try:
            raise RuntimeError("the job failed")
        except RuntimeError as err:
            output.stop(error=err)
        print("back on the console")
        lightning_like.info("console again")
    finally:
        lightning_like.removeHandler(handler)
    text = log_file.read_text()
    assert "a layer table" in text and "GPU available: False" in text and "a Lightning warning" in text
    assert "Traceback" in text and "RuntimeError: the job failed" in text
    console = capsys.readouterr()
    assert "back on the console" in console.out and "console again" in console.err
    assert "a layer table" not in console.out + console.err


def test_the_callback_travels_to_workers_without_its_thread(tmp_path):
    class Config:
        class hydra:
            class sweep:
                dir = str(tmp_path / "sweep")

    callback = SweepProgress(quiet=True, every_s=0.05)
    callback.on_multirun_start(Config)
    try:
        copy = pickle.loads(pickle.dumps(callback))
        assert copy.quiet and copy.every_s == 0.05 and copy._watch is None
    finally:
        callback.on_multirun_end(Config)
    assert logging.getLogger("hydra_plugins.hydra_joblib_launcher").level == logging.NOTSET  # restored
