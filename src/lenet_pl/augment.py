"""The paper's training distortions: random planar affine maps of whole batches (LeCun et al. 1998, Section III.C).

"Combinations of the following random planar affine transformations: horizontal and vertical
translations, scaling, squeezing (simultaneous horizontal compression and vertical elongation,
or the reverse), and horizontal shearing", plus a small rotation. The paper gives no ranges;
ours are modest enough that every digit stays readable. One affine grid per image, sampled
for the whole batch at once with `grid_sample` (no per-sample Python), on the batch's device.

`data.augment=distortions` applies it to training batches only.
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor


class RandomAffineDistortion:
    """Distort a batch (N, C, H, W) of uint8 or float images with one random affine map per image.

    Args:
        translate: largest shift, as a fraction of the image side, in each direction.
        scale: largest relative change of size (0.1: between 0.9x and 1.1x).
        squeeze: largest relative horizontal compression with the matching vertical elongation.
        shear: largest horizontal shear (x moves by shear * y).
        rotate: largest rotation in degrees.

    Pixels brought in from outside the image are 0, the background of unnormalised images, and
    the output has the input's dtype (uint8 is rounded back).
    """

    def __init__(
        self,
        translate: float = 2 / 32,
        scale: float = 0.1,
        squeeze: float = 0.1,
        shear: float = 0.15,
        rotate: float = 8.0,
    ) -> None:
        self.translate, self.scale, self.squeeze, self.shear, self.rotate = translate, scale, squeeze, shear, rotate

    def matrices(self, n: int, device: torch.device | str = "cpu", generator: torch.Generator | None = None) -> Tensor:
        """n random 2x3 affine matrices in `affine_grid`'s normalised coordinates (output -> input)."""

        def uniform(bound: float) -> Tensor:
            return (torch.rand(n, device=device, generator=generator) * 2 - 1) * bound

        size = 1 + uniform(self.scale)
        squeeze = 1 + uniform(self.squeeze)
        angle = uniform(math.radians(self.rotate))
        shear = uniform(self.shear)
        cos, sin = torch.cos(angle), torch.sin(angle)
        sx, sy = size * squeeze, size / squeeze
        # forward map: rotation @ shear @ diag(sx, sy); grid_sample needs its inverse (output -> input).
        forward = torch.stack(
            [
                torch.stack([cos * sx, cos * shear * sy - sin * sy], dim=1),
                torch.stack([sin * sx, sin * shear * sy + cos * sy], dim=1),
            ],
            dim=1,
        )
        inverse = torch.linalg.inv(forward)
        # translations are a fraction of the side; normalised coordinates span 2 per side.
        shift = torch.stack([uniform(self.translate), uniform(self.translate)], dim=1) * 2
        offset = -(inverse @ shift[:, :, None])
        return torch.cat([inverse, offset], dim=2)

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if images.dim() != 4:
            raise ValueError(f"expected a batch of images (N, C, H, W), got shape {tuple(images.shape)}")
        x = images.float()
        theta = self.matrices(len(x), device=x.device, generator=generator)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        if images.dtype == torch.uint8:
            return out.round_().clamp_(0, 255).to(torch.uint8)
        return out.to(images.dtype)

    def __repr__(self) -> str:
        return (
            f"RandomAffineDistortion(translate={self.translate}, scale={self.scale}, squeeze={self.squeeze}, "
            f"shear={self.shear}, rotate={self.rotate})"
        )


# The names `data.augment` accepts.
AUGMENTATIONS = {"none": None, "distortions": RandomAffineDistortion}
