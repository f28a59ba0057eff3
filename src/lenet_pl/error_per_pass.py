"""Training and test error after every pass, as in the 1998 paper's Fig. 5, and its plot.

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

from lenet_pl.errors import RunFileError
from lenet_pl.outputs import read_csv

log = logging.getLogger("lenet_pl")

# The paper's published end points after 20 passes (LeCun et al. 1998, Section III.C and Fig. 5), in percent.
PAPER_END_POINTS = {
    "paper: training error": (20, 0.35),
    "paper: test error": (20, 0.95),
    "paper: test error with distortions": (20, 0.8),
}
COLUMNS = ("pass", "train_error", "test_error")


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


def read_error_per_pass(path: Path) -> list[dict[str, float]]:
    """The rows of an `error_per_pass.csv`; none where there is no such file; a RunFileError where it is damaged."""
    if not path.is_file():
        return []
    rows = read_csv(path, columns=COLUMNS, numbers=COLUMNS)
    if not rows:
        raise RunFileError(path, "has a header but no rows (the callback writes one row per pass)")
    if gaps := [str(i + 2) for i, row in enumerate(rows) if None in row.values()]:
        raise RunFileError(path, f"has empty values in line {', '.join(gaps)}")
    return [{"pass": int(r["pass"]), **{k: r[k] for k in COLUMNS[1:]}} for r in rows]


def plot_error_per_pass(
    runs: list[dict[str, float]] | dict[str, list[dict[str, float]]], path: Path, title: str | None = None
) -> None:
    """Training and test error (%) per pass, of one run or several (label -> rows), with the paper's end points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = runs if isinstance(runs, dict) else {"": runs}
    several = len(runs) > 1
    fig, ax = plt.subplots(figsize=(10.5 if several else 7, 4.5), dpi=120)  # several: room for the legend outside
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for (label, rows), colour in zip(runs.items(), colours, strict=False):
        passes = [r["pass"] for r in rows]
        suffix = f" ({label})" if label else ""
        ax.plot(passes, [100 * r["train_error"] for r in rows], "--", color=colour, label=f"training error{suffix}")
        ax.plot(passes, [100 * r["test_error"] for r in rows], "-", color=colour, label=f"test error{suffix}")
    markers = {"paper: training error": "v", "paper: test error": "o", "paper: test error with distortions": "s"}
    for name, (at, error) in PAPER_END_POINTS.items():
        ax.plot([at], [error], markers[name], color="black", markersize=7, fillstyle="none", label=f"{name} {error}%")
    ax.set_xlabel("training pass (epoch)")
    ax.set_ylabel("error (%)")
    ax.set_xticks(range(0, max(max(r["pass"] for r in rows) for rows in runs.values()) + 1, 2))
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.set_title(title or "LeNet-5: error after each pass (test set monitored only, as in the paper's Fig. 5)")
    ax.title.set_fontsize(10)
    if several:
        ax.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Draw the error per pass of several runs in one figure (python -m lenet_pl.error_per_pass RUN_DIR...)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m lenet_pl.error_per_pass", description=main.__doc__)
    parser.add_argument("runs", type=Path, nargs="+", help="run dirs holding error_per_pass.csv")
    parser.add_argument("--label", action="append", help="one label per run (default: the run dir's name)")
    parser.add_argument("--title", help="the figure's title")
    parser.add_argument("--out", type=Path, required=True, help="the PNG to write")
    args = parser.parse_args(argv)
    labels = args.label or [run.name for run in args.runs]
    if len(labels) != len(args.runs):
        parser.error(f"{len(labels)} labels for {len(args.runs)} runs: give one --label per run, or none")
    pairs = zip(labels, args.runs, strict=True)
    try:
        runs = {label: read_error_per_pass(run / "error_per_pass.csv") for label, run in pairs}
    except RunFileError as err:
        print(
            f"error: {err} Leave that run out, or draw it once its file is repaired; nothing was drawn.",
            file=sys.stderr,
        )
        return 2
    if missing := [str(run) for run, rows in zip(args.runs, runs.values(), strict=True) if not rows]:
        parser.error(f"no error_per_pass.csv in {', '.join(missing)} (runs of experiment=lenet1998 write one)")
    plot_error_per_pass(runs, args.out, args.title)
    print(f"Error per pass of {len(runs)} runs drawn in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
