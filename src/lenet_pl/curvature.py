"""The 1998 paper's curvature for SDLM: the diagonal Gauss-Newton estimate, back-propagated layer by layer.

LeCun et al. (1998), Appendix C (after Becker & LeCun 1989). For a unit with weighted sum
a_i = sum_j w_ij x_j and output x_i = f(a_i), per sample:

    d2E/da_i2  ~ f'(a_i)^2 d2E/dx_i2             (the f'' term is dropped, so nothing turns negative)
    d2E/dx_j2  ~ sum_i w_ij^2 d2E/da_i2          (the cross terms d2E/da_i da_k are dropped)
    d2E/dw_k2  ~ sum over the connections (i, j) that use w_k of d2E/da_i2 x_j^2

A bias is a connection from a constant 1. Where the backward pass starts, the output, the
estimate is the exact diagonal of the per-sample loss's second derivative: with respect to the
network's outputs, or, when the network ends in layers without trainable parameters and without
a rule here (the 1998 RBF units, whose centres are fixed), with respect to those layers' input,
so that the RBF units are part of the loss (Eq. 8 / Eq. 9), as the paper treats them. The
per-sample values are averaged over the samples given; every value is >= 0.

Every step of the recursion is the layer's own backward pass on squared quantities, so one rule
covers each kind of layer:
- weighted layers (`nn.Linear`, `nn.Conv2d`, and the 1998 `TableConv2d` and `Subsampling`), whose
  output is linear in their input and in their weights: d2E/dx2 is the layer's input gradient
  with the weights squared, d2E/dw2 its weight gradient with the input squared (both with
  d2E/da2 in place of dE/da); weight sharing is summed over the connections by the same pass;
- element-wise activations: f'(a)^2, f' from autograd;
- layers that route each input to an output with weight 1 (`nn.Flatten`, `nn.MaxPool2d`): their
  backward pass as it is; average pooling: its backward pass times 1/k^2 (weights 1/k^2, squared).

BackPACK (`DiagGGNExact`) computes a different quantity, the exact diagonal of the Gauss-Newton
matrix, which keeps the cross terms the paper drops, and it would need extensions for the four
1998 layers anyway; this module is the paper's recursion.
"""

from collections.abc import Callable
from itertools import pairwise

import torch
from torch import Tensor, nn
from torch.func import functional_call

from lenet_pl.layers import ScaledTanh, Subsampling, TableConv2d

WEIGHTED = (nn.Linear, nn.Conv2d, TableConv2d, Subsampling)
ELEMENTWISE = (nn.Tanh, ScaledTanh, nn.ReLU, nn.Sigmoid, nn.GELU, nn.LeakyReLU, nn.ELU, nn.SiLU, nn.Identity)
ROUTING = (nn.Flatten, nn.MaxPool2d)
AVERAGING = (nn.AvgPool2d,)
SUPPORTED = WEIGHTED + ELEMENTWISE + ROUTING + AVERAGING

Loss = Callable[[Tensor, Tensor], Tensor]


def _leaf_calls(net: nn.Module, x: Tensor) -> list[tuple[nn.Module, Tensor, Tensor]]:
    """(layer, input, output) of each leaf module in the order the forward pass calls them; checks they form a chain."""
    calls: list[tuple[nn.Module, Tensor, Tensor]] = []
    leaves = [m for m in net.modules() if not any(m.children())]
    hooks = [m.register_forward_hook(lambda m, args, out: calls.append((m, args[0], out))) for m in leaves]
    try:
        with torch.no_grad():
            net(x)
    finally:
        for hook in hooks:
            hook.remove()
    for (_, _, out), (layer, inp, _) in pairwise(calls):
        if inp is not out:
            raise ValueError(
                f"the diagonal Gauss-Newton estimate needs a network whose layers form a chain; the input of "
                f"{layer} is not the output of the layer called before it."
            )
    return calls


