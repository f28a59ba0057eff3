"""The config layer: composing `conf/` outside a Hydra app, checking values, and naming what a run swapped."""

import hashlib
import inspect
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, InstantiationException
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from lenet_pl import CONFIG_DIR
from lenet_pl.errors import ConfigError, UserError, hydra_message
from lenet_pl.outputs import note_output_dir, read_yaml

# The config groups a run swaps: they name runs and fill TensorBoard's hparams tab.
AXES = ("experiment", "model", "activation", "pooling", "norm", "loss", "optimizer", "scheduler", "precision", "data")
# Plain values worth comparing runs by, flattened into the hparams tab next to the axes.
VALUES = ("optimizer.lr", "optimizer.weight_decay", "data.batch_size", "trainer.max_epochs", "seed")


def unique_dir(path: str) -> str:
    """`path`, or `path-1`, `path-2`...: the first that did not exist, created here and now.

    Hydra names run dirs by the second, so two runs started in the same second (or a sweep rerun
    into the same dir) would share a folder and overwrite each other's files. mkdir is atomic, so
    concurrent runs each get their own. Registered with use_cache, so each run resolves it once.
    """
    base = Path(path)
    candidate, n = base, 0
    while True:
        try:
            candidate.mkdir(parents=True)
            note_output_dir(candidate, created=True)
            return str(candidate)
        except FileExistsError:
            n += 1
            candidate = base.with_name(f"{base.name}-{n}")


def unique_subdir(parent: str, name: str) -> str:
    """`name`, or `name-1`...: a sweep job's subdir that no earlier job in `parent` has used."""
    return Path(unique_dir(str(Path(parent) / name))).name


def sweep_size(sweep_dir: str | Path, sweeper: Any = None) -> int | None:
    """How many jobs a sweep launches: Optuna's n_trials, or the size of the grid its multirun.yaml
    describes (which Hydra's basic sweeper writes before the first job starts); None if neither says."""
    n_trials = OmegaConf.select(sweeper, "n_trials") if isinstance(sweeper, DictConfig) else None
    if _is_int(n_trials):
        return n_trials
    path = Path(sweep_dir) / "multirun.yaml"
    if not path.is_file():
        return None
    saved = read_yaml(path)["hydra"]  # plain YAML: interpolations stay text
    params = [f"{key}={value}" for key, value in (saved["sweeper"].get("params") or {}).items()]
    overrides = OverridesParser.create().parse_overrides(params + list(saved["overrides"]["task"]))
    return sum(len(batch) for batch in BasicSweeper.split_arguments(overrides, None))


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")  # anything the shell or Hydra's override grammar would read specially
MAX_NAME = 200  # file names stop at 255 bytes


def _safe(text: str) -> str:
    return _UNSAFE.sub("_", text).strip("_")


def job_name(num: int, overrides: list[str], exclude_keys: list[str], size: int | None) -> str:
    """A sweep job's folder (and TensorBoard run) name: `07_activation-relu+loss-mse+seed-0`.

    The job number is zero-padded to the sweep's size, so `ls` and TensorBoard list jobs in order
    (3 digits when the size is unknown). Then what the job swapped, sorted by key, as `key-value`
    joined by `+`: unlike Hydra's own `activation=relu,loss=mse`, the name can be passed on the
    command line as it is (`ckpt_path=<sweep>/07_activation-relu+loss-mse+seed-0`), since neither
    Hydra's override grammar nor the shell gives `-`, `+`, `.` or `_` a meaning there. Characters
    that they would read specially (`[`, `,`, `$`, `{`, quotes, spaces, `/`) become `_`.
    """
    width = len(str(max(size - 1, 0))) if size else 3
    items = []
    for override in OverridesParser.create().parse_overrides([str(o) for o in overrides]):
        if override.key_or_group in exclude_keys:
            continue
        key = _safe(override.key_or_group + (f"@{override.package}" if override.package else ""))
        typed = override.input_line.partition("=")[2] if override.input_line else ""  # 1e-3 as written, not 0.001
        value = "deleted" if override.is_delete() else _safe(typed or override.get_value_element_as_str())
        items.append((key, value))
    name = "+".join(f"{key}-{value}" for key, value in sorted(items))
    if len(name) > MAX_NAME:  # still unique: a hash of the whole name ends it
        name = f"{name[:MAX_NAME]}+{hashlib.sha1(name.encode()).hexdigest()[:8]}"
    return f"{num:0{width}d}" + (f"_{name}" if name else "")


