"""A run's files: written so that a full or read-only disk loses nothing, read so that a damaged one is named.

Every file the project writes itself (checkpoints, metrics.json, failure.json, copies of resumed
checkpoints) goes through `write_atomically`: a temporary file beside the target, then a rename,
so a write that fails (or a kill) leaves the previous file whole and no partial one. When any
write fails because the disk is full or not writable (ours, Hydra's run dir and logs, Lightning's
loggers), `output_error` turns the OSError into an `OutputError` that names the path, what is
wrong with the disk, the last good checkpoint and the command that resumes from it.

Every run file a command reads (metrics.json, failure.json, .hydra/*.yaml, multirun.yaml, the CSV
logs) goes through `read_json`, `read_yaml` or `read_csv`, which refuse a file that is empty, cut
short (every file the project, Hydra and Lightning write ends in a line break, and JSON in its
closing bracket), not parseable, or of another shape than its writer gives it, with a
`RunFileError` naming the file and what is wrong. A sweep's report marks such a job and reports the
rest; a command about one run refuses in one paragraph.
"""

import csv
import errno
import json
import os
import shlex
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lenet_pl.runtime.errors import OutputError, RunFileError

# Why a write can fail that is about the disk, not the program: what to tell the user.
DISK_PROBLEMS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "it is not writable (permission denied)",
    errno.EPERM: "it is not writable (operation not permitted)",
}
_WRITE_ONLY = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)  # the others can be reads too

# The run (or sweep) dirs this process set up, newest last, and of those the ones it created, so that
# a run that could not even be set up (its dir or Hydra's files in it not writable) is named, and removed.
output_dirs: list[Path] = []
created_dirs: list[Path] = []


def note_output_dir(path: str | Path, created: bool) -> None:
    output_dirs.append(Path(path))
    if created:
        created_dirs.append(Path(path))


class NoteOutputDir(Callback):
    """Hydra callback (conf/train.yaml): note the run or sweep dir before Hydra creates it and writes its
    .hydra/ files there, which is where a full or read-only disk first shows."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._note(config, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._note(config, "hydra.sweep.dir")

    @staticmethod
    def _note(config: DictConfig, key: str) -> None:
        try:
            # Resolved once here (unique_dir caches it, and may create it); Hydra then creates the rest.
            folder = Path(str(OmegaConf.select(config, key)))
        except Exception:  # unique_dir could not create it: Hydra meets the same error next and it is reported
            return
        if folder not in output_dirs:
            note_output_dir(folder, created=not folder.exists())


def write_atomically(path: str | Path, data: bytes | memoryview) -> None:
    """Write `data` to `path` through a temporary file beside it, fsynced, then renamed into place.

    An OSError names `path` (a failed write() names no file), and no temporary file is left.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        raise OSError(err.errno, err.strerror, str(path)) from err
    finally:
        tmp.unlink(missing_ok=True)


def copy_atomically(source: str | Path, target: str | Path) -> None:
    """`shutil.copy2`, through a temporary file: a copy that fails leaves no partial target."""
    target = Path(target)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        shutil.copy2(source, tmp)
        os.replace(tmp, target)
    except OSError as err:
        raise OSError(err.errno, err.strerror, str(target)) from err
    finally:
        tmp.unlink(missing_ok=True)


def disk_error(err: BaseException, output_dir: str | Path | None = None) -> OSError | None:
    """The OSError in `err`'s chain that says the disk is full or not writable, or None.

    Permission errors count only for paths under `output_dir` (when given): elsewhere they are
    reads of the data, say, not writes of the run's outputs.
    """
    seen: set[int] = set()
    cause: BaseException | None = err
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if (
            isinstance(cause, OSError)
            and cause.errno in DISK_PROBLEMS
            and (cause.errno in _WRITE_ONLY or output_dir is None or _is_under(cause.filename, output_dir))
        ):
            return cause
        cause = cause.__cause__ or cause.__context__
    return None


def _is_under(path: str | None, folder: str | Path) -> bool:
    if not path:
        return True  # a write that names no file: one of the run's own (its logs, its event files)
    try:
        Path(path).resolve().relative_to(Path(folder).resolve())
        return True
    except ValueError:
        return False


