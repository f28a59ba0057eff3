"""`python -m lenet_pl.export`: ONNX and TorchScript files that match PyTorch and say how to preprocess, and
ONNX's optional packages (the `onnx` extra) asked for by name where they are missing."""

import json
import re
import sys
import warnings
from pathlib import Path

import onnxruntime
import pytest
import torch
from torchvision.datasets import FashionMNIST

from lenet_pl.export import main, read_metadata
from lenet_pl.runtime.trained import load_run


def first_test_digits(run_dir: Path, count: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """The run's first `count` test digits as the network takes them, and the PyTorch outputs."""
    run = load_run(run_dir)
    datamodule = run.datamodule()
    datamodule.setup("test")
    x = datamodule.preprocess(datamodule.splits["test"][0][:count].cpu())
    with torch.inference_mode():
        return x, run.net(x)


def test_onnx_export_matches_pytorch_on_1000_test_digits_and_documents_preprocessing(mnist_run: Path, tmp_path, capsys):
    output = tmp_path / "lenet.onnx"
    assert main([f"ckpt_path={mnist_run}", f"output={output}"]) == 0
    assert f"wrote {output} (onnx)" in capsys.readouterr().out

    x, expected = first_test_digits(mnist_run)
    assert x.shape == (1000, 1, 32, 32)
    session = onnxruntime.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    got = torch.from_numpy(session.run(None, {"image": x.numpy()})[0])
    assert got.shape == (1000, 10)
    assert (got - expected).abs().max() <= 1e-5
    one = session.run(None, {"image": x[:1].numpy()})[0]  # any batch size
    assert torch.allclose(torch.from_numpy(one), expected[:1], atol=1e-5)

    metadata = read_metadata(output)
    assert metadata["input"].startswith("float32 tensor (N, 1, 32, 32)")
    for phrase in ("invert if the background is light", "fit 20x20", "centre of mass", "pad 2 pixels", "0.1307"):
        assert phrase in metadata["preprocessing"]
    assert metadata["classes"] == "0,1,2,3,4,5,6,7,8,9"
    assert json.loads(metadata["config"])["optimizer"]["_target_"] == "torch.optim.Adam"


def test_torchscript_export_matches_pytorch_and_carries_the_metadata(mnist_run: Path, tmp_path, capsys):
    output = tmp_path / "lenet.pt"
    assert main([f"ckpt_path={mnist_run}", "format=torchscript", f"output={output}"]) == 0
    x, expected = first_test_digits(mnist_run)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, still supported
        loaded = torch.jit.load(str(output))
    assert (loaded(x) - expected).abs().max() <= 1e-5
    assert "centre of mass" in read_metadata(output)["preprocessing"]


def test_the_1998_model_exports_too(rbf_run: Path, capsys):
    """RBF output, Table I C3 and trainable subsampling: export is generic over the nn.Module."""
    for fmt in ("onnx", "torchscript"):
        assert main([f"ckpt_path={rbf_run}", f"format={fmt}"]) == 0
        assert "on the first 300 test digits" in capsys.readouterr().out
    best = Path(json.loads((rbf_run / "metrics.json").read_text())["metrics"]["best_checkpoint"])
    exported = {p.name for p in (rbf_run / "export").iterdir()}
    assert exported == {f"{best.stem}.onnx", f"{best.stem}.torchscript.pt"}


def test_a_mismatch_beyond_the_tolerance_writes_nothing(mnist_run: Path, tmp_path: Path, capsys):
    output = tmp_path / "strict.onnx"
    assert main([f"ckpt_path={mnist_run}", f"output={output}", "tolerance=1e-12"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: The onnx export differs from the PyTorch model") and "nothing was written" in err
    # The yardstick: PyTorch's own float32 rounding, a small positive number, named in the message.
    yardstick = float(re.search(r"float32 outputs differ from float64 by up to (\S+):", err).group(1))
    assert 0 < yardstick < 1e-4
    assert not output.exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["format=tflite"], "format='tflite' is not known; choose one of onnx, torchscript"),
        (["check_digits=0"], "check_digits=0 is not allowed"),
        (["tolerance=-0.001"], "tolerance=-0.001 is not allowed: give a number >= 0"),
        (["tolerance=small"], "tolerance='small' is not allowed: give a number >= 0"),
        (["tolerance=nan"], "tolerance=nan is not allowed: give a number >= 0"),
    ],
)
def test_bad_options_are_one_clear_error(tmp_path: Path, capsys, args, expected):
    assert main([f"ckpt_path={tmp_path}", *args]) == 2
    assert expected in capsys.readouterr().err


ONNX_MODULES = ("onnx", "onnxscript", "onnxruntime")


@pytest.mark.parametrize("missing", ONNX_MODULES)
def test_onnx_export_without_the_onnx_extra_names_what_is_missing_and_writes_nothing(
    rbf_run: Path, tmp_path: Path, monkeypatch, capsys, missing
):
    monkeypatch.setitem(sys.modules, missing, None)  # `import onnx` fails as when it is not installed
    output = tmp_path / "lenet.onnx"
    assert main([f"ckpt_path={rbf_run}", f"output={output}"]) == 2
    out, err = capsys.readouterr()
    assert err == (
        "error: ONNX export needs the optional packages onnx, onnxscript and onnxruntime, and "
        f"{missing} is not installed here: pip install 'lenet-pl[onnx]' (a clone's `make install` installs every "
        "extra). format=torchscript needs torch alone.\n"
    )
    assert out == "" and list(tmp_path.iterdir()) == []


def test_torchscript_export_needs_none_of_the_onnx_packages(rbf_run: Path, tmp_path: Path, monkeypatch, capsys):
    for name in ONNX_MODULES:
        monkeypatch.setitem(sys.modules, name, None)
    output = tmp_path / "lenet.pt"
    assert main([f"ckpt_path={rbf_run}", "format=torchscript", f"output={output}", "check_digits=10"]) == 0
    assert f"wrote {output} (torchscript)" in capsys.readouterr().out
    assert read_metadata(output)["classes"] == "0,1,2,3,4,5,6,7,8,9"
    assert json.loads(read_metadata(output)["class_names"]) == [str(d) for d in range(10)]


def test_a_fashion_mnist_export_names_its_classes_and_its_preprocessing(fashion_run: Path, tmp_path: Path, capsys):
    output = tmp_path / "fashion.pt"
    assert main([f"ckpt_path={fashion_run}", "format=torchscript", f"output={output}", "check_digits=10"]) == 0
    metadata = read_metadata(output)
    assert json.loads(metadata["class_names"]) == FashionMNIST.classes  # "T-shirt/top" holds a slash: JSON
    assert "to_fashion_mnist" in metadata["preprocessing"] and "(x - 0.286) / 0.353" in metadata["preprocessing"]
