"""Finding and checking the checkpoint a run resumes from, before Lightning touches it.

`ckpt_path` may be a `.ckpt` file, a run dir (its `checkpoints/last.ckpt`), or `last`: the
newest `last.ckpt` of an earlier run of the same config under the outputs root, which is how a
killed run, or every job of a killed sweep, is continued. Checkpoints are read with
`weights_only=True`, so a downloaded `.ckpt` cannot run code, and a checkpoint whose tensors do
not fit this config is reported shape by shape instead of as Lightning's size-mismatch wall.

A resumed run writes to its own new run dir and never touches the files of the run it resumes:
`adopt_checkpoint` copies that run's checkpoints into the new dir and points ModelCheckpoint's
saved state at the copies, so Lightning restores the best score and top-k bookkeeping (it drops
them when the checkpoint dir changes) and later top-k clean-ups delete only the copies.
"""

import io
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from omegaconf import DictConfig, OmegaConf
from torch import nn

from lenet_pl.runtime.errors import ConfigError, RunFileError
from lenet_pl.runtime.outputs import copy_atomically, read_yaml, write_atomically

LAST = "last.ckpt"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write each checkpoint to a temporary file beside it, fsync, then rename it into place.

    A kill while saving, or a full disk, leaves the previous `last.ckpt` whole and no partial
    file. Lightning's own save goes through a temporary file in the system temp dir, which is a
    copy, not a rename, when the outputs live on another file system (a cluster's shared disk).
    The checkpoint is serialised in memory first (LeNet's is under 1 MB): torch's file writer
    reports a full disk as "file write failed", a plain write as the OSError it is.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        write_atomically(path, buffer.getbuffer())


# Keys that may differ between a run and the run it resumes: where things are, how fast it runs, what to resume
# from, whether the data files are checked (runs from before data.verify existed resume too). data.root: the
# data may move, and runs from before it had its own default said ${paths.data_dir}.
_NOT_PART_OF_THE_RUN = (
    "ckpt_path",
    "paths",
    "data.root",
    "hydra",
    "threads",
    "keep_freed_memory",
    "trainer.enable_progress_bar",
    "data.verify",
)


# Keys added after runs were saved, at the value that changes nothing: a run saved without one resumes
# under a config that has it at that value.
_NEUTRAL_WHEN_ABSENT = {"optimizer.divide_by": "none", "loss.scale": 1.0}


def _run_identity(cfg: DictConfig) -> dict[str, Any]:
    container = OmegaConf.to_container(cfg, resolve=False)
    for key in (*_NOT_PART_OF_THE_RUN, *_NEUTRAL_WHEN_ABSENT):
        *parents, leaf = key.split(".")
        node = container
        for parent in parents:
            node = node.get(parent, {}) if isinstance(node, dict) else {}
        if not isinstance(node, dict) or leaf not in node:
            continue
        if key in _NOT_PART_OF_THE_RUN or node[leaf] == _NEUTRAL_WHEN_ABSENT[key]:
            node.pop(leaf)
    return container


def find_last_checkpoint(cfg: DictConfig, outputs_root: str | Path, exclude: str | Path | None = None) -> Path | None:
    """The newest `checkpoints/last.ckpt` under `outputs_root` whose run had the same config as `cfg`."""
    wanted = _run_identity(cfg)
    exclude = Path(exclude).resolve() if exclude else None
    candidates = []
    for last in Path(outputs_root).resolve().glob(f"**/checkpoints/{LAST}"):
        run_dir = last.parent.parent
        saved = run_dir / ".hydra" / "config.yaml"
        if run_dir.resolve() == exclude or not saved.is_file():
            continue
        try:
            saved_cfg = read_yaml(saved, omegaconf=True)
        except RunFileError as err:  # it may be the run to resume: no guessing past it
            raise RunFileError(
                err.path,
                f"{err.problem}. ckpt_path=last compares this run's config with that of every earlier run that "
                f"has a {LAST}, and this one cannot be read: move {run_dir} out of {outputs_root}/ or repair the "
                f"file, or name the checkpoint to resume, e.g. ckpt_path={last}",
            ) from err
        if _run_identity(saved_cfg) == wanted:
            candidates.append(last)
    return max(candidates, key=lambda p: p.stat().st_mtime, default=None)


def resolve_checkpoint(
    ckpt_path: str | None, cfg: DictConfig, outputs_root: str | Path, run_dir: str | Path
) -> Path | None:
    """The checkpoint file `ckpt_path` names (see the module docstring), or a ConfigError saying why there is none."""
    if ckpt_path is None:
        return None
    if str(ckpt_path) == "last":
        found = find_last_checkpoint(cfg, outputs_root, exclude=run_dir)
        if found is None:
            raise ConfigError(
                f"ckpt_path=last found no earlier run of this config with a {LAST} under {outputs_root}/. "
                "Start without ckpt_path, or point ckpt_path at a run dir or a .ckpt file."
            )
        return found
    path = Path(ckpt_path)
    if path.is_dir():
        if (path / "checkpoints" / LAST).is_file():
            return path / "checkpoints" / LAST
        if (path / LAST).is_file():
            return path / LAST
        raise ConfigError(
            f"ckpt_path={ckpt_path} is a folder without checkpoints/{LAST}: give a run dir that saved "
            "checkpoints, or a .ckpt file."
        )
    if not path.is_file():
        raise ConfigError(f"ckpt_path={ckpt_path} does not exist: give a .ckpt file, a run dir, or `last`.")
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A Lightning checkpoint read with weights_only=True (tensors and plain containers only)."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(
            f"{path} is not a checkpoint this project can load ({reason}). Checkpoints are read with "
            "weights_only=True, so a file that is corrupt, truncated, not made by torch.save, or that holds "
            "pickled objects other than tensors and plain containers is refused. Point ckpt_path at a .ckpt "
            "file written by lenet_pl.train."
        ) from err
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise ConfigError(
            f"{path} loads, but is not a Lightning checkpoint (it has no state_dict). Point ckpt_path at a "
            ".ckpt file written by lenet_pl.train."
        )
    return checkpoint


def check_compatible(checkpoint: dict[str, Any], module: nn.Module, path: str | Path) -> None:
    """Raise a ConfigError listing every tensor whose name or shape differs between `checkpoint` and `module`."""
    saved = {k: tuple(v.shape) for k, v in checkpoint["state_dict"].items()}
    ours = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    problems = [
        f"{k}: checkpoint {saved[k]} vs this config {ours[k]}"
        for k in sorted(saved.keys() & ours)
        if saved[k] != ours[k]
    ]
    problems += [f"{k}: only in the checkpoint" for k in sorted(saved.keys() - ours)]
    problems += [f"{k}: only in this config's model" for k in sorted(ours.keys() - saved)]
    if problems:
        shown = "; ".join(problems[:8]) + (f"; and {len(problems) - 8} more" if len(problems) > 8 else "")
        raise ConfigError(
            f"{path} was trained with a different model config than this run's: {shown}. Resume with the "
            "same model, activation and pooling overrides the checkpoint was trained with."
        )


def _rebase(value: Any, old: str, new: str) -> Any:
    """`value` with every path string under folder `old` moved under `new` (dict keys included)."""
    if isinstance(value, str) and value.startswith(old):
        return new + value[len(old) :]
    if isinstance(value, dict):
        return {_rebase(k, old, new): _rebase(v, old, new) for k, v in value.items()}
    return value


def adopt_checkpoint(
    checkpoint: dict[str, Any], path: str | Path, checkpoint_dir: str | Path, copy_files: bool = True
) -> Path:
    """Copy the checkpoints of the run `path` belongs to into `checkpoint_dir`; return the copy of `path` to resume.

    Only ModelCheckpoint states whose dirpath is `path`'s folder are rebased; a checkpoint from
    elsewhere (no such state) is resumed where it is. With `copy_files=False` (the other DDP
    processes of a node, whose first process copies before it starts them) only the path of the
    copy is returned.
    """
    old_dir = str(Path(path).resolve().parent)
    new_dir = Path(checkpoint_dir).resolve()
    states = [s for s in checkpoint.get("callbacks", {}).values() if isinstance(s, dict) and "dirpath" in s]
    states = [s for s in states if s["dirpath"] and str(Path(s["dirpath"]).resolve()) == old_dir]
    if not states or new_dir == Path(old_dir):
        return Path(path)
    resumed = new_dir / Path(path).name
    if not copy_files:
        return resumed
    new_dir.mkdir(parents=True, exist_ok=True)
    for ckpt in Path(old_dir).glob("*.ckpt"):
        copy_atomically(ckpt, new_dir / ckpt.name)
    for state in states:
        state.update(_rebase({k: v for k, v in state.items() if k != "dirpath"}, old_dir, str(new_dir)))
        state["dirpath"] = str(new_dir)
    AtomicCheckpointIO().save_checkpoint(checkpoint, resumed)  # a kill here leaves the plain copy, which resumes too
    return resumed
