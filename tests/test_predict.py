"""`python -m lenet_pl.predict`: image files of any size, colour and polarity, MNIST's preprocessing."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from torchvision.datasets import MNIST

from lenet_pl.predict import main
from lenet_pl.runtime.images import to_mnist
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
