import itertools
import math

import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from lenet_pl import CONFIG_DIR
from lenet_pl.layers import AvgPool, MaxPool, OneHotMSELoss, ScaledTanh
from lenet_pl.model import LeNet5, format_layer_table, layer_table
from lenet_pl.runtime.compose import compose_config
from lenet_pl.runtime.errors import ConfigError


def choices(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def test_classic_lenet5_layer_table_matches_the_paper_counts():
    rows = {r.name: r for r in layer_table(LeNet5())}
    assert list(rows) == ["C1", "S2", "C3", "S4", "C5", "F6", "output"]
    assert {n: r.params for n, r in rows.items()} == {
        "C1": 156, "S2": 0, "C3": 2_416, "S4": 0, "C5": 48_120, "F6": 10_164, "output": 850,
    }  # fmt: skip
    assert {n: r.connections for n, r in rows.items()} == {
        # C1: 28*28*6*(25+1); S2: 14*14*6 outputs of 4 inputs; C3 (dense): 10*10*16*(6*25+1)
        "C1": 122_304, "S2": 4_704, "C3": 241_600, "S4": 1_600, "C5": 48_120, "F6": 10_164, "output": 850,
    }  # fmt: skip
    assert {n: r.output_shape for n, r in rows.items()} == {
        "C1": (6, 28, 28), "S2": (6, 14, 14), "C3": (16, 10, 10), "S4": (16, 5, 5),
        "C5": (120,), "F6": (84,), "output": (10,),
    }  # fmt: skip
    assert sum(r.params for r in rows.values()) == 61_706
    assert sum(p.numel() for p in LeNet5().parameters()) == 61_706


def test_28x28_input_gives_the_keras_blog_model():
    rows = {r.name: r for r in layer_table(LeNet5(input_size=28))}
    assert rows["S4"].output_shape == (16, 4, 4)
    assert rows["C5"].params == 16 * 4 * 4 * 120 + 120
    assert sum(r.params for r in rows.values()) == 44_426


def test_layer_table_text_has_every_layer_and_the_totals():
    text = format_layer_table(layer_table(LeNet5()))
    lines = text.splitlines()
    assert lines[0].split() == ["layer", "output", "params", "connections"]
    assert lines[1].split() == ["C1", "6x28x28", "156", "122,304"]
    assert lines[-1].split() == ["total", "61,706", "429,342"]


@pytest.mark.parametrize(
    ("activation", "pooling", "loss"),
    list(itertools.product(choices("activation"), choices("pooling"), choices("loss"))),
)
def test_every_activation_pooling_loss_combination_builds_and_trains(activation, pooling, loss):
    cfg = compose_config([f"activation={activation}", f"pooling={pooling}", f"loss={loss}"])
    net = instantiate(cfg.model)
    criterion = instantiate(cfg.loss)
    subsampling_params = 2 * (6 + 16) if pooling == "subsample" else 0  # a coefficient and a bias per S2/S4 map
    assert sum(p.numel() for p in net.parameters()) == 61_706 + subsampling_params
    x = torch.randn(7, 1, 32, 32)
    y = torch.arange(7) % 10
    out = net(x)
    assert out.shape == (7, 10)
    value = criterion(out, y)
    assert value.shape == () and torch.isfinite(value)
    value.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    stage_types = {type(m) for m in net.C1.modules()}
    assert type(instantiate(cfg.activation)()) in stage_types


def test_activation_and_pooling_parts_are_the_configured_ones():
    net = instantiate(compose_config(["activation=relu", "pooling=max"]).model)
    assert isinstance(net.C1[1], nn.ReLU) and isinstance(net.F6[1], nn.ReLU)
    assert isinstance(net.S2, MaxPool) and isinstance(net.S4, MaxPool)
    net = instantiate(compose_config([]).model)
    assert isinstance(net.C3[1], nn.Tanh) and isinstance(net.S2, AvgPool)


def test_scaled_tanh_is_the_1998_squashing_function():
    f = ScaledTanh()
    a = torch.tensor([-1.0, 0.0, 1.0, 3.0])
    expected = 1.7159 * torch.tanh(2 * a / 3)
    torch.testing.assert_close(f(a), expected)
    assert f(torch.tensor(1.0)).item() == pytest.approx(1.0, abs=2e-4)
    assert f(torch.tensor(100.0)).item() == pytest.approx(1.7159)


def test_one_hot_mse_sums_over_classes_and_averages_over_the_batch():
    outputs = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]])
    target = torch.tensor([0, 2])
    # sample 1: exact; sample 2: 0.25 + 0.25 + 1
    assert OneHotMSELoss(3)(outputs, target).item() == pytest.approx(1.5 / 2)


def test_one_hot_mse_smooths_its_target_as_cross_entropy_does():
    outputs = torch.zeros(1, 4)
    # s = 0.2, K = 4: the target is 0.85 on the label and 0.05 elsewhere
    assert OneHotMSELoss(4, label_smoothing=0.2)(outputs, torch.tensor([1])).item() == pytest.approx(
        0.85**2 + 3 * 0.05**2
    )
    # at the minimum of each loss, the same soft target: CE's optimal softmax equals MSE's optimal outputs
    logits = torch.zeros(1, 4, requires_grad=True)
    optimizer = torch.optim.SGD([logits], lr=1.0)
    for _ in range(2000):
        optimizer.zero_grad()
        torch.nn.CrossEntropyLoss(label_smoothing=0.2)(logits, torch.tensor([1])).backward()
        optimizer.step()
    torch.testing.assert_close(logits.softmax(1).detach(), torch.tensor([[0.05, 0.85, 0.05, 0.05]]), atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match=r"label_smoothing=1.5 must be in \[0, 1\]"):
        OneHotMSELoss(4, label_smoothing=1.5)


def test_input_too_small_is_a_config_error():
    with pytest.raises(ConfigError, match=r"model.input_size=12 .*at least 16"):
        LeNet5(input_size=12)


def test_model_runs_without_lightning_on_a_batch():
    net = LeNet5().eval()
    with torch.no_grad():
        probs = net(torch.zeros(2, 1, 32, 32)).softmax(1)
    assert probs.shape == (2, 10)
    assert math.isclose(probs.sum().item(), 2.0, rel_tol=1e-5)


def test_norm_batch_puts_a_batchnorm_between_each_convolution_and_its_activation():
    plain = instantiate(compose_config(["activation=relu"]).model)
    normed = instantiate(compose_config(["activation=relu", "norm=batch"]).model)
    for stage, maps in (("C1", 6), ("C3", 16), ("C5", 120)):
        conv, norm, act = list(getattr(normed, stage))[:3]
        assert isinstance(conv, nn.Conv2d) and isinstance(act, nn.ReLU)
        assert isinstance(norm, nn.BatchNorm2d) and norm.num_features == maps
        assert not any(isinstance(m, nn.BatchNorm2d) for m in getattr(plain, stage))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in [*normed.F6, normed.output])
    # 2 parameters per map of C1, C3 and C5: (6 + 16 + 120) x 2 = 284 over LeNet-5's 61,706, within 62k.
    assert sum(r.params for r in layer_table(normed)) == 61_706 + 284 == sum(p.numel() for p in normed.parameters())
    normed.train()
    out = normed(torch.randn(8, 1, 32, 32))
    assert out.shape == (8, 10) and normed.C1[1].running_mean.abs().sum() > 0  # batch statistics were taken
