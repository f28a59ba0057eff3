"""Errors caused by what the user asked for: reported as one line, `error: <message>`, without a
traceback (lenet_pl.runtime.cli), each with the exit code its command ends with."""

from hydra.errors import HydraException, MissingConfigException
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

# Exit codes of every command (the README's "Exit codes"); a bug exits 1 too, with its traceback.
FAILED = 1  # the command ran and failed: training diverged, a sweep job failed, the disk filled up
USAGE = 2  # the command as given cannot run (bad key, value, file or data set), as argparse and Unix tools use 2


class UserError(Exception):
    """Bad input (a config value, a data folder, a file). The message says what was wrong and what to do."""

    exit_code = USAGE


class RunFailed(UserError):
    """No mistake in the command: it ran, and what it ran failed (its result, or the disk under it)."""

    exit_code = FAILED


class ConfigError(UserError, ValueError):
    """A config value outside what the project accepts."""


class DataError(UserError, RuntimeError):
    """A data set that is missing, cannot be downloaded, or is corrupt."""


class RunFileError(UserError, ValueError):
    """A file a run wrote (metrics.json, .hydra/*.yaml, a CSV log) that is empty, cut short or not what the
    project writes (see lenet_pl.runtime.outputs.read_json): a fact about that run, which a sweep's report marks."""

    def __init__(self, path: object, problem: str) -> None:
        super().__init__(f"{path} {problem}.")
        self.path, self.problem = path, problem


class OutputError(RunFailed, RuntimeError):
    """A run's output that could not be written: the disk is full or not writable (see lenet_pl.runtime.outputs)."""


def user_cause(err: BaseException) -> UserError | None:
    """The UserError `err` is or wraps (Hydra's InstantiationException wraps what a constructor raised)."""
    cause: BaseException | None = err
    while cause is not None and not isinstance(cause, UserError):
        cause = cause.__cause__
    return cause


def user_message(err: BaseException) -> str:
    """The message to show for `err`: the UserError inside wrappers such as Hydra's InstantiationException,
    or Hydra's own composition error in one line."""
    if (cause := user_cause(err)) is not None:
        return str(cause)
    return hydra_message(err) if isinstance(err, HydraException) else str(err)


def hydra_message(err: HydraException) -> str:
    """One line for Hydra's composition errors: an unknown choice with the valid ones, an unknown key, a
    malformed override (Hydra's own text spans lines and ends with its search path)."""
    if isinstance(err, MissingConfigException) and err.options is not None:
        group = (err.missing_cfg_file or "").rpartition("/")[0]
        first = str(err).strip().splitlines()[0]
        return f"{first}. Available options in '{group}': {', '.join(err.options)}."
    cause = err.__cause__
    if isinstance(cause, ConfigAttributeError | ConfigKeyError) and "not in struct" in str(cause):
        key = cause.full_key
        return f"{key} is not a key of this command: --help lists them (+{key}=... adds a new key to a config node)."
    text = str(err).split("Config search path")[0]
    if isinstance(cause, OmegaConfBaseException):
        text += f" {cause}"
    return " ".join(text.split())
