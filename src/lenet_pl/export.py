"""Export a trained model as ONNX or TorchScript, checked against PyTorch before it is written.

python -m lenet_pl.export ckpt_path=outputs/2026-01-31/12-00-00                  # ONNX
python -m lenet_pl.export ckpt_path=run/checkpoints/last.ckpt format=torchscript output=lenet.pt

The exported model takes the normalised (N, 1, S, S) float tensor the network takes and returns
its outputs; how to get there from an image is written into the file's metadata (ONNX
metadata_props, TorchScript extra file `lenet_pl.json`). Before anything is written, the
exported model is run (onnxruntime, or torch.jit.load) on the run's first `check_digits` test
digits and its outputs must be within `tolerance` of the PyTorch model's (absolute for outputs
up to 1 in size, relative above); the message also gives PyTorch's own float32 rounding (against
the same network in float64) as the yardstick.

ONNX export needs the `onnx` extra (onnx, onnxscript, onnxruntime: `pip install 'lenet-pl[onnx]'`);
TorchScript needs only torch.
"""

import copy
import io
import json
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from lenet_pl.data import class_names
from lenet_pl.runtime.cli import config_command
from lenet_pl.runtime.errors import UserError, import_extra
from lenet_pl.runtime.images import describe_preprocessing
from lenet_pl.runtime.outputs import write_atomically
from lenet_pl.runtime.trained import load_run

METADATA_FILE = "lenet_pl.json"  # TorchScript's extra file holding the metadata


def to_onnx(net: nn.Module, example: Tensor, metadata: dict[str, str]) -> tuple[bytes, Callable[[Tensor], Tensor]]:
    """The ONNX file's bytes (batch size free), and a function that runs them with onnxruntime."""
    onnxruntime = import_extra("onnx")["onnxruntime"]  # torch.onnx.export(dynamo=True) needs onnx and onnxscript
    program = torch.onnx.export(
        net,
        (example,),
        input_names=["image"],
        output_names=["scores"],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        dynamo=True,
        verbose=False,
    )
    proto = program.model_proto
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value)
    data = proto.SerializeToString()
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    return data, lambda x: torch.from_numpy(session.run(None, {"image": x.numpy()})[0])


def to_torchscript(
    net: nn.Module, example: Tensor, metadata: dict[str, str]
) -> tuple[bytes, Callable[[Tensor], Tensor]]:
    """The TorchScript file's bytes (traced), and the model loaded back from them.

    torch deprecates TorchScript in favour of torch.export; it still runs, and docs/using-a-model.md says to
    prefer ONNX, so its FutureWarnings are not repeated on every export.
    """
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")
        torch.jit.save(torch.jit.trace(net, example), buffer, _extra_files={METADATA_FILE: json.dumps(metadata)})
        loaded = torch.jit.load(io.BytesIO(buffer.getvalue()), map_location="cpu")
    return buffer.getvalue(), loaded


EXPORTERS = {"onnx": (to_onnx, ".onnx"), "torchscript": (to_torchscript, ".torchscript.pt")}


def export(cfg: DictConfig) -> dict[str, Any]:
    """Export the run `cfg.ckpt_path` names; returns where it went and how close it is to PyTorch."""
    if cfg.format not in EXPORTERS:
        raise UserError(f"format={cfg.format!r} is not known; choose one of {', '.join(EXPORTERS)}.")
    if isinstance(cfg.check_digits, bool) or not isinstance(cfg.check_digits, int) or cfg.check_digits < 1:
        raise UserError(f"check_digits={cfg.check_digits!r} is not allowed: give a whole number of at least 1.")
    tolerance = cfg.tolerance
    if isinstance(tolerance, bool) or not isinstance(tolerance, int | float) or not tolerance >= 0:
        raise UserError(f"tolerance={tolerance!r} is not allowed: give a number >= 0 (default 1e-4).")
    if cfg.format == "onnx":
        import_extra("onnx")  # installed? Asked before the run is loaded, so that a missing one is said at once
    run = load_run(cfg.ckpt_path, data_root=cfg.data.root)
    datamodule = run.test_datamodule()
    x = datamodule.preprocess(datamodule.splits["test"][0][: cfg.check_digits].cpu())

    metadata = {key: str(value) for key, value in describe_preprocessing(datamodule).items()}
    metadata["classes"] = ",".join(map(str, range(run.config.model.num_classes)))
    metadata["class_names"] = json.dumps(class_names(run.config.data.dataset, run.config.model.num_classes))
    metadata["checkpoint"] = str(run.ckpt_path)
    metadata["config"] = json.dumps(OmegaConf.to_container(run.config))
    exporter, suffix = EXPORTERS[cfg.format]
    data, exported = exporter(run.net, x[:2], metadata)

    # Absolute for outputs up to 1, relative above: float32 itself resolves only ~1e-5 at 100, which
    # the 1998 RBF head's penalties reach, while logits and probabilities stay near 1. The yardstick
    # is PyTorch's own float32 rounding, its distance from the same network in float64: a trained 1998
    # network is 4e-6 from it, and its ONNX export 1.3e-5 from PyTorch's float32 (hence the default
    # 1e-4); an operation the exporter translates wrongly is off by orders of magnitude more.
    with torch.inference_mode():
        expected = run.net(x)
        diff = (exported(x) - expected).abs()
        max_diff, max_error = diff.max().item(), (diff / expected.abs().clamp(min=1)).max().item()
        exact = copy.deepcopy(run.net).double()(x.double())
        float32_error = ((expected.double() - exact).abs() / exact.abs().clamp(min=1)).max().item()
    if not max_error <= tolerance:
        raise UserError(
            f"The {cfg.format} export differs from the PyTorch model by up to {max_error:.3g} (|exported - "
            f"PyTorch| / max(1, |PyTorch|)) on the first {len(x)} test digits, more than tolerance="
            f"{tolerance}; nothing was written. PyTorch's own float32 outputs differ from float64 by up to "
            f"{float32_error:.3g}: a difference within a few times that is rounding (raise tolerance=); far "
            "above it, the exporter translated an operation inexactly (try the other format)."
        )
    output = Path(cfg.output or run.run_dir / "export" / f"{run.ckpt_path.stem}{suffix}")
    write_atomically(output, data)  # a failed write leaves no truncated model file behind
    return {
        "output": str(output),
        "format": cfg.format,
        "checked_digits": len(x),
        "max_abs_diff": max_diff,
        "max_error": max_error,
        "float32_error": float32_error,
    }


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata an exported file carries (either format)."""
    if str(path).endswith(".onnx"):
        onnx = import_extra("onnx")["onnx"]
        return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    extra = {METADATA_FILE: ""}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")
        torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return json.loads(extra[METADATA_FILE])


def run(cfg: DictConfig) -> int:
    result = export(cfg)
    print(
        f"wrote {result['output']} ({result['format']}); on the first {result['checked_digits']} test digits "
        f"the outputs differ from PyTorch's by at most {result['max_abs_diff']:.2e} "
        f"({result['max_error']:.2e} relative to max(1, |output|); PyTorch's own float32 rounding, against "
        f"float64: {result['float32_error']:.2e})"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    return config_command("export", __doc__, run, argv)


if __name__ == "__main__":
    sys.exit(main())
