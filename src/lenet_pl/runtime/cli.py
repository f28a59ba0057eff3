"""The one command-line harness: every `python -m lenet_pl.<command>` answers `--help`, refuses the old
names of renamed keys, and ends on a user's error with one line on stderr, `error: <message>`, and the
error's exit code, never a traceback.

- `config_command`: `key=value` arguments composed with conf/<name>.yaml (evaluate, predict, export,
  inside); `--help` prints the command's docstring and every key of that file with its comment.
- `command`: any other arguments (summary's train overrides; report, bench and error_per_pass parse
  theirs with `ArgumentParser`); `--help` prints the text the command gives.
- `hydra_app`: a `@hydra.main` app (train). Hydra itself answers `--help`, from `hydra.help.template`
  (conf/hydra/help/train.yaml), so that `--help experiment=modern` shows that preset's values.

Exit codes (lenet_pl.runtime.errors): 0 done; 2 (USAGE) the command as given cannot run: a bad key, value, file
or data set, or a config Hydra cannot compose; 1 (FAILED) it ran and failed (`RunFailed`: training
diverged, a sweep job failed, the disk filled up; predict's unreadable images), or a bug, which keeps
its traceback.
"""

import argparse
import os
import sys
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any, NoReturn

import torch
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from lenet_pl import CONFIG_DIR
from lenet_pl.runtime.compose import compose_config
from lenet_pl.runtime.errors import USAGE, OutputError, UserError, user_cause, user_message
from lenet_pl.runtime.outputs import disk_error, what_failed

OK = 0
HELP = ("-h", "--help")
EXIT_CODES = (
    "Exit codes: 0 done; 2 a user error (a bad key, value, file or data set: fix the command and run it again); "
    "1 it ran and failed (training diverged, a sweep job failed, the disk filled up, an input was unreadable), "
    "or a bug (with its traceback)."
)
# Old names of keys that now have one name in every command: the new name and what it names. Each command
# refuses those whose new name it takes, never mapping them to it, so that scripts say each thing one way too.
RENAMED = {
    "data_root": ("data.root", "the data set's folder"),
    "paths.data_dir": ("data.root", "the data set's folder"),
    "output_dir": ("output", "the file or folder it writes"),
    "--out": ("--output", "the file or folder it writes"),
    "--json": ("--output", "the file it writes"),
}
_OURS = "LENET_PL_SET_HYDRA_FULL_ERROR"  # marks HYDRA_FULL_ERROR=1 as set by `hydra_app`, not by the user


def command(
    job: Callable[[list[str]], int],
    argv: Sequence[str] | None,
    help_text: Callable[[], str],
    renamed: Collection[str] = (),
) -> int:
    """Run `job` on the arguments (sys.argv's when `argv` is None) and return the exit code: `--help`
    answered, the old names `renamed` (keys of RENAMED) refused, a user's error (or a full disk) printed
    as one line."""
    args = list(sys.argv[1:] if argv is None else argv)
    if any(arg in HELP for arg in args):
        print(help_text())
        return OK
    try:
        refuse_old_names(args, renamed)
        return job(args)
    except (UserError, HydraException) as err:
        return print_error(err)
    except OSError as err:
        if (disk := disk_error(err)) is None:
            raise
        message, _ = what_failed(disk)
        advice = "Free some space or make it writable, or write elsewhere (output=... or --output ...), and run again."
        return print_error(OutputError(f"{message} {advice}"))


def print_error(err: BaseException) -> int:
    """Print a user's error as one line on stderr; return its exit code."""
    print(f"error: {' '.join(user_message(err).split())}", file=sys.stderr)
    return getattr(user_cause(err), "exit_code", USAGE)  # Hydra's own errors are the user's command line


def refuse_old_names(args: Iterable[str], renamed: Collection[str]) -> None:
    """A UserError naming the new name for the first argument that uses one of the old names `renamed`."""
    for arg in args:
        name, _, value = arg.partition("=")
        old = name if name.startswith("-") else name.lstrip("+~")
        if old in renamed:
            new, what = RENAMED[old]
            written = f"{new} {value or '...'}" if new.startswith("-") else f"{new}={value or '...'}"
            raise UserError(
                f"{old} is an old name: every command now calls {what} {new}. Write {written} instead "
                "(--help lists every name)."
            )


