"""A sweep as one live progress line, and each job's output in its own log: a Hydra callback.

conf/train.yaml registers `SweepProgress` under `hydra.callbacks`, so every multirun gets it;
single runs are untouched. Hydra calls the callback in two places:

- in the process that runs the sweep (`on_multirun_start`/`on_multirun_end`): a thread watches
  the sweep dir every few seconds and draws one line, jobs finished / failed / running of the
  total, the best validation accuracy so far and the time left (a tqdm bar on a terminal; a plain
  line whenever the counts change otherwise, e.g. in a log file). It learns progress from the
  job dirs (metrics.json, failure.json), the same files the report reads, because with the joblib
  or submitit launchers the jobs run in other processes (or machines) whose callbacks the parent
  never sees. The total comes from multirun.yaml (`lenet_pl.sweeps.plan.sweep_plan`).
- in the process that runs each job (`on_job_start`/`on_job_end`): with `quiet` (the default)
  the job's console output (its log lines, Lightning's messages and tables, warnings, and the
  traceback of a failure) goes to the job's own log file, `<job dir>/train.log`, instead of the
  terminal it shares with the other jobs. Python-level output only: a C library writing to the
  file descriptors directly would still reach the terminal.

`hydra.callbacks.sweep_progress.quiet=false` shows the jobs' output as before.
"""

import atexit
import logging
import shutil
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TextIO

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

# Launchers list every job they start (and joblib prints its settings): the progress line replaces that.
LAUNCHER_LOGGERS = (
    "hydra._internal.core_plugins.basic_launcher",
    "hydra_plugins.hydra_joblib_launcher",
    "hydra_plugins.hydra_submitit_launcher",
)


@dataclass(frozen=True)
class Counts:
    """Where a sweep stands, from its job dirs."""

    total: int | None
    finished: int
    failed: int
    running: int
    best: tuple[float, str] | None  # best val/acc_best so far and the job it came from

    @property
    def returned(self) -> int:
        return self.finished + self.failed


def _duration(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds)))


