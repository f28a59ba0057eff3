"""What a run shows in TensorBoard besides scalars: inputs, mistakes, confusion matrix, weights, graph, layers.

Each is a Lightning callback with its own config in conf/callbacks/ (all on in `default`); turn
one off with e.g. `python -m lenet_pl.train '~callbacks.weight_histograms'`. They write to the
run's TensorBoardLogger and do nothing without one. They stay cheap (well under 5% of an epoch,
measured in docs/tensorboard.md): the pictures are drawn with PIL and need a few extra forward passes at
most every few epochs, the histograms one pass over the weights, the graph one trace after the
last epoch, the layers' figure (matplotlib, `lenet_pl.inside_view`, as `python -m lenet_pl.inside`
draws it) half a second every few epochs. The picture helpers are shared with `lenet_pl.evaluate`.
"""

import logging
import warnings
from collections.abc import Callable

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from PIL import Image, ImageDraw
from torch import Tensor
from torch.utils.tensorboard import SummaryWriter
from torchmetrics.classification import MulticlassConfusionMatrix
from torchvision.utils import make_grid

from lenet_pl.data import class_label
from lenet_pl.inside_view import inside_figure

log = logging.getLogger("lenet_pl")


def labelled_grid(images: Tensor, labels: list[str], columns: int = 8, scale: int = 3) -> Tensor:
    """Images (N, 1, H, W) as one uint8 (3, H', W') picture, each enlarged `scale` times under its label.

    Drawn with PIL, like the confusion matrix: milliseconds, where matplotlib takes a second or two
    (and as much again to import) in every training run.
    """
    tiles = []
    for image, label in zip(images, labels, strict=True):
        pixels = image[0].float().cpu()
        pixels = (pixels - pixels.min()) / (pixels.max() - pixels.min()).clamp(min=1e-8)
        digit = Image.fromarray(pixels.mul(255).byte().numpy())
        digit = digit.resize((digit.width * scale, digit.height * scale), Image.Resampling.NEAREST)
        strip = 12 * (label.count("\n") + 1) + 2  # room for the label's lines above the digit
        tile = Image.new("L", (digit.width, digit.height + strip), 255)
        tile.paste(digit, (0, strip))
        ImageDraw.Draw(tile).multiline_text((2, 1), label, fill=0, spacing=1)
        tiles.append(torch.from_numpy(np.array(tile)))
    if not tiles:
        return torch.full((3, 8, 8), 255, dtype=torch.uint8)
    return make_grid(torch.stack(tiles)[:, None], nrow=columns, padding=4, pad_value=255)


