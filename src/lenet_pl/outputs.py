"""Moved to `lenet_pl.runtime.outputs`; kept because runs saved before the move name it in .hydra/hydra.yaml."""

from lenet_pl.runtime.outputs import NoteOutputDir  # noqa: F401  (old runs' configs name lenet_pl.outputs.NoteOutputDir)
