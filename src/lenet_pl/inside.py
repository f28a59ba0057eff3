"""Look inside a trained LeNet-5: what every layer makes of one digit, drawn as one figure.

python -m lenet_pl.inside ckpt_path=outputs/2026-01-31/12-00-00             # test digit 0
python -m lenet_pl.inside ckpt_path=run/checkpoints/last.ckpt index=1234    # another test digit
python -m lenet_pl.inside ckpt_path=outputs/2026-01-31/12-00-00 image=my_seven.png

The figure shows the input as the network sees it (padded and normalised), C1's kernels, every
feature map of the convolution and pooling stages (C1, S2, C3, S4) with one colour scale per
layer, C5 and F6 as bars, and the output scores with the prediction. For a model with the 1998
RBF output it adds F6 drawn as a 7x12 bitmap beside the ten prototype bitmaps it is compared
with, each with its distance. The values are the network's own: forward hooks record each
stage's output during one ordinary forward pass. The `InsideView` callback draws the same figure
for a validation digit during training, into TensorBoard.
"""

import sys
from functools import partial
from pathlib import Path

import matplotlib
import torch
from matplotlib.axes import Axes
from matplotlib.colors import Normalize
from matplotlib.figure import Figure, SubFigure
from omegaconf import DictConfig
from PIL import Image
from torch import Tensor, nn

from lenet_pl.errors import UserError
from lenet_pl.layers import RBFOutput
from lenet_pl.predict import to_mnist
from lenet_pl.trained import command_line, load_run

matplotlib.use("Agg")  # files only: no window, whatever the machine has

DIVERGING = "RdBu_r"  # red positive, blue negative, white zero: the sign of a value reads at a glance
WIDTH = 12.0  # inches; at dpi 100 the PNG is 1200 pixels wide
ROW_HEIGHTS = {"top": 2.3, "maps": 2.0, "bars": 1.45, "rbf": 1.75, "output": 1.8}  # inches per row of panels


def capture(net: nn.Module, x: Tensor) -> dict[str, Tensor]:
    """The output of each stage of `net` (its direct children: C1, S2, ..., output) for the batch `x`.

    Recorded by forward hooks while `net(x)` runs, so they are exactly what the model computes, whatever
    its parts. A compiled net runs eagerly for this pass, so that the hooks fire without a recompile.
    """
    outputs: dict[str, Tensor] = {}

    def record(name: str, module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        outputs[name] = output.detach().float().cpu()

    hooks = [stage.register_forward_hook(partial(record, name)) for name, stage in net.named_children()]
    try:
        with torch.no_grad(), torch.compiler.set_stance("force_eager"):
            net(x)
    finally:
        for hook in hooks:
            hook.remove()
    return outputs


def describe(stage: nn.Module) -> str:
    """A stage's parts in order, e.g. 'Conv2d 5x5 -> ReLU' or 'Subsampling -> ScaledTanh'."""
    parts = []
    for module in stage.modules():
        if any(module.children()) or isinstance(module, nn.Flatten):
            continue
        name, kernel = type(module).__name__, getattr(module, "kernel_size", None)
        if kernel is not None:
            k = kernel if isinstance(kernel, tuple) else (kernel, kernel)
            name += f" {k[0]}x{k[1]}"
        parts.append(name)
    return " \u2192 ".join(parts)


def first_kernels(net: nn.Module) -> Tensor:
    """The weights of the net's first convolution (C1), as (kernels, height, width): one per input channel."""
    conv = next(m for m in net.modules() if isinstance(m, nn.Conv2d))
    return conv.weight.detach().float().cpu().flatten(0, 1)


def inside_figure(net: nn.Module, x: Tensor, title: str, label: int | None = None) -> Figure:
    """One figure of what `net` does with the single input `x` (1, C, H, W), normalised as in training.

    Every panel's axes carry a label naming what it shows ('C1 map 0', 'C1 kernel 0', 'F6',
    'prototype 3', ...), so a program (and the tests) can find them. The net is used as it is
    (put it in eval mode first); `label`, if known, is marked on the output scores.
    """
    activations = capture(net, x)
    stages = dict(net.named_children())
    names = list(activations)
    maps = [n for n in names[:-1] if activations[n].dim() == 4]  # C1, S2, C3, S4
    vectors = [n for n in names[:-1] if activations[n].dim() == 2]  # C5, F6
    head_name = names[-1]
    head = stages[head_name]
    rbf = isinstance(head, RBFOutput)

    pairs = [maps[i : i + 2] for i in range(0, len(maps), 2)]  # a convolution beside the pooling after it
    rows = ["top"] + ["maps"] * len(pairs) + ["bars"] * len(vectors) + (["rbf"] if rbf else []) + ["output"]
    heights = [ROW_HEIGHTS[r] for r in rows]
    figure = Figure(figsize=(WIDTH, sum(heights) + 0.5), layout="constrained")
    figure.suptitle(title, fontsize=14, fontweight="bold")
    panels = iter(figure.subfigures(len(rows), 1, height_ratios=heights))

    draw_top(next(panels), x[0].detach().float().cpu(), first_kernels(net))
    for pair in pairs:
        halves = next(panels).subfigures(1, len(pair), wspace=0.04)
        for half, name in zip(halves if len(pair) > 1 else [halves], pair, strict=True):
            draw_maps(half, name, activations[name][0], describe(stages[name]))
    for name in vectors:
        draw_bars(next(panels), name, activations[name][0], describe(stages[name]))
    scores = activations[head_name][0]
    if rbf:
        draw_prototypes(next(panels), activations[vectors[-1]][0], head.centres.detach().float().cpu(), -scores)
    draw_output(next(panels), head_name, scores, describe(head), rbf, label)
    return figure


def _symmetric(values: Tensor) -> Normalize:
    """A colour scale centred on zero (white) that reaches the largest magnitude in `values`."""
    peak = max(values.abs().max().item(), 1e-8)
    return Normalize(-peak, peak)


def _image_panel(ax: Axes, image: Tensor, cmap: str, norm: Normalize, label: str, title: str = "") -> None:
    ax.imshow(image.numpy(), cmap=cmap, norm=norm, interpolation="nearest")
    ax.set_label(label)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8, pad=2)


