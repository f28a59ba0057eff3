"""Look inside: the values drawn are the model's own, every map gets its tile, the command and its errors."""

import statistics
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import run_in_process, synthetic_digits
from lenet_pl.callbacks import InsideView
from lenet_pl.inside import main
from lenet_pl.inside_view import capture, inside_figure, map_columns, tile
from lenet_pl.layers import digit_bitmaps
from lenet_pl.runtime.build import build
from lenet_pl.runtime.compose import compose_config
from lenet_pl.runtime.images import to_mnist
from lenet_pl.runtime.trained import load_run

MODELS = {
    "modern": ["experiment=modern"],
    "lenet1998": ["experiment=lenet1998"],
    "keras_blog": ["experiment=seed_keras"],
    "sigmoid_avg": ["activation=sigmoid", "pooling=avg"],
    "batch_norm": ["experiment=fast", "norm=batch"],
}
MAP_STAGES = {"C1": 6, "S2": 6, "C3": 16, "S4": 16}


def built(overrides: list[str], seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return instantiate(compose_config(overrides).model).eval()


def axes_named(figure, label: str):
    [ax] = [ax for ax in figure.axes if ax.get_label() == label]
    return ax


@pytest.mark.parametrize("overrides", MODELS.values(), ids=MODELS.keys())
def test_the_hooks_record_what_a_manual_forward_through_the_same_layers_computes(overrides: list[str]):
    net = built(overrides)
    x = torch.randn(2, *net.input_shape)
    recorded = capture(net, x)
    assert list(recorded) == ["C1", "S2", "C3", "S4", "C5", "F6", "output"]
    h = x
    with torch.no_grad():
        for name, stage in net.named_children():
            h = stage(h)
            torch.testing.assert_close(recorded[name], h, rtol=0, atol=0)
        torch.testing.assert_close(recorded["output"], net(x), rtol=0, atol=0)
    side = net.input_shape[-1] - 4
    assert recorded["C1"].shape == (2, 6, side, side) and recorded["F6"].shape == (2, 84)


def test_capture_sees_a_training_net_as_at_inference_and_leaves_it_as_it_was():
    net = built(["experiment=fast", "norm=batch"]).train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    recorded = capture(net, torch.randn(1, *net.input_shape))  # one digit: batch statistics would fail
    assert net.training and recorded["output"].shape == (1, 10)
    for key, value in net.state_dict().items():  # running statistics untouched
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)


def test_c1_is_the_convolution_of_the_input_with_its_kernels_then_the_activation():
    net = built(MODELS["modern"])
    x = torch.randn(1, *net.input_shape)
    conv = net.C1[0]
    torch.testing.assert_close(capture(net, x)["C1"], F.relu(F.conv2d(x, conv.weight, conv.bias)))


@pytest.mark.parametrize("overrides", MODELS.values(), ids=MODELS.keys())
def test_the_figure_draws_each_layers_own_values_one_tile_per_map(overrides: list[str]):
    net = built(overrides)
    x = torch.randn(1, *net.input_shape)
    activations = capture(net, x)
    figure = inside_figure(net, x, "test", label=3)

    np.testing.assert_array_equal(axes_named(figure, "input").images[0].get_array(), x[0, 0].numpy())
    kernels = axes_named(figure, "C1 kernels")
    assert [t.get_text() for t in kernels.texts] == [f"kernel {i}" for i in range(6)]
    np.testing.assert_array_equal(
        kernels.images[0].get_array().filled(np.nan), tile(net.C1[0].weight[:, 0].detach(), 3)[0]
    )

    for name, count in MAP_STAGES.items():
        ax = axes_named(figure, name)
        assert [t.get_text() for t in ax.texts] == [str(i) for i in range(count)]  # one numbered tile per map
        [frames] = ax.collections
        assert len(frames.get_paths()) == count
        expected, _ = tile(activations[name][0], map_columns(count))
        np.testing.assert_array_equal(ax.images[0].get_array().filled(np.nan), expected)
        assert ax.images[0].norm.vmax == pytest.approx(activations[name].abs().max().item())  # one scale per layer
        assert ax.images[0].norm.vmin == -ax.images[0].norm.vmax

    for name in ("C5", "F6"):
        [bars] = axes_named(figure, name).collections
        heights = [segment[1, 1] for segment in bars.get_segments()]
        np.testing.assert_allclose(heights, activations[name][0].numpy())
    scores = [bar.get_height() for bar in axes_named(figure, "output").patches]
    rbf = "experiment=lenet1998" in overrides
    np.testing.assert_allclose(scores, (-1 if rbf else 1) * activations["output"][0].numpy(), rtol=1e-6)
    assert any(ax.get_label() == "F6 and prototypes" for ax in figure.axes) == rbf


