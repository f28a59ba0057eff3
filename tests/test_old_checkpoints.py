"""Checkpoints saved by an earlier layout of the package still load: evaluate, predict and resume.

tests/data/old_run/ holds two 1-epoch runs on the synthetic digits of `write_dataset(root,
n_train=700, n_test=200)`, saved before the modules moved into sweeps/ and runtime/: `classic`
(the default config) and `lenet1998` (experiment=lenet1998: Table I C3, RBF output, SDLM with its
curvature callback, the step schedule, the error-per-pass callback). Their checkpoints name every
class by the import path it had then (`lenet_pl.checkpoints.AtomicCheckpointIO`, ...).
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from conftest import REPO, run_in_process, tiny_args, write_dataset
from lenet_pl import evaluate, predict
from lenet_pl.runtime.checkpoints import _run_identity
from lenet_pl.runtime.compose import compose_config

OLD_RUNS = Path(__file__).parent / "data" / "old_run"
NAMES = ("classic", "lenet1998")
PRESETS = {"classic": [], "lenet1998": ["experiment=lenet1998"]}


@pytest.fixture
def old_runs(tmp_path: Path) -> tuple[Path, dict[str, Path]]:
    """The synthetic data root the old runs were trained on, and a writable copy of each run."""
    root = write_dataset(tmp_path / "data", n_train=700, n_test=200)
    return root, {name: Path(shutil.copytree(OLD_RUNS / name, tmp_path / name)) for name in NAMES}


def test_the_old_checkpoints_name_classes_by_their_old_paths():
    """The fixture is what it says: its checkpoints point at the paths the shims keep alive."""
    targets = set()
    for name in NAMES:
        checkpoint = torch.load(OLD_RUNS / name / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
        targets |= {word for word in repr(checkpoint["hyper_parameters"]).split("'") if word.startswith("lenet_pl.")}
    assert {"lenet_pl.checkpoints.AtomicCheckpointIO", "lenet_pl.optim.SDLM", "lenet_pl.layers.RBFOutput"} <= targets


@pytest.mark.parametrize("name", NAMES)
def test_evaluate_rebuilds_an_old_run_and_reproduces_its_test_accuracy(old_runs, name: str, capsys):
    root, runs = old_runs
    assert evaluate.main([f"ckpt_path={runs[name]}", f"data.root={root}", "worst=4"]) == 0
    [report_file] = (runs[name] / "evaluation").glob("*/evaluation.json")
    report = json.loads(report_file.read_text())
    trained = json.loads((runs[name] / "metrics.json").read_text())["metrics"]
    assert report["test_digits"] == 200
    # last.ckpt is the only checkpoint kept; after one epoch it is the best one, which was tested
    assert report["test/acc"] == pytest.approx(trained["test/acc"], abs=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_predict_reads_digits_with_an_old_run(old_runs, name: str, tmp_path: Path, capsys):
    _, runs = old_runs
    image = tmp_path / "digit.png"
    Image.fromarray(np.pad(np.full((20, 6), 255, np.uint8), 4)).save(image)
    assert predict.main([f"ckpt_path={runs[name]}", f"inputs={image}", "format=jsonl"]) == 0
    [line] = capsys.readouterr().out.strip().splitlines()
    assert 0 <= json.loads(line)["digit"] <= 9


def test_training_resumes_from_old_checkpoints_for_one_more_epoch(old_runs, tmp_path: Path):
    root, runs = old_runs
    results = [
        run_in_process(
            "lenet_pl.train",
            *tiny_args(root, tmp_path / f"resumed_{name}", *PRESETS[name]),
            "data.val_size=200",
            "trainer.max_epochs=2",
            f"ckpt_path={runs[name] / 'checkpoints' / 'last.ckpt'}",
            cwd=REPO,
        )
        for name in NAMES
    ]
    for name, result in zip(NAMES, results, strict=True):
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
        metrics = json.loads((tmp_path / f"resumed_{name}" / "metrics.json").read_text())["metrics"]
        assert metrics["epochs"] == 2  # the old epoch, then one more


def test_a_run_saved_before_a_neutral_key_existed_is_the_same_run_for_ckpt_path_last():
    now = compose_config(["experiment=lenet1998", "paths.output_dir=unused"])
    saved = OmegaConf.to_container(now, resolve=False)
    del saved["optimizer"]["divide_by"]  # as a run saved before SDLM had divide_by
    assert _run_identity(OmegaConf.create(saved)) == _run_identity(now)
    saved["optimizer"]["divide_by"] = "sqrt_fan_in_share"  # a value that changes the run still counts
    assert _run_identity(OmegaConf.create(saved)) != _run_identity(now)
    half = OmegaConf.to_container(now, resolve=False)
    del half["loss"]["scale"]  # rbf_map_half's 0.5 is not neutral: without it the run is another one
    assert _run_identity(OmegaConf.create(half)) != _run_identity(now)
