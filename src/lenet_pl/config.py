"""The config layer: composing `conf/` outside a Hydra app, checking values, and naming what a run swapped."""

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


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def validate(cfg: DictConfig) -> None:
    """Reject values that would fail later, or silently misbehave, before anything is built.

    The data module checks its own arguments when it is built; this covers what only the
    config knows about (the optimizer is a partial, so its values are not checked until fit).
    """
    lr = OmegaConf.select(cfg, "optimizer.lr")
    if not (_is_number(lr) and lr > 0):
        raise ConfigError(f"optimizer.lr={lr!r} is not allowed: the learning rate must be a positive number.")
    weight_decay = OmegaConf.select(cfg, "optimizer.weight_decay", default=0)
    if not (_is_number(weight_decay) and weight_decay >= 0):
        raise ConfigError(f"optimizer.weight_decay={weight_decay!r} is not allowed: it must be a number >= 0.")
    epochs = OmegaConf.select(cfg, "trainer.max_epochs")
    if not (isinstance(epochs, int) and not isinstance(epochs, bool) and (epochs >= 1 or epochs == -1)):
        raise ConfigError(
            f"trainer.max_epochs={epochs!r} is not allowed: give a whole number of epochs >= 1 "
            "(or -1 to train until stopped)."
        )
    if not isinstance(cfg.get("seed"), int):
        raise ConfigError(f"seed={cfg.get('seed')!r} is not allowed: the seed must be a whole number.")


def run_hparams(cfg: DictConfig, choices: dict[str, Any]) -> dict[str, Any]:
    """What distinguishes this run: the chosen config per axis, and the main plain values."""
    hparams: dict[str, Any] = {axis: str(choices.get(axis) or "none") for axis in AXES}
    for key in VALUES:
        value = OmegaConf.select(cfg, key)
        if value is not None:
            hparams[key] = value
    return hparams
