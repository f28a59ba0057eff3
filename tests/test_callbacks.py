"""The TensorBoard callbacks: what a run's event files hold, read back with TensorBoard's own reader."""

from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import run_in_process, tiny_args, write_dataset
from lenet_pl.runtime.trained import load_run

PICTURES = {"inputs/train_samples", "val/misclassified", "test/confusion_matrix"}


def events(run_dir: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(run_dir), size_guidance={"images": 0, "histograms": 0, "scalars": 0})
    accumulator.Reload()
    return accumulator


def test_a_default_run_logs_inputs_mistakes_confusion_matrix_histograms_and_graph(mnist_run: Path):
    logged = events(mnist_run)
    tags = logged.Tags()
    assert set(tags["images"]) >= PICTURES
    [grid] = logged.Images("inputs/train_samples")  # once: 64 padded 32x32 inputs, 8 per row
    assert (grid.step, grid.width, grid.height) == (0, 8 * 34 + 2, 8 * 34 + 2)
    # one epoch of 250 steps: the last epoch always shows its mistakes, whatever every_n_epochs says
    assert [image.step for image in logged.Images("val/misclassified")] == [250]
    assert len(logged.Images("test/confusion_matrix")) == 1

    parameters = [name for name, _ in load_run(mnist_run).net.named_parameters()]
    assert len(parameters) == 10
    assert set(tags["histograms"]) == {f"weights/{name}" for name in parameters}
    [histogram] = logged.Histograms("weights/C1.0.weight")
    assert histogram.histogram_value.num == 6 * 25 and histogram.step == 250

    assert tags["graph"]
    graph_nodes = {node.name for node in logged.Graph().node}
    assert any("C3" in name for name in graph_nodes) and any("output" in name for name in graph_nodes)


def test_each_callback_is_switched_off_by_removing_its_config(tmp_path: Path):
    root = write_dataset(tmp_path / "data")
    run_dir = tmp_path / "run"
    overrides = [
        "optimizer.lr=1e-5",  # a model that stays wrong, so that there are mistakes to show
        "callbacks.misclassified.every_n_epochs=1",
        "callbacks.misclassified.count=5",
        "~callbacks.weight_histograms",
        "~callbacks.model_graph",
        "~callbacks.confusion_matrix",
        "~callbacks.inside_view",
    ]
    result = run_in_process("lenet_pl.train", *tiny_args(root, run_dir, *overrides), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    logged = events(run_dir)
    tags = logged.Tags()
    assert set(tags["images"]) == {"inputs/train_samples", "val/misclassified"}
    assert [image.step for image in logged.Images("val/misclassified")] == [20, 40]  # every epoch, 20 steps each
    assert tags["histograms"] == [] and not tags["graph"]


CALLBACKS = ("SampleInputs", "ModelGraph", "WeightHistograms", "MisclassifiedDigits", "ConfusionMatrix")


def profiled_seconds(profiler_report: str) -> tuple[float, float]:
    """(seconds in this module's callback hooks, seconds in training epochs) from SimpleProfiler's FIT table."""
    in_callbacks = in_epochs = 0.0
    fit_table = profiler_report.split("FIT Profiler Report")[-1].split("TEST Profiler Report")[0]
    for line in fit_table.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 5:
            continue
        action, total = cells[0], cells[3]
        if action.startswith(tuple(f"[Callback]{name}." for name in CALLBACKS)):
            in_callbacks += float(total)
        elif action == "run_training_epoch":
            in_epochs += float(total)
    return in_callbacks, in_epochs


@pytest.mark.slow
def test_the_callbacks_cost_under_5_percent_of_training_time(real_mnist_root: Path, tmp_path: Path):
    """Real MNIST, 3 epochs of 100 steps, mistakes shown every epoch (the default is every 5th): the time
    Lightning's profiler books to these callbacks' hooks, against the epochs' time, in one process."""
    result = run_in_process(
        "lenet_pl.train",
        "experiment=modern",
        f"data.root={real_mnist_root}",
        "trainer.max_epochs=3",
        "trainer.limit_train_batches=100",
        "trainer.enable_progress_bar=false",
        "callbacks.misclassified.every_n_epochs=1",
        "+trainer.profiler=simple",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    in_callbacks, in_epochs = profiled_seconds(result.stdout + result.stderr)
    assert in_epochs > 0 and in_callbacks > 0
    print(f"callbacks: {in_callbacks:.2f} s of {in_epochs:.1f} s in training epochs ({in_callbacks / in_epochs:.2%})")
    assert in_callbacks / in_epochs < 0.05, (in_callbacks, in_epochs)
