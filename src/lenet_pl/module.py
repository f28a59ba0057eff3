"""LeNetModule: the LightningModule that trains a LeNet5 with a given loss, optimizer and schedule."""

import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import IO, Any

import lightning as L
import torch
from lightning.fabric.utilities.types import _MAP_LOCATION_TYPE
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from lenet_pl.data import IMAGE_SIZE
from lenet_pl.per_digit import in_test_order
from lenet_pl.runtime.errors import ConfigError, UserError
from lenet_pl.runtime.values import instantiate_node, refused_as_config_error


def make_scheduler(factory: Callable[..., LRScheduler], optimizer: Optimizer, total_steps: int | float) -> LRScheduler:
    """Call a scheduler `factory` on `optimizer`; one sized by the run's length gets `total_steps`.

    Such a schedule (OneCycleLR) leaves `total_steps: null` in its config, since its length is
    only known once the run is set up.
    """
    if getattr(factory, "keywords", {}).get("total_steps", 0) is None:
        return factory(optimizer, total_steps=total_steps)
    return factory(optimizer)


def parts_from_config(config: Mapping[str, Any] | DictConfig) -> dict[str, Any]:
    """The `LeNetModule` arguments a run's config describes: its model, loss, optimizer and schedule.

    The one way a run is rebuilt: `lenet_pl.train` builds its module from the config, and
    `LeNetModule.load_from_checkpoint` (so evaluate, predict and export) from the copy in the checkpoint.
    """
    cfg = config if isinstance(config, DictConfig) else OmegaConf.create(dict(config))
    scheduler = cfg.get("scheduler") or {}
    return {
        "net": instantiate_node(cfg, "model"),
        "loss": instantiate_node(cfg, "loss"),
        "optimizer": instantiate_node(cfg, "optimizer"),
        "scheduler": instantiate_node(cfg, "scheduler.scheduler") if scheduler.get("scheduler") else None,
        "scheduler_interval": scheduler.get("interval", "epoch"),
        "num_classes": cfg.model.num_classes,
        "compile": cfg.get("compile", False),
        "channels_last": cfg.get("channels_last", False),
    }


class LeNetModule(L.LightningModule):
    """Wraps any classifier `net` whose largest output is the predicted class.

    Built either from its parts, or from a run's resolved `config` alone (the parts are then
    instantiated from it, see `parts_from_config`): that is how `lenet_pl.train` builds it and how
    `LeNetModule.load_from_checkpoint(path)` rebuilds any checkpoint the project writes.

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

    Logs train/loss, train/acc, val/loss, val/acc, val/acc_best, test/loss and test/acc. After a
    test, `test_predicted` holds the predicted class of every test digit, in the test set's order
    (what `lenet_pl.train` saves as test_predictions.npz).
    """

    def __init__(
        self,
        net: nn.Module | None = None,
        loss: Callable[[Tensor, Tensor], Tensor] | None = None,
        optimizer: Callable[[Iterable[nn.Parameter]], Optimizer] | None = None,
        scheduler: Callable[[Optimizer], LRScheduler] | None = None,
        scheduler_interval: str = "epoch",
        num_classes: int = 10,
        compile: bool = False,
        channels_last: bool = False,
        config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters("config", logger=False)
        if net is None and loss is None and optimizer is None and config is not None:
            parts = parts_from_config(config)
            net, loss, optimizer, scheduler = parts["net"], parts["loss"], parts["optimizer"], parts["scheduler"]
            scheduler_interval, num_classes = parts["scheduler_interval"], parts["num_classes"]
            compile, channels_last = parts["compile"], parts["channels_last"]
        if net is None or loss is None or optimizer is None:
            raise TypeError(
                "LeNetModule needs net, loss and optimizer, or a run's config alone (config=...), from which it "
                "builds them; load a trained run with LeNetModule.load_from_checkpoint(path)."
            )
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
        self.test_batches_predicted: list[Tensor] = []
        self.test_predicted: Tensor | None = None
        self._try_optimizer()

    @classmethod
    def load_from_checkpoint(  # type: ignore[override]
        cls,
        checkpoint_path: str | Path | IO,
        map_location: _MAP_LOCATION_TYPE = None,
        hparams_file: str | Path | None = None,
        strict: bool | None = None,
        weights_only: bool | None = True,
        **kwargs: Any,
    ) -> "LeNetModule":
        """Lightning's `load_from_checkpoint`, reading tensors and plain values only by default (weights_only).

        The checkpoint's stored run config rebuilds the model, loss and optimizer, so no argument
        but the path is needed: `LeNetModule.load_from_checkpoint("run/checkpoints/last.ckpt")`.
        `map_location` places the weights (e.g. "cpu", torch.device("cuda:0")), as in Lightning.
        """
        return super().load_from_checkpoint(checkpoint_path, map_location, hparams_file, strict, weights_only, **kwargs)

    def _try_optimizer(self) -> None:
        """Build the optimizer and schedule once on a copy, so that a value torch refuses fails now, naming its key.

        torch checks most arguments when an optimizer or schedule is made (momentum, betas, pct_start)
        and some only when it steps (a step size of 0); both happen here, two steps in, instead of
        after the data is loaded or epochs into training.
        """
        with refused_as_config_error("optimizer", self._config_node("optimizer", self.optimizer_factory)):
            optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return
        node = self._config_node("scheduler.scheduler", self.scheduler_factory)
        with refused_as_config_error("scheduler.scheduler", node):
            scheduler = make_scheduler(self.scheduler_factory, optimizer, total_steps=100)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "scheduler stepped before the optimizer": no training here
                for _ in range(2):
                    scheduler.step()

    def _config_node(self, key: str, factory: Callable[..., Any]) -> Any:
        """The config node `factory` was built from; for a module built from parts, the factory's own arguments."""
        config = self.hparams.get("config")
        if config:
            return OmegaConf.select(OmegaConf.create(config), key)
        func = getattr(factory, "func", factory)
        return {"_target_": f"{func.__module__}.{func.__qualname__}", **getattr(factory, "keywords", {})}

    def setup(self, stage: str) -> None:
        # In place, so the state dict keeps its keys; here rather than in __init__ so that code
        # running the plain net before fit (the layer table's hooks) does not trigger compilation.
        if self.compile_net and not self.compiled:
            self.net.compile()
            self.compiled = True

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.contiguous(memory_format=self.memory_format))

    def _step(self, batch: tuple[Tensor, Tensor], stage: str, accuracy: MulticlassAccuracy) -> Tensor:
        """Log the batch's loss and accuracy; returns the model's outputs."""
        x, y = batch
        outputs = self(x)
        loss = self.loss(outputs, y)
        accuracy.update(outputs, y)  # update(), not forward(): no per-batch accuracy is computed
        # Under DDP, val/test loss is averaged over processes (sync_dist); accuracy metrics sync themselves.
        self.log(f"{stage}/loss", loss, on_epoch=True, prog_bar=True, batch_size=len(y), sync_dist=True)
        self.log(f"{stage}/acc", accuracy, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(y))
        return outputs

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

    def on_test_epoch_start(self) -> None:
        self.test_batches_predicted = []

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self.test_batches_predicted.append(self._step(batch, "test", self.test_acc).argmax(dim=1))

    def on_test_epoch_end(self) -> None:
        predicted = (
            torch.cat(self.test_batches_predicted) if self.test_batches_predicted else torch.zeros(0, dtype=torch.long)
        )
        if self.trainer.world_size > 1:
            predicted = in_test_order(self.all_gather(predicted))
        self.test_predicted = predicted.cpu()
        self.test_batches_predicted = []

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