def config_command(name: str, doc: str, job: Callable[[DictConfig], int], argv: Sequence[str] | None = None) -> int:
    """`python -m lenet_pl.<name> key=value ...`: conf/<name>.yaml composed with the arguments, its
    required keys (???) checked and `threads` applied, then `job(cfg)`; returns the exit code."""

    def composed(args: list[str]) -> int:
        cfg = compose_config(args, config_name=name)
        if missing := [key for key in cfg if OmegaConf.is_missing(cfg, key)]:
            raise UserError(
                f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} required: "
                f"`python -m lenet_pl.{name} {' '.join(f'{key}=...' for key in missing)}` (--help lists every key)."
            )
        if cfg.get("threads"):
            torch.set_num_threads(cfg.threads)
        return job(cfg)

    keys = {key for key, _, _ in config_keys(name)}
    renamed = [old for old, (new, _) in RENAMED.items() if new in keys]
    return command(composed, argv, lambda: config_help(name, doc), renamed)


def config_help(name: str, doc: str) -> str:
    """`doc` (what the command does, with examples), then each key of conf/<name>.yaml with its comment."""
    keys = [(f"{key}={default}", meaning) for key, default, meaning in config_keys(name)]
    heading = f"Keys (key=default, from conf/{name}.yaml; ??? = required):"
    return f"{doc.strip()}\n\n{heading}\n{format_keys(keys)}\n\n{EXIT_CODES}"


def config_keys(name: str) -> list[tuple[str, str, str]]:
    """(dotted key, default as written, comment) of each value of conf/<name>.yaml, whose lines read
    `key: default  # what it means`, nested keys indented by two spaces under their parent."""
    keys, parents = [], []
    for line in (CONFIG_DIR / f"{name}.yaml").read_text().splitlines():
        key, colon, rest = line.partition(":")
        if not colon or not key.strip() or key.lstrip().startswith("#"):
            continue
        default, _, meaning = rest.partition("#")
        depth = (len(key) - len(key.lstrip())) // 2
        parents[depth:] = [key.strip()]
        if default.strip():
            keys.append((".".join(parents), default.strip(), meaning.strip()))
    return keys


def format_keys(keys: Iterable[tuple[str, str]]) -> str:
    """Help lines: each key, then what it means, in two aligned columns."""
    keys = list(keys)
    width = max(len(key) for key, _ in keys)
    return "\n".join(f"  {key:<{width}}  {meaning}" for key, meaning in keys)


class ArgumentParser(argparse.ArgumentParser):
    """argparse for the commands of paths and options (report, bench, error_per_pass): options only by their
    whole name (no abbreviations, so an old name cannot match a new one), and a bad argument is a user error
    like any other, one line and exit code 2, instead of argparse's usage block."""

    def __init__(self, name: str, doc: str, **kwargs: Any) -> None:
        super().__init__(
            prog=f"python -m lenet_pl.{name}",
            description=doc.strip(),
            epilog=EXIT_CODES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            allow_abbrev=False,
            **kwargs,
        )

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{message} (`{self.prog} --help` lists the arguments).")


def hydra_app(
    app: Callable[[], Any],
    explain: Callable[[Exception], UserError | HydraException | None],
    renamed: Collection[str] = (),
) -> int:
    """Run a `@hydra.main` app (which reads sys.argv itself) and return the exit code.

    Hydra prints an error raised outside the job (composition, its run dir not writable, a failed sweep
    job re-raised once every job ran) as a traceback. HYDRA_FULL_ERROR=1 lets it through to here instead,
    where `explain` turns it into the user's error it stands for, or None for a bug, which keeps its
    traceback. HYDRA_FULL_ERROR=1 set by the user keeps Hydra's own behaviour: full tracebacks.
    """
    try:
        refuse_old_names(sys.argv[1:], renamed)
    except UserError as err:
        return print_error(err)
    if os.environ.get("HYDRA_FULL_ERROR") == "1" and not os.environ.get(_OURS):
        app()
        return OK
    # Inherited by the processes a run starts (DDP re-runs this command), marked as ours, not the user's.
    os.environ["HYDRA_FULL_ERROR"] = os.environ[_OURS] = "1"
    try:
        app()
    except Exception as err:
        if (user_error := explain(err)) is None:
            raise
        return print_error(user_error)
    return OK
