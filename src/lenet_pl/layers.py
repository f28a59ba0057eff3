"""The parts LeNet-5 is assembled from, beyond what torch.nn already has.

Pooling layers are built as `pooling(channels)` so that a part with per-map parameters
(the 1998 subsampling layer) fits the same slot as parameter-free pooling.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn


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
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.num_classes = num_classes

    def forward(self, outputs: Tensor, target: Tensor) -> Tensor:
        code = F.one_hot(target, self.num_classes).to(outputs.dtype)
        return (outputs - code).pow(2).sum(dim=1).mean()
