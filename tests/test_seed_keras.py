"""The Keras script of the "LeNet in a nutshell" blog post as a preset (experiment=seed_keras)."""

import math

import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from conftest import train_to_metrics
from lenet_pl.model import layer_table
from lenet_pl.runtime.compose import compose_config


def seed_keras(*overrides: str):
    return compose_config(["experiment=seed_keras", *overrides])


def test_seed_keras_is_the_keras_model_with_44426_parameters():
    net = instantiate(seed_keras().model)
    rows = {r.name: r for r in layer_table(net)}
    assert net.input_shape == (1, 28, 28)
    assert {n: r.output_shape for n, r in rows.items()} == {
        "C1": (6, 24, 24), "S2": (6, 12, 12), "C3": (16, 8, 8), "S4": (16, 4, 4),
        "C5": (120,), "F6": (84,), "output": (10,),
    }  # fmt: skip
    assert {n: r.params for n, r in rows.items()} == {
        "C1": 156, "S2": 0, "C3": 2_416, "S4": 0, "C5": 30_840, "F6": 10_164, "output": 850,
    }  # fmt: skip
    assert sum(p.numel() for p in net.parameters()) == 44_426
    assert isinstance(net.C1[1], nn.Tanh) and isinstance(net.S2, nn.AvgPool2d)
    assert isinstance(net.output, nn.Linear)


def test_seed_keras_starts_from_keras_glorot_uniform_weights_and_zero_biases():
    torch.manual_seed(0)
    net = instantiate(seed_keras().model)
    layers = [net.C1[0], net.C3[0], net.C5[0], net.F6[0], net.output]
    # Keras: limit sqrt(6 / (fan_in + fan_out)), with kernel size counted in both for convolutions.
    fans = [(25, 150), (150, 400), (16 * 16, 120 * 16), (120, 84), (84, 10)]
    for layer, (fan_in, fan_out) in zip(layers, fans, strict=True):
        limit = math.sqrt(6 / (fan_in + fan_out))
        assert layer.weight.abs().max() <= limit
        assert layer.weight.abs().max() > 0.9 * limit
        assert layer.bias.abs().max() == 0


def test_seed_keras_training_setup_is_the_articles():
    cfg = seed_keras()
    assert cfg.data.batch_size == 128 and cfg.trainer.max_epochs == 20
    optimizer = instantiate(cfg.optimizer)([nn.Parameter(torch.zeros(1))])
    assert isinstance(optimizer, torch.optim.SGD)
    assert optimizer.defaults["lr"] == 0.01 and optimizer.defaults["momentum"] == 0
    assert isinstance(instantiate(cfg.loss), nn.CrossEntropyLoss)
    assert cfg.scheduler.get("scheduler") is None
    data = instantiate(cfg.data)
    images = torch.tensor([[[0, 51, 255] * 9 + [0]] * 28], dtype=torch.uint8)
    x = data.preprocess(images)
    assert x.shape == (1, 1, 28, 28)  # no padding
    assert x[0, 0, 0, :3].tolist() == pytest.approx([0.0, 0.2, 1.0])  # pixel / 255


@pytest.mark.slow
def test_seed_keras_reaches_the_articles_accuracy_after_20_epochs(real_mnist_root, tmp_path):
    metrics = train_to_metrics(real_mnist_root, tmp_path / "run", "experiment=seed_keras", timeout=3 * 3600)
    assert metrics["epochs"] == 20
    assert 0.96 <= metrics["test/acc"] <= 0.975  # the article reports about 96%
