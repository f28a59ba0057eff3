"""What every layer of a LeNet-5 makes of one digit, drawn as one figure: `python -m lenet_pl.inside`
writes it as a PNG, and the `InsideView` callback logs it to TensorBoard during training.

The figure shows the input as the network sees it (padded and normalised), C1's kernels, every
feature map of the convolution and pooling stages (C1, S2, C3, S4) with one colour scale per
layer, C5 and F6 as bars, and the output scores with the prediction. For a model with the 1998
RBF output it adds F6 drawn as a 7x12 bitmap beside the ten prototype bitmaps it is compared
with, each with its distance. The values are the network's own: forward hooks record each
stage's output during one ordinary forward pass.
"""

from functools import partial

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.collections import PatchCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.patches import Rectangle
from torch import Tensor, nn

from lenet_pl.layers import RBFOutput

DIVERGING = "RdBu_r"  # red positive, blue negative, white zero: the sign of a value reads at a glance

# The layout, in inches: rows one under another, each starting with a line of title (TITLE high).
WIDTH, HEADER, TITLE, GAP = 12.0, 0.55, 0.32, 0.28  # at dpi 100 the PNG is 1200 pixels wide
LEFT, HALF = 0.35, 4.75  # a half-row panel (C1, S2...) is at most HALF wide; the right half starts at WIDTH / 2 + LEFT
MAPS_HEIGHT = 1.7  # the most a row of feature maps may take
TOP_HEIGHT, BARS_HEIGHT, RBF_HEIGHT, OUTPUT_HEIGHT = 2.55, 1.55, 2.05, 1.85
PLOT_LEFT, PLOT_WIDTH = 0.8, 10.9  # bar charts: room for the y-axis label on the left


