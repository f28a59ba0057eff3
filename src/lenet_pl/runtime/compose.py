"""Composing `conf/` outside a Hydra app (`--config-dir` too), and the resolvers the configs use.

`register_resolvers` is called by `compose_config` and by `lenet_pl.train` before Hydra reads
`conf/train.yaml`: `${unique_dir:...}`, `${sweep_job_name:...}` and `${auto_precision:...}`
resolve only once it has run.
"""

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from lenet_pl import CONFIG_DIR
from lenet_pl.runtime.errors import ConfigError, hydra_message
from lenet_pl.runtime.naming import sweep_job_name, unique_dir, unique_subdir
from lenet_pl.runtime.precision import auto_precision


def register_resolvers() -> None:
    """Teach OmegaConf the resolvers conf/ uses (again is harmless: each replaces itself)."""
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
    register_resolvers()
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            return compose(config_name=config_name, overrides=overrides)
    except HydraException as err:
        raise ConfigError(hydra_message(err)) from err
