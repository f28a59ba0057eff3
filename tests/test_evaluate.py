"""`python -m lenet_pl.evaluate`: a run's checkpoint re-tested from its own saved config."""

import json
import pickle
from pathlib import Path

import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torchvision.datasets import FashionMNIST

from lenet_pl.callbacks import confusion_matrix_image
from lenet_pl.evaluate import main


def test_evaluate_reproduces_the_runs_test_metrics_and_writes_its_report(mnist_run: Path, capsys):
    assert main([f"ckpt_path={mnist_run}", "worst=12"]) == 0
    trained = json.loads((mnist_run / "metrics.json").read_text())["metrics"]
    ckpt = Path(trained["best_checkpoint"])
    out = mnist_run / "evaluation" / ckpt.stem
    report = json.loads((out / "evaluation.json").read_text())

    assert report["checkpoint"] == str(ckpt)  # a run dir stands for its best checkpoint
    assert report["test/acc"] == pytest.approx(trained["test/acc"], abs=1e-4)
    assert report["test/loss"] == pytest.approx(trained["test/loss"], abs=1e-4)
    assert report["test/acc"] > 0.9  # the fixture's model is a real one

    matrix = torch.tensor(report["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == 10_000 == report["test_digits"]
    assert matrix.trace().item() / 10_000 == pytest.approx(report["test/acc"], abs=1e-6)
    per_class = report["per_class"]
    assert per_class["support"] == matrix.sum(dim=1).tolist()
    assert per_class["recall"] == pytest.approx((matrix.diag() / matrix.sum(dim=1)).tolist(), abs=1e-6)
    assert per_class["precision"] == pytest.approx((matrix.diag() / matrix.sum(dim=0)).tolist(), abs=1e-6)

    errors = report["most_confident_errors"]
    assert len(errors) == 12
    assert all(e["predicted"] != e["true"] for e in errors)
    confidences = [e["confidence"] for e in errors]
    assert confidences == sorted(confidences, reverse=True) and 0.1 < confidences[-1] <= confidences[0] <= 1

    for name in ("confusion_matrix", "most_confident_errors"):
        with Image.open(out / f"{name}.png") as image:
            assert image.format == "PNG" and min(image.size) > 100
    printed = capsys.readouterr().out
    assert f"{report['test/acc']:.2%}" in printed and "confusion matrix" in printed
    assert report["classes"] == [str(d) for d in range(10)] and "10,000 images of mnist" in printed

    events = EventAccumulator(str(mnist_run), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    assert {"evaluate/confusion_matrix", "evaluate/most_confident_errors"} <= set(events.Tags()["images"])
    [acc] = events.Scalars("evaluate/test_acc")
    assert acc.value == pytest.approx(report["test/acc"], abs=1e-6) and acc.step == report["global_step"]


def test_a_fashion_mnist_run_is_evaluated_and_pictured_with_its_class_names(fashion_run: Path, tmp_path, capsys):
    assert main([f"ckpt_path={fashion_run}", "worst=4", f"output={tmp_path / 'out'}"]) == 0
    report = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    assert report["classes"] == FashionMNIST.classes and report["classes"][6] == "Shirt"
    printed = capsys.readouterr().out
    assert "300 images of fashion_mnist" in printed
    table = printed.split("confusion matrix")[0]
    assert "9 Ankle boot" in table and "6 Shirt" in table
    [first, *_] = report["most_confident_errors"]
    names = report["classes"]
    assert f"{names[first['predicted']]}" in printed and f"(true {names[first['true']]})" in printed
    # the rows' names widen the picture's margin; MNIST's labels are their own names and keep it narrow
    matrix = torch.tensor(report["confusion_matrix"])
    assert confusion_matrix_image(matrix, names=names).shape[2] > confusion_matrix_image(matrix).shape[2]
    digits = [str(d) for d in range(10)]
    assert torch.equal(confusion_matrix_image(matrix, names=digits), confusion_matrix_image(matrix))
    # training's own pictures name the classes too: the test confusion matrix is the wider one
    logged = EventAccumulator(str(fashion_run), size_guidance={"images": 0})
    logged.Reload()
    [picture] = logged.Images("test/confusion_matrix")
    assert picture.width == confusion_matrix_image(matrix, names=names).shape[2]


def test_evaluate_rebuilds_the_1998_model_from_its_checkpoint_alone(rbf_run: Path, tmp_path: Path, capsys):
    """Trained with model/activation/pooling/loss overrides; evaluated from the .ckpt path alone."""
    trained = json.loads((rbf_run / "metrics.json").read_text())["metrics"]
    ckpt = Path(trained["best_checkpoint"])
    output_dir = tmp_path / "report"
    assert main([f"ckpt_path={ckpt}", f"output={output_dir}"]) == 0
    report = json.loads((output_dir / "evaluation.json").read_text())
    assert report["checkpoint"] == str(ckpt) and report["test_digits"] == 300
    assert report["test/acc"] == pytest.approx(trained["test/acc"], abs=1e-4)
    assert report["test/loss"] == pytest.approx(trained["test/loss"], abs=1e-4)  # the MAP loss, 3 test batches
    assert f"accuracy:   {report['test/acc']:.2%}" in capsys.readouterr().out


class Payload:
    def __reduce__(self):
        return (print, ("this ran on load",))


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], "ckpt_path is required"),
        (["ckpt_path=/no/such/run"], "ckpt_path='/no/such/run' does not exist"),
        (["ckpt_path={garbage}"], "is not a checkpoint this project can load"),
        (["ckpt_path={pickled}"], "weights_only=True"),
        (["ckpt_path={no_config}"], "has no run config"),
        (["ckpt_path={empty_dir}"], "without one clear checkpoint"),
        (["ckpt_path={garbage}", "device=tpu"], "device='tpu' is not known; choose one of auto, cpu, cuda"),
        (["ckpt_path=x", "bogus=1"], "bogus"),
        (["ckpt_path=x", "worst=-3"], "worst=-3 is not allowed"),
    ],
)
def test_bad_input_is_one_clear_error(tmp_path: Path, capsys, args: list[str], expected: str):
    paths = {
        "garbage": tmp_path / "garbage.ckpt",
        "pickled": tmp_path / "pickled.ckpt",
        "no_config": tmp_path / "no_config.ckpt",
        "empty_dir": tmp_path / "empty",
    }
    paths["garbage"].write_bytes(b"not a checkpoint at all")
    paths["pickled"].write_bytes(pickle.dumps({"state_dict": {}, "hyper_parameters": {"config": Payload()}}))
    torch.save({"state_dict": {"net.w": torch.zeros(1)}, "hyper_parameters": {}}, paths["no_config"])
    paths["empty_dir"].mkdir()
    assert main([a.format(**paths) for a in args]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and expected in captured.err
    assert "this ran on load" not in captured.out + captured.err
    assert "Traceback" not in captured.err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_evaluate_on_the_gpu_matches_the_cpu(mnist_run: Path, tmp_path: Path):
    reports = {}
    for device in ("cpu", "cuda"):
        assert main([f"ckpt_path={mnist_run}", f"device={device}", f"output={tmp_path / device}"]) == 0
        reports[device] = json.loads((tmp_path / device / "evaluation.json").read_text())
    assert reports["cuda"]["test/acc"] == pytest.approx(reports["cpu"]["test/acc"], abs=1e-4)
    assert reports["cuda"]["test/loss"] == pytest.approx(reports["cpu"]["test/loss"], abs=1e-4)
