"""LeNetModule: rebuilt from any checkpoint by `load_from_checkpoint`, and refusing what torch refuses when built."""

import json
import pickle
from functools import partial
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.utils import instantiate

from conftest import run_in_process, tiny_args, write_dataset
from lenet_pl.module import LeNetModule, check_model_fits_data
from lenet_pl.runtime.build import build
from lenet_pl.runtime.compose import compose_config
from lenet_pl.runtime.errors import ConfigError
from lenet_pl.runtime.values import validate

# One per kind of model the project trains: the classic default, the modern preset (ReLU, max-pool,
# Adam + cosine) and the 1998 one (Table I C3, trainable subsampling, RBF head + MAP loss, SDLM).
PRESETS = {
    "default": [],
    "modern": ["experiment=modern"],
    # the paper's protocol too: no validation split (data.val_size=0), the last epoch's network is tested
    "lenet1998": ["experiment=lenet1998", "callbacks.sdlm_curvature.samples=50", "data.batch_size=50"],
}


@pytest.fixture(scope="module", params=sorted(PRESETS))
def trained(request, tmp_path_factory) -> tuple[str, Path]:
    """A run of a few steps on synthetic digits through the CLI; (preset, its best checkpoint)."""
    tmp = tmp_path_factory.mktemp(request.param)
    root = write_dataset(tmp / "data", n_train=700, n_test=200)
    run = tmp / "run"
    overrides = [*PRESETS[request.param], "trainer.max_epochs=1", "trainer.limit_train_batches=4", "logger=csv"]
    args = tiny_args(root, run, *overrides, "threads=1")
    if request.param == "lenet1998":  # keep the preset's data.val_size=0
        args = [a for a in args if not a.startswith("data.val_size=")]
    result = run_in_process("lenet_pl.train", *args, cwd=tmp)
    assert result.returncode == 0, result.stderr[-3000:]
    best = json.loads((run / "metrics.json").read_text())["metrics"]["best_checkpoint"]
    return request.param, Path(best) if best else run / "checkpoints" / "last.ckpt"  # the one the run tested


def test_load_from_checkpoint_needs_only_the_path_and_tests_as_training_did(trained):
    preset, ckpt = trained
    module = LeNetModule.load_from_checkpoint(ckpt)
    assert isinstance(module, LeNetModule)
    config = module.hparams.config
    assert (config["model"]["head"]["_target_"] == "lenet_pl.layers.RBFOutput") == (preset == "lenet1998")
    assert module.optimizer_factory.func.__name__ == {"default": "SGD", "modern": "Adam", "lenet1998": "SDLM"}[preset]

    datamodule = instantiate(config["data"])
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    [tested] = trainer.test(module, datamodule=datamodule, verbose=False)
    run_metrics = json.loads((ckpt.parent.parent / "metrics.json").read_text())["metrics"]
    assert tested["test/acc"] == pytest.approx(run_metrics["test/acc"], abs=1e-6)
    assert tested["test/loss"] == pytest.approx(run_metrics["test/loss"], rel=1e-5)

    # ... and as a plain model: the largest output is the predicted class
    images, labels = datamodule.splits["test"]
    module.eval()
    with torch.no_grad():
        predicted = module(datamodule.preprocess(images)).argmax(1)
    assert (predicted == labels).float().mean().item() == pytest.approx(run_metrics["test/acc"], abs=1e-6)


@pytest.mark.parametrize("map_location", ["cpu", torch.device("cpu"), {"cuda:0": "cpu"}])
def test_map_location_places_the_weights(trained, map_location):
    module = LeNetModule.load_from_checkpoint(trained[1], map_location=map_location)
    assert {p.device.type for p in module.parameters()} == {"cpu"}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_map_location_cuda_puts_the_model_on_the_gpu(trained):
    module = LeNetModule.load_from_checkpoint(trained[1], map_location="cuda")
    assert {p.device.type for p in module.parameters()} == {"cuda"}
    x = torch.zeros(3, *module.net.input_shape, device="cuda")
    assert module(x).shape == (3, 10)


def test_load_from_checkpoint_reads_tensors_only(trained, tmp_path):
    """A checkpoint that holds pickled code is refused (weights_only), not run."""
    checkpoint = torch.load(trained[1], weights_only=True)
    checkpoint["callback"] = partial(print, "this would run on load")
    bad = tmp_path / "pickled.ckpt"
    torch.save(checkpoint, bad)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        LeNetModule.load_from_checkpoint(bad)


def test_a_checkpoint_without_a_run_config_says_what_is_needed(trained, tmp_path):
    checkpoint = torch.load(trained[1], weights_only=True)
    checkpoint["hyper_parameters"] = {}
    bare = tmp_path / "bare.ckpt"
    torch.save(checkpoint, bare)
    with pytest.raises(TypeError, match=r"needs net, loss and optimizer, or a run's config"):
        LeNetModule.load_from_checkpoint(bare)


