"""Load a trained run (its network, loss and data config) from a run dir or a .ckpt file.

Shared by evaluate, predict, export and inside. A checkpoint describes itself: `LeNetModule` stores the
run's resolved config in it, so `LeNetModule.load_from_checkpoint` rebuilds the model exactly as
trained, whatever parts (activation, pooling, head) the run used. The file is read with
`torch.load(weights_only=True)`, which unpickles only tensors and plain values, never code, so a
downloaded checkpoint cannot run anything on load; `lenet_pl.runtime.checkpoints.load_checkpoint` reads
it first, to refuse a file that is not a checkpoint of this project in one paragraph.
"""

from dataclasses import dataclass
from pathlib import Path

from hydra.errors import HydraException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from lenet_pl.data import MNISTDataModule
from lenet_pl.module import LeNetModule
from lenet_pl.runtime.checkpoints import load_checkpoint
from lenet_pl.runtime.errors import RunFileError, UserError, user_message
from lenet_pl.runtime.outputs import read_metrics


@dataclass
class TrainedRun:
    """A trained model ready for inference (eval mode, on the CPU), with what it came from."""

    ckpt_path: Path
    run_dir: Path  # the training run's folder (the checkpoint's folder when it sits outside a run)
    config: DictConfig  # the run's resolved config
    net: nn.Module
    loss: nn.Module
    global_step: int

    def datamodule(self) -> MNISTDataModule:
        """The run's own data module: same data set, split, padding and normalisation as in training."""
        return instantiate(self.config.data)

    def test_datamodule(self) -> MNISTDataModule:
        """The run's data module with its splits loaded (files checked, or downloaded, as in training)."""
        datamodule = self.datamodule()
        datamodule.prepare_data()
        datamodule.setup("test")
        return datamodule


def find_checkpoint(path: str | Path) -> Path:
    """The checkpoint a run dir stands for: its best one (as metrics.json names it), else last.ckpt."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise UserError(
            f"ckpt_path={str(path)!r} does not exist. Give a training run's folder (the one holding "
            "checkpoints/ and metrics.json, e.g. outputs/2026-01-31/12-00-00) or a .ckpt file."
        )
    folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    try:
        record = read_metrics(path)
    except RunFileError as err:
        raise UserError(
            f"{err} It names the run's best checkpoint, so ckpt_path={str(path)!r} does not say which checkpoint "
            f"to use: give the .ckpt file itself, e.g. ckpt_path={folder / 'last.ckpt'}."
        ) from err
    best = (record or {}).get("metrics", {}).get("best_checkpoint")
    if best and (folder / Path(best).name).is_file():  # by name: the run dir may have moved
        return folder / Path(best).name
    ckpts = sorted(folder.glob("*.ckpt"))
    best = [p for p in ckpts if not p.name.startswith("last")]
    if len(best) == 1:
        return best[0]
    if (folder / "last.ckpt").is_file():
        return folder / "last.ckpt"
    found = ", ".join(p.name for p in ckpts) or "none"
    raise UserError(
        f"ckpt_path={str(path)!r} is a folder without one clear checkpoint (found: {found}). "
        "Give the .ckpt file itself, e.g. ckpt_path=<run dir>/checkpoints/last.ckpt."
    )


def load_run(path: str | Path, data_root: str | None = None) -> TrainedRun:
    """Rebuild the network (and loss) of the run at `path` from its own config and load its weights.

    Args:
        path: a run dir or a .ckpt file.
        data_root: where the run's data set lives now, if not where it was trained (`data.root`).
    """
    ckpt_path = find_checkpoint(path)
    checkpoint = load_checkpoint(ckpt_path)  # weights_only=True; a ConfigError for anything else
    config = checkpoint.get("hyper_parameters", {}).get("config")
    if not isinstance(config, dict):
        raise UserError(
            f"{ckpt_path} has no run config in its hyper-parameters, so the model cannot be rebuilt: "
            "it was not written by lenet_pl.train (LeNetModule stores the config under 'config')."
        )
    try:
        # The one way a run is rebuilt: LeNetModule builds model, loss and optimizer from the stored config.
        module = LeNetModule.load_from_checkpoint(ckpt_path, map_location="cpu", weights_only=True)
    except RuntimeError as err:  # load_state_dict: names or shapes differ
        reason = " ".join(str(err).split())
        raise UserError(f"The weights in {ckpt_path} do not fit the model its config describes: {reason}") from err
    except (HydraException, TypeError) as err:
        raise UserError(f"Could not rebuild the model of {ckpt_path} from its config: {user_message(err)}") from err
    module.eval()
    cfg = OmegaConf.create(config)
    if data_root is not None:
        cfg.data.root = data_root
    run_dir = ckpt_path.parent.parent if ckpt_path.parent.name == "checkpoints" else ckpt_path.parent
    return TrainedRun(ckpt_path, run_dir, cfg, module.net, module.loss, int(checkpoint.get("global_step", 0)))
