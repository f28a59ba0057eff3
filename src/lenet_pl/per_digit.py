"""A run's test predictions, digit by digit: the file its test step leaves, and reading two runs' back.

`lenet_pl.train` writes `test_predictions.npz` beside `metrics.json`: the predicted class of every
test digit in the test set's order, the true labels, and a digest of the digits (images and labels),
so that two runs can be checked to be on the same digits before `lenet_pl.sweeps.mcnemar` pairs them.
About 20 KB for MNIST's 10,000 digits, before compression.
"""

import hashlib
import io
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import Tensor

from lenet_pl.runtime.errors import UserError
from lenet_pl.runtime.outputs import write_atomically

TEST_PREDICTIONS = "test_predictions.npz"


@dataclass(frozen=True)
class RunPredictions:
    """One run's predicted class per test digit, with the true labels and the digits' digest."""

    predicted: np.ndarray
    labels: np.ndarray
    digest: str  # sha256 of the digits' images and labels (`digits_digest`)
    path: Path | None = None

    @property
    def correct(self) -> np.ndarray:
        return self.predicted == self.labels

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.correct))


def digits_digest(images: Tensor | np.ndarray, labels: Tensor | np.ndarray) -> str:
    """sha256 of the images (as stored, uint8 for MNIST) and labels, shapes included, in their order."""
    digest = hashlib.sha256()
    for array in (images, labels):
        array = np.ascontiguousarray(array.cpu().numpy() if isinstance(array, Tensor) else array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def in_test_order(gathered: Tensor) -> Tensor:
    """One value per test digit from the (processes, per process) values DDP's all_gather returns.

    Each of P processes tests every P-th digit (rank r: digits r, r + P, ...; `TensorBatches`,
    like Lightning's DistributedSampler, pads the end by wrapping around), so reading the gathered
    values column by column restores the test set's order; the padding comes last.
    """
    return gathered.T.reshape(-1) if gathered.dim() == 2 else gathered.reshape(-1)


def _smallest(values: np.ndarray) -> np.ndarray:
    return values.astype(np.uint8) if values.size == 0 or (values.min() >= 0 and values.max() < 256) else values


def write_test_predictions(
    run_dir: str | Path, predicted: Tensor | np.ndarray, images: Tensor | np.ndarray, labels: Tensor | np.ndarray
) -> Path:
    """Write `run_dir`/test_predictions.npz for the test digits `images`, `labels` (in the test set's order).

    `predicted` may be longer (the padding of DDP's last batches, dropped here) or shorter (a test
    limited to its first batches: the file then holds those digits, and the digest is theirs).
    """
    predicted = np.asarray(predicted.cpu() if isinstance(predicted, Tensor) else predicted).ravel()
    m = min(len(predicted), len(labels))
    labels_np = np.asarray(labels[:m].cpu() if isinstance(labels, Tensor) else labels[:m]).ravel()
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        predicted=_smallest(predicted[:m]),
        labels=_smallest(labels_np),
        digest=np.array(digits_digest(images[:m], labels[:m])),
    )
    path = Path(run_dir) / TEST_PREDICTIONS
    write_atomically(path, buffer.getbuffer())
    return path


def read_test_predictions(run: str | Path) -> RunPredictions:
    """The test predictions of a run (its dir, or the .npz file itself)."""
    path = Path(run)
    if path.is_dir():
        path = path / TEST_PREDICTIONS
    if not path.is_file():
        raise UserError(
            f"{path} does not exist: the run has no per-digit test predictions (runs write {TEST_PREDICTIONS} "
            "when their test ends; a run that failed or was trained by an older version has none)."
        )
    # A cut or altered .npz fails in numpy's reader or in the zip and zlib layers under it.
    try:
        with np.load(path, allow_pickle=False) as data:
            predicted, labels, digest = data["predicted"], data["labels"], str(data["digest"])
    except (OSError, ValueError, KeyError, EOFError, NotImplementedError, zipfile.BadZipFile, zlib.error) as err:
        raise UserError(f"{path} cannot be read as a run's test predictions: {err}") from err
    if predicted.shape != labels.shape:
        raise UserError(f"{path} is damaged: {len(predicted)} predictions for {len(labels)} labels.")
    return RunPredictions(predicted.astype(np.int64), labels.astype(np.int64), digest, path)


def read_pair(run_a: str | Path, run_b: str | Path) -> tuple[RunPredictions, RunPredictions]:
    """Two runs' test predictions, after checking that they are on the same digits, in the same order."""
    a, b = read_test_predictions(run_a), read_test_predictions(run_b)
    if a.digest != b.digest:
        raise UserError(
            f"{a.path} and {b.path} are not on the same test digits ({len(a.labels)} and {len(b.labels)} digits, "
            "different digests): the runs used different data sets, or one was tested on part of the test set "
            "(trainer.limit_test_batches); per-digit comparisons need both on the same digits."
        )
    return a, b
