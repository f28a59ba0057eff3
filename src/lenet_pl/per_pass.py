"""Each run's training and test error per pass (error_per_pass.csv, which the `ErrorPerPass` callback
writes), read back and drawn as the 1998 paper's Fig. 5, one run or several in one figure."""

from pathlib import Path

from lenet_pl.runtime.errors import RunFileError
from lenet_pl.runtime.outputs import read_csv

# The paper's published end points after 20 passes (LeCun et al. 1998, Section III.C and Fig. 5), in percent.
PAPER_END_POINTS = {
    "paper: training error": (20, 0.35),
    "paper: test error": (20, 0.95),
    "paper: test error with distortions": (20, 0.8),
}
COLUMNS = ("pass", "train_error", "test_error")


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
    if len(runs) > len(colours):  # more runs than the default cycle has colours: 20, then repeated
        colours = [plt.get_cmap("tab20")(i % 20) for i in range(len(runs))]
    for (label, rows), colour in zip(runs.items(), colours, strict=False):  # enough colours for every run
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