class SweepWatch:
    """Counts a sweep dir's jobs every `every_s` seconds in a thread and draws one line on `stream`."""

    def __init__(self, sweep_dir: Path, stream: TextIO, every_s: float = 2.0, bar: bool | None = None) -> None:
        self.sweep_dir, self.stream, self.every_s = sweep_dir, stream, every_s
        self.bar_wanted = stream.isatty() if bar is None else bar
        self.started = time.time()
        self._results: dict[Path, tuple[str, float | None, int]] = {}  # job dir -> (state, val acc, job number)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sweep-progress", daemon=True)
        self._bar: Any = None
        self._initial_returned: int | None = None
        self._last_line = ""
        self._total: int | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> Counts:
        self._stop.set()
        if self._thread.ident is not None:  # started
            self._thread.join(timeout=30)
        counts = self.refresh()
        if self._bar is not None:
            self._bar.close()
        took = _duration(time.time() - self.started)
        self.stream.write(
            f"Sweep {self.sweep_dir}: {counts.finished} jobs finished, {counts.failed} failed, in {took}. "
            f"Report: python -m lenet_pl.report {self.sweep_dir}\n"
        )
        self.stream.flush()
        return counts

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.refresh()
            except Exception as err:  # a half-written file, say: never stop the sweep for the progress line
                logging.getLogger(__name__).debug("progress: %s", err)

    def count(self) -> Counts:
        """Read the job dirs: finished (metrics.json), failed (failure.json), running (started in this sweep)."""
        from lenet_pl.sweeps.jobs import job_dirs, read_job
        from lenet_pl.sweeps.plan import sweep_plan

        if self._total is None:
            self._total = sweep_plan(self.sweep_dir).total
        running = 0
        for job_dir in job_dirs(self.sweep_dir) if self.sweep_dir.is_dir() else []:
            if job_dir in self._results:
                continue
            if (job_dir / "metrics.json").is_file() or (job_dir / "failure.json").is_file():
                job = read_job(job_dir)
                val = job.metric("val/acc_best")
                state = "finished" if job.finished else "failed"
                self._results[job_dir] = (state, val, job.num)
                if state == "failed" and self._initial_returned is not None:
                    self._note(f"job {job.num} failed: {(job.failure or '')[:300]} (log: {job_dir / 'train.log'})")
            elif (job_dir / ".hydra").stat().st_mtime >= self.started - 1:
                running += 1  # dirs of earlier attempts without a result are not running now
        states = [state for state, _, _ in self._results.values()]
        scored = [(val, f"job {num}") for state, val, num in self._results.values() if val is not None]
        return Counts(self._total, states.count("finished"), states.count("failed"), running, max(scored, default=None))

    def refresh(self) -> Counts:
        counts = self.count()
        if self._initial_returned is None:
            self._initial_returned = counts.returned  # kept from an earlier attempt: not this invocation's pace
        best = f"best val acc {100 * counts.best[0]:.2f}% ({counts.best[1]})" if counts.best else "no result yet"
        status = f"{counts.failed} failed, {counts.running} running; {best}"
        if self.bar_wanted:
            self._draw_bar(counts, status)
        else:
            line = f"sweep: {counts.returned}/{counts.total or '?'} jobs returned ({status})"
            if line != self._last_line:
                self._last_line = line
                self.stream.write(f"{line}; {self._time_text(counts)}\n")
                self.stream.flush()
        return counts

    def _time_text(self, counts: Counts) -> str:
        elapsed = time.time() - self.started
        text = f"{_duration(elapsed)} elapsed"
        new = counts.returned - (self._initial_returned or 0)
        if counts.total and new > 0:
            text += f", about {_duration(elapsed / new * max(counts.total - counts.returned, 0))} left"
        return text

    def _draw_bar(self, counts: Counts, status: str) -> None:
        from tqdm import tqdm

        if self._bar is None:
            # A pseudo-terminal may report 0 x 0, and tqdm hides bars below a screen 0 rows high.
            columns, rows = shutil.get_terminal_size((120, 24))
            self._bar = tqdm(
                total=counts.total,
                initial=counts.returned,
                file=self.stream,
                desc="sweep",
                unit="job",
                ncols=columns,
                nrows=rows,
                bar_format="{desc} {n_fmt}/{total_fmt} jobs |{bar:20}| {elapsed}<{remaining}{postfix}",
            )
        if counts.total is not None and self._bar.total != counts.total:
            self._bar.total = counts.total
        self._bar.update(counts.returned - self._bar.n)
        self._bar.set_postfix_str(status, refresh=True)

    def _note(self, message: str) -> None:
        if self._bar is not None:
            self._bar.write(message, file=self.stream)
        else:
            self.stream.write(message + "\n")
            self.stream.flush()


class _AboveTheBar:
    """A console stream for log handlers: each write clears the progress bar first and redraws it after."""

    def __init__(self, stream: TextIO, watch: SweepWatch) -> None:
        self.stream, self.watch = stream, watch

    def write(self, text: str) -> int:
        bar = self.watch._bar
        if bar is not None:
            bar.clear()
        written = self.stream.write(text)
        self.stream.flush()
        if bar is not None:
            bar.refresh()
        return written

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding...: the stream's own
        return getattr(self.stream, name)


class JobOutput:
    """Send this process's console output to `log_file` until `stop`: handlers, sys.stdout and sys.stderr."""

    def __init__(self, log_file: Path) -> None:
        self.log_file = log_file

    def start(self) -> None:
        self.file = open(self.log_file, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 (closed in stop)
        self.saved = (sys.stdout, sys.stderr)
        consoles = {id(s) for s in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)}
        self.removed: list[tuple[logging.Logger, logging.Handler]] = []
        self.moved: list[tuple[logging.StreamHandler, Any]] = []
        loggers = [
            logging.root,
            *(v for v in logging.Logger.manager.loggerDict.values() if isinstance(v, logging.Logger)),
        ]
        for logger in loggers:
            for handler in list(logger.handlers):
                if not isinstance(handler, logging.StreamHandler) or id(handler.stream) not in consoles:
                    continue
                if logger is logging.root:  # its records reach the log file through Hydra's file handler already
                    logger.removeHandler(handler)
                    self.removed.append((logger, handler))
                else:  # e.g. Lightning's own handler, which does not propagate to the root
                    self.moved.append((handler, handler.setStream(self.file)))
        sys.stdout = sys.stderr = self.file

    def stop(self, error: BaseException | None = None) -> None:
        if error is not None:
            self.file.write("".join(traceback.format_exception(error)))
        sys.stdout, sys.stderr = self.saved
        for handler, stream in self.moved:
            handler.setStream(stream)
        for logger, handler in self.removed:
            logger.addHandler(handler)
        self.file.close()