def built(*overrides: str, root: Path | None = None) -> None:
    """Compose, validate and build a run as train.py does (no data is read)."""
    cfg = compose_config([*overrides, "paths.output_dir=unused", "logger=none", f"data.root={root or 'unused'}"])
    validate(cfg)
    build(cfg)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        # values torch refuses, through the one wrapper: the key, the value, torch's reason, the default
        (
            ["+optimizer.nesterov=true"],
            "optimizer.momentum=0.0, optimizer.nesterov=True are not allowed: torch.optim.SGD refuses them "
            "(Nesterov momentum requires a momentum and zero dampening). Their defaults, which it accepts: "
            "momentum=0, nesterov=False.",
        ),
        (
            ["scheduler=onecycle", "scheduler.scheduler.pct_start=1.5"],
            "scheduler.scheduler.pct_start=1.5 is not allowed: torch.optim.lr_scheduler.OneCycleLR refuses it "
            "(Expected float between 0 and 1 pct_start, but got 1.5). Its default, which it accepts: pct_start=0.3.",
        ),
        (
            ["scheduler=cosine", "scheduler.scheduler.T_max=0"],
            "scheduler.scheduler with T_max=0 is not allowed: torch.optim.lr_scheduler.CosineAnnealingLR refuses "
            "it (integer modulo by zero).",
        ),
        (
            ["+optimizer.momentun=0.9"],
            "optimizer.momentun=0.9 is not allowed: torch.optim.SGD refuses it "
            "(SGD.__init__() got an unexpected keyword argument 'momentun').",
        ),
        (
            ["+data.flip=true"],
            "data.flip=True is not allowed: lenet_pl.data.MNISTDataModule refuses it "
            "(MNISTDataModule.__init__() got an unexpected keyword argument 'flip').",
        ),
        (
            ["model=lenet5_1998", "model.num_classes=12"],
            "model.num_classes=12 is not allowed: lenet_pl.model.LeNet5 refuses it (the RBF output has (10, 84) "
            "bitmap centres: it needs in_features=84 and num_classes=10, got 84 and 12). Its default, which it "
            "accepts: num_classes=10.",
        ),
        # values checked by the rule table before anything is built
        (["optimizer.momentum=-1"], "optimizer.momentum=-1 is not allowed: the momentum must be a number >= 0."),
        (
            ["optimizer=adam", "optimizer.betas=[0.9,1.0]"],
            "optimizer.betas=[0.9, 1.0] is not allowed: give two numbers, each in [0, 1), e.g. [0.9, 0.999].",
        ),
        (["optimizer=adam", "+optimizer.eps=-1e-8"], "optimizer.eps=-1e-08 is not allowed: it must be a number >= 0."),
        (
            ["scheduler=step", "scheduler.scheduler.step_size=0"],
            "scheduler.scheduler.step_size=0 is not allowed: give a whole number of epochs >= 1.",
        ),
        # the model against the data, once the run is built
        (
            ["data.image_size=28"],
            "model.input_size=32 does not fit data.image_size=28: the data gives 28x28 images and the model takes "
            "32x32.",
        ),
        (
            ["model=keras_blog", "data.image_size=32"],
            "model.input_size=28 does not fit data.image_size=32",
        ),
        (
            ["model.num_classes=5"],
            "model.num_classes=5 does not fit the data: MNIST has 10 classes (labels 0-9), so the model needs "
            "model.num_classes=10.",
        ),
        (
            ["data=fashion_mnist", "model.num_classes=11"],
            "model.num_classes=11 does not fit the data: FashionMNIST has 10 classes",
        ),
        (
            ["model.in_channels=3"],
            "model.in_channels=3 does not fit the data: its images have 1 channel, so the model needs "
            "model.in_channels=1.",
        ),
    ],
)
def test_values_refused_when_the_run_is_built_name_key_value_and_what_is_allowed(overrides, message):
    with pytest.raises(ConfigError) as raised:
        built(*overrides)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_module_built_from_parts_reports_the_factorys_arguments():
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    with pytest.raises(ConfigError, match=r"optimizer.momentum=-0.5 is not allowed: torch.optim.sgd.SGD refuses"):
        LeNetModule(net, torch.nn.CrossEntropyLoss(), partial(torch.optim.SGD, lr=0.1, momentum=-0.5))


def test_shape_check_passes_for_every_shipped_model(synthetic_root):
    for model in ("lenet5", "lenet5_1998", "keras_blog"):
        cfg = compose_config(
            [f"model={model}", "paths.output_dir=unused", f"data.root={synthetic_root}", "data.verify=false"]
        )
        module = LeNetModule(config=dict(cfg))
        check_model_fits_data(module, instantiate(cfg.data))
