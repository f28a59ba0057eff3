"""Stop a run whose loss or weights stop being finite, before a non-finite checkpoint is written."""

from collections.abc import Mapping
from typing import Any

import lightning as L
import torch

from lenet_pl.errors import UserError


class TrainingDiverged(UserError, RuntimeError):
    """The training loss or the weights became NaN or infinite."""


class DivergenceGuard(L.Callback):
    """Raise `TrainingDiverged` at the first step whose training loss is NaN/inf, and refuse to save such weights.

    Lightning's EarlyStopping(check_finite=True) only looks at validation metrics, once an epoch;
    this checks every `every_n_steps` training steps (1 = exact step, at the cost of one host
    sync per step on a GPU) and every checkpoint before it is written.
    """

    def __init__(self, every_n_steps: int = 1) -> None:
        super().__init__()
        self.every_n_steps = every_n_steps

    def _diverged(self, trainer: L.Trainer, what: str) -> TrainingDiverged:
        lrs = sorted({group["lr"] for opt in trainer.optimizers for group in opt.param_groups})
        lr = lrs[0] if len(lrs) == 1 else lrs
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        return TrainingDiverged(
            f"Training diverged at step {trainer.global_step} (epoch {trainer.current_epoch}): {what}. The likely "
            f"cause is a learning rate too large for this model and optimizer (learning rate {lr}); try a tenth "
            "of it, or a scheduler with warm-up. Nothing was saved after the divergence; "
            + (f"the best checkpoint so far is {best}." if best else "no checkpoint had been saved yet.")
        )

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step % self.every_n_steps:
            return
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if isinstance(loss, torch.Tensor) and not torch.isfinite(loss).all():
            raise self._diverged(trainer, f"the training loss is {loss.item()}")

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        bad = [k for k, v in checkpoint["state_dict"].items() if v.is_floating_point() and not torch.isfinite(v).all()]
        if bad:
            raise self._diverged(trainer, f"the weights {', '.join(bad[:3])} hold NaN or inf")
