"""LeNetModule: the LightningModule that trains a LeNet5 with a given loss, optimizer and schedule."""

from collections.abc import Callable, Iterable
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy


def make_scheduler(factory: Callable[..., LRScheduler], optimizer: Optimizer, total_steps: int | float) -> LRScheduler:
    """Call a scheduler `factory` on `optimizer`; one sized by the run's length gets `total_steps`.

    Such a schedule (OneCycleLR) leaves `total_steps: null` in its config, since its length is
    only known once the run is set up.
    """
    if getattr(factory, "keywords", {}).get("total_steps", 0) is None:
        return factory(optimizer, total_steps=total_steps)
    return factory(optimizer)


class LeNetModule(L.LightningModule):
    """Wraps any classifier `net` whose largest output is the predicted class.

    Args:
        net: the model (a `LeNet5`).
        loss: called as loss(outputs, targets).
        optimizer: called with the parameters, e.g. a `functools.partial(torch.optim.SGD, lr=0.01)`.
        scheduler: called with the optimizer, or None for a constant learning rate.
        scheduler_interval: "epoch" or "step": when the scheduler steps.
        num_classes: number of classes, for the accuracy metrics.
        compile: compile `net` with torch.compile when fitting starts (pays off on GPUs; the first
            steps wait for the compiler).
        channels_last: keep weights and inputs in NHWC memory order, which the CPU (oneDNN) and
            GPU (cuDNN) convolution kernels run faster on.
        config: the run's resolved config, stored in checkpoints so they describe themselves.

    Logs train/loss, train/acc, val/loss, val/acc, val/acc_best, test/loss and test/acc.
    """

    def __init__(
        self,
        net: nn.Module,
        loss: Callable[[Tensor, Tensor], Tensor],
        optimizer: Callable[[Iterable[nn.Parameter]], Optimizer],
        scheduler: Callable[[Optimizer], LRScheduler] | None = None,
        scheduler_interval: str = "epoch",
        num_classes: int = 10,
        compile: bool = False,
        channels_last: bool = False,
        config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters("config", logger=False)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.net = net.to(memory_format=self.memory_format)
        self.compile_net, self.compiled = compile, False
        self.loss = loss
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.scheduler_interval = scheduler_interval
        # Training steps only add to two running sums, in place (~12 us; torchmetrics' update() of an
        # accuracy and a mean costs ~100 us of Python, a visible share of a LeNet step on a CPU). At the
        # epoch's end the sums go through MeanMetric, weighted by the sample count, which averages
        # over DDP processes.
        self.register_buffer("train_loss_sum", torch.zeros(()), persistent=False)  # sum of loss x batch size
        self.register_buffer("train_correct", torch.zeros((), dtype=torch.long), persistent=False)
        self.train_seen = 0
        self.train_loss = MeanMetric(nan_strategy="disable")  # a NaN loss shows as NaN, not dropped
        self.train_acc = MeanMetric()
        # validate_args=False: the checks scan every batch's targets, which costs more than the update itself.
        self.val_acc = MulticlassAccuracy(num_classes, average="micro", validate_args=False)
        self.test_acc = MulticlassAccuracy(num_classes, average="micro", validate_args=False)
        self.val_acc_best = MaxMetric()
        self.val_acc_best.persistent(True)  # in checkpoints, so a resumed run keeps its best so far

    def setup(self, stage: str) -> None:
        # In place, so the state dict keeps its keys; here rather than in __init__ so that code
        # running the plain net before fit (the layer table's hooks) does not trigger compilation.
        if self.compile_net and not self.compiled:
            self.net.compile()
            self.compiled = True

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.contiguous(memory_format=self.memory_format))

    def _step(self, batch: tuple[Tensor, Tensor], stage: str, accuracy: MulticlassAccuracy) -> Tensor:
        x, y = batch
        outputs = self(x)
        loss = self.loss(outputs, y)
        accuracy.update(outputs, y)  # update(), not forward(): no per-batch accuracy is computed
        # Under DDP, val/test loss is averaged over processes (sync_dist); accuracy metrics sync themselves.
        self.log(f"{stage}/loss", loss, on_epoch=True, prog_bar=True, batch_size=len(y), sync_dist=True)
        self.log(f"{stage}/acc", accuracy, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(y))
        return loss

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        # Lean on purpose: for a model this small, each self.log() call (hundreds of µs of Lightning
        # bookkeeping) is a visible share of a CPU step. The step only adds to running sums, and
        # hands the loggers a value on the steps they write.
        x, y = batch
        outputs = self(x)
        loss = self.loss(outputs, y)
        self.train_loss_sum.add_(loss.detach(), alpha=len(y))
        self.train_correct.add_((outputs.detach().argmax(dim=1) == y).sum())
        self.train_seen += len(y)
        every = self.trainer.log_every_n_steps
        if every and (self.global_step + 1) % every == 0:
            self.log("train/loss_step", loss, prog_bar=True)
        return loss

    def on_train_epoch_end(self) -> None:
        if seen := self.train_seen:
            self.train_loss.update(self.train_loss_sum / seen, weight=seen)
            self.train_acc.update(self.train_correct / seen, weight=seen)
        # compute() averages over DDP processes as well.
        self.log("train/loss_epoch", self.train_loss.compute(), prog_bar=True)
        self.log("train/acc", self.train_acc.compute(), prog_bar=True)
        self.train_loss.reset()
        self.train_acc.reset()
        self.train_loss_sum.zero_()
        self.train_correct.zero_()
        self.train_seen = 0

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._step(batch, "val", self.val_acc)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        self.val_acc_best(self.val_acc.compute())
        self.log("val/acc_best", self.val_acc_best.compute(), prog_bar=False)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._step(batch, "test", self.test_acc)

    def configure_optimizers(self) -> Optimizer | dict[str, Any]:
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        # The trainer knows a run's length: epochs x batches per epoch.
        scheduler = make_scheduler(self.scheduler_factory, optimizer, self.trainer.estimated_stepping_batches)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": self.scheduler_interval},
        }
