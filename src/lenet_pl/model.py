"""LeNet-5 as a plain `nn.Module` built from swappable parts, and its layer table.

python -m lenet_pl.summary activation=relu pooling=max   # the table alone
"""

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from lenet_pl.layers import AvgPool
from lenet_pl.runtime.errors import ConfigError


class LeNet5(nn.Sequential):
    """C1-S2-C3-S4-C5-F6-output, the layout of LeCun et al. (1998), Fig. 2.

    Args:
        activation: called with no arguments for each squashing unit (C1, C3, C5, F6).
        pooling: called with the number of feature maps, for S2 and S4.
        head: called with (84, num_classes) for the output layer.
        c3: called with (6, 16, 5) for C3's convolution: `nn.Conv2d` (every S2 map feeds every
            C3 map) or `TableConv2d` (the paper's Table I, 60 of the 96 map pairs).
        init: applied to every submodule after construction (`init_lecun1998`, `init_glorot_uniform`),
            or None for PyTorch's default initialisation.
        norm: called with the number of feature maps after each convolution (C1, C3, C5), placed
            between the convolution and its activation (`nn.BatchNorm2d`), or None (the paper's).
        num_classes: number of outputs.
        input_size: side of the square input: 32 as in the paper (MNIST padded by 2 pixels),
            or 28 as in the Keras blog (valid convolutions on raw digits).
        in_channels: channels of the input image.

    C5's kernel covers the whole of S4 (5x5 at input 32, 4x4 at 28), so C5 is the paper's
    "convolution that amounts to a full connection" at either size. The model takes
    normalised float images of shape (N, in_channels, input_size, input_size).
    """

    def __init__(
        self,
        activation: Callable[[], nn.Module] = nn.Tanh,
        pooling: Callable[[int], nn.Module] = AvgPool,
        head: Callable[[int, int], nn.Module] = nn.Linear,
        num_classes: int = 10,
        input_size: int = 32,
        in_channels: int = 1,
        c3: Callable[[int, int, int], nn.Module] = nn.Conv2d,
        init: Callable[[nn.Module], None] | None = None,
        norm: Callable[[int], nn.Module] | None = None,
    ) -> None:
        s4_size = ((input_size - 4) // 2 - 4) // 2
        if s4_size < 1:
            raise ConfigError(
                f"model.input_size={input_size} is too small for LeNet-5: two 5x5 convolutions and two "
                "2x2 poolings need an input of at least 16 pixels (use 32 as in the paper, or 28)."
            )

        def normed(maps: int) -> list[nn.Module]:
            return [] if norm is None else [norm(maps)]

        super().__init__(
            OrderedDict(
                C1=nn.Sequential(nn.Conv2d(in_channels, 6, 5), *normed(6), activation()),
                S2=pooling(6),
                C3=nn.Sequential(c3(6, 16, 5), *normed(16), activation()),
                S4=pooling(16),
                C5=nn.Sequential(nn.Conv2d(16, 120, s4_size), *normed(120), activation(), nn.Flatten()),
                F6=nn.Sequential(nn.Linear(120, 84), activation()),
                output=head(84, num_classes),
            )
        )
        self.input_shape = (in_channels, input_size, input_size)
        if init is not None:
            self.apply(init)


def init_lecun1998(module: nn.Module, divide_by: str = "fan_in", scale: float = 2.4) -> None:
    """The paper's initialisation: weights uniform in +-2.4/F_i, F_i the fan-in of the unit; biases zero.

    Layers whose fan-in is not the size of one weight row (`Subsampling`, `TableConv2d`) say it
    in a `fan_in` attribute (a number, or a column of per-kernel values).

    `divide_by="sqrt_fan_in"` takes +-2.4/sqrt(F_i) instead. The paper's text says F_i, but the
    reason it gives, "the initial standard deviation of the weighted sums in the same range for
    each unit", holds for sqrt(F_i) only: with F_i the weighted sums shrink layer by layer (F6's
    are ~1/300 of C1's on MNIST), and the paper's SDLM settings diverge from it (lenet_pl/optim.py).

    `scale` is the numerator: the paper's 2.4, or 1.0 as in the MNIST demo of eblearn, the C++
    port of LeCun's group's Lush tools (`forget_param_linear(1, 0.5)`: +-1/sqrt(F_i)).
    """
    if divide_by not in ("fan_in", "sqrt_fan_in"):
        raise ConfigError(f"model.init.divide_by={divide_by!r} is not known; choose 'fan_in' or 'sqrt_fan_in'.")
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not scale > 0:
        raise ConfigError(f"model.init.scale={scale!r} is not allowed: it must be a positive number (paper: 2.4).")
    weight = getattr(module, "weight", None)
    if not isinstance(weight, nn.Parameter):
        return
    fan_in = getattr(module, "fan_in", None)
    if fan_in is None:
        fan_in = weight[0].numel()  # Linear: in_features; Conv2d: in_channels x k x k
    if divide_by == "sqrt_fan_in":
        fan_in = fan_in.sqrt() if isinstance(fan_in, torch.Tensor) else fan_in**0.5
    with torch.no_grad():
        weight.uniform_(-1.0, 1.0).mul_(scale / fan_in)
        if isinstance(getattr(module, "bias", None), nn.Parameter):
            module.bias.zero_()


def init_glorot_uniform(module: nn.Module) -> None:
    """Keras' defaults for Dense and Conv2D: Glorot-uniform weights, zero biases."""
    if isinstance(module, nn.Conv2d | nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


@dataclass(frozen=True)
class LayerRow:
    name: str
    output_shape: tuple[int, ...]
    params: int
    connections: int


def _conv_connections(m: nn.Conv2d, out: torch.Size) -> int:
    fan_in = m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1] + (m.bias is not None)
    return out[1:].numel() * fan_in


def _pool_connections(m: nn.AvgPool2d | nn.MaxPool2d, out: torch.Size) -> int:
    k = m.kernel_size
    return out[1:].numel() * (k * k if isinstance(k, int) else k[0] * k[1])


# A connection is one input (or the bias) feeding one output unit: the paper's count.
# Leaf layers of our own report theirs through a `connections(output_shape)` method.
_CONNECTIONS: dict[type, Callable[[nn.Module, torch.Size], int]] = {
    nn.Conv2d: _conv_connections,
    nn.Linear: lambda m, out: m.out_features * (m.in_features + (m.bias is not None)),
    nn.AvgPool2d: _pool_connections,
    nn.MaxPool2d: _pool_connections,
}


def _leaf_connections(module: nn.Module, out: torch.Size) -> int:
    if hasattr(module, "connections"):
        return module.connections(out)
    for kind, count in _CONNECTIONS.items():
        if isinstance(module, kind):
            return count(module, out)
    return 0  # activations, flatten: no weighted connections


def layer_table(model: LeNet5) -> list[LayerRow]:
    """One row per stage (C1 ... output): output shape, trainable parameters and connections."""
    out_shapes: dict[nn.Module, torch.Size] = {}
    hooks = [m.register_forward_hook(lambda m, _, out: out_shapes.__setitem__(m, out.shape)) for m in model.modules()]
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()  # one sample: batch norm could not take batch statistics (nor should it, here)
            model(torch.zeros(1, *model.input_shape, device=next(model.parameters()).device))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    rows = []
    for name, stage in model.named_children():
        leaves = [m for m in stage.modules() if not any(m.children())]
        rows.append(
            LayerRow(
                name=name,
                output_shape=tuple(out_shapes[stage][1:]),
                params=sum(p.numel() for p in stage.parameters() if p.requires_grad),
                connections=sum(_leaf_connections(m, out_shapes[m]) for m in leaves),
            )
        )
    return rows


def format_layer_table(rows: list[LayerRow]) -> str:
    """The layer table as aligned text, with a total line."""
    lines = [f"{'layer':<8}{'output':>14}{'params':>12}{'connections':>14}"]
    for r in rows:
        shape = "x".join(map(str, r.output_shape))
        lines.append(f"{r.name:<8}{shape:>14}{r.params:>12,}{r.connections:>14,}")
    total_params = sum(r.params for r in rows)
    total_conn = sum(r.connections for r in rows)
    lines.append(f"{'total':<8}{'':>14}{total_params:>12,}{total_conn:>14,}")
    return "\n".join(lines)