def confusion_matrix_image(
    matrix: Tensor, title: str = "confusion matrix", cell: int = 40, names: list[str] | None = None
) -> Tensor:
    """Counts of (true class: rows, predicted class: columns) as a uint8 (3, H, W) heat map, numbers written in.

    Rows are labelled with the class and its name where `names` differ from the labels (Fashion-MNIST's
    "6 Shirt"); columns with the class alone, which is all a cell's width holds.
    """
    n, top = len(matrix), 44
    rows = [class_label(i, names or []) for i in range(n)]
    margin = max(28, 8 + 6 * max(len(r) for r in rows) + 6)  # PIL's default font: 6 px a character
    image = Image.new("RGB", (margin + n * cell + 8, top + n * cell + 8), "white")
    draw = ImageDraw.Draw(image)
    draw.text((margin, 2), title, fill="black")
    draw.text((margin, 16), "predicted ->", fill="black")
    draw.text((2, top - 14), "true", fill="black")
    peak = max(matrix.max().item(), 1)
    for i in range(n):
        draw.text((margin + i * cell + cell // 2 - 3, top - 14), str(i), fill="black")
        draw.text((8, top + i * cell + cell // 2 - 6), rows[i], fill="black")
    for true, row in enumerate(matrix.tolist()):
        for pred, count in enumerate(row):
            shade = (count / peak) ** 0.5  # white -> dark blue; the root keeps a few mistakes visible
            colour = tuple(round(w + (b - w) * shade) for w, b in zip((247, 251, 255), (8, 48, 107), strict=True))
            x, y = margin + pred * cell, top + true * cell
            draw.rectangle((x, y, x + cell - 1, y + cell - 1), fill=colour)
            text = str(int(count))
            draw.text(
                (x + cell // 2 - 3 * len(text), y + cell // 2 - 6), text, fill="white" if shade > 0.5 else "black"
            )
    return torch.from_numpy(np.array(image)).permute(2, 0, 1)


def _class_namer(trainer: L.Trainer) -> Callable[[int], str]:
    """Label -> its name in the data module's `classes` (Fashion-MNIST's "Shirt"); the label itself where none."""
    names = list(getattr(trainer.datamodule, "classes", None) or [])
    return lambda label: names[label] if 0 <= label < len(names) else str(label)


def _writer(trainer: L.Trainer) -> SummaryWriter | None:
    """The run's TensorBoard writer on the main process, or None (no TensorBoard logger, or another rank)."""
    if not trainer.is_global_zero:
        return None
    return next((lg.experiment for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)


class SampleInputs(L.Callback):
    """Logs a grid of the first training batch's inputs, as the model sees them, once."""

    def __init__(self, count: int = 64) -> None:
        self.count = count
        self.done = False

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if self.done:
            return
        writer = _writer(trainer)
        if writer is None:
            return
        images = batch[0][: self.count].detach().float().cpu()
        writer.add_image("inputs/train_samples", make_grid(images, nrow=8, normalize=True, pad_value=1), 0)
        self.done = True


class ModelGraph(L.Callback):
    """Logs the network's graph, traced on one training input, when training ends.

    Tracing (torch.jit) takes a second or two, so it runs once after the last epoch instead of
    inside the first; the input is kept from the first training batch.
    """

    def __init__(self) -> None:
        self.example: Tensor | None = None

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if self.example is None:
            self.example = batch[0][:1].detach().clone()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        writer = _writer(trainer)
        if writer is None or self.example is None:
            return
        net = getattr(pl_module, "net", pl_module)  # the plain nn.Module reads better than its wrapper
        # torch deprecates torch.jit (FutureWarning) but still runs it. A picture is not worth a
        # training run: a model the tracer cannot handle only loses its graph.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")
            try:
                writer.add_graph(net, self.example)
            except Exception as err:
                log.warning("TensorBoard graph not logged: tracing %s failed (%s)", type(net).__name__, err)


class WeightHistograms(L.Callback):
    """Logs a histogram of every parameter tensor every `every_n_epochs` epochs."""

    def __init__(self, every_n_epochs: int = 1) -> None:
        self.every_n_epochs = every_n_epochs

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        writer = _writer(trainer)
        if writer is None or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        for name, param in getattr(pl_module, "net", pl_module).named_parameters():
            writer.add_histogram(f"weights/{name}", param.detach().cpu(), trainer.global_step)


class MisclassifiedDigits(L.Callback):
    """Every `every_n_epochs` epochs (and at the last one), shows up to `count` wrong validation digits.

    Each is titled 'predicted (true label)', by name where the data module names its classes
    (Fashion-MNIST's 'Shirt (true Coat)'). Predictions come from an extra forward pass over
    validation batches until `count` mistakes are found, so a good model costs a few batches.
    """

    def __init__(self, every_n_epochs: int = 5, count: int = 32) -> None:
        self.every_n_epochs, self.count = every_n_epochs, count
        self.images: list[Tensor] = []
        self.titles: list[str] = []
        self.active = False

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        last = epoch == trainer.max_epochs
        self.active = _writer(trainer) is not None and not trainer.sanity_checking
        self.active &= last or epoch % self.every_n_epochs == 0
        self.images, self.titles = [], []

    def on_validation_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if not self.active or len(self.images) >= self.count:
            return
        x, y = batch
        predicted = pl_module(x).argmax(dim=1)
        wrong = (predicted != y).nonzero().flatten()[: self.count - len(self.images)]
        self.images.extend(x[wrong].cpu())
        name = _class_namer(trainer)
        self.titles.extend(
            f"{name(p)}\n(true {name(t)})" if name(p) != str(p) else f"{p} (true {t})"
            for p, t in zip(predicted[wrong].tolist(), y[wrong].tolist(), strict=True)
        )

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        writer = _writer(trainer)
        if self.active and self.images and writer is not None:
            grid = labelled_grid(torch.stack(self.images), self.titles)
            writer.add_image("val/misclassified", grid, trainer.global_step)
        self.active = False


class ConfusionMatrix(L.Callback):
    """Logs the test-set confusion matrix of the tested checkpoint: the run's last picture."""

    def __init__(self) -> None:
        self.matrix: MulticlassConfusionMatrix | None = None

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.matrix = None

    def on_test_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        x, y = batch
        scores = pl_module(x)
        if self.matrix is None:  # the class count comes from the model, whatever its head
            self.matrix = MulticlassConfusionMatrix(scores.shape[1]).to(scores.device)
        self.matrix.update(scores.argmax(dim=1), y)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.matrix is None:
            return
        matrix = self.matrix.compute()  # on every process: under DDP this sums the processes' counts
        writer = _writer(trainer)
        if writer is not None:
            name = _class_namer(trainer)
            image = confusion_matrix_image(matrix, names=[name(c) for c in range(len(matrix))])
            writer.add_image("test/confusion_matrix", image, trainer.global_step)


class InsideView(L.Callback):
    """What every layer makes of one fixed validation digit, as `python -m lenet_pl.inside` draws it.

    Logged before training (at the sanity check, so the untrained network is the first picture),
    every `every_n_epochs` epochs and after the last, so the IMAGES tab's step slider shows the
    kernels and feature maps forming. The digit is the first of the validation set (which is never
    shuffled), kept from the first validation batch. Drawing the figure takes about half a second
    (matplotlib), which is why it is not drawn every epoch by default.
    """

    def __init__(self, every_n_epochs: int = 5) -> None:
        self.every_n_epochs = every_n_epochs
        self.digit: Tensor | None = None
        self.label = 0

    def on_validation_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if self.digit is None and batch_idx == 0:
            x, y = batch
            self.digit, self.label = x[:1].detach().clone(), int(y[0])

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        due = trainer.sanity_checking or epoch % self.every_n_epochs == 0 or epoch == trainer.max_epochs
        writer = _writer(trainer)
        if not due or writer is None or self.digit is None:
            return
        trained = trainer.current_epoch + (0 if trainer.sanity_checking else 1)  # epochs done (a resumed run's too)
        when = f"after epoch {trained}" if trained else "before training"
        title = f"Validation digit 0 (label {self.label}), {when} (step {trainer.global_step})"
        figure = inside_figure(getattr(pl_module, "net", pl_module), self.digit, title, self.label)
        writer.add_figure("inside/val_digit", figure, trainer.global_step)