def draw_top(panel: SubFigure, x: Tensor, kernels: Tensor) -> None:
    """The input as the network sees it, C1's kernels, and how to read the colours."""
    input_part, kernel_part, key_part = panel.subfigures(1, 3, width_ratios=[1.1, 2.2, 1.5])
    ax = input_part.subplots()
    _image_panel(ax, x[0], "gray", Normalize(x.min().item(), x.max().item()), "input")
    input_part.suptitle(f"input: {'x'.join(map(str, x.shape[1:]))}, padded and normalised", fontsize=10)
    input_part.colorbar(ax.images[0], ax=ax, shrink=0.8, label="pixel value")

    columns = (len(kernels) + 1) // 2
    axes = kernel_part.subplots(2, columns, squeeze=False).flatten()
    norm = _symmetric(kernels)
    for i, kernel in enumerate(kernels):
        _image_panel(axes[i], kernel, DIVERGING, norm, f"C1 kernel {i}", f"kernel {i}")
    for ax in axes[len(kernels) :]:
        ax.set_visible(False)
    kernel_part.suptitle(
        f"C1's {len(kernels)} kernels ({kernels.shape[1]}x{kernels.shape[2]} weights), slid over the input", fontsize=10
    )
    kernel_part.colorbar(axes[0].images[0], ax=list(axes), shrink=0.8, label="weight")

    key_part.text(
        0.02,
        0.5,
        "How to read it\n"
        "Each stage's output for this digit,\n"
        "from the input (top) to the scores.\n"
        "Red: positive, blue: negative,\n"
        "white: zero. Every layer has its own\n"
        "colour scale (its colour bar).",
        fontsize=9,
        va="center",
        linespacing=1.5,
    )


