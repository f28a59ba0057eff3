"""The parts LeNet-5 is assembled from, beyond what torch.nn already has.

Pooling layers are built as `pooling(channels)` so that a part with per-map parameters
(the 1998 subsampling layer) fits the same slot as parameter-free pooling.
"""

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lenet_pl.runtime.errors import ConfigError


class ScaledTanh(nn.Module):
    """The 1998 squashing function f(a) = A tanh(S a), A = 1.7159, S = 2/3 (LeCun et al., Appendix A).

    With these constants f(1) = 1 and f(-1) = -1, and the gain is close to 1 around the origin.
    """

    def __init__(self, amplitude: float = 1.7159, slope: float = 2.0 / 3.0) -> None:
        super().__init__()
        self.amplitude = amplitude
        self.slope = slope

    def forward(self, x: Tensor) -> Tensor:
        return self.amplitude * torch.tanh(self.slope * x)

    def extra_repr(self) -> str:
        return f"amplitude={self.amplitude}, slope={self.slope:.4f}"


class AvgPool(nn.AvgPool2d):
    """2x2 average pooling with stride 2: the usual parameter-free reading of S2 and S4."""

    def __init__(self, channels: int) -> None:
        super().__init__(kernel_size=2, stride=2)


class MaxPool(nn.MaxPool2d):
    """2x2 max pooling with stride 2."""

    def __init__(self, channels: int) -> None:
        super().__init__(kernel_size=2, stride=2)


class OneHotMSELoss(nn.Module):
    """Squared error between the outputs and the one-hot code of the target, summed over classes.

    The pre-softmax way to train a classifier (and the 1998 paper's Eq. 8 family): it regresses
    the output vector onto the target's code, so the predicted class is still the largest output.
    `label_smoothing` s softens the code as `torch.nn.CrossEntropyLoss` softens its target, to
    1 - s + s/K on the label and s/K elsewhere, so that the two losses can be compared under it.
    """

    def __init__(self, num_classes: int = 10, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"label_smoothing={label_smoothing} must be in [0, 1]")
        self.num_classes, self.label_smoothing = num_classes, label_smoothing

    def forward(self, outputs: Tensor, target: Tensor) -> Tensor:
        code = F.one_hot(target, self.num_classes).to(outputs.dtype)
        if self.label_smoothing:
            code = code * (1 - self.label_smoothing) + self.label_smoothing / self.num_classes
        return (outputs - code).pow(2).sum(dim=1).mean()


# --- The 1998 parts (LeCun, Bottou, Bengio, Haffner 1998, Section II.B) ---------------------------


class Subsampling(nn.Module):
    """S2/S4 of the paper: the sum of each 2x2 block, times a trainable coefficient, plus a trainable bias, per map.

    Two parameters per map; each output unit has 4 inputs and a bias (5 connections). The
    squashing function that follows is added by `squashed_subsampling`.
    """

    fan_in = 4  # inputs per unit, for the paper's weight initialisation

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), 0.25))  # 0.25 makes it an average at the start
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        sums = F.avg_pool2d(x, 2) * 4
        return sums * self.weight[:, None, None] + self.bias[:, None, None]

    def connections(self, output_shape: torch.Size) -> int:
        return output_shape[1:].numel() * (self.fan_in + 1)


def squashed_subsampling(channels: int, activation: Callable[[], nn.Module] | None = None) -> nn.Module:
    """`Subsampling` followed by the squashing function, as in the paper (the pooling slot of `LeNet5`)."""
    if activation is None:
        return Subsampling(channels)
    return nn.Sequential(Subsampling(channels), activation())


# Table I: which S2 maps (rows) each C3 map (columns) combines. Maps 0-5 take 3 neighbouring
# maps, 6-11 take 4 neighbouring maps, 12-14 take 4 non-neighbouring ones and 15 takes all 6.
C3_TABLE = (
    "X   XXX  XXXX XX",
    "XX   XXX  XXXX X",
    "XXX   XXX  X XXX",
    " XXX  XXXX  X XX",
    "  XXX  XXXX XX X",
    "   XXX  XXXX XXX",
)


def c3_connection_table() -> Tensor:
    """Table I as a bool tensor (6 S2 maps x 16 C3 maps) with 60 True entries."""
    return torch.tensor([[c == "X" for c in row] for row in C3_TABLE])


