"""Predict the digit in image files with a trained run.

python -m lenet_pl.predict ckpt_path=outputs/2026-01-31/12-00-00 inputs=my_digits/
python -m lenet_pl.predict ckpt_path=run/checkpoints/last.ckpt inputs=[a.png,b.jpg] top_k=3 format=jsonl

Each image gets the preprocessing MNIST's digits had (`to_mnist`), then the run's own padding
and normalisation, so a photo of a dark digit on paper is seen like a test digit. The
probability is the softmax of the model's outputs. A file that cannot be read is reported
(`error: <file>: <why>` on stderr) and the rest are still predicted; the exit status is then 1.
"""

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, ListConfig
from PIL import Image, ImageOps
from torch import Tensor

from lenet_pl.data import IMAGE_SIZE, MNISTDataModule
from lenet_pl.errors import UserError
from lenet_pl.trained import command_line, load_run

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
FORMATS = ("table", "jsonl")
DIGIT_BOX = 20  # MNIST fitted each digit in 20x20, then centred it by mass in 28x28
INK = 0.1  # a pixel belongs to the digit's bounding box above this (background 0, brightest ink 1)


def to_mnist(image: Image.Image) -> Tensor:
    """One image of one digit -> a uint8 28x28 MNIST-style digit (white on black).

    1. grayscale (colour by luminance; transparent areas count as white paper);
    2. inverted when the border is light (dark digit on light paper), since MNIST digits are light;
    3. contrast stretched: the border's median becomes 0, the brightest ink 255;
    4. the digit's bounding box scaled (anti-aliased) to fit 20x20, keeping its aspect ratio;
    5. placed in 28x28 so that its centre of mass sits at pixel (14, 14), where MNIST's sit.
    Raises ValueError for an image with no digit (uniform).
    """
    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        image = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image.convert("RGBA"))
    gray = torch.from_numpy(np.asarray(image.convert("L"), dtype=np.float32) / 255)
    border = torch.cat([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if border.median() > 0.5:
        gray, border = 1 - gray, 1 - border
    ink = (gray - border.median()).clamp(min=0)
    if ink.max() < INK:
        raise ValueError("no digit found: the image is (nearly) uniform")
    ink /= ink.max()

    rows, cols = (ink > INK).any(dim=1).nonzero(), (ink > INK).any(dim=0).nonzero()
    crop = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    scale = DIGIT_BOX / max(crop.shape)
    size = [max(1, round(side * scale)) for side in crop.shape]
    digit = F.interpolate(crop[None, None], size=size, mode="bilinear", antialias=True, align_corners=False)[0, 0]

    height, width = digit.shape
    mass = digit.sum()
    centre_y = (digit.sum(dim=1) * torch.arange(height)).sum() / mass
    centre_x = (digit.sum(dim=0) * torch.arange(width)).sum() / mass
    top = min(max(round(IMAGE_SIZE / 2 - centre_y.item()), 0), IMAGE_SIZE - height)
    left = min(max(round(IMAGE_SIZE / 2 - centre_x.item()), 0), IMAGE_SIZE - width)
    canvas = torch.zeros(IMAGE_SIZE, IMAGE_SIZE)
    canvas[top : top + height, left : left + width] = digit
    return canvas.mul(255).round().clamp(0, 255).to(torch.uint8)


def describe_preprocessing(datamodule: MNISTDataModule) -> dict[str, Any]:
    """What a model of this run expects as input, for people and for exported files' metadata."""
    shape = tuple(datamodule.preprocess(torch.zeros(1, IMAGE_SIZE, IMAGE_SIZE, dtype=torch.uint8)).shape[1:])
    return {
        "input": f"float32 tensor (N, {', '.join(map(str, shape))}): N images of one digit each",
        "preprocessing": (
            "MNIST's own, as lenet_pl.predict.to_mnist does it: grayscale; invert if the background is light "
            "(digits are white on black); stretch the contrast to background 0, brightest ink 255; scale the "
            "digit's bounding box to fit 20x20 keeping its aspect ratio; place it in 28x28 with its centre of "
            f"mass at pixel (14, 14). Then x = pixel / 255, zero-pad {datamodule.pad} pixels on each side "
            f"(to {shape[-1]}x{shape[-1]}), and normalise: (x - {datamodule.mean}) / {datamodule.std}."
        ),
        "mean": datamodule.mean,
        "std": datamodule.std,
        "pad": datamodule.pad,
        "output": "float32 tensor (N, classes): the predicted class is the largest; softmax gives probabilities",
    }


def image_files(inputs: str | list[str]) -> tuple[list[Path], list[tuple[str, str]]]:
    """The image files `inputs` names (folders expanded, sorted), and (input, reason) for those not found."""
    files, missing = [], []
    for entry in [inputs] if isinstance(inputs, str) else inputs:
        path = Path(str(entry))
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            files += found
            if not found:
                missing.append((str(path), f"the folder holds no images ({', '.join(IMAGE_SUFFIXES)})"))
        elif path.is_file():
            files.append(path)
        else:
            missing.append((str(path), "no such file or folder"))
    return files, missing


def predict(cfg: DictConfig) -> int:
    if cfg.format not in FORMATS:
        raise UserError(f"format={cfg.format!r} is not known; choose one of {', '.join(FORMATS)}.")
    inputs = list(cfg.inputs) if isinstance(cfg.inputs, ListConfig) else str(cfg.inputs)
    run = load_run(cfg.ckpt_path)
    datamodule = run.datamodule()
    num_classes = run.config.model.num_classes
    if isinstance(cfg.top_k, bool) or not isinstance(cfg.top_k, int) or not 1 <= cfg.top_k <= num_classes:
        raise UserError(f"top_k={cfg.top_k!r} is not allowed: give a whole number from 1 to {num_classes}.")

    files, failures = image_files(inputs)
    readable, digits = [], []
    for path in files:
        try:
            with Image.open(path) as image:
                digits.append(to_mnist(image))
            readable.append(path)
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            failures.append((str(path), f"cannot read it as an image of a digit ({err})"))

    results = []
    if digits:
        with torch.inference_mode():
            probs = run.net(datamodule.preprocess(torch.stack(digits))).softmax(dim=1)
        top = probs.topk(cfg.top_k, dim=1)
        for path, p, d in zip(readable, top.values.tolist(), top.indices.tolist(), strict=True):
            results.append({"file": str(path), "digit": d[0], "probability": p[0], "top": list(zip(d, p, strict=True))})
    print_results(results, failures, cfg.format, cfg.top_k)
    return 1 if failures else 0


def print_results(results: list[dict[str, Any]], failures: list[tuple[str, str]], fmt: str, top_k: int) -> None:
    if fmt == "jsonl":
        for r in results:
            line = {"file": r["file"], "digit": r["digit"], "probability": round(r["probability"], 6)}
            if top_k > 1:
                line["top"] = [{"digit": d, "probability": round(p, 6)} for d, p in r["top"]]
            print(json.dumps(line))
        for file, reason in failures:
            print(json.dumps({"file": file, "error": reason}))
    elif results:
        width = max(len("file"), *(len(r["file"]) for r in results))
        print(f"{'file':<{width}}  digit  probability" + (f"  top {top_k}" if top_k > 1 else ""))
        for r in results:
            row = f"{r['file']:<{width}}  {r['digit']:>5}  {r['probability']:>11.4f}"
            if top_k > 1:
                row += "  " + "  ".join(f"{d}: {p:.3f}" for d, p in r["top"])
            print(row)
    for file, reason in failures:
        print(f"error: {file}: {reason}", file=sys.stderr)
    if failures:
        print(f"{len(failures)} of {len(results) + len(failures)} inputs failed.", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    return command_line("predict", predict, argv)


if __name__ == "__main__":
    sys.exit(main())
