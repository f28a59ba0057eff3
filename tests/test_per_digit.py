"""Each run's per-digit test predictions: the file the test step leaves, DDP's order, two runs on the same digits."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import synthetic_digits
from lenet_pl.data import TensorBatches
from lenet_pl.per_digit import (
    TEST_PREDICTIONS,
    digits_digest,
    in_test_order,
    read_pair,
    read_test_predictions,
    write_test_predictions,
)
from lenet_pl.runtime.errors import UserError
from lenet_pl.sweeps.mcnemar import mcnemar


def test_a_run_saves_the_predicted_class_of_every_test_digit_in_the_test_sets_order(rbf_run: Path):
    saved = read_test_predictions(rbf_run)
    images, labels = synthetic_digits(300, seed=2)  # the fixture's test set (conftest.write_dataset)
    assert saved.path == rbf_run / TEST_PREDICTIONS and saved.path.stat().st_size < 20_000
    assert len(saved.predicted) == len(saved.labels) == 300
    assert np.array_equal(saved.labels, labels.numpy())
    assert saved.digest == digits_digest(images, labels)
    metrics = json.loads((rbf_run / "metrics.json").read_text())["metrics"]
    assert saved.accuracy == pytest.approx(metrics["test/acc"], abs=1e-6)
    assert set(np.unique(saved.predicted)) <= set(range(10))


def test_two_runs_pair_only_on_the_same_digits(rbf_run: Path, tmp_path: Path):
    a, b = read_pair(rbf_run, rbf_run / TEST_PREDICTIONS)
    same = mcnemar(a.predicted, b.predicted, a.labels)
    assert (same.b, same.c, same.p_value) == (0, 0, 1.0)
    other = tmp_path / "other"
    images, labels = synthetic_digits(300, seed=3)  # another test set of the same size
    write_test_predictions(other, a.predicted, images, labels)
    with pytest.raises(UserError, match="not on the same test digits"):
        read_pair(rbf_run, other)
    shutil.copy(rbf_run / TEST_PREDICTIONS, tmp_path / "copy.npz")
    assert read_pair(rbf_run, tmp_path / "copy.npz")[1].digest == a.digest


def test_written_predictions_read_back_small_and_exact(tmp_path: Path):
    images, labels = synthetic_digits(1000, seed=0)
    predicted = torch.where(torch.arange(1000) % 7 == 0, (labels + 1) % 10, labels)
    path = write_test_predictions(tmp_path, predicted, images, labels)
    saved = read_test_predictions(tmp_path)
    assert path == tmp_path / TEST_PREDICTIONS and saved.predicted.dtype == np.int64
    assert np.array_equal(saved.predicted, predicted.numpy()) and np.array_equal(saved.labels, labels.numpy())
    assert saved.accuracy == pytest.approx(1 - 143 / 1000)  # every 7th of 1000 (0, 7, ..., 994) is wrong
    assert path.stat().st_size < 2 * 1000 + 1000  # at most a byte a label and a prediction, plus the headers


def test_padding_is_dropped_and_a_partial_test_is_described_by_its_own_digest(tmp_path: Path):
    images, labels = synthetic_digits(10, seed=0)
    write_test_predictions(tmp_path / "padded", torch.cat([labels, labels[:2]]), images, labels)  # DDP's wrap-around
    padded = read_test_predictions(tmp_path / "padded")
    assert len(padded.predicted) == 10 and padded.accuracy == 1.0
    write_test_predictions(tmp_path / "partial", labels[:4], images, labels)  # trainer.limit_test_batches
    partial = read_test_predictions(tmp_path / "partial")
    assert len(partial.labels) == 4 and partial.digest == digits_digest(images[:4], labels[:4]) != padded.digest
    with pytest.raises(UserError, match="not on the same test digits"):
        read_pair(tmp_path / "padded", tmp_path / "partial")


def test_a_run_without_the_file_is_refused_by_name(tmp_path: Path):
    with pytest.raises(UserError, match=TEST_PREDICTIONS):
        read_test_predictions(tmp_path)
    (tmp_path / TEST_PREDICTIONS).write_bytes(b"not an npz")
    with pytest.raises(UserError, match="cannot be read"):
        read_test_predictions(tmp_path)
    images, labels = synthetic_digits(100, seed=0)
    whole = write_test_predictions(tmp_path, labels, images, labels).read_bytes()
    for damaged in (b"", whole[: len(whole) // 2], whole[:-30]):  # empty, cut in the middle, cut at the end
        (tmp_path / TEST_PREDICTIONS).write_bytes(damaged)
        with pytest.raises(UserError, match="cannot be read"):
            read_test_predictions(tmp_path)


@pytest.mark.parametrize("world_size", [2, 3, 4])
def test_ddp_gathered_predictions_come_back_in_the_test_sets_order(world_size: int):
    labels = torch.arange(11)  # not a multiple of any world size: the last batches are padded
    per_rank = [
        torch.cat([y for _, y in TensorBatches(labels[:, None], labels, batch_size=2, rank=r, world_size=world_size)])
        for r in range(world_size)
    ]
    gathered = torch.stack(per_rank)  # what LightningModule.all_gather returns: (processes, per process)
    assert torch.equal(in_test_order(gathered)[:11], labels)
    assert torch.equal(in_test_order(labels), labels)  # one process: as it is