class TableConv2d(nn.Module):
    """A convolution in which output map j sees only the input maps that `table[:, j]` marks (C3 of the paper).

    Only the kernels of connected map pairs are parameters (60 kernels of 5x5 for Table I, plus 16
    biases: 1,516), so parameter counts are exact; the dense weight is assembled for each forward
    pass by scattering them into a zero (out, in, k, k) tensor.
    """

    def __init__(
        self, in_channels: int = 6, out_channels: int = 16, kernel_size: int = 5, table: Tensor | None = None
    ) -> None:
        super().__init__()
        table = c3_connection_table() if table is None else table.bool()
        if table.shape != (in_channels, out_channels):
            raise ValueError(
                f"connection table has shape {tuple(table.shape)}, expected ({in_channels}, {out_channels})"
            )
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        out_index, in_index = table.t().nonzero(as_tuple=True)  # pairs ordered by output map
        self.register_buffer("pair_index", out_index * in_channels + in_index, persistent=False)
        self.weight = nn.Parameter(torch.empty(len(out_index), kernel_size * kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        # Each kernel's unit has (number of its input maps) x k x k inputs.
        maps_per_output = table.sum(dim=0)
        self.register_buffer("fan_in", (maps_per_output[out_index] * kernel_size**2).float()[:, None], persistent=False)
        nn.init.uniform_(self.weight, -1.0, 1.0)
        self.weight.data.mul_(2.4 / self.fan_in)

    def dense_weight(self) -> Tensor:
        """The (out, in, k, k) convolution weight, zero where the table has no connection."""
        k = self.kernel_size
        dense = self.weight.new_zeros(self.out_channels * self.in_channels, k * k)
        dense = dense.index_copy(0, self.pair_index, self.weight)
        return dense.view(self.out_channels, self.in_channels, k, k)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.dense_weight(), self.bias)

    def connections(self, output_shape: torch.Size) -> int:
        return output_shape[-2:].numel() * (self.weight.numel() + self.bias.numel())

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, pairs={len(self.weight)}"


# The RBF centres: stylised 7x12 bitmaps of the digits (the paper's Fig. 3), '#' = +1, '.' = -1.
DIGIT_BITMAPS = (
    ("..###..", ".##.##.", "##...##", "##...##", "##...##", "##...##",
     "##...##", "##...##", "##...##", ".##.##.", "..###..", "......."),
    ("...##..", "..###..", ".####..", "...##..", "...##..", "...##..",
     "...##..", "...##..", "...##..", "...##..", ".######", "......."),
    (".#####.", "##...##", ".....##", ".....##", "....##.", "...##..",
     "..##...", ".##....", "##.....", "##.....", "#######", "......."),
    (".#####.", "##...##", ".....##", ".....##", "...###.", ".....##",
     ".....##", ".....##", ".....##", "##...##", ".#####.", "......."),
    ("....##.", "...###.", "..####.", ".##.##.", "##..##.", "#######",
     "....##.", "....##.", "....##.", "....##.", "....##.", "......."),
    ("#######", "##.....", "##.....", "##.....", "######.", ".....##",
     ".....##", ".....##", ".....##", "##...##", ".#####.", "......."),
    ("..####.", ".##....", "##.....", "##.....", "######.", "##...##",
     "##...##", "##...##", "##...##", "##...##", ".#####.", "......."),
    ("#######", ".....##", ".....##", "....##.", "....##.", "...##..",
     "...##..", "..##...", "..##...", "..##...", "..##...", "......."),
    (".#####.", "##...##", "##...##", "##...##", ".#####.", "##...##",
     "##...##", "##...##", "##...##", "##...##", ".#####.", "......."),
    (".#####.", "##...##", "##...##", "##...##", "##...##", ".######",
     ".....##", ".....##", ".....##", "....##.", ".####..", "......."),
)  # fmt: skip


def digit_bitmaps() -> Tensor:
    """The 10 RBF parameter vectors: each digit's 7x12 bitmap flattened to 84 values of +1 or -1."""
    return torch.tensor([[1.0 if c == "#" else -1.0 for row in rows for c in row] for rows in DIGIT_BITMAPS])


class RBFOutput(nn.Module):
    """The paper's output layer: one Euclidean RBF unit per class, y_i = sum_j (x_j - w_ij)^2.

    The centres w_i are the fixed digit bitmaps (a buffer: not trained). It returns the
    *negative* penalties -y_i, so that, as for any classifier here, the largest output is the
    predicted class (the smallest penalty); the RBF losses below take these outputs.
    """

    def __init__(self, in_features: int = 84, num_classes: int = 10) -> None:
        super().__init__()
        centres = digit_bitmaps()
        if centres.shape != (num_classes, in_features):
            raise ValueError(
                f"the RBF output has {tuple(centres.shape)} bitmap centres: it needs in_features=84 and "
                f"num_classes=10, got {in_features} and {num_classes}"
            )
        self.register_buffer("centres", centres)

    def forward(self, x: Tensor) -> Tensor:
        return -(x[:, None, :] - self.centres).pow(2).sum(dim=-1)

    def connections(self, output_shape: torch.Size) -> int:
        return self.centres.numel()


class RBFPenaltyLoss(nn.Module):
    """Eq. 8: E = mean over samples of y_D, the RBF penalty of the correct class (outputs are -y)."""

    def forward(self, outputs: Tensor, target: Tensor) -> Tensor:
        return -outputs.gather(1, target[:, None]).mean()


class RBFMAPLoss(nn.Module):
    """Eq. 9, the MAP criterion: E = mean of y_D + log(e^-j + sum_i e^-y_i) (outputs are -y).

    The second term also pushes up the penalties of the wrong classes, and e^-j stands for a
    "rubbish" class, so that penalties that are all large already count as a rejection and are
    not pushed further. It prevents the collapse of Eq. 8 when the centres are trained.

    `scale` multiplies the whole criterion: 0.5 is the convention of LeCun's group's own code (Lush,
    eblearn: energies 0.5 ||x - t||^2), which halves the gradient and the curvature h_kk alike, so
    an SDLM step eta / (mu + h) on it equals eta / (2 mu + h) on the paper's printed energy.
    """

    def __init__(self, j: float = 0.1, scale: float = 1.0) -> None:
        super().__init__()
        if isinstance(scale, bool) or not isinstance(scale, int | float) or not scale > 0:
            raise ConfigError(f"loss.scale={scale!r} is not allowed: it must be a positive number (paper: 1).")
        if isinstance(j, bool) or not isinstance(j, int | float) or not math.isfinite(j):
            raise ConfigError(f"loss.j={j!r} is not allowed: it must be a finite number (paper: 0.1).")
        self.j, self.scale = j, scale

    def forward(self, outputs: Tensor, target: Tensor) -> Tensor:
        rubbish = outputs.new_full((len(outputs), 1), -self.j)
        competition = torch.logsumexp(torch.cat([rubbish, outputs], dim=1), dim=1)
        return self.scale * (-outputs.gather(1, target[:, None]).squeeze(1) + competition).mean()
