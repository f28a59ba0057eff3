"""Training and test error after every pass, as in the 1998 paper's Fig. 5: the callback, and the command
that draws several runs in one figure (the CSV's reader and the plot: lenet_pl.per_pass).

The paper draws the error on the whole training set and on the test set after each of its 20
passes. The test curve here is the same monitoring: logged and drawn, never used to choose
anything (a run under the paper's protocol has no validation split and is tested after its last
pass, whatever the curve did before).
"""

import csv
import logging
import sys
from pathlib import Path
from typing import Any

import lightning as L
import torch

from lenet_pl.per_pass import COLUMNS, plot_error_per_pass, read_error_per_pass
from lenet_pl.runtime.cli import ArgumentParser, command
from lenet_pl.runtime.errors import RunFileError, UserError

log = logging.getLogger("lenet_pl")

USAGE = """Draw the training and test error per pass of one or more runs in one figure, with the paper's end points.

python -m lenet_pl.error_per_pass outputs/2026-01-31/12-00-00 --output error_per_pass.png
python -m lenet_pl.error_per_pass RUN_A RUN_B --label 'seed 0' --label 'seed 1' --output docs/fig.png

Each run dir holds error_per_pass.csv (runs with the error_per_pass callback write one: experiment=lenet1998).
"""


class ErrorPerPass(L.Callback):
    """After every pass, the error on the whole training set and the test set; a CSV and a plot when fitting ends.

    Logs `per_pass/train_error` and `per_pass/test_error` (fractions) once per pass, and writes
    `error_per_pass.csv` and `error_per_pass.png` to `dirpath` when fitting ends. Needs the
    project's data module (`MNISTDataModule.eval_batches`). Costs one forward pass over 70,000
    images per pass (seconds on a CPU).
    """

    def __init__(self, dirpath: str) -> None:
        self.dirpath = Path(dirpath)
        self.history: list[dict[str, float]] = []

    @torch.no_grad()
    def _error(self, trainer: L.Trainer, pl_module: L.LightningModule, split: str) -> float:
        wrong = torch.zeros(2, device=pl_module.device)  # (mistakes, samples)
        for x, y in trainer.datamodule.eval_batches(split):
            x, y = x.to(pl_module.device), y.to(pl_module.device)
            wrong[0] += (pl_module(x).argmax(dim=1) != y).sum()
            wrong[1] += len(y)
        wrong = trainer.strategy.reduce(wrong, reduce_op="sum")  # DDP: every rank holds a share
        return (wrong[0] / wrong[1]).item()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        was_training = pl_module.training
        pl_module.eval()
        row = {"pass": trainer.current_epoch + 1}
        row |= {f"{split}_error": self._error(trainer, pl_module, split) for split in ("train", "test")}
        pl_module.train(was_training)
        self.history.append(row)
        pl_module.log_dict({"per_pass/train_error": row["train_error"], "per_pass/test_error": row["test_error"]})

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or not self.history:
            return
        self.dirpath.mkdir(parents=True, exist_ok=True)
        with (self.dirpath / "error_per_pass.csv").open("w", newline="") as file:
            writer = csv.DictWriter(file, COLUMNS)
            writer.writeheader()
            writer.writerows(self.history)
        plot_error_per_pass(self.history, self.dirpath / "error_per_pass.png")
        log.info("Training and test error per pass: %s", self.dirpath / "error_per_pass.png")

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}  # a resumed run keeps its earlier passes

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict["history"])


def arguments() -> ArgumentParser:
    """The command's arguments; `--help` prints them with USAGE."""
    parser = ArgumentParser("error_per_pass", USAGE)
    parser.add_argument("runs", type=Path, nargs="+", help="run dirs holding error_per_pass.csv")
    parser.add_argument("--label", action="append", help="one label per run (default: the run dir's name)")
    parser.add_argument("--title", help="the figure's title")
    parser.add_argument("--output", type=Path, required=True, help="the PNG to write")
    return parser


def draw(args: list[str]) -> int:
    """The `python -m lenet_pl.error_per_pass` job: read each run's CSV, draw them, say where."""
    parser = arguments()
    options = parser.parse_args(args)
    labels = options.label or [run.name for run in options.runs]
    if len(labels) != len(options.runs):
        parser.error(f"{len(labels)} labels for {len(options.runs)} runs: give one --label per run, or none")
    pairs = zip(labels, options.runs, strict=True)
    try:
        runs = {label: read_error_per_pass(run / "error_per_pass.csv") for label, run in pairs}
    except RunFileError as err:
        raise UserError(f"{err} Leave that run out, or draw it once its file is repaired; nothing was drawn.") from err
    if missing := [str(run) for run, rows in zip(options.runs, runs.values(), strict=True) if not rows]:
        parser.error(f"no error_per_pass.csv in {', '.join(missing)} (runs of experiment=lenet1998 write one)")
    plot_error_per_pass(runs, options.output, options.title)
    print(f"Error per pass of {len(runs)} runs drawn in {options.output}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return command(draw, argv, lambda: arguments().format_help(), renamed=("--out",))


if __name__ == "__main__":
    sys.exit(main())
