"""Evaluate a trained run on its test set and show where it goes wrong.

python -m lenet_pl.evaluate ckpt_path=outputs/2026-01-31/12-00-00        # the run's best checkpoint
python -m lenet_pl.evaluate ckpt_path=run/checkpoints/last.ckpt data.root=/data/mnist

Reports test loss and accuracy (computed as training's test step does), per-class precision and
recall, the confusion matrix and the most confidently wrong images, each class by its name
(Fashion-MNIST's "Shirt", MNIST's digit). Writes evaluation.json,
confusion_matrix.png and most_confident_errors.png to <run dir>/evaluation/<checkpoint>/ (or
`output=`), and the same under the `evaluate/` tags of the run's TensorBoard.
"""

import json
import sys
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from PIL import Image
from torch.utils.tensorboard import SummaryWriter
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_confusion_matrix,
    multiclass_precision,
    multiclass_recall,
)

from lenet_pl.callbacks import confusion_matrix_image, labelled_grid
from lenet_pl.data import class_label, class_names
from lenet_pl.runtime.cli import config_command
from lenet_pl.runtime.errors import UserError
from lenet_pl.runtime.trained import load_run

DEVICES = ("auto", "cpu", "cuda")


def pick_device(name: str) -> torch.device:
    if name not in DEVICES:
        raise UserError(f"device={name!r} is not known; choose one of {', '.join(DEVICES)}.")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device=cuda needs a CUDA GPU and torch sees none here; use device=auto or device=cpu.")
    return torch.device("cuda" if name != "cpu" and torch.cuda.is_available() else "cpu")


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate the run `cfg.ckpt_path` names; returns the report that evaluation.json holds."""
    device = pick_device(cfg.device)
    if isinstance(cfg.worst, bool) or not isinstance(cfg.worst, int) or cfg.worst < 0:
        raise UserError(f"worst={cfg.worst!r} is not allowed: give how many wrong digits to show, 0 or more.")
    run = load_run(cfg.ckpt_path, data_root=cfg.data.root)
    datamodule = run.test_datamodule()
    images, labels = (t.cpu() for t in datamodule.splits["test"])
    net, loss_fn = run.net.to(device), run.loss.to(device)

    # Batch by batch as the test step does; the loss is the batch-size-weighted mean of batch losses,
    # which is what Lightning logs as test/loss.
    scores, loss_sum = [], 0.0
    with torch.inference_mode():
        for start in range(0, len(labels), datamodule.eval_batch_size):
            x = datamodule.preprocess(images[start : start + datamodule.eval_batch_size].to(device))
            y = labels[start : start + datamodule.eval_batch_size].to(device)
            out = net(x)
            loss_sum += loss_fn(out, y).item() * len(y)
            scores.append(out.float().cpu())
    scores = torch.cat(scores)
    num_classes = scores.shape[1]
    predicted = scores.argmax(dim=1)
    confidence = scores.softmax(dim=1).max(dim=1).values
    wrong = (predicted != labels).nonzero().flatten()
    worst = wrong[confidence[wrong].argsort(descending=True)][: cfg.worst]

    report = {
        "checkpoint": str(run.ckpt_path),
        "global_step": run.global_step,
        "dataset": run.config.data.dataset,
        "test_digits": len(labels),  # the number of test images, digits or not (the key is kept for older readers)
        "classes": class_names(run.config.data.dataset, num_classes),
        "test/loss": loss_sum / len(labels),
        "test/acc": multiclass_accuracy(predicted, labels, num_classes, average="micro").item(),
        "per_class": {
            "precision": multiclass_precision(predicted, labels, num_classes, average=None).tolist(),
            "recall": multiclass_recall(predicted, labels, num_classes, average=None).tolist(),
            "support": torch.bincount(labels, minlength=num_classes).tolist(),
        },
        "confusion_matrix": multiclass_confusion_matrix(predicted, labels, num_classes).tolist(),
        "most_confident_errors": [
            {"index": i, "true": labels[i].item(), "predicted": predicted[i].item(), "confidence": confidence[i].item()}
            for i in worst.tolist()
        ],
    }
    write_report(
        report, images[worst], run.run_dir, Path(cfg.output or run.run_dir / "evaluation" / run.ckpt_path.stem)
    )
    return report


def write_report(report: dict[str, Any], worst_images: torch.Tensor, run_dir: Path, output_dir: Path) -> None:
    """evaluation.json and two PNGs in `output_dir`; scalars, text and figures in the run's TensorBoard."""
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "evaluation.json").write_text(json.dumps(report, indent=2))
    matrix = torch.tensor(report["confusion_matrix"])
    names = report["classes"]
    confusion = confusion_matrix_image(matrix, title=f"test set, accuracy {report['test/acc']:.2%}", names=names)
    errors = labelled_grid(
        worst_images.unsqueeze(1),
        [
            f"{names[e['predicted']]}\n(true {names[e['true']]})\n{e['confidence']:.1%}"
            for e in report["most_confident_errors"]
        ],
    )
    for name, image in (("confusion_matrix", confusion), ("most_confident_errors", errors)):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(output_dir / f"{name}.png")

    step = report["global_step"]
    with SummaryWriter(log_dir=str(run_dir)) as writer:
        writer.add_scalar("evaluate/test_loss", report["test/loss"], step)
        writer.add_scalar("evaluate/test_acc", report["test/acc"], step)
        writer.add_text("evaluate/per_class", per_class_table(report, markdown=True), step)
        writer.add_image("evaluate/confusion_matrix", confusion, step)
        writer.add_image("evaluate/most_confident_errors", errors, step)


