"""Every config file composes, every preset builds, and bad values fail before training with a clear message."""

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from lenet_pl import CONFIG_DIR
from lenet_pl.module import make_scheduler
from lenet_pl.runtime.compose import compose_config
from lenet_pl.runtime.errors import ConfigError
from lenet_pl.runtime.naming import run_hparams
from lenet_pl.runtime.values import validate

# Groups whose options are whole configs of the run, each composed on its own below.
SWAPPABLE = (
    "activation",
    "pooling",
    "norm",
    "loss",
    "optimizer",
    "scheduler",
    "model",
    "data",
    "trainer",
    "precision",
    "logger",
    "callbacks",
)


def options(group: str) -> list[str]:
    """The choices of a config group as the command line names them: `modern`, `path/0_lenet1998`."""
    folder = CONFIG_DIR / group
    return sorted(path.relative_to(folder).with_suffix("").as_posix() for path in folder.rglob("*.yaml"))


def every_option() -> list[tuple[str, str]]:
    return [(group, option) for group in (*SWAPPABLE, "experiment") for option in options(group)]


@pytest.mark.parametrize(("group", "option"), every_option())
def test_every_config_file_composes_and_resolves(group, option, tmp_path):
    cfg = compose_config([f"{group}={option}", f"paths.output_dir={tmp_path}"])
    container = OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
    assert container["seed"] == cfg.seed
    validate(cfg)


@pytest.mark.parametrize("experiment", options("experiment"))
def test_every_preset_builds_its_model_loss_optimizer_and_data_module(experiment):
    cfg = compose_config([f"experiment={experiment}"])
    net = instantiate(cfg.model)
    dm = instantiate(cfg.data)
    assert dm.batch_size == cfg.data.batch_size
    optimizer = instantiate(cfg.optimizer)(net.parameters())
    assert optimizer.param_groups[0]["lr"] == pytest.approx(cfg.optimizer.lr)
    scheduler = cfg.scheduler.get("scheduler")
    if scheduler:
        make_scheduler(instantiate(scheduler), optimizer, total_steps=100)
    assert callable(instantiate(cfg.loss))


def test_default_is_the_classic_blog_setup_and_modern_swaps_four_axes():
    classic = compose_config([])
    assert classic.activation._target_ == "torch.nn.Tanh" and classic.pooling._target_ == "lenet_pl.layers.AvgPool"
    assert classic.optimizer._target_ == "torch.optim.SGD" and classic.optimizer.lr == 0.01
    assert classic.data.batch_size == 128 and classic.trainer.max_epochs == 20
    assert classic.loss._target_ == "torch.nn.CrossEntropyLoss"
    modern = compose_config(["experiment=modern"])
    assert modern.activation._target_ == "torch.nn.ReLU" and modern.pooling._target_ == "lenet_pl.layers.MaxPool"
    assert modern.optimizer._target_ == "torch.optim.Adam" and modern.loss._target_ == "torch.nn.CrossEntropyLoss"


def test_unknown_choice_lists_the_valid_options():
    with pytest.raises(ConfigError) as info:
        compose_config(["activation=swish"])
    message = str(info.value)
    assert "activation/swish" in message
    for option in ("relu", "tanh", "sigmoid", "scaled_tanh"):
        assert option in message


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optimizer.lr=-0.1", r"optimizer.lr=-0.1 is not allowed: the learning rate must be a positive number"),
        ("optimizer.lr=0", r"optimizer.lr=0 is not allowed"),
        ("optimizer.lr=fast", r"optimizer.lr='fast' is not allowed"),
        ("optimizer.weight_decay=-1", r"optimizer.weight_decay=-1 is not allowed: it must be a number >= 0"),
        ("loss.label_smoothing=1.5", r"loss.label_smoothing=1.5 is not allowed: give a number in \[0, 1\]"),
        ("loss=mse loss.label_smoothing=-0.1", r"loss.label_smoothing=-0.1 is not allowed: give a number in \[0, 1\]"),
        ("loss.label_smoothing=some", r"loss.label_smoothing='some' is not allowed"),
        ("trainer.max_epochs=-2", r"trainer.max_epochs=-2 is not allowed: give a whole number of epochs >= 1"),
        ("trainer.max_epochs=0", r"trainer.max_epochs=0 is not allowed"),
        ("seed=1.5", r"seed=1.5 is not allowed: the seed must be a whole number"),
        ("optimizer.momentum=-1", r"optimizer.momentum=-1 is not allowed: the momentum must be a number >= 0\."),
        ("optimizer.lr=-0.5", r"optimizer.lr=-0.5 is not allowed: the learning rate must be a positive number\."),
    ],
)
def test_bad_values_are_rejected_before_anything_is_built(override, message):
    with pytest.raises(ConfigError, match=message):
        validate(compose_config(override.split()))


def test_run_hparams_name_the_chosen_configs_and_main_values():
    cfg = compose_config(["experiment=modern", "seed=3"])
    choices = {"experiment": "modern", "activation": "relu", "pooling": "max", "loss": "cross_entropy"}
    hparams = run_hparams(cfg, choices)
    assert hparams["experiment"] == "modern" and hparams["activation"] == "relu"
    assert hparams["scheduler"] == "none"  # not in choices: shown as none, never missing
    assert hparams["seed"] == 3 and hparams["optimizer.lr"] == cfg.optimizer.lr
