"""`python -m lenet_pl.predict`: image files of any size, colour and polarity, the data set's own preprocessing."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from torchvision.datasets import MNIST, FashionMNIST

from lenet_pl.data import MNISTDataModule
from lenet_pl.predict import main
from lenet_pl.runtime.images import describe_preprocessing, to_fashion_mnist, to_mnist
from lenet_pl.runtime.trained import load_run

DIGITS = 60  # real MNIST test digits, each rendered in every variant below


def variants(digit: np.ndarray) -> dict[str, Image.Image]:
    """One 28x28 MNIST digit (white on black) as files a user might have."""
    ink = (digit.astype(np.float32) / 255)[..., None]

    def paint(ink_rgb: tuple[int, int, int], paper_rgb: tuple[int, int, int]) -> Image.Image:
        paper, colour = np.array(paper_rgb, np.float32), np.array(ink_rgb, np.float32)
        return Image.fromarray((paper + (colour - paper) * ink).round().astype(np.uint8))

    return {
        "plain.png": Image.fromarray(digit),
        "inverted.png": Image.fromarray(255 - digit),  # black on white
        "colour.png": paint((250, 220, 40), (20, 40, 160)),  # yellow on blue
        "big.png": Image.fromarray(255 - digit).resize((100, 100), Image.Resampling.BICUBIC),
        "big_colour.jpg": paint((30, 30, 120), (245, 238, 220)).resize((100, 100), Image.Resampling.BICUBIC),
    }


def test_predictions_on_rendered_files_match_the_tensor_path(mnist_run: Path, real_mnist_root: Path, tmp_path, capsys):
    test_set = MNIST(str(real_mnist_root), train=False)
    digits = test_set.data[:DIGITS]
    run = load_run(mnist_run)
    with torch.inference_mode():
        expected = run.net(run.datamodule().preprocess(digits)).argmax(dim=1).tolist()
    for i, digit in enumerate(digits.numpy()):
        for name, image in variants(digit).items():
            image.save(tmp_path / f"{i:03d}_{name}")

    assert main([f"ckpt_path={mnist_run}", f"inputs={tmp_path}", "format=jsonl", "top_k=3"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == DIGITS * 5
    agree: dict[str, list[bool]] = {}
    for line in lines:
        name = Path(line["file"]).name
        index, variant = int(name[:3]), name[4:]
        agree.setdefault(variant, []).append(line["digit"] == expected[index])
        top = line["top"]
        assert top[0]["digit"] == line["digit"] and len({t["digit"] for t in top}) == 3
        probabilities = [t["probability"] for t in top]
        assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1 + 1e-5
    rates = {variant: sum(hits) / len(hits) for variant, hits in agree.items()}
    assert set(rates) == {"plain.png", "inverted.png", "colour.png", "big.png", "big_colour.jpg"}
    assert all(rate >= 0.95 for rate in rates.values()), rates


def test_unreadable_files_are_reported_one_by_one_and_the_rest_predicted(mnist_run: Path, tmp_path: Path, capsys):
    folder = tmp_path / "inbox"
    folder.mkdir()
    Image.fromarray(np.pad(np.full((20, 6), 255, np.uint8), 4)).save(folder / "good.png")
    Image.new("L", (28, 28), 255).save(folder / "blank.png")
    good_bytes = (folder / "good.png").read_bytes()
    (folder / "truncated.png").write_bytes(good_bytes[: len(good_bytes) // 2])
    (folder / "random.png").write_bytes(np.random.default_rng(0).bytes(500))
    (folder / "notes.jpg").write_text("not an image")
    (folder / "readme.txt").write_text("not an image suffix: skipped in folders")

    assert main([f"ckpt_path={mnist_run}", f"inputs=[{folder},{tmp_path}/missing.png]"]) == 1
    result = capsys.readouterr()
    rows = result.out.splitlines()
    assert rows[0].split() == ["file", "digit", "probability"]
    assert len(rows) == 2 and rows[1].startswith(str(folder / "good.png"))
    errors = [line for line in result.err.splitlines() if line.startswith("error: ")]
    failed = {line.split(": ")[1] for line in errors}
    assert failed == {str(folder / n) for n in ("blank.png", "truncated.png", "random.png", "notes.jpg")} | {
        str(tmp_path / "missing.png")
    }
    assert any("no digit found" in line for line in errors)
    assert any("no such file or folder" in line for line in errors)
    assert "5 of 6 inputs failed" in result.err and "Traceback" not in result.err


def draw_seven(size: tuple[int, int], ink: str | tuple, paper: str | tuple, mode: str = "L") -> Image.Image:
    image = Image.new(mode, size, paper)
    w, h = size
    ImageDraw.Draw(image).line([(0.3 * w, 0.2 * h), (0.7 * w, 0.2 * h), (0.45 * w, 0.85 * h)], fill=ink, width=8)
    return image


def test_to_mnist_fits_the_digit_in_20x20_and_centres_its_mass():
    digit = to_mnist(draw_seven((200, 120), 0, 255)).float()
    assert digit.shape == (28, 28) and digit.max() == 255
    rows, cols = (digit > 25).any(dim=1).nonzero(), (digit > 25).any(dim=0).nonzero()
    assert max(rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) == 20
    centre_y = (digit.sum(dim=1) * torch.arange(28)).sum() / digit.sum()
    centre_x = (digit.sum(dim=0) * torch.arange(28)).sum() / digit.sum()
    assert abs(centre_y - 14) <= 0.5 and abs(centre_x - 14) <= 0.5


def test_to_mnist_is_the_same_for_either_polarity_colour_and_transparency():
    reference = to_mnist(draw_seven((90, 140), 255, 0))  # white on black, as MNIST
    assert torch.equal(to_mnist(draw_seven((90, 140), 0, 255)), reference)
    assert torch.equal(to_mnist(draw_seven((90, 140), (0, 0, 0), (255, 255, 255), "RGB")), reference)
    assert torch.equal(to_mnist(draw_seven((90, 140), (0, 0, 0, 255), (0, 0, 0, 0), "RGBA")), reference)
    with pytest.raises(ValueError, match="no digit found"):
        to_mnist(Image.new("RGB", (50, 50), (200, 10, 10)))


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["format=xml"], "format='xml' is not known; choose one of table, jsonl"),
        (["top_k=11"], "top_k=11 is not allowed: give a whole number from 1 to 10"),
    ],
)
def test_bad_options_are_one_clear_error(mnist_run: Path, tmp_path: Path, capsys, args, expected):
    assert main([f"ckpt_path={mnist_run}", f"inputs={tmp_path}", *args]) == 2
    assert capsys.readouterr().err == f"error: {expected}.\n"


def product(height: int = 28, width: int = 16, brightness: int = 180) -> np.ndarray:
    """A 28x28 Fashion-MNIST-like image: a light trapezoid (a dress) on black, `height` x `width` pixels."""
    image = np.zeros((28, 28), np.uint8)
    top, left = (28 - height) // 2, (28 - width) // 2
    for row in range(height):
        inset = round((height - 1 - row) * width / (4 * height))  # narrower at the top
        image[top + row, left + inset : left + width - inset] = brightness
    return image


def test_to_fashion_mnist_fills_28_pixels_on_the_longer_side_centres_and_keeps_the_brightness():
    original = product()
    photo = Image.fromarray(255 - original).resize((140, 140), Image.Resampling.BICUBIC)  # dark on white, 5x
    image = to_fashion_mnist(photo).float()
    rows, cols = (image > 12).any(dim=1).nonzero(), (image > 12).any(dim=0).nonzero()
    assert (rows.min(), rows.max()) == (0, 27)  # the longer side spans the canvas
    assert abs((cols.min() + cols.max()) / 2 - 13.5) <= 0.5 and 15 <= cols.max() - cols.min() + 1 <= 17
    assert 170 <= image.max() <= 190  # not stretched to 255: a dim product stays dim
    assert (image - torch.from_numpy(original).float()).abs().mean() < 12  # back where it came from
    # wider than tall: the width fills 28, the height is centred
    wide = to_fashion_mnist(Image.fromarray(255 - product().T.copy()).resize((300, 300))).float()
    rows = (wide > 12).any(dim=1).nonzero()
    assert abs((rows.min() + rows.max()) / 2 - 13.5) <= 0.5 and (wide > 12).any(dim=0).all()
    assert torch.equal(to_fashion_mnist(Image.fromarray(original)), to_fashion_mnist(Image.fromarray(original)))
    with pytest.raises(ValueError, match="no product found"):
        to_fashion_mnist(Image.new("L", (50, 50), 250))


def test_a_fashion_mnist_run_predicts_named_classes_from_its_own_preprocessing(fashion_run: Path, tmp_path, capsys):
    photos = {"dress.png": product(), "bag.png": product(20, 26, 120)}
    for name, image in photos.items():
        Image.fromarray(255 - image).resize((112, 112), Image.Resampling.BICUBIC).save(tmp_path / name)
    run = load_run(fashion_run)
    with torch.inference_mode():
        prepared = [to_fashion_mnist(Image.open(tmp_path / name)) for name in sorted(photos)]
        expected = run.net(run.datamodule().preprocess(torch.stack(prepared))).argmax(dim=1).tolist()

    assert main([f"ckpt_path={fashion_run}", f"inputs={tmp_path}", "format=jsonl", "top_k=2"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [Path(line["file"]).name for line in lines] == sorted(photos)
    assert [line["class"] for line in lines] == expected and "digit" not in lines[0]
    assert all(line["name"] == FashionMNIST.classes[line["class"]] for line in lines)
    assert lines[0]["top"][0]["class"] == expected[0] and lines[0]["top"][0]["name"] == lines[0]["name"]
    assert len(lines[0]["top"]) == 2

    assert main([f"ckpt_path={fashion_run}", f"inputs={tmp_path / 'dress.png'}"]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split() == ["file", "class", "probability"]
    assert f"{expected[1]} {FashionMNIST.classes[expected[1]]}" in row

    blank = tmp_path / "blank.png"
    Image.new("L", (40, 40), 255).save(blank)
    assert main([f"ckpt_path={fashion_run}", f"inputs={blank}"]) == 1
    assert "cannot read it as an image of a product" in capsys.readouterr().err


def test_an_exported_models_metadata_names_its_data_sets_preprocessing():
    fashion = describe_preprocessing(MNISTDataModule(root="unused", dataset="fashion_mnist", mean=0.286, std=0.353))
    digits = describe_preprocessing(MNISTDataModule(root="unused"))
    assert "to_fashion_mnist" in fashion["preprocessing"] and "one product each" in fashion["input"]
    assert fashion["preprocessing"].endswith("normalise: (x - 0.286) / 0.353.")
    assert "to_mnist" in digits["preprocessing"] and "centre of mass" in digits["preprocessing"]