def check_model_fits_data(module: LeNetModule, datamodule: L.LightningDataModule) -> None:
    """Raise a ConfigError, once when the run is built, if the model cannot take the data's images or labels.

    The model's input size must be the data's padded image size, and it needs one output per
    class of the data set; then a batch of blank images goes through the model and the loss.
    """
    preprocess = getattr(datamodule, "preprocess", None)
    dataset = getattr(datamodule, "dataset", None)
    if preprocess is None or dataset is None:
        return  # not our data module: nothing to compare with
    images = preprocess(torch.zeros(2, IMAGE_SIZE, IMAGE_SIZE, dtype=torch.uint8))
    data_shape = tuple(images.shape[1:])
    classes = len(dataset.classes)
    net_shape = tuple(getattr(module.net, "input_shape", data_shape))
    if net_shape[0] != data_shape[0]:
        raise ConfigError(
            f"model.in_channels={net_shape[0]} does not fit the data: its images have {data_shape[0]} channel"
            f"{'s' if data_shape[0] != 1 else ''}, so the model needs model.in_channels={data_shape[0]}."
        )
    if net_shape != data_shape:
        raise ConfigError(
            f"model.input_size={net_shape[-1]} does not fit data.image_size={data_shape[-1]}: the data gives "
            f"{data_shape[-1]}x{data_shape[-1]} images and the model takes {net_shape[-1]}x{net_shape[-1]}. Leave "
            "data.image_size out (it follows model.input_size: 32 pads the 28x28 digits by 2 pixels, 28 keeps "
            "them as they are), or set both to the same size."
        )
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            outputs = module(images)
            labels = torch.tensor([0, classes - 1])
            if outputs.shape != (2, classes):
                raise ConfigError(
                    f"model.num_classes={outputs.shape[-1]} does not fit the data: {datamodule.dataset.__name__} has "
                    f"{classes} classes (labels 0-{classes - 1}), so the model needs model.num_classes={classes}."
                )
            module.loss(outputs, labels)
    except UserError:
        raise
    except (RuntimeError, ValueError, IndexError) as err:
        reason = " ".join(str(err).split())
        raise ConfigError(
            f"The model (model.*) and loss (loss.*) cannot take the data's {'x'.join(map(str, data_shape))} images "
            f"with {classes} classes: {reason}. Check that the model, loss and data settings belong together."
        ) from err
    finally:
        module.train(was_training)
