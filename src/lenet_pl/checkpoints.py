"""Moved to `lenet_pl.runtime.checkpoints`; kept because checkpoints saved before the move name it."""

from lenet_pl.runtime.checkpoints import AtomicCheckpointIO  # noqa: F401  (old checkpoints' trainer.plugins name it here)