def sweep_job_name(num: int, *, _root_: DictConfig) -> str:
    """`job_name` of the job `num` of the sweep the Hydra config `_root_` describes (a resolver)."""
    hydra = _root_.hydra
    exclude = OmegaConf.select(hydra, "job.config.override_dirname.exclude_keys", default=[]) or []
    size = sweep_size(hydra.sweep.dir, hydra.get("sweeper"))
    return job_name(int(num), list(hydra.overrides.task), list(exclude), size)


def cpu_bf16_units() -> list[str]:
    """This CPU's bf16 units as torch's kernels see them: "AMX", "AVX512_BF16", both, or none.

    oneDNN runs bf16 convolutions and matrix products on AMX tiles (Intel Xeon since Sapphire
    Rapids) or with AVX512_BF16 instructions (Intel Cooper Lake, AMD Zen 4 and later). Without
    either, bf16 is emulated: converted to fp32 and back around fp32 arithmetic.
    """
    capabilities = getattr(torch.cpu, "get_capabilities", dict)()  # cpuinfo's CPUID flags (torch >= 2.6)
    return [name for key, name in (("amx_bf16", "AMX"), ("avx512_bf16", "AVX512_BF16")) if capabilities.get(key)]


def auto_precision(accelerator: str) -> str:
    """`precision=auto` (a resolver): mixed bf16 where the hardware runs it fast, else fp32.

    bf16-mixed on a CUDA GPU with bf16 (16-mixed on older ones) and on a CPU with bf16 units;
    32-true on any other CPU, where emulated bf16 is slower than fp32 (BENCHMARKS.md, "bf16").
    """
    if str(accelerator) in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if cpu_bf16_units() else "32-true"


OmegaConf.register_new_resolver("auto_precision", auto_precision, replace=True)
OmegaConf.register_new_resolver("unique_dir", unique_dir, use_cache=True, replace=True)
OmegaConf.register_new_resolver("unique_subdir", unique_subdir, use_cache=True, replace=True)
OmegaConf.register_new_resolver("sweep_job_name", sweep_job_name, replace=True)  # cannot cache: reads _root_


def user_config_dirs(args: list[str]) -> tuple[list[str], list[str]]:
    """Split Hydra's `--config-dir DIR` (`-cd DIR`, `--config-dir=DIR`) off `args`: (overrides, dirs)."""
    overrides, dirs, it = [], [], iter(args)
    for arg in it:
        if arg in ("--config-dir", "-cd"):
            dirs.append(next(it, ""))
        elif arg.startswith("--config-dir="):
            dirs.append(arg.partition("=")[2])
        else:
            overrides.append(arg)
    return overrides, dirs