def _job_log_file(job_dir: Path) -> Path:
    """The file Hydra's job logging writes (`<job dir>/train.log` by default), else <job dir>/output.log."""
    for handler in logging.root.handlers:
        if isinstance(handler, logging.FileHandler):
            return Path(handler.baseFilename)
    return job_dir / "output.log"


_running: list["SweepProgress"] = []  # the sweeps of this process whose last line is not drawn yet


def finish_progress() -> None:
    """Draw the last progress line of every sweep still running in this process and hand the console back.

    A failed job makes Hydra raise once every job has returned, without `on_multirun_end`: the command's
    harness calls this before it prints the error, so the last line (with the final counts) comes first.
    """
    for progress in _running[:]:
        progress.on_multirun_end(None)


class SweepProgress(Callback):
    """Hydra callback: a live progress line for a multirun, and each job's output in its own log (module docstring)."""

    def __init__(self, quiet: bool = True, every_s: float = 2.0) -> None:
        self.quiet, self.every_s = quiet, every_s
        self._watch: SweepWatch | None = None
        self._job_output: JobOutput | None = None
        self._levels: dict[str, int] = {}
        self._wrapped: list[tuple[logging.StreamHandler, Any]] = []
        self._saved_std: tuple[Any, Any] | None = None

    # The launchers pickle the callbacks to run jobs elsewhere: only the settings travel.
    def __getstate__(self) -> dict[str, Any]:
        return {"quiet": self.quiet, "every_s": self.every_s}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))  # resolved once: the launcher reuses the value
        stream = sys.stderr
        if self.quiet:
            for name in LAUNCHER_LOGGERS:
                logger = logging.getLogger(name)
                self._levels[name] = logger.level
                logger.setLevel(logging.WARNING)
        self._watch = SweepWatch(sweep_dir, stream, self.every_s)
        self._wrap_console_logging()
        stream.write(f"Sweep dir: {sweep_dir} (each job's output: <job dir>/train.log)\n")
        self._watch.start()
        # A failed job makes Hydra raise once every job has returned, without on_multirun_end: the
        # last line must still be drawn from the final counts (finish_progress; at exit, after a bug).
        _running.append(self)
        atexit.register(self._finish)

    def on_multirun_end(self, config: DictConfig | None, **kwargs: Any) -> None:
        self._finish()
        atexit.unregister(self._finish)
        if self in _running:
            _running.remove(self)

    def _finish(self) -> None:
        if self._watch is not None:
            self._watch.stop()
            self._watch = None
        self._unwrap_console_logging()
        for name, level in self._levels.items():
            logging.getLogger(name).setLevel(level)

    def _wrap_console_logging(self) -> None:
        """Make what the sweep process prints (the sweeper's log lines) clear the bar, print, and redraw it.

        sys.stdout and sys.stderr are wrapped, so logging set up later (Hydra configures it again
        for each launch, and per job with the basic launcher) binds to the wrappers; handlers set up
        before are re-pointed.
        """
        if self._watch is None or not self._watch.bar_wanted:
            return
        self._saved_std = (sys.stdout, sys.stderr)
        sys.stdout, sys.stderr = _AboveTheBar(sys.stdout, self._watch), _AboveTheBar(sys.stderr, self._watch)
        consoles = {id(s): w for s, w in zip(self._saved_std, (sys.stdout, sys.stderr), strict=True)}
        for handler in logging.root.handlers:
            if isinstance(handler, logging.StreamHandler) and id(handler.stream) in consoles:
                self._wrapped.append((handler, handler.setStream(consoles[id(handler.stream)])))

    def _unwrap_console_logging(self) -> None:
        if self._saved_std is not None:
            sys.stdout, sys.stderr = self._saved_std
            self._saved_std = None
        for handler, stream in self._wrapped:
            handler.setStream(stream)
        self._wrapped = []

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.quiet or HydraConfig.get().mode != RunMode.MULTIRUN:
            return
        self._job_output = JobOutput(_job_log_file(Path(config.hydra.runtime.output_dir)))
        self._job_output.start()

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if self._job_output is None:
            return
        failed = job_return.status == JobStatus.FAILED
        self._job_output.stop(error=job_return._return_value if failed else None)
        self._job_output = None
