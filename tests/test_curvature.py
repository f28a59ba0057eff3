"""The paper's diagonal Gauss-Newton curvature (lenet_pl.curvature) against independent computations."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.functional import hessian
from torch.func import functional_call, jacfwd, jacrev

from lenet_pl.curvature import fan_in_times_share, gauss_newton_diagonal
from lenet_pl.layers import (
    RBFMAPLoss,
    RBFOutput,
    RBFPenaltyLoss,
    ScaledTanh,
    Subsampling,
    TableConv2d,
    squashed_subsampling,
)
from lenet_pl.model import LeNet5, init_lecun1998


def flat_hessian_diagonal(loss_of_params, params: list[torch.Tensor]) -> list[torch.Tensor]:
    """The exact diagonal of d2 loss / d params2, from the full Hessian (tiny models only)."""
    sizes = [p.numel() for p in params]

    def of_vector(vector):
        return loss_of_params([c.view_as(p) for c, p in zip(torch.split(vector, sizes), params, strict=True)])

    full = hessian(of_vector, torch.cat([p.detach().flatten() for p in params]))
    return [d.view_as(p) for d, p in zip(torch.split(full.diagonal(), sizes), params, strict=True)]


def test_a_single_linear_layer_with_cross_entropy_gets_the_exact_hessian_diagonal():
    # w_ij reaches one output unit only, so dropping cross terms loses nothing: the estimate is exact.
    torch.manual_seed(0)
    layer = nn.Linear(5, 4)
    x, y = torch.randn(7, 5), torch.randint(0, 4, (7,))
    estimate = gauss_newton_diagonal(layer, F.cross_entropy, x, y)

    def loss_of(params):
        return F.cross_entropy(functional_call(layer, dict(zip(["weight", "bias"], params, strict=True)), (x,)), y)

    exact = flat_hessian_diagonal(loss_of, [layer.weight, layer.bias])
    assert torch.allclose(estimate[layer.weight], exact[0], atol=1e-6)
    assert torch.allclose(estimate[layer.bias], exact[1], atol=1e-6)


def test_a_single_convolution_with_squared_error_gets_the_exact_hessian_diagonal():
    # A shared kernel weight reaches many units, but with a squared error their cross terms are zero.
    torch.manual_seed(1)
    conv = nn.Conv2d(2, 3, 3)
    x, target = torch.randn(4, 2, 6, 6), torch.randn(4, 3, 4, 4)

    def squared_error(out, t):
        return (out - t).pow(2).sum(dim=(1, 2, 3)).mean()

    estimate = gauss_newton_diagonal(conv, squared_error, x, target)

    def loss_of(params):
        return squared_error(functional_call(conv, dict(zip(["weight", "bias"], params, strict=True)), (x,)), target)

    exact = flat_hessian_diagonal(loss_of, [conv.weight, conv.bias])
    assert torch.allclose(estimate[conv.weight], exact[0], rtol=1e-5, atol=1e-5)
    assert torch.allclose(estimate[conv.bias], exact[1], rtol=1e-5, atol=1e-5)


def reference_layer(
    layer: nn.Module, inp: torch.Tensor, d2: torch.Tensor
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """One layer of the paper's recursion for one sample, from explicit Jacobians: (d2E/dw2 by name, d2E/dx2).

    d2E/dx_j2 = sum_i (da_i/dx_j)^2 d2E/da_i2 (the squared Jacobian); for a weight w_k, the sum over
    the connections (i, j) that use it, C_ijk = d2 a_i / dx_j dw_k = 1, of d2E/da_i2 x_j^2; a bias
    is a connection from 1.
    """
    values = {n: p.detach() for n, p in layer.named_parameters()}

    def f(inp_, weights):
        return functional_call(layer, weights, (inp_,)).flatten()

    def jac_x_of(w, name):
        return jacrev(f)(inp, {**values, name: w})

    per_param = {}
    for name, value in values.items():
        if name == "bias":
            jac_b = jacrev(lambda b, name=name: f(inp, {**values, name: b}))(value)
            per_param[name] = (jac_b.reshape(len(d2), -1).square() * d2[:, None]).sum(0).view_as(value)
        else:  # forward-over-reverse: d/dw_k of the input Jacobian, for every k at once
            connections = jacfwd(jac_x_of)(value, name).reshape(len(d2), inp.numel(), -1)  # C_ijk
            x2 = inp.flatten().square()
            per_param[name] = torch.einsum("ijk,i,j->k", connections.square(), d2, x2).view_as(value)
    jac_x = jacrev(f)(inp, values).reshape(len(d2), inp.numel())
    return per_param, (jac_x.square() * d2[:, None]).sum(0)


def reference_estimate(layers: list[nn.Module], tail: list[nn.Module], loss, x, y) -> dict[nn.Parameter, torch.Tensor]:
    """The paper's recursion one sample at a time with `reference_layer`, started from the exact diagonal of
    the sample's loss Hessian with respect to the input of the parameter-free `tail`; averaged over samples."""
    total = {p: torch.zeros_like(p) for layer in layers for p in layer.parameters()}
    for xs, ys in zip(x, y, strict=True):
        inputs, h = [], xs[None]
        for layer in layers:
            inputs.append(h)
            h = layer(h)

        def sample_loss(z, ys=ys):
            for layer in tail:
                z = layer(z)
            return loss(z, ys[None])

        d2 = hessian(sample_loss, h.detach()).reshape(h.numel(), h.numel()).diagonal()
        for layer, inp in zip(reversed(layers), reversed(inputs), strict=True):
            per_param, d2 = reference_layer(layer, inp, d2)
            for name, value in per_param.items():
                total[getattr(layer, name)] += value
    return {p: t / len(y) for p, t in total.items()}