def draw_maps(panel: SubFigure, name: str, maps: Tensor, parts: str) -> None:
    """One small image per feature map of a stage, all on one colour scale."""
    count = len(maps)
    rows = 1 if count <= 8 else 2
    columns = -(-count // rows)
    axes = panel.subplots(rows, columns, squeeze=False).flatten()
    norm = _symmetric(maps)
    for i, feature_map in enumerate(maps):
        _image_panel(axes[i], feature_map, DIVERGING, norm, f"{name} map {i}", str(i))
    for ax in axes[count:]:
        ax.set_visible(False)
    size = "x".join(map(str, maps.shape[1:]))
    panel.suptitle(f"{name}: {count} feature maps of {size}   ({parts})", fontsize=10)
    panel.colorbar(axes[0].images[0], ax=list(axes), shrink=0.9, aspect=12, label="activation")


def draw_bars(panel: SubFigure, name: str, values: Tensor, parts: str) -> None:
    """A vector stage (C5, F6) as one bar per unit, red above zero and blue below."""
    ax = panel.subplots()
    ax.set_label(name)
    colours = ["#c0392b" if v >= 0 else "#2e6db4" for v in values.tolist()]
    ax.bar(range(len(values)), values.numpy(), width=0.8, color=colours)
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_xlim(-1, len(values))
    ax.set_xlabel("unit", fontsize=8, labelpad=1)
    ax.set_ylabel("activation", fontsize=8)
    ax.tick_params(labelsize=7)
    panel.suptitle(f"{name}: {len(values)} units   ({parts})", fontsize=10)


def draw_prototypes(panel: SubFigure, f6: Tensor, centres: Tensor, distances: Tensor) -> None:
    """The 1998 RBF output: F6 as a 7x12 bitmap beside the ten fixed prototypes and its distance to each."""
    shape = (12, 7)  # the paper's Fig. 3 bitmaps: 7 wide, 12 high
    axes = panel.subplots(1, len(centres) + 1, squeeze=False)[0]
    norm = _symmetric(torch.cat([f6, centres.flatten()]))
    _image_panel(axes[0], f6.view(shape), DIVERGING, norm, "F6 bitmap", "F6 as 7x12")
    axes[0].title.set_fontweight("bold")
    best = distances.argmin().item()
    for digit, centre in enumerate(centres):
        ax = axes[digit + 1]
        _image_panel(ax, centre.view(shape), DIVERGING, norm, f"prototype {digit}", f"{digit}: {distances[digit]:.1f}")
        if digit == best:
            ax.title.set_fontweight("bold")
            for spine in ax.spines.values():
                spine.set_edgecolor("#1e8449")
                spine.set_linewidth(2.5)
    panel.suptitle(
        "RBF output: F6 (left) compared with the ten fixed prototype bitmaps; above each, the squared distance "
        "\u03a3(F6 - prototype)\u00b2 (green: the smallest)",
        fontsize=10,
    )
    panel.colorbar(axes[0].images[0], ax=list(axes), shrink=0.9, aspect=12, label="value")


def draw_output(panel: SubFigure, name: str, scores: Tensor, parts: str, rbf: bool, label: int | None) -> None:
    """The output scores (or, for the RBF output, the penalties: smallest wins) with the prediction."""
    ax = panel.subplots()
    ax.set_label(name)
    predicted = scores.argmax().item()
    values = -scores if rbf else scores
    colours = ["#1e8449" if c == predicted else "#95a5a6" for c in range(len(values))]
    bars = ax.bar(range(len(values)), values.numpy(), color=colours)
    ax.bar_label(bars, fmt="%.1f" if rbf else "%.2f", fontsize=7, padding=1)
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_xticks(range(len(values)))
    ax.set_xlabel("class", fontsize=8, labelpad=1)
    ax.set_ylabel("penalty (distance)" if rbf else "score", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.margins(y=0.18)
    if label is not None:
        ax.get_xticklabels()[label].set_fontweight("bold")
    if rbf:
        verdict = f"predicted {predicted}: the smallest penalty, {values[predicted]:.1f}"
    else:
        verdict = f"predicted {predicted}: the largest score (softmax probability {scores.softmax(0)[predicted]:.1%})"
    truth = "" if label is None else f", true label {label} ({'right' if label == predicted else 'wrong'})"
    panel.suptitle(f"{name}: {len(values)} {'penalties' if rbf else 'scores'}   ({parts}); {verdict}{truth}", fontsize=10)


def render(cfg: DictConfig) -> int:
    """The `python -m lenet_pl.inside` job: draw one test digit or image file, write the PNG, say where."""
    index, image = cfg.index, cfg.image
    if image is not None and index is not None:
        raise UserError(f"index={index!r} and image={image!r} were both given: give one of them.")
    if image is None and (isinstance(index, bool) or not isinstance(index, int | None) or (index or 0) < 0):
        raise UserError(
            f"index={index!r} is not allowed: give a test digit's position, a whole number from 0 "
            "(the first test digit) up to the test set's size minus one."
        )
    run = load_run(cfg.ckpt_path, data_root=cfg.data_root)
    if image is not None:
        x, label, what, stem = read_image(Path(str(image)), run.datamodule()), None, f"image {image}", Path(image).stem
    else:
        index = index or 0
        datamodule = run.test_datamodule()
        images, labels = datamodule.splits["test"]
        if index >= len(labels):
            raise UserError(
                f"index={index} is not allowed: the test set has {len(labels):,} digits, so give a whole number "
                f"from 0 to {len(labels) - 1}."
            )
        x, label = datamodule.preprocess(images[index : index + 1].cpu()), int(labels[index])
        what, stem = f"test digit #{index}", f"test{index}"
    model = run.config.model._target_.rsplit(".", 1)[-1]
    title = f"Inside {model}: {what}   ({run.ckpt_path.name}, step {run.global_step})"
    figure = inside_figure(run.net, x, title, label)
    output = Path(cfg.output or run.run_dir / "inside" / f"{run.ckpt_path.stem}-{stem}.png")
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=cfg.dpi)
    print(f"wrote {output}")
    return 0


def read_image(path: Path, datamodule) -> Tensor:
    """An image file of one digit -> the model's input, preprocessed as `lenet_pl.predict` does it."""
    if not path.is_file():
        raise UserError(f"image={str(path)!r} does not exist. Give an image file of one digit (.png, .jpg, ...).")
    try:
        with Image.open(path) as opened:
            digit = to_mnist(opened)
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise UserError(
            f"image={str(path)!r} cannot be read as an image of a digit ({err}). Give an image file "
            "(.png, .jpg, .bmp, .gif, .tif, .webp) showing one digit."
        ) from err
    return datamodule.preprocess(digit[None])


def main(argv: list[str] | None = None) -> int:
    return command_line("inside", render, argv)


if __name__ == "__main__":
    sys.exit(main())