def compose_config(overrides: list[str] | None = None, config_name: str = "train") -> DictConfig:
    """The config `python -m lenet_pl.train <overrides>` would run with, minus Hydra's own section.

    As with `python -m lenet_pl.train`, `--config-dir DIR` adds a folder of the user's own configs
    (e.g. DIR/experiment/mine.yaml for `experiment=mine`) to Hydra's search path, ahead of ours;
    so does the override `hydra.searchpath=[file:///abs/DIR]`. Hydra's composition errors (unknown
    group choice, unknown key, malformed override) become ConfigErrors carrying Hydra's own message
    in one line, with the valid choices.
    """
    overrides, dirs = user_config_dirs(list(overrides or []))
    if options := [arg for arg in overrides if arg.startswith("-")]:
        raise ConfigError(f"{options[0]} is not an option: arguments are key=value (--help lists the keys).")
    for folder in dirs:
        if not Path(folder).is_dir():
            raise ConfigError(f"--config-dir {folder!r} is not a folder: give the folder that holds your own configs.")
    if dirs:
        overrides.append(f"hydra.searchpath=[{','.join(Path(d).resolve().as_uri() for d in dirs)}]")
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            return compose(config_name=config_name, overrides=overrides)
    except HydraException as err:
        raise ConfigError(hydra_message(err)) from err


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# What each plain value may be, checked before anything is built: (key, test, what is allowed).
# Keys a config does not have are skipped. The data module and model check their own arguments
# again when built, for users who build them without a config.
RULES: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    ("optimizer.lr", lambda v: _is_number(v) and v > 0, "the learning rate must be a positive number"),
    ("optimizer.weight_decay", lambda v: _is_number(v) and v >= 0, "it must be a number >= 0"),
    (
        "trainer.max_epochs",
        lambda v: _is_int(v) and (v >= 1 or v == -1),
        "give a whole number of epochs >= 1 (or -1 to train until stopped)",
    ),
    ("seed", _is_int, "the seed must be a whole number"),
    ("threads", lambda v: v is None or (_is_int(v) and v >= 1), "give a whole number of threads >= 1, or null"),
    ("keep_freed_memory", lambda v: isinstance(v, bool), "give true or false"),
    # torch refuses these too, when the optimizer is built, but does not say what it accepts.
    ("optimizer.momentum", lambda v: _is_number(v) and v >= 0, "the momentum must be a number >= 0"),
    ("optimizer.betas", lambda v: _is_pair_in_unit_interval(v), "give two numbers, each in [0, 1), e.g. [0.9, 0.999]"),
    ("optimizer.eps", lambda v: _is_number(v) and v >= 0, "it must be a number >= 0"),
    # torch accepts these when the schedule is built and fails, or misbehaves, epochs later.
    ("scheduler.scheduler.step_size", lambda v: _is_int(v) and v >= 1, "give a whole number of epochs >= 1"),
    ("scheduler.interval", lambda v: v in ("epoch", "step"), "give epoch or step (when the schedule steps)"),
    ("data.batch_size", lambda v: _is_int(v) and v >= 1, "it must be a whole number of at least 1"),
    ("data.eval_batch_size", lambda v: _is_int(v) and v >= 1, "it must be a whole number of at least 1"),
    ("data.image_size", _is_int, "it must be a whole number of pixels"),
    ("data.mean", _is_number, "it must be a number"),
    ("data.std", lambda v: _is_number(v) and v > 0, "it must be a positive number"),
    ("model.input_size", lambda v: _is_int(v) and v >= 16, "it must be a whole number of pixels, at least 16"),
    ("model.num_classes", lambda v: _is_int(v) and v >= 2, "it must be a whole number of classes, at least 2"),
)


def _is_pair_in_unit_interval(value: Any) -> bool:
    return (
        isinstance(value, list | tuple | ListConfig)
        and len(value) == 2
        and all(_is_number(v) and 0 <= v < 1 for v in value)
    )


_ABSENT = object()


def validate(cfg: DictConfig) -> None:
    """Reject values that would fail later, or silently misbehave, before anything is built."""
    for key, allowed, what in RULES:
        value = OmegaConf.select(cfg, key, default=_ABSENT)
        if value is not _ABSENT and not allowed(value):
            raise ConfigError(f"{key}={value!r} is not allowed: {what}.")


def run_hparams(cfg: DictConfig, choices: dict[str, Any]) -> dict[str, Any]:
    """What distinguishes this run: the chosen config per axis, and the main plain values."""
    hparams: dict[str, Any] = {axis: str(choices.get(axis) or "none") for axis in AXES}
    for key in VALUES:
        value = OmegaConf.select(cfg, key)
        if value is not None:
            hparams[key] = value
    return hparams


# Exceptions with which torch, Python and our parts refuse an argument value when an object is built.
REFUSALS = (ValueError, TypeError, LookupError, ZeroDivisionError)


def _target_name(node: Any) -> str:
    target = node.get("_target_") if isinstance(node, Mapping | DictConfig) else None
    return str(target) if target else "it"


def _signature_defaults(target: str) -> dict[str, Any]:
    """The default of each argument of `target` (a class or function path), or {} when it cannot be read."""
    try:
        obj = get_object(target)
        parameters = inspect.signature(obj).parameters
    except Exception:  # an unknown target or one without a signature: the message just has no defaults
        return {}
    return {name: p.default for name, p in parameters.items() if p.default is not inspect.Parameter.empty}