def tiny_1998_chain() -> tuple[list[nn.Module], list[nn.Module]]:
    """Every kind of layer of the 1998 LeNet-5, small: C1, scaled tanh, subsampling, Table-I-like C3, F6, RBF."""
    table = torch.tensor([[True, False, True], [True, True, False]])
    layers = [
        nn.Conv2d(1, 2, 5),
        ScaledTanh(),
        Subsampling(2),
        ScaledTanh(),
        TableConv2d(2, 3, 2, table=table),
        ScaledTanh(),
        nn.Flatten(),
        nn.Linear(3 * 4 * 4, 84),
        ScaledTanh(),
    ]
    for layer in layers:
        init_lecun1998(layer)
    with torch.no_grad():  # biases away from 0, so that their connections count too
        for layer in layers:
            if isinstance(getattr(layer, "bias", None), nn.Parameter):
                layer.bias.uniform_(-0.3, 0.3)
    return layers, [RBFOutput()]


@pytest.mark.parametrize("loss", [RBFMAPLoss(), RBFPenaltyLoss()], ids=["eq9_map", "eq8_penalty"])
def test_every_1998_layer_follows_the_papers_recursion(loss):
    torch.manual_seed(2)
    layers, tail = tiny_1998_chain()
    net = nn.Sequential(*layers, *tail)
    x, y = torch.randn(3, 1, 14, 14), torch.tensor([3, 7, 0])
    estimate = gauss_newton_diagonal(net, loss, x, y)
    reference = reference_estimate(layers, tail, loss, x, y)
    assert set(estimate) == set(reference)
    for p, expected in reference.items():
        assert expected.abs().max() > 0
        assert torch.allclose(estimate[p], expected, rtol=1e-4, atol=1e-6 * expected.abs().max().item())
        assert (estimate[p] >= 0).all()


def test_standard_layers_follow_the_papers_recursion():
    # ReLU, max- and average pooling, and a trainable linear output with cross-entropy (lenet5's parts).
    torch.manual_seed(3)
    layers = [nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(2, 2, 3), nn.Tanh(), nn.AvgPool2d(2)]
    layers += [nn.Flatten(), nn.Linear(2 * 2 * 2, 5), nn.Sigmoid(), nn.Linear(5, 4)]
    x, y = torch.randn(4, 1, 14, 14), torch.tensor([0, 1, 3, 3])
    estimate = gauss_newton_diagonal(nn.Sequential(*layers), F.cross_entropy, x, y)
    reference = reference_estimate(layers, [], F.cross_entropy, x, y)
    for p, expected in reference.items():
        assert torch.allclose(estimate[p], expected, rtol=1e-4, atol=1e-7), p.shape


def test_subsampling_sums_the_squared_inputs_of_its_four_connections():
    # The paper's rule for a shared coefficient: sum over its connections of d2E/da2 x_j^2, i.e.
    # (x1^2 + x2^2 + x3^2 + x4^2) per unit, not (x1 + x2 + x3 + x4)^2 as the exact Gauss-Newton diagonal has.
    layer = Subsampling(1)
    x = torch.tensor([[[[1.0, 2.0], [3.0, -4.0]]]])

    def half_squared(out, _):
        return 0.5 * out.pow(2).sum()  # d2E/da2 = 1

    h = gauss_newton_diagonal(layer, half_squared, x, torch.zeros(1))
    assert h[layer.weight].item() == pytest.approx(1 + 4 + 9 + 16)
    assert h[layer.bias].item() == pytest.approx(1.0)


def test_the_1998_lenet5_gets_a_positive_estimate_for_all_60000_parameters():
    torch.manual_seed(4)
    net = LeNet5(
        activation=ScaledTanh,
        pooling=lambda c: squashed_subsampling(c, ScaledTanh),
        head=RBFOutput,
        c3=lambda i, o, k: TableConv2d(i, o, k),
        init=init_lecun1998,
    )
    x, y = torch.randn(6, 1, 32, 32), torch.arange(6)
    estimate = gauss_newton_diagonal(net, RBFMAPLoss(), x, y)
    assert sum(h.numel() for h in estimate.values()) == 60_000
    assert all((h >= 0).all() and h.sum() > 0 for h in estimate.values())
    # Per-sample values are averaged: the estimate on a batch is the mean of the single-sample ones.
    singles = [gauss_newton_diagonal(net, RBFMAPLoss(), x[i : i + 1], y[i : i + 1]) for i in range(6)]
    weight = net.F6[0].weight
    assert torch.allclose(estimate[weight], sum(s[weight] for s in singles) / 6, rtol=1e-4, atol=1e-8)


def test_a_layer_without_a_rule_is_named_in_the_error():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
    with pytest.raises(ValueError, match="no rule for the layer BatchNorm2d"):
        gauss_newton_diagonal(net, F.cross_entropy, torch.randn(2, 1, 6, 6), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"fan-in x share count has no rule for the trainable layer BatchNorm2d"):
        fan_in_times_share(net, torch.randn(2, 1, 6, 6))
    net[1].requires_grad_(False)  # a frozen layer has nothing to count: the others are counted
    counts = fan_in_times_share(net, torch.randn(2, 1, 6, 6))
    assert set(counts) == {net[0].weight, net[0].bias, net[3].weight, net[3].bias}
    assert (counts[net[3].weight] == 2 * 4 * 4 + 1).all()
