"""Moved to `lenet_pl.sweeps.progress`; kept because runs saved before the move name it in .hydra/hydra.yaml."""

from lenet_pl.sweeps.progress import SweepProgress  # noqa: F401  (old runs' configs name lenet_pl.progress.SweepProgress)