def _row_labels(report: dict[str, Any]) -> list[str]:
    """Each class as a table row names it: the label, and its name where that is not the label itself."""
    return [class_label(c, report["classes"]) for c in range(len(report["classes"]))]


def per_class_table(report: dict[str, Any], markdown: bool = False) -> str:
    per_class = report["per_class"]
    columns = (_row_labels(report), per_class["precision"], per_class["recall"], per_class["support"])
    rows = list(zip(*columns, strict=True))
    if markdown:
        lines = ["| class | precision | recall | support |", "|---|---|---|---|"]
        lines += [f"| {c} | {p:.4f} | {r:.4f} | {s} |" for c, p, r, s in rows]
    else:
        width = max(len("class"), *(len(c) for c, *_ in rows))
        lines = [f"{'class':<{width}}  {'precision':>9}  {'recall':>7}  {'support':>7}"]
        lines += [f"{c:<{width}}  {p:>9.4f}  {r:>7.4f}  {s:>7}" for c, p, r, s in rows]
    return "\n".join(lines)


def print_report(report: dict[str, Any]) -> None:
    print(f"checkpoint: {report['checkpoint']} (step {report['global_step']})")
    print(f"test set:   {report['test_digits']:,} images of {report['dataset']}")
    print(f"accuracy:   {report['test/acc']:.2%}   loss: {report['test/loss']:.4f}\n")
    print(per_class_table(report))
    labels, names = _row_labels(report), report["classes"]
    width = max(5, *(len(label) for label in labels))
    print("\nconfusion matrix (rows: true class, columns: predicted)")
    print(" " * width + "  " + " ".join(f"{c:>5}" for c in range(len(labels))))
    for label, row in zip(labels, report["confusion_matrix"], strict=True):
        print(f"{label:<{width}}  " + " ".join(f"{count:>5}" for count in row))
    print("\nmost confidently wrong (test index: predicted, true, confidence)")
    longest = max(len(name) for name in names)
    for e in report["most_confident_errors"]:
        predicted, true = names[e["predicted"]], f"(true {names[e['true']]})"
        print(f"  #{e['index']:<5}  {predicted:<{longest}}  {true:<{longest + 7}}  {e['confidence']:.1%}")


def run(cfg: DictConfig) -> int:
    report = evaluate(cfg)
    print_report(report)
    return 0


def main(argv: list[str] | None = None) -> int:
    return config_command("evaluate", __doc__, run, argv)


if __name__ == "__main__":
    sys.exit(main())
