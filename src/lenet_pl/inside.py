"""Look inside a trained LeNet-5: what every layer makes of one digit, drawn as one figure.

python -m lenet_pl.inside ckpt_path=outputs/2026-01-31/12-00-00             # test digit 0
python -m lenet_pl.inside ckpt_path=run/checkpoints/last.ckpt index=1234    # another test digit
python -m lenet_pl.inside ckpt_path=outputs/2026-01-31/12-00-00 image=my_seven.png

The figure (lenet_pl.inside_view) shows the input as the network sees it (padded and normalised),
C1's kernels, every feature map of the convolution and pooling stages (C1, S2, C3, S4) with one
colour scale per layer, C5 and F6 as bars, and the output scores with the prediction; for a model
with the 1998 RBF output, F6 as a 7x12 bitmap beside the ten prototypes it is compared with.
"""

import sys
from pathlib import Path

from omegaconf import DictConfig
from PIL import Image
from torch import Tensor

from lenet_pl.data import MNISTDataModule
from lenet_pl.inside_view import inside_figure
from lenet_pl.runtime.cli import config_command
from lenet_pl.runtime.errors import UserError
from lenet_pl.runtime.images import IMAGE_PREPARATION
from lenet_pl.runtime.trained import load_run


def render(cfg: DictConfig) -> int:
    """The `python -m lenet_pl.inside` job: draw one test digit or image file, write the PNG, say where."""
    index, image = cfg.index, cfg.image
    if image is not None and index is not None:
        raise UserError(f"index={index!r} and image={image!r} were both given: give one of them.")
    if isinstance(index, bool) or not isinstance(index, int | None):
        raise UserError(
            f"index={index!r} is not allowed: give a test digit's position, a whole number from 0 "
            "(the first test digit) up to the test set's size minus one."
        )
    if isinstance(cfg.dpi, bool) or not isinstance(cfg.dpi, int | float) or not cfg.dpi > 0:
        raise UserError(f"dpi={cfg.dpi!r} is not allowed: give the PNG's pixels per inch, a positive number (100).")
    run = load_run(cfg.ckpt_path, data_root=cfg.data.root)
    if image is not None:
        x, label, what, stem = read_image(Path(str(image)), run.datamodule()), None, f"image {image}", Path(image).stem
    else:
        index = index or 0
        datamodule = run.test_datamodule()
        images, labels = datamodule.splits["test"]
        if not 0 <= index < len(labels):
            raise UserError(
                f"index={index} is not allowed: the test set has {len(labels):,} digits, so give a whole number "
                f"from 0 to {len(labels) - 1}."
            )
        x, label = datamodule.preprocess(images[index : index + 1].cpu()), int(labels[index])
        name = datamodule.classes[label] if label < len(datamodule.classes) else str(label)
        named = f"label {label}" if name == str(label) else f"label {label}, {name}"  # Fashion-MNIST: "label 6, Shirt"
        what, stem = f"test {'digit' if name == str(label) else 'image'} #{index} ({named})", f"test{index}"
    model = run.config.model._target_.rsplit(".", 1)[-1]
    title = f"Inside {model}: {what}   ({run.ckpt_path.name}, step {run.global_step})"
    figure = inside_figure(run.net, x, title, label)
    output = Path(cfg.output or run.run_dir / "inside" / f"{run.ckpt_path.stem}-{stem}.png")
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=cfg.dpi)
    print(f"wrote {output}")
    return 0


def read_image(path: Path, datamodule: MNISTDataModule) -> Tensor:
    """An image file of one digit (or product) -> the model's input, preprocessed as `lenet_pl.predict` does it."""
    prepare, what = IMAGE_PREPARATION[datamodule.dataset_name]
    if not path.is_file():
        raise UserError(f"image={str(path)!r} does not exist. Give an image file of one {what} (.png, .jpg, ...).")
    try:
        with Image.open(path) as opened:
            image = prepare(opened)
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise UserError(
            f"image={str(path)!r} cannot be read as an image of a {what} ({err}). Give an image file "
            f"(.png, .jpg, .bmp, .gif, .tif, .webp) showing one {what}."
        ) from err
    return datamodule.preprocess(image[None])


def main(argv: list[str] | None = None) -> int:
    return config_command("inside", __doc__, render, argv)


if __name__ == "__main__":
    sys.exit(main())
