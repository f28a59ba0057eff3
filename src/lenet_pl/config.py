"""The config layer: composing `conf/` outside a Hydra app, checking values, and naming what a run swapped."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from lenet_pl import CONFIG_DIR
from lenet_pl.errors import ConfigError

# The config groups a run swaps: they name runs and fill TensorBoard's hparams tab.
AXES = ("experiment", "model", "activation", "pooling", "loss", "optimizer", "scheduler", "data")
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
            return str(candidate)
        except FileExistsError:
            n += 1
            candidate = base.with_name(f"{base.name}-{n}")


def unique_subdir(parent: str, name: str) -> str:
    """`name`, or `name-1`...: a sweep job's subdir that no earlier job in `parent` has used."""
    return Path(unique_dir(str(Path(parent) / name))).name


OmegaConf.register_new_resolver("unique_dir", unique_dir, use_cache=True, replace=True)
OmegaConf.register_new_resolver("unique_subdir", unique_subdir, use_cache=True, replace=True)


def compose_config(overrides: list[str] | None = None, config_name: str = "train") -> DictConfig:
    """The config `python -m lenet_pl.train <overrides>` would run with, minus Hydra's own section.

    Hydra's composition errors (unknown group choice, malformed override) become ConfigErrors
    carrying Hydra's own message, which lists the valid choices.
    """
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            return compose(config_name=config_name, overrides=overrides or [])
    except HydraException as err:
        raise ConfigError(str(err).strip()) from err


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
    ("data.batch_size", lambda v: _is_int(v) and v >= 1, "it must be a whole number of at least 1"),
    ("data.eval_batch_size", lambda v: _is_int(v) and v >= 1, "it must be a whole number of at least 1"),
    ("data.image_size", _is_int, "it must be a whole number of pixels"),
    ("data.mean", _is_number, "it must be a number"),
    ("data.std", lambda v: _is_number(v) and v > 0, "it must be a positive number"),
    ("model.input_size", lambda v: _is_int(v) and v >= 16, "it must be a whole number of pixels, at least 16"),
    ("model.num_classes", lambda v: _is_int(v) and v >= 2, "it must be a whole number of classes, at least 2"),
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