def capture(net: nn.Module, x: Tensor) -> dict[str, Tensor]:
    """The output of each stage of `net` (its direct children: C1, S2, ..., output) for the batch `x`.

    Recorded by forward hooks while `net(x)` runs, so they are exactly what the model computes, whatever
    its parts. A compiled net runs eagerly for this pass, so that the hooks fire without a recompile.
    """
    outputs: dict[str, Tensor] = {}

    def record(name: str, module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        outputs[name] = output.detach().float().cpu()

    hooks = [stage.register_forward_hook(partial(record, name)) for name, stage in net.named_children()]
    was_training = net.training
    try:
        with torch.no_grad(), torch.compiler.set_stance("force_eager"):
            net.eval()  # as at inference: batch norm uses its running statistics (and keeps them as they are)
            net(x)
    finally:
        net.train(was_training)
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

    Each layer is one axes, labelled with its name ('input', 'C1 kernels', 'C1' ... 'S4', 'C5', 'F6',
    'F6 and prototypes', 'output') so that a program (and the tests) can find it; a layer's feature
    maps are tiles of one image. The net is used as it is (put it in eval mode first); `label`, if
    known, is marked on the output scores.
    """
    activations = capture(net, x)
    stages = dict(net.named_children())
    names = list(activations)
    maps = [n for n in names[:-1] if activations[n].dim() == 4]  # C1, S2, C3, S4
    vectors = [n for n in names[:-1] if activations[n].dim() == 2]  # C5, F6
    head_name = names[-1]
    head = stages[head_name]
    scores = activations[head_name][0]

    # The rows, top to bottom: how to draw each, and its height in inches.
    rows = [(partial(draw_top, x=x[0].detach().float().cpu(), kernels=first_kernels(net)), TOP_HEIGHT)]
    for i in range(0, len(maps), 2):  # a convolution beside the pooling after it
        pair = {name: (activations[name][0], describe(stages[name])) for name in maps[i : i + 2]}
        rows.append((partial(draw_maps, stages=pair), maps_row_height([m for m, _ in pair.values()])))
    for name in vectors:
        rows.append(
            (partial(draw_bars, name=name, values=activations[name][0], parts=describe(stages[name])), BARS_HEIGHT)
        )
    rbf = isinstance(head, RBFOutput)
    if rbf:
        centres = head.centres.detach().float().cpu()
        rows.append(
            (partial(draw_prototypes, f6=activations[vectors[-1]][0], centres=centres, distances=-scores), RBF_HEIGHT)
        )
    rows.append(
        (partial(draw_output, name=head_name, scores=scores, parts=describe(head), rbf=rbf, label=label), OUTPUT_HEIGHT)
    )

    sheet = Sheet(WIDTH, HEADER + sum(height for _, height in rows))
    sheet.title(WIDTH / 2, 0.12, title, fontsize=14, fontweight="bold")
    top = HEADER
    for draw, height in rows:
        draw(sheet, top)
        top += height
    return sheet.figure


class Sheet:
    """A figure on which axes are placed in inches from its top-left corner.

    A fixed layout: matplotlib's constrained layout placed the same axes well, but took 0.6 s of
    the figure's 0.9 s, and the training callback draws this figure every few epochs.
    """

    def __init__(self, width: float, height: float) -> None:
        self.figure = Figure(figsize=(width, height))
        self.width, self.height = width, height

    def axes(self, left: float, top: float, width: float, height: float, label: str) -> Axes:
        ax = self.figure.add_axes(
            (left / self.width, 1 - (top + height) / self.height, width / self.width, height / self.height)
        )
        ax.set_label(label)
        return ax

    def image_axes(self, left: float, top: float, box: tuple[float, float], shape: tuple[int, ...], label: str) -> Axes:
        """Axes for an image of `shape` (rows, columns), as large as fits the box (width, height), centred across it."""
        width, height = fitted(shape, *box)
        return self.axes(left + (box[0] - width) / 2, top, width, height, label)

    def title(self, centre: float, top: float, text: str, **style) -> None:
        style = {"fontsize": 10} | style
        self.figure.text(centre / self.width, 1 - top / self.height, text, ha="center", va="top", **style)

    def colorbar(self, shown: AxesImage, ax: Axes, label: str) -> None:
        """A colour bar as tall as `ax`, just right of it, marked at its two ends and at zero (when apart from them)."""
        (_, bottom), (right, top) = ax.get_position().get_points()
        bar_ax = self.figure.add_axes((right + 0.12 / self.width, bottom, 0.12 / self.width, top - bottom))
        low, high = shown.norm.vmin, shown.norm.vmax
        zero_apart = min(-low, high) > 0.15 * (high - low)  # a zero mark too near an end would hide its label
        ticks = [low, 0, high] if zero_apart else [low, high]
        bar = self.figure.colorbar(shown, cax=bar_ax, ticks=ticks, format="%.3g")
        bar.set_label(label, fontsize=8, labelpad=-2)
        bar.ax.tick_params(labelsize=7)


def fitted(shape: tuple[int, ...], width: float, height: float) -> tuple[float, float]:
    """(width, height) of an image of `shape` (rows, columns) scaled to fit in width x height."""
    rows, columns = shape[:2]
    scale = min(width / columns, height / rows)
    return columns * scale, rows * scale


def tile(images: Tensor, columns: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Images (N, H, W) side by side on one canvas, `columns` to a row, NaN (drawn blank) between them.

    Returns the canvas and each image's top-left (row, column) on it. The gap above each row of
    images holds their names.
    """
    count, height, width = images.shape
    gap_x, gap_y = max(1, width // 5), max(2, round(height * 0.4))
    rows = -(-count // columns)
    canvas = np.full((rows * (height + gap_y), columns * (width + gap_x) - gap_x), np.nan, dtype=np.float32)
    corners = []
    for i, image in enumerate(images):
        row, column = divmod(i, columns)
        top, left = row * (height + gap_y) + gap_y, column * (width + gap_x)
        canvas[top : top + height, left : left + width] = image.numpy()
        corners.append((top, left))
    return canvas, corners


def map_columns(count: int) -> int:
    """Feature maps per row: up to 8 in one row, more in two."""
    return count if count <= 8 else -(-count // 2)


def maps_row_height(maps: list[Tensor]) -> float:
    canvases = [tile(m, map_columns(len(m)))[0] for m in maps]
    return TITLE + max(fitted(c.shape, HALF, MAPS_HEIGHT)[1] for c in canvases) + GAP


def _symmetric(values: Tensor) -> Normalize:
    """A colour scale centred on zero (white) that reaches the largest magnitude in `values`."""
    peak = max(values.abs().max().item(), 1e-8)
    return Normalize(-peak, peak)


def draw_tiles(ax: Axes, images: Tensor, columns: int, norm: Normalize, names: list[str]) -> AxesImage:
    """`images` (N, H, W) tiled on `ax`, framed, each with its name above it, on one colour scale."""
    canvas, corners = tile(images, columns)
    height, width = images.shape[1:]
    shown = ax.imshow(canvas, cmap=DIVERGING, norm=norm, interpolation="nearest", aspect="auto")
    frames = [Rectangle((left - 0.5, top - 0.5), width, height) for top, left in corners]
    ax.add_collection(PatchCollection(frames, facecolor="none", edgecolor="0.35", linewidth=0.6, clip_on=False))
    for (top, left), name in zip(corners, names, strict=True):
        ax.text(left + width / 2 - 0.5, top - 0.7, name, ha="center", va="bottom", fontsize=7)
    ax.set_axis_off()
    return shown


def draw_top(sheet: Sheet, top: float, x: Tensor, kernels: Tensor) -> None:
    """The input as the network sees it, C1's kernels, and how to read the colours."""
    box_top, box_height = top + TITLE, TOP_HEIGHT - TITLE - GAP
    ax = sheet.image_axes(LEFT, box_top, (2.2, box_height), x.shape[1:], "input")
    shown = ax.imshow(x[0].numpy(), cmap="gray", interpolation="nearest", aspect="auto")
    ax.set_xticks([])
    ax.set_yticks([])
    sheet.title(LEFT + 1.1, top, f"input: {'x'.join(map(str, x.shape[1:]))}, as the network sees it")
    sheet.colorbar(shown, ax, "pixel value")

    columns = (len(kernels) + 1) // 2
    left, width = 3.7, 3.4
    ax = sheet.image_axes(left, box_top, (width, box_height), tile(kernels, columns)[0].shape, "C1 kernels")
    shown = draw_tiles(ax, kernels, columns, _symmetric(kernels), [f"kernel {i}" for i in range(len(kernels))])
    size = "x".join(map(str, kernels.shape[1:]))
    sheet.title(left + width / 2, top, f"C1's {len(kernels)} kernels ({size} weights), slid over the input")
    sheet.colorbar(shown, ax, "weight")

    key = (
        "Top to bottom: what each layer outputs\n"
        "for this input, up to the class scores.\n"
        "Red: positive, blue: negative, white: zero.\n"
        "Each layer has its own colour scale\n"
        "(its colour bar); bars: one per unit."
    )
    sheet.title(9.8, box_top + 0.2, "How to read it", fontweight="bold")
    sheet.title(9.8, box_top + 0.5, key, linespacing=1.5, fontsize=9)


def draw_maps(sheet: Sheet, top: float, stages: dict[str, tuple[Tensor, str]]) -> None:
    """Every feature map of a convolution and of the pooling after it, numbered, one colour scale for each."""
    for half, (name, (maps, parts)) in enumerate(stages.items()):
        columns = map_columns(len(maps))
        left = LEFT + half * WIDTH / 2
        ax = sheet.image_axes(left, top + TITLE, (HALF, MAPS_HEIGHT), tile(maps, columns)[0].shape, name)
        shown = draw_tiles(ax, maps, columns, _symmetric(maps), [str(i) for i in range(len(maps))])
        size = "x".join(map(str, maps.shape[1:]))
        sheet.title(left + HALF / 2, top, f"{name}: {len(maps)} feature maps of {size}   ({parts})")
        sheet.colorbar(shown, ax, "activation")


def draw_bars(sheet: Sheet, top: float, name: str, values: Tensor, parts: str) -> None:
    """A vector stage (C5, F6) as one bar per unit, red above zero and blue below."""
    height = BARS_HEIGHT - TITLE - 0.5  # room below for the unit numbers
    ax = sheet.axes(PLOT_LEFT, top + TITLE, PLOT_WIDTH, height, name)
    # One collection of vertical lines, each 80% of a unit wide: 200 bar patches took 0.15 s to draw.
    width = 0.8 * PLOT_WIDTH * 72 / len(values)  # points
    colours = ["#c0392b" if v >= 0 else "#2e6db4" for v in values.tolist()]
    ax.vlines(range(len(values)), 0, values.numpy(), colors=colours, linewidth=width, capstyle="butt")
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_xlim(-0.5, len(values) - 0.5)
    ax.set_xlabel("unit", fontsize=8, labelpad=1)
    ax.set_ylabel("activation", fontsize=8)
    ax.tick_params(labelsize=7)
    sheet.title(PLOT_LEFT + PLOT_WIDTH / 2, top, f"{name}: {len(values)} units   ({parts})")


def draw_prototypes(sheet: Sheet, top: float, f6: Tensor, centres: Tensor, distances: Tensor) -> None:
    """The 1998 RBF output: F6 as a 7x12 bitmap, then the ten fixed prototypes with F6's distance to each."""
    shape = (12, 7)  # the paper's Fig. 3 bitmaps: 7 wide, 12 high
    bitmaps = torch.cat([f6.view(1, *shape), centres.view(-1, *shape)])
    canvas, corners = tile(bitmaps, len(bitmaps))
    box = (PLOT_WIDTH, RBF_HEIGHT - TITLE - GAP)
    ax = sheet.image_axes(PLOT_LEFT, top + TITLE, box, canvas.shape, "F6 and prototypes")
    names = ["F6"] + [f"{digit}: {distance:.1f}" for digit, distance in enumerate(distances.tolist())]
    shown = draw_tiles(ax, bitmaps, len(bitmaps), _symmetric(bitmaps), names)
    best = distances.argmin().item() + 1
    for i, colour in ((0, "black"), (best, "#1e8449")):  # F6 and its nearest prototype stand out
        row, column = corners[i]
        frame = Rectangle((column - 0.5, row - 0.5), shape[1], shape[0], fill=False, edgecolor=colour, lw=2.5)
        frame.set_clip_on(False)
        ax.add_patch(frame)
        ax.texts[i].set_fontweight("bold")
    sheet.title(
        PLOT_LEFT + PLOT_WIDTH / 2,
        top,
        "RBF output: F6 as a 7x12 bitmap beside the ten fixed prototypes; above each, its squared distance "
        "to F6, \u03a3(F6 - prototype)\u00b2 (green: the smallest)",
    )
    sheet.colorbar(shown, ax, "value")


def draw_output(sheet: Sheet, top: float, name: str, scores: Tensor, parts: str, rbf: bool, label: int | None) -> None:
    """The output scores (or, for the RBF output, the penalties: smallest wins) with the prediction."""
    ax = sheet.axes(PLOT_LEFT, top + TITLE, PLOT_WIDTH, OUTPUT_HEIGHT - TITLE - 0.5, name)
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
    what = "penalties" if rbf else "scores"
    sheet.title(PLOT_LEFT + PLOT_WIDTH / 2, top, f"{name}: {len(values)} {what}   ({parts}); {verdict}{truth}")