def _output_curvature(tail: list[nn.Module], loss: Loss, z: Tensor, y: Tensor) -> Tensor:
    """Per sample, the exact diagonal of d2E/dz2, E = loss(tail(z)) for that sample alone; clamped at 0."""
    z = z.detach().requires_grad_()
    with torch.enable_grad():
        out = z
        for layer in tail:
            out = layer(out)
        total = loss(out, y) * len(y)  # the project's losses are batch means: this is the sum of per-sample losses
        (grad,) = torch.autograd.grad(total, z, create_graph=True)
        if not grad.requires_grad:  # a loss linear in z
            return torch.zeros_like(z)
        # Samples do not interact, so one Hessian-vector product with the unit vector e_d in every
        # sample gives every sample's d-th diagonal entry; all of them at once with a batched backward.
        n = z[0].numel()
        basis = torch.eye(n, dtype=z.dtype, device=z.device).view(n, 1, *z.shape[1:]).expand(n, *z.shape)
        (columns,) = torch.autograd.grad(grad, z, grad_outputs=basis, is_grads_batched=True)
    return columns.flatten(2).diagonal(dim1=0, dim2=2).reshape(z.shape).clamp_(min=0)


def _weighted(layer: nn.Module, x: Tensor, d2a: Tensor, need_input: bool) -> tuple[dict[str, Tensor], Tensor | None]:
    """d2E/dw2 of `layer`'s trainable parameters (summed over samples) and d2E/dx2 of its input (per sample)."""
    params = dict(layer.named_parameters(recurse=False))
    trainable = [name for name, p in params.items() if p.requires_grad]
    with torch.enable_grad():
        # Weight gradient with the input squared: sum over the connections of d2E/da_i2 x_j^2.
        probe = {name: p.detach().requires_grad_() for name, p in params.items()}
        out = functional_call(layer, probe, (x.detach().square(),))
        grads = torch.autograd.grad(out, [probe[n] for n in trainable], grad_outputs=d2a) if trainable else ()
        d2x = None
        if need_input:  # input gradient with the weights squared: sum_i w_ij^2 d2E/da_i2 (biases do not matter)
            squared = {name: p.detach().square() for name, p in params.items() if name != "bias"}
            x = x.detach().requires_grad_()
            (d2x,) = torch.autograd.grad(functional_call(layer, squared, (x,)), x, grad_outputs=d2a)
    return dict(zip(trainable, grads, strict=True)), d2x


def _backward(layer: nn.Module, x: Tensor, d2out: Tensor) -> Tensor:
    """d2E/dx2 of a parameter-free layer's input from d2E/d(output)2, per sample."""
    with torch.enable_grad():
        x = x.detach().requires_grad_()
        out = layer(x)
        if isinstance(layer, ELEMENTWISE):
            (slope,) = torch.autograd.grad(out, x, grad_outputs=torch.ones_like(out))
            return d2out * slope.square()
        (d2x,) = torch.autograd.grad(out, x, grad_outputs=d2out)
    if isinstance(layer, AVERAGING):
        if layer.padding not in (0, (0, 0)) or layer.divisor_override:
            raise ValueError(
                f"the diagonal Gauss-Newton estimate supports average pooling without padding, not {layer}"
            )
        k = layer.kernel_size
        d2x = d2x / (k * k if isinstance(k, int) else k[0] * k[1])
    return d2x


@torch.no_grad()
def gauss_newton_diagonal(net: nn.Module, loss: Loss, x: Tensor, y: Tensor) -> dict[nn.Parameter, Tensor]:
    """The paper's h_kk for every trainable parameter of `net`: the diagonal Gauss-Newton estimate averaged over (x, y).

    `net` must be a chain of layers (as `LeNet5` is) of the kinds this module supports
    (`SUPPORTED`), possibly ending in parameter-free layers that count as part of the loss;
    `loss(outputs, targets)` must be a mean over the batch. Parameters the loss does not reach get 0.
    """
    calls = _leaf_calls(net, x)
    with_rule = [i for i, (layer, _, _) in enumerate(calls) if isinstance(layer, SUPPORTED)]
    if not with_rule:
        raise ValueError(f"the diagonal Gauss-Newton estimate has no rule for any layer of {type(net).__name__}")
    last = with_rule[-1]
    for layer, _, _ in calls[:last]:
        if not isinstance(layer, SUPPORTED):
            raise ValueError(
                f"the diagonal Gauss-Newton estimate has no rule for the layer {layer!r}; it supports "
                f"{', '.join(sorted({t.__name__ for t in SUPPORTED}))} (and parameter-free layers at the end, "
                "which count as part of the loss)."
            )
    tail = [layer for layer, _, _ in calls[last + 1 :]]
    if any(p.requires_grad for layer in tail for p in layer.parameters()):
        raise ValueError(f"the diagonal Gauss-Newton estimate has no rule for the trainable output layer {tail[0]!r}")

    d2 = _output_curvature(tail, loss, calls[last][2], y)
    estimate = {p: torch.zeros_like(p) for p in net.parameters() if p.requires_grad}
    for index in range(last, -1, -1):
        layer, inp, _ = calls[index]
        if isinstance(layer, WEIGHTED):
            per_param, d2 = _weighted(layer, inp, d2, need_input=index > 0)
            for name, value in per_param.items():
                estimate[getattr(layer, name)] += value
        elif index > 0:
            d2 = _backward(layer, inp, d2)
    return {p: h / len(y) for p, h in estimate.items()}


