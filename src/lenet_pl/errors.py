"""Errors caused by what the user asked for: reported as one paragraph, without a traceback."""


class UserError(Exception):
    """Bad input (a config value, a data folder, a file). The message says what was wrong and what to do."""


class ConfigError(UserError, ValueError):
    """A config value outside what the project accepts."""


class DataError(UserError, RuntimeError):
    """A data set that is missing, cannot be downloaded, or is corrupt."""


class RunFileError(UserError, ValueError):
    """A file a run wrote (metrics.json, .hydra/*.yaml, a CSV log) that is empty, cut short or not what the
    project writes (see lenet_pl.outputs.read_json): a fact about that run, which a sweep's report marks."""

    def __init__(self, path: object, problem: str) -> None:
        super().__init__(f"{path} {problem}.")
        self.path, self.problem = path, problem


class OutputError(UserError, RuntimeError):
    """A run's output that could not be written: the disk is full or not writable (see lenet_pl.outputs)."""


def user_cause(err: BaseException) -> UserError | None:
    """The UserError `err` is or wraps (Hydra's InstantiationException wraps what a constructor raised)."""
    cause: BaseException | None = err
    while cause is not None and not isinstance(cause, UserError):
        cause = cause.__cause__
    return cause


def user_message(err: BaseException) -> str:
    """The message to show for `err`: the UserError inside wrappers such as Hydra's InstantiationException."""
    return str(user_cause(err) or err)
