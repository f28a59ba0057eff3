"""Stop a run whose loss explodes or stops being finite, before a non-finite checkpoint is written."""

import math
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch

from lenet_pl.runtime.errors import ConfigError, RunFailed


class TrainingDiverged(RunFailed, RuntimeError):
    """The training loss or the weights became NaN or infinite: the run's result, not a mistake in the command."""


class DivergenceGuard(L.Callback):
    """Raise `TrainingDiverged` at the first step whose training loss is NaN/inf or above `max_loss`.

    Lightning's EarlyStopping(check_finite=True, divergence_threshold=...) only looks at logged
    metrics once an epoch; this checks every `every_n_steps` training steps, and refuses to write
    a checkpoint whose weights are not finite. A loss that explodes (softmax cross-entropy stays
    finite even when the logits are huge) counts as diverged above `max_loss`; None checks
    finiteness only.

    Reading a loss that lives on a GPU makes the host wait for the device, every step. So on an
    accelerator (or with `deferred=True`) the check runs on the device, which remembers the first
    bad step and its loss, and the host reads that every `sync_every_n_steps` steps, at the end of
    every epoch and before any checkpoint is written: the error still names the first bad step,
    and no checkpoint of a diverged run is saved. On a CPU reading is free and happens every check.
    """

    def __init__(
        self,
        every_n_steps: int = 1,
        max_loss: float | None = 1e4,
        sync_every_n_steps: int = 50,
        deferred: bool | None = None,
    ) -> None:
        super().__init__()
        if every_n_steps < 1 or sync_every_n_steps < 1:
            raise ConfigError(
                f"divergence_guard every_n_steps={every_n_steps}, sync_every_n_steps={sync_every_n_steps} "
                "is not allowed: both must be at least 1."
            )
        self.every_n_steps, self.sync_every_n_steps = every_n_steps, sync_every_n_steps
        self.max_loss = max_loss
        self.deferred = deferred  # None: deferred where the loss is not on the CPU
        self._bad_step: torch.Tensor | None = None  # on the device: -1, or the first step whose loss was bad
        self._bad_loss: torch.Tensor | None = None

    def _diverged(self, trainer: L.Trainer, what: str, step: int | None = None) -> TrainingDiverged:
        lrs = sorted({group["lr"] for opt in trainer.optimizers for group in opt.param_groups})
        lr = lrs[0] if len(lrs) == 1 else lrs
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        step = trainer.global_step if step is None else step
        return TrainingDiverged(
            f"Training diverged at step {step} (epoch {trainer.current_epoch}): {what}. The likely "
            f"cause is a learning rate too large for this model and optimizer (learning rate {lr}); try a tenth "
            "of it, or a scheduler with warm-up. Nothing was saved after the divergence; "
            + (f"the best checkpoint so far is {best}." if best else "no checkpoint had been saved yet.")
        )

    def _what(self, value: float) -> str:
        if not math.isfinite(value):
            return f"the training loss is {value}"
        return f"the training loss is {value:.4g}, above divergence_guard.max_loss={self.max_loss:g}"

    def _bad(self, loss: float | torch.Tensor) -> bool | torch.Tensor:
        """Whether a loss is NaN, infinite or above `max_loss`: a bool for a float, a bool tensor for a tensor."""
        if isinstance(loss, torch.Tensor):
            bad = ~torch.isfinite(loss)
            return bad if self.max_loss is None else bad | (loss > self.max_loss)
        return not math.isfinite(loss) or (self.max_loss is not None and loss > self.max_loss)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step % self.every_n_steps:
            return
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if not isinstance(loss, torch.Tensor):
            return
        loss = loss.detach()
        if loss.numel() != 1:  # a loss per sample: its worst value decides
            loss = loss.float().max()
        deferred = self.deferred if self.deferred is not None else loss.device.type != "cpu"
        if not deferred:
            # One read and two float comparisons (~1 us); the same test as tensor operations costs ~15 us.
            value = loss.item()
            if self._bad(value):
                raise self._diverged(trainer, self._what(value))
            return
        # On the device, without waiting for it: keep the first bad step and its loss.
        loss = loss.float()
        if self._bad_step is None or self._bad_step.device != loss.device:
            self._bad_step = torch.full((), -1, dtype=torch.long, device=loss.device)
            self._bad_loss = torch.zeros((), device=loss.device)
        first = self._bad(loss) & (self._bad_step < 0)
        self._bad_step = torch.where(first, trainer.global_step, self._bad_step)
        self._bad_loss = torch.where(first, loss, self._bad_loss)
        if trainer.global_step % self.sync_every_n_steps == 0:
            self._raise_if_diverged(trainer)

    def _raise_if_diverged(self, trainer: L.Trainer) -> None:
        """Read the device-side record (one host sync) and raise if a checked step was bad."""
        if self._bad_step is None:
            return
        step = int(self._bad_step)
        if step >= 0:
            raise self._diverged(trainer, self._what(float(self._bad_loss)), step=step)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._raise_if_diverged(trainer)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        self._raise_if_diverged(trainer)
        # Parameters only: metric states may be infinite by design (MaxMetric starts at -inf).
        bad = [name for name, p in pl_module.named_parameters() if not torch.isfinite(p).all()]
        if bad:
            raise self._diverged(trainer, f"the weights {', '.join(bad[:3])} hold NaN or inf")