@torch.no_grad()
def fan_in_times_share(net: nn.Module, x: Tensor) -> dict[nn.Parameter, Tensor]:
    """Per trainable parameter of a chain's weighted layers: the sum of the fan-ins of the units its connections reach.

    SN2.8, the simulator of LeCun's group before the 1998 code, sets each weight's learning rate to
    x / sqrt(fan-in x share) by default: fan-in counts the unit's inputs and its bias, share the
    connections that use the weight (one per output position of a convolution). This is that
    product, summed over the connections, so units with different fan-ins (C3 of Table I) are
    counted exactly; it comes from the layers' own backward pass, as `gauss_newton_diagonal` does:
    the weight gradient of the layer on an input of ones with each unit's fan-in in place of dE/da.
    """
    counts: dict[nn.Parameter, Tensor] = {}
    for layer, inp, _ in _leaf_calls(net, x[:1]):
        if not isinstance(layer, WEIGHTED):
            if any(p.requires_grad for p in layer.parameters(recurse=False)):
                raise ValueError(
                    f"the fan-in x share count has no rule for the trainable layer {layer!r}; it counts the "
                    f"connections of {', '.join(sorted(t.__name__ for t in WEIGHTED))} only (optimizer.divide_by=none "
                    "needs no counts)."
                )
            continue
        ones = torch.ones_like(inp)
        unit = {name: torch.ones_like(p) for name, p in layer.named_parameters(recurse=False)}
        fan_in = functional_call(layer, unit, (ones,))  # inputs + bias of each unit (TableConv2d's table applies)
        per_param, _ = _weighted(layer, ones, fan_in, need_input=False)
        for name, value in per_param.items():
            counts[getattr(layer, name)] = value
    return counts


def hessian_row_magnitude(
    net: nn.Module, loss: Loss, x: Tensor, y: Tensor, probes: int = 4
) -> dict[nn.Parameter, Tensor]:
    """The mean over random +-1 vectors z of |(Hz)_k|, H the Hessian of loss(net(x), y): any model, any loss.

    Not the paper's estimate: at least |H_kk| on average and at most the row sum sum_j |H_kj|, so it
    also counts how strongly w_k interacts with the other weights (weights shared over many
    positions, units that saturate). This project's SDLM used it before the paper's recursion was
    written; it is kept as `callbacks.sdlm_curvature.estimate=hessian_row_magnitude` because, unlike
    the paper's estimate, it trains the literal 1998 set-up at a step size near the paper's
    (docs/reproducing-1998.md).
    """
    params = [p for p in net.parameters() if p.requires_grad]
    with torch.enable_grad():
        grads = torch.autograd.grad(loss(net(x), y), params, create_graph=True, allow_unused=True)
        used = [(p, g) for p, g in zip(params, grads, strict=True) if g is not None and g.requires_grad]
        estimate = {p: torch.zeros_like(p) for p in params}
        for probe in range(probes):
            zs = [torch.randint_like(p, 2).mul_(2).sub_(1) for p, _ in used]
            hzs = torch.autograd.grad(
                [g for _, g in used], [p for p, _ in used], grad_outputs=zs, retain_graph=probe < probes - 1
            )
            for (p, _), hz in zip(used, hzs, strict=True):
                estimate[p].add_(hz.detach().abs(), alpha=1.0 / probes)
    return estimate