def _plain_items(node: Any) -> dict[str, Any]:
    """The node's own values (not its _target_/_partial_ keys nor nested nodes), as plain Python values."""
    if not isinstance(node, Mapping | DictConfig):
        return {}
    items = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
    return {k: v for k, v in items.items() if not str(k).startswith("_") and not isinstance(v, dict)}


def _named_in(key: str, reason: str) -> bool:
    """Whether `reason` (torch's message) is about argument `key`: 'momentum' in 'Invalid momentum value',
    'betas' in 'Invalid beta parameter', 'eps' in 'Invalid epsilon value'."""
    words = re.findall(r"[A-Za-z_]+", reason.lower())
    stems = {key.lower(), key.lower().removesuffix("s")}
    return any(word in stems or (len(key) >= 3 and word.startswith(key.lower())) for word in words)


def _wrong_type(value: Any, default: Any) -> bool:
    """A value whose kind differs from the default's: a word where a number goes, a number where a list goes."""
    if default is None or value is None:
        return False
    if isinstance(default, bool):
        return not isinstance(value, bool)
    if isinstance(default, int | float):
        return not _is_number(value)
    if isinstance(default, tuple | list):
        return not isinstance(value, list | tuple)
    return False


def refusal_message(key: str, node: Any, err: BaseException) -> str:
    """One paragraph: which values of config node `key` were refused, by what, why, and the defaults."""
    reason = " ".join(str(err).split()) or type(err).__name__
    target = _target_name(node)
    items = _plain_items(node)
    defaults = _signature_defaults(target) if target != "it" else {}
    # The values the refusal is about: those its message names, else those of the wrong kind.
    suspects = [k for k in items if _named_in(k, reason)] or [
        k for k in items if k in defaults and _wrong_type(items[k], defaults[k])
    ]
    if suspects:
        values = ", ".join(f"{key}.{k}={items[k]!r}" for k in suspects)
        one = len(suspects) == 1
        message = (
            f"{values} {'is' if one else 'are'} not allowed: {target} refuses {'it' if one else 'them'} ({reason})."
        )
        allowed = ", ".join(f"{k}={defaults[k]!r}" for k in suspects if k in defaults)
        if allowed:
            message += f" {'Its default' if one else 'Their defaults'}, which it accepts: {allowed}."
        return message
    # Nothing points at one value: show those that differ from the defaults (a few), where the cause must be.
    changed = [k for k in items if k not in defaults or items[k] != defaults[k]]
    shown = ", ".join(f"{k}={items[k]!r}" for k in changed[:8]) + (
        f" and {len(changed) - 8} more" if changed[8:] else ""
    )
    return f"{key} with {shown or 'its defaults'} is not allowed: {target} refuses it ({reason})."


@contextmanager
def refused_as_config_error(key: str, node: Any) -> Iterator[None]:
    """Turn torch's (or our parts') refusal of an argument while building config node `key` into a ConfigError.

    One mechanism for every node (data, model, loss, optimizer, scheduler): the message names the
    node's values the refusal is about, the refusing class, its own reason and its defaults. A
    UserError from our own parts already says all that and passes through, out of Hydra's wrapper.
    """
    try:
        yield
    except UserError:
        raise
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, UserError):
            raise cause from err
        full_key = re.search(r"full_key: (\S+)", str(err))
        where = full_key.group(1) if full_key and full_key.group(1).startswith(key) else key
        inner = OmegaConf.select(node, where[len(key) + 1 :]) if where != key and isinstance(node, DictConfig) else node
        raise ConfigError(refusal_message(where, inner, cause or err)) from err
    except REFUSALS as err:
        raise ConfigError(refusal_message(key, node, err)) from err


def instantiate_node(cfg: DictConfig, key: str, **kwargs: Any) -> Any:
    """`instantiate(cfg.<key>)`, with a refused argument reported as a ConfigError naming `key` and the value."""
    node = OmegaConf.select(cfg, key)
    with refused_as_config_error(key, node):
        return instantiate(node, **kwargs)