def test_the_1998_prototype_panel_shows_the_fixed_bitmaps_and_f6s_distance_to_each():
    net = built(MODELS["lenet1998"])
    x = torch.randn(1, *net.input_shape)
    activations = capture(net, x)
    ax = axes_named(inside_figure(net, x, "test"), "F6 and prototypes")
    drawn = ax.images[0].get_array().filled(np.nan)
    _, corners = tile(torch.zeros(11, 12, 7), 11)
    tiles = [torch.from_numpy(drawn[top : top + 12, left : left + 7]) for top, left in corners]
    torch.testing.assert_close(tiles[0], activations["F6"][0].view(12, 7))
    torch.testing.assert_close(torch.stack(tiles[1:]), digit_bitmaps().view(10, 12, 7))
    distances = (activations["F6"][0] - digit_bitmaps()).pow(2).sum(dim=1)
    assert [t.get_text() for t in ax.texts] == ["F6"] + [f"{d}: {v:.1f}" for d, v in enumerate(distances.tolist())]
    nearest = ax.texts[1 + distances.argmin().item()]
    assert nearest.get_fontweight() == "bold"


def figure_pixels(net: torch.nn.Module, dpi: float) -> tuple[int, int]:
    """The PNG size (width, height) of this net's figure at `dpi`: 12 inches wide, as tall as its rows."""
    width, height = inside_figure(net, torch.zeros(1, *net.input_shape), "size").get_size_inches()
    return round(width * dpi), int(height * dpi)


def test_the_command_writes_a_png_of_the_figure_and_says_where(rbf_run: Path, tmp_path: Path, capsys):
    net = load_run(rbf_run).net
    output = tmp_path / "seven.png"
    assert main([f"ckpt_path={rbf_run}", "index=7", f"output={output}"]) == 0
    assert capsys.readouterr().out == f"wrote {output}\n"
    with Image.open(output) as png:
        assert png.format == "PNG"
        assert png.size == figure_pixels(net, 100) and png.width == 1200 and 1300 < png.height < 1450

    assert main([f"ckpt_path={rbf_run}", "dpi=50"]) == 0  # test digit 0, beside the run by default
    default = next((rbf_run / "inside").glob("*-test0.png"))
    assert capsys.readouterr().out == f"wrote {default}\n"
    with Image.open(default) as png:
        assert png.size == figure_pixels(net, 50)


