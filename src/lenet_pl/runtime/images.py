"""An image file as the data set's own images are (MNIST's digits, Fashion-MNIST's products): the
preprocessing that predict and inside apply to image files, and that an exported model's metadata
spells out for its users."""

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from torch import Tensor

from lenet_pl.data import IMAGE_SIZE, MNISTDataModule

DIGIT_BOX = 20  # MNIST fitted each digit in 20x20, then centred it by mass in 28x28
INK = 0.1  # a pixel belongs to the digit's bounding box above this (background 0, brightest ink 1)
# Fashion-MNIST trimmed the edges within 5% of the maximum intensity of the corners' colour
TRIM = 0.05


def _ink(image: Image.Image, what: str, least: float) -> Tensor:
    """Grayscale (colour by luminance; transparent areas count as white paper), inverted when the border
    is light (MNIST's and Fashion-MNIST's images are light on black), minus the border's median: the
    background 0, the ink above it. Raises ValueError unless some pixel is more than `least` above it."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        image = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image.convert("RGBA"))
    gray = torch.from_numpy(np.asarray(image.convert("L"), dtype=np.float32) / 255)
    border = torch.cat([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if border.median() > 0.5:
        gray, border = 1 - gray, 1 - border
    ink = (gray - border.median()).clamp(min=0)
    if not ink.max() > least:
        raise ValueError(f"no {what} found: the image is (nearly) uniform")
    return ink


def _scaled_box(ink: Tensor, box: int, threshold: float) -> Tensor:
    """The bounding box of the pixels above `threshold`, scaled (anti-aliased) so that its longer side is
    `box` pixels, keeping its aspect ratio."""
    inked = ink > threshold
    rows, cols = inked.any(dim=1).nonzero(), inked.any(dim=0).nonzero()
    crop = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    scale = box / max(crop.shape)
    size = [max(1, round(side * scale)) for side in crop.shape]
    return F.interpolate(crop[None, None], size=size, mode="bilinear", antialias=True, align_corners=False)[0, 0]


def to_mnist(image: Image.Image) -> Tensor:
    """One image of one digit -> a uint8 28x28 MNIST-style digit (white on black).

    1. grayscale (colour by luminance; transparent areas count as white paper);
    2. inverted when the border is light (dark digit on light paper), since MNIST digits are light;
    3. contrast stretched: the border's median becomes 0, the brightest ink 255;
    4. the digit's bounding box scaled (anti-aliased) to fit 20x20, keeping its aspect ratio;
    5. placed in 28x28 so that its centre of mass sits at pixel (14, 14), where MNIST's sit.
    Raises ValueError for an image with no digit (uniform).
    """
    ink = _ink(image, "digit", least=INK)
    digit = _scaled_box(ink / ink.max(), DIGIT_BOX, threshold=INK)

    height, width = digit.shape
    mass = digit.sum()
    centre_y = (digit.sum(dim=1) * torch.arange(height)).sum() / mass
    centre_x = (digit.sum(dim=0) * torch.arange(width)).sum() / mass
    top = min(max(round(IMAGE_SIZE / 2 - centre_y.item()), 0), IMAGE_SIZE - height)
    left = min(max(round(IMAGE_SIZE / 2 - centre_x.item()), 0), IMAGE_SIZE - width)
    canvas = torch.zeros(IMAGE_SIZE, IMAGE_SIZE)
    canvas[top : top + height, left : left + width] = digit
    return canvas.mul(255).round().clamp(0, 255).to(torch.uint8)


def to_fashion_mnist(image: Image.Image) -> Tensor:
    """One product photo -> a uint8 28x28 Fashion-MNIST-style image (light on black).

    Fashion-MNIST's own conversion (Xiao, Rasul and Vollgraf 2017, section 2), less its sharpening:
    1. grayscale, and negated when the border is light (products photographed on white become light on
       black); the border's median becomes 0, the product keeps its own brightness (a white shirt
       stays faint, as in the data set: no contrast stretch);
    2. the edges within 5% of the background's intensity trimmed: the product's bounding box;
    3. its longer side resized (anti-aliased) to 28 pixels, keeping the aspect ratio;
    4. the shorter side extended to 28, the product in the centre.
    Raises ValueError for an image with nothing on it (uniform).
    """
    product = _scaled_box(_ink(image, "product", least=TRIM), IMAGE_SIZE, threshold=TRIM)
    height, width = product.shape
    top, left = (IMAGE_SIZE - height) // 2, (IMAGE_SIZE - width) // 2
    canvas = torch.zeros(IMAGE_SIZE, IMAGE_SIZE)
    canvas[top : top + height, left : left + width] = product
    return canvas.mul(255).round().clamp(0, 255).to(torch.uint8)


# Each data set's conversion of an image file, and what it is an image of (for messages).
IMAGE_PREPARATION: dict[str, tuple[Callable[[Image.Image], Tensor], str]] = {
    "mnist": (to_mnist, "digit"),
    "fashion_mnist": (to_fashion_mnist, "product"),  # a piece of clothing, a bag or a shoe
}


def describe_preprocessing(datamodule: MNISTDataModule) -> dict[str, Any]:
    """What a model of this run expects as input, for people and for exported files' metadata."""
    shape = tuple(datamodule.preprocess(torch.zeros(1, IMAGE_SIZE, IMAGE_SIZE, dtype=torch.uint8)).shape[1:])
    if datamodule.dataset_name == "fashion_mnist":
        what, steps = (
            "one product each",
            (
                "Fashion-MNIST's own, as lenet_pl.runtime.images.to_fashion_mnist does it: grayscale; invert if the "
                "background is light (products are light on black); subtract the background; scale the product's "
                "bounding box so that its longer side is 28 pixels, keeping its aspect ratio; centre it in 28x28."
            ),
        )
    else:
        what, steps = (
            "one digit each",
            (
                "MNIST's own, as lenet_pl.runtime.images.to_mnist does it: grayscale; invert if the background is "
                "light (digits are white on black); stretch the contrast to background 0, brightest ink 255; scale "
                "the digit's bounding box to fit 20x20 keeping its aspect ratio; place it in 28x28 with its centre "
                "of mass at pixel (14, 14)."
            ),
        )
    return {
        "input": f"float32 tensor (N, {', '.join(map(str, shape))}): N images of {what}",
        "preprocessing": (
            f"{steps} Then x = pixel / 255, zero-pad {datamodule.pad} pixels on each side "
            f"(to {shape[-1]}x{shape[-1]}), and normalise: (x - {datamodule.mean}) / {datamodule.std}."
        ),
        "mean": datamodule.mean,
        "std": datamodule.std,
        "pad": datamodule.pad,
        "output": "float32 tensor (N, classes): the predicted class is the largest; softmax gives probabilities",
    }
