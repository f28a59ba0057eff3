"""Names of runs and sweep jobs: unique run dirs, job folder names that say what each job swapped,
and the hparams that tell runs apart in TensorBoard."""

import hashlib
import re
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from lenet_pl.runtime.outputs import note_output_dir, read_yaml

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
    if isinstance(n_trials, int) and not isinstance(n_trials, bool):
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


def run_hparams(cfg: DictConfig, choices: dict[str, Any]) -> dict[str, Any]:
    """What distinguishes this run: the chosen config per axis, and the main plain values."""
    hparams: dict[str, Any] = {axis: str(choices.get(axis) or "none") for axis in AXES}
    for key in VALUES:
        value = OmegaConf.select(cfg, key)
        if value is not None:
            hparams[key] = value
    return hparams
