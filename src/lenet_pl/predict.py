"""Predict the digit (or, for a Fashion-MNIST run, the kind of product) in image files with a trained run.

python -m lenet_pl.predict ckpt_path=outputs/2026-01-31/12-00-00 inputs=my_digits/
python -m lenet_pl.predict ckpt_path=run/checkpoints/last.ckpt inputs=[a.png,b.jpg] top_k=3 format=jsonl

Each image gets the preprocessing the run's data set had (MNIST's digits: `to_mnist`; Fashion-MNIST's
products: `to_fashion_mnist`), then the run's own padding and normalisation, so a photo of a dark
digit on paper is seen like a test digit. The probability is the softmax of the model's outputs.
An MNIST run prints each file's digit; a Fashion-MNIST run its class and the class's name (6 Shirt).
A file that cannot be read is reported (`error: <file>: <why>` on stderr) and the rest are still
predicted; the exit status is then 1.
"""

import json
import sys
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, ListConfig
from PIL import Image

from lenet_pl.data import class_label, class_names
from lenet_pl.runtime.cli import config_command
from lenet_pl.runtime.errors import UserError
from lenet_pl.runtime.images import IMAGE_PREPARATION
from lenet_pl.runtime.trained import load_run

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
FORMATS = ("table", "jsonl")


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

    dataset = run.config.data.dataset
    prepare, what = IMAGE_PREPARATION[dataset]
    files, failures = image_files(inputs)
    readable, images = [], []
    for path in files:
        try:
            with Image.open(path) as image:
                images.append(prepare(image))
            readable.append(path)
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            failures.append((str(path), f"cannot read it as an image of a {what} ({err})"))

    results = []
    if images:
        with torch.inference_mode():
            probs = run.net(datamodule.preprocess(torch.stack(images))).softmax(dim=1)
        top = probs.topk(cfg.top_k, dim=1)
        for path, p, c in zip(readable, top.values.tolist(), top.indices.tolist(), strict=True):
            results.append({"file": str(path), "class": c[0], "probability": p[0], "top": list(zip(c, p, strict=True))})
    names = None if dataset == "mnist" else class_names(dataset, num_classes)
    print_results(results, failures, cfg.format, cfg.top_k, names)
    return 1 if failures else 0


def print_results(
    results: list[dict[str, Any]],
    failures: list[tuple[str, str]],
    fmt: str,
    top_k: int,
    names: list[str] | None = None,
) -> None:
    """A table or JSON lines. An MNIST run's (`names` None) call each class its digit; others give the
    class and its name."""

    def entry(c: int, p: float) -> dict[str, Any]:
        named = {"digit": c} if names is None else {"class": c, "name": names[c]}
        return named | {"probability": round(p, 6)}

    if fmt == "jsonl":
        for r in results:
            line = {"file": r["file"]} | entry(r["class"], r["probability"])
            if top_k > 1:
                line["top"] = [entry(c, p) for c, p in r["top"]]
            print(json.dumps(line))
        for file, reason in failures:
            print(json.dumps({"file": file, "error": reason}))
    elif results:
        width = max(len("file"), *(len(r["file"]) for r in results))
        column = "digit" if names is None else "class"
        labels = [class_label(r["class"], names or []) for r in results]
        wide = max(len(column), *(len(text) for text in labels))
        print(f"{'file':<{width}}  {column:>{wide}}  probability" + (f"  top {top_k}" if top_k > 1 else ""))
        for r, text in zip(results, labels, strict=True):
            row = f"{r['file']:<{width}}  {text:>{wide}}  {r['probability']:>11.4f}"
            if top_k > 1:
                row += "  " + "  ".join(f"{c if names is None else names[c]}: {p:.3f}" for c, p in r["top"])
            print(row)
    for file, reason in failures:
        print(f"error: {file}: {reason}", file=sys.stderr)
    if failures:
        print(f"{len(failures)} of {len(results) + len(failures)} inputs failed.", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    return config_command("predict", __doc__, predict, argv)


if __name__ == "__main__":
    sys.exit(main())
