"""Stop a run whose loss explodes or stops being finite, before a non-finite checkpoint is written."""

import math
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch

from lenet_pl.errors import UserError


class TrainingDiverged(UserError, RuntimeError):
    """The training loss or the weights became NaN or infinite."""


class DivergenceGuard(L.Callback):
    """Raise `TrainingDiverged` at the first step whose training loss is NaN/inf or above `max_loss`.

    Lightning's EarlyStopping(check_finite=True, divergence_threshold=...) only looks at logged
    metrics once an epoch; this checks every `every_n_steps` training steps (1 = the exact step,
    at the cost of one host sync per step on a GPU), and refuses to write a checkpoint whose
    weights are not finite. A loss that explodes (softmax cross-entropy stays finite even when
    the logits are huge) counts as diverged above `max_loss`; None checks finiteness only.
    """

    def __init__(self, every_n_steps: int = 1, max_loss: float | None = 1e4) -> None:
        super().__init__()
        self.every_n_steps = every_n_steps
        self.max_loss = max_loss

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
        if not isinstance(loss, torch.Tensor):
            return
        value = loss.detach().float().max().item()
        if not math.isfinite(value):
            raise self._diverged(trainer, f"the training loss is {value}")
        if self.max_loss is not None and value > self.max_loss:
            raise self._diverged(
                trainer, f"the training loss is {value:.4g}, above divergence_guard.max_loss={self.max_loss:g}"
            )

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        # Parameters only: metric states may be infinite by design (MaxMetric starts at -inf).
        bad = [name for name, p in pl_module.named_parameters() if not torch.isfinite(p).all()]
        if bad:
            raise self._diverged(trainer, f"the weights {', '.join(bad[:3])} hold NaN or inf")
