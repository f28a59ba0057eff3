"""Errors caused by what the user asked for: reported as one line, `error: <message>`, without a
traceback (lenet_pl.runtime.cli), each with the exit code its command ends with."""

import importlib
import importlib.util
from dataclasses import dataclass
from types import ModuleType

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


@dataclass(frozen=True)
class Extra:
    """An optional part of the project: pyproject.toml's extra of that name installs its packages."""

    needed_by: str  # what the user asked for that needs it, as the error's subject
    modules: dict[str, str]  # what imports it (a module, or a Hydra plugin's package) -> its name for pip
    otherwise: str = ""  # what works without it, if anything


# The extras a wheel installs only when asked (`pip install 'lenet-pl[onnx]'`); a clone's `make install` installs all.
EXTRAS = {
    "onnx": Extra(
        "ONNX export",
        {"onnx": "onnx", "onnxscript": "onnxscript", "onnxruntime": "onnxruntime"},
        otherwise="format=torchscript needs torch alone.",
    ),
    "optuna": Extra(
        "The Optuna search (hparams_search=optuna)",
        {"hydra_plugins.hydra_optuna_sweeper": "hydra-optuna-sweeper", "optuna": "optuna"},
    ),
    "slurm": Extra(
        "The SLURM launcher (hydra/launcher=slurm, or submitit_local)",
        {"hydra_plugins.hydra_submitit_launcher": "hydra-submitit-launcher"},
    ),
}
# The Hydra configs an extra's plugin registers (start of the config's path -> the extra): without the plugin,
# composing them fails with Hydra's "Could not find 'hydra/sweeper/optuna'", which names no package.
PLUGIN_CONFIGS = {
    "hydra/sweeper/optuna": "optuna",
    "hydra/sweeper/sampler/": "optuna",
    "hydra/launcher/submitit_": "slurm",
}


class MissingExtra(UserError):
    """An optional package the command needs is not installed: the message names it, its extra and the pip command."""

    def __init__(self, extra: str, missing: str) -> None:
        needs = EXTRAS[extra]
        packages = list(needs.modules.values())
        if len(packages) == 1:
            what = f"the optional package {packages[0]}, not installed here"
        else:
            listed = f"{', '.join(packages[:-1])} and {packages[-1]}"
            what = f"the optional packages {listed}, and {missing} is not installed here"
        super().__init__(
            f"{needs.needed_by} needs {what}: pip install 'lenet-pl[{extra}]' "
            f"(a clone's `make install` installs every extra). {needs.otherwise}".strip()
        )
        self.extra, self.missing = extra, missing


def import_extra(extra: str) -> dict[str, ModuleType]:
    """Every module of the optional `extra`, by name; a MissingExtra naming the first one not installed.

    Another import error inside them (a broken install, a missing system library) keeps its traceback.
    """
    modules = EXTRAS[extra].modules
    try:
        return {name: importlib.import_module(name) for name in modules}
    except ModuleNotFoundError as err:
        name = err.name or ""
        missing = next((module for module in modules if name == module or name.startswith(f"{module}.")), None)
        if missing is None:
            raise
        raise MissingExtra(extra, modules[missing]) from err


def missing_plugin(config: str) -> MissingExtra | None:
    """The MissingExtra behind a Hydra config that could not be found, when an extra's plugin that is not
    installed registers it (`hydra/sweeper/optuna`); None for any other missing config."""
    extra = next((extra for start, extra in PLUGIN_CONFIGS.items() if config.startswith(start)), None)
    if extra is None:
        return None
    plugin = next(name for name in EXTRAS[extra].modules if name.startswith("hydra_plugins."))
    if importlib.util.find_spec(plugin) is not None:
        return None  # installed: the config is a misspelt choice of it, Hydra's message says so
    return MissingExtra(extra, EXTRAS[extra].modules[plugin])


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
    malformed override (Hydra's own text spans lines and ends with its search path), a config of an extra's
    plugin that is not installed (`hparams_search=optuna` without the `optuna` extra: MissingExtra's message)."""
    if isinstance(err, MissingConfigException) and (extra := missing_plugin(err.missing_cfg_file or "")):
        return str(extra)
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