def test_an_image_file_is_drawn_as_the_network_sees_it_after_predicts_preprocessing(rbf_run: Path, tmp_path: Path):
    images, _ = synthetic_digits(1, seed=3)
    Image.fromarray(255 - images[0].numpy()).resize((90, 90)).save(tmp_path / "dark_on_light.png")
    output = tmp_path / "inside.png"
    assert main([f"ckpt_path={rbf_run}", f"image={tmp_path / 'dark_on_light.png'}", f"output={output}"]) == 0
    run = load_run(rbf_run)
    expected = run.datamodule().preprocess(to_mnist(Image.open(tmp_path / "dark_on_light.png"))[None])
    figure = inside_figure(run.net, expected, "test")
    np.testing.assert_array_equal(axes_named(figure, "input").images[0].get_array(), expected[0, 0].numpy())
    with Image.open(output) as png:
        assert png.size == figure_pixels(run.net, 100)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["index=-1"], "index=-1 is not allowed: the test set has 300 digits, so give a whole number from 0 to 299"),
        (["index=300"], "index=300 is not allowed: the test set has 300 digits, so give a whole number from 0 to 299"),
        (["index=two"], "index='two' is not allowed"),
        (["index=1.5"], "index=1.5 is not allowed: give a test digit's position, a whole number from 0"),
        (["dpi=0"], "dpi=0 is not allowed: give the PNG's pixels per inch, a positive number"),
        (["image={missing}"], "does not exist. Give an image file of one digit"),
        (["image={broken}"], "cannot be read as an image of a digit (cannot identify image file"),
        (["image={blank}"], "cannot be read as an image of a digit (no digit found"),
        (["index=3", "image={blank}"], "index=3 and image="),
    ],
)
def test_a_bad_index_or_image_is_one_clear_error(rbf_run: Path, tmp_path: Path, capsys, args, expected):
    files = {"missing": tmp_path / "nope.png", "broken": tmp_path / "broken.png", "blank": tmp_path / "blank.png"}
    files["broken"].write_bytes(b"not an image")
    Image.new("L", (28, 28), 255).save(files["blank"])
    assert main([f"ckpt_path={rbf_run}", *(a.format(**files) for a in args)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and expected in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("checkpoint", "expected"),
    [
        ("garbage.ckpt", "is not a checkpoint this project can load"),
        ("no_config.ckpt", "has no run config"),
        ("missing.ckpt", "does not exist"),
    ],
)
def test_a_checkpoint_that_is_not_ours_is_one_clear_error_through_the_command(tmp_path: Path, checkpoint, expected):
    (tmp_path / "garbage.ckpt").write_bytes(b"not a checkpoint at all")
    torch.save({"state_dict": {"net.w": torch.zeros(1)}, "hyper_parameters": {}}, tmp_path / "no_config.ckpt")
    result = run_in_process("lenet_pl.inside", f"ckpt_path={tmp_path / checkpoint}", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and expected in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_training_logs_the_figure_of_a_validation_digit_to_tensorboard(rbf_run: Path):
    """The default callbacks: before training (at the sanity check) and after the last of 2 epochs of 20 steps."""
    accumulator = EventAccumulator(str(rbf_run), size_guidance={"images": 0})
    accumulator.Reload()
    logged = accumulator.Images("inside/val_digit")
    assert [image.step for image in logged] == [0, 40]
    assert {(image.width, image.height) for image in logged} == {figure_pixels(load_run(rbf_run).net, 100)}
    assert logged[0].encoded_image_string != logged[1].encoded_image_string  # trained: other kernels, other maps


@pytest.mark.slow
def test_the_inside_view_costs_under_5_percent_of_training_time(real_mnist_root: Path, tmp_path: Path):
    """Real MNIST, experiment=modern, one thread, in one process: fits of one whole epoch (430 steps and the 5,000
    validation digits) with the callback drawing before training and after the epoch, and without it, interleaved
    three times. A figure's cost (the hook's median time) against the time of the epochs between two figures
    (`every_n_epochs` of the config, 5) must stay under 5%; the fit-time difference shows the same cost."""
    base = [
        "experiment=modern",
        f"data.root={real_mnist_root}",
        "threads=1",
        "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
    ]
    seconds: dict[bool, list[float]] = {True: [], False: []}
    figure_seconds: list[float] = []
    for repeat in range(3):
        for with_view in (True, False):
            overrides = [*base, f"paths.output_dir={tmp_path / f'{repeat}-{with_view}'}"]
            cfg = compose_config(overrides + ([] if with_view else ["~callbacks.inside_view"]))
            datamodule, module, trainer = build(cfg)
            for view in [c for c in trainer.callbacks if isinstance(c, InsideView)]:  # time its drawing hook
                draw = view.on_validation_epoch_end

                def timed(*args, draw=draw):
                    start = time.perf_counter()
                    draw(*args)
                    figure_seconds.append(time.perf_counter() - start)

                view.on_validation_epoch_end = timed
            start = time.perf_counter()
            trainer.fit(module, datamodule=datamodule)
            seconds[with_view].append(time.perf_counter() - start)

    every_n_epochs = compose_config([]).callbacks.inside_view.every_n_epochs
    per_figure, epoch = statistics.median(figure_seconds), statistics.median(seconds[False])
    difference = (statistics.median(seconds[True]) - epoch) / 2  # two figures per fit
    share = per_figure / (every_n_epochs * epoch)
    rounded = {key: [round(s, 1) for s in values] for key, values in seconds.items()}
    print(
        f"one-epoch fits with the callback (2 figures): {rounded[True]} s, without: {rounded[False]} s; one figure "
        f"{per_figure:.2f} s (hook median; fit difference / 2: {difference:.2f} s); with a figure every "
        f"{every_n_epochs} epochs: {share:.2%} of training time, every epoch: {per_figure / epoch:.2%}"
    )
    assert len(figure_seconds) == 3 * 2  # before training and after the epoch, in each of 3 fits
    assert share < 0.05
