"""How the report writes numbers, Markdown tables and CSV files (shared by `lenet_pl.report` and its sections)."""

import csv
import math
from pathlib import Path
from typing import Any

from lenet_pl.sweeps import stats


def short(value: str) -> str:
    """Optuna's long floats as 3 significant digits; names as they are."""
    try:
        number = float(value)
    except ValueError:
        return value
    return value if value.lstrip("-").isdigit() else f"{number:.3g}"


def interval_cell(interval: stats.Interval) -> str:
    """'+0.12 [+0.05, +0.19]'; the mean alone without an interval (one seed), '-' without values."""
    if interval.n == 0:
        return "-"
    if not interval.has_interval:
        return f"{interval.mean:+.2f}"
    return f"{interval.mean:+.2f} [{interval.low:+.2f}, {interval.high:+.2f}]"


def p_text(p: float) -> str:
    """A p-value to read: 3 decimals, or '<0.001'."""
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def significant(value: float, digits: int = 6) -> float | str:
    """A float for a CSV cell, to `digits` significant digits (a p-value of 1e-9 stays 1e-9); '' for nan."""
    return "" if math.isnan(value) else float(f"{value:.{digits}g}")


def cell(value: Any) -> str:
    """A value as one Markdown table cell: an error message may hold a '|' or a line break."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(rows: list[dict[str, Any]], columns: dict[str, str]) -> str:
    lines = ["| " + " | ".join(columns.values()) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(key, "")) for key in columns) + " |" for row in rows]
    return "\n".join(lines)


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    fields = list(dict.fromkeys(key for row in rows for key in row))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