def last_good_checkpoint(folders: Iterable[str | Path]) -> tuple[Path, int, int] | None:
    """The newest checkpoint in `folders` that loads, with its epoch and global step (None if there is none)."""
    found = [p for folder in folders for p in Path(folder).glob("*.ckpt") if not p.name.startswith(".")]
    for path in sorted(found, key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # cut short or damaged: not a good one
            continue
        return path, int(checkpoint.get("epoch", 0)), int(checkpoint.get("global_step", 0))
    return None


def what_failed(err: OSError, folder: str | Path | None = None) -> tuple[str, str]:
    """(the sentence saying which path could not be written and why, what the user can do about it)."""
    problem = DISK_PROBLEMS.get(err.errno or 0, "it could not be written")
    where = err.filename or (f"to {folder}" if folder else "the run's output folder")
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        room = "free some space, or set paths.output_root to a disk that has it"
    else:
        room = "make it writable, or set paths.output_root to a folder that is"
    return f"Could not write {where}: {problem} ({err.strerror or err}).", room


def output_error(
    err: OSError,
    run_dir: str | Path | None,
    overrides: list[str] | None = None,
    checkpoint_dirs: Iterable[str | Path] = (),
    started: bool = True,
) -> OutputError:
    """One paragraph for a write that failed for want of disk: which path, why, the last good checkpoint
    (searched in `checkpoint_dirs`) and how to resume from it; `started=False` for a run that never began."""
    message, room = what_failed(err, run_dir)
    last = last_good_checkpoint(checkpoint_dirs)
    if not started:
        return OutputError(f"{message} Nothing was run: {room}, and run again.")
    if last is None:
        return OutputError(
            f"{message} No checkpoint had been written yet, so nothing can be resumed: once the run can write "
            f"({room}), run the same command again."
        )
    ckpt, epoch, step = last
    kept = [o for o in overrides or [] if not o.startswith("ckpt_path=")]
    command = " ".join(["python -m lenet_pl.train", *map(shlex.quote, kept), shlex.quote(f"ckpt_path={ckpt}")])
    return OutputError(
        f"{message} The last good checkpoint is {ckpt} (epoch {epoch}, step {step}); no partial checkpoint "
        f"was left. Once the run can write ({room}), resume with: {command}"
    )


def _holds_results(folder: Path) -> bool:
    """Whether `folder` holds anything but what Hydra writes when a run starts (.hydra/, logs, multirun.yaml)."""
    for path in folder.rglob("*"):
        relative = path.relative_to(folder).parts
        if path.is_file() and ".hydra" not in relative and path.suffix != ".log" and path.name != "multirun.yaml":
            return True
    return False


def remove_unstarted_dirs() -> list[Path]:
    """Remove the run and sweep dirs this process created that hold only Hydra's start-up files (a run that
    could not be set up for want of disk); return them. Nothing a run wrote itself is ever removed."""
    removed = []
    for folder in reversed(created_dirs):
        if folder.is_dir() and not _holds_results(folder):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    created_dirs.clear()
    return removed


# ---------------------------------------------------------------------------------------------
# Reading a run's files

_SHAPES = {dict: "a mapping", list: "a list"}


def _read_text(path: Path) -> str:
    """The text of a run file that must be there; a RunFileError when it is unreadable, empty or cut short."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RunFileError(path, "is missing") from None
    except UnicodeDecodeError as err:
        raise RunFileError(
            path, f"is not text ({err.reason} at byte {err.start}): it was altered or overwritten"
        ) from err
    except OSError as err:
        raise RunFileError(path, f"cannot be read ({err.strerror or err})") from err
    if not text.strip():
        raise RunFileError(path, "is empty: the run, or a copy of it, stopped before the file was written")
    return text


def _shape(path: Path, value: Any, expected: type) -> Any:
    if not isinstance(value, expected):
        raise RunFileError(
            path, f"holds {_SHAPES.get(type(value), type(value).__name__)} where its writer writes {_SHAPES[expected]}"
        )
    return value


def read_json(path: str | Path, expected: type = dict) -> Any:
    """A JSON run file (metrics.json, failure.json), refused with a RunFileError when it is damaged."""
    path = Path(path)
    try:
        value = json.loads(_read_text(path))
    except json.JSONDecodeError as err:
        raise RunFileError(path, f"is not valid JSON ({err}): it was cut short or altered") from err
    return _shape(path, value, expected)


def read_yaml(path: str | Path, expected: type = dict, omegaconf: bool = False) -> Any:
    """A YAML run file (.hydra/*.yaml, multirun.yaml), refused with a RunFileError when it is damaged.

    Plain YAML by default, so interpolations stay text; `omegaconf=True` reads it as OmegaConf.load does
    (a DictConfig or ListConfig, numbers as OmegaConf reads them), for comparing with a composed config.
    """
    path = Path(path)
    text = _read_text(path)
    if not text.endswith("\n"):  # YAML cut at a line break may still parse: only the missing end says so
        raise RunFileError(
            path, "is cut short: it ends inside a line (every YAML file a run writes ends in a line break)"
        )
    try:
        value = _shape(path, yaml.safe_load(text), expected)  # OmegaConf would make a stray scalar a key
        return OmegaConf.create(text) if omegaconf else value
    except (yaml.YAMLError, OmegaConfBaseException) as err:
        reason = " ".join(str(err).split())
        raise RunFileError(path, f"is not valid YAML ({reason}): it was cut short or altered") from err


def read_csv(path: str | Path, columns: Sequence[str] = (), numbers: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The rows of a CSV run file (Lightning's metrics.csv, error_per_pass.csv), refused with a RunFileError
    when it is damaged: a header without one of `columns`, a row cut short or with other fields than the
    header, a value in one of `numbers` that is not a number. Those become floats; empty cells, which
    Lightning leaves for metrics not logged at that step, become None."""
    path = Path(path)
    text = _read_text(path)
    if not text.endswith("\n"):
        raise RunFileError(path, "is cut short: its last line has no line break (the file ends inside a row)")
    reader = csv.DictReader(text.splitlines())
    header = reader.fieldnames or []
    if missing := [c for c in columns if c not in header]:
        raise RunFileError(path, f"has no {', '.join(missing)} column (its header: {','.join(header)})")
    rows = []
    for row in reader:
        if None in row or None in row.values():
            raise RunFileError(path, f"has a row with other fields than its header in line {reader.line_num}")
        for column in numbers:
            value = row.get(column)
            if value in (None, ""):
                row[column] = None
                continue
            try:
                row[column] = float(value)
            except ValueError:
                raise RunFileError(
                    path, f"holds {value!r} in column {column} of line {reader.line_num}, not a number"
                ) from None
        rows.append(row)
    return rows


def read_metrics(run_dir: str | Path) -> dict[str, Any] | None:
    """A finished run's metrics.json as lenet_pl.train writes it ({"hparams": ..., "metrics": ...}); None when
    there is none (the run has not finished); a RunFileError when it is damaged."""
    path = Path(run_dir) / "metrics.json"
    if not path.is_file():
        return None
    record = read_json(path)
    for key in ("hparams", "metrics"):
        if not isinstance(record.get(key), dict):
            raise RunFileError(path, f"has no {key!r} mapping, which lenet_pl.train writes")
    return record
