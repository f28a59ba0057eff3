"""Random override combinations either build a working model or fail with the project's clear error type."""

import os

import torch
from hydra.utils import instantiate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lenet_pl import CONFIG_DIR
from lenet_pl.module import make_scheduler
from lenet_pl.runtime.compose import compose_config
from lenet_pl.runtime.errors import UserError
from lenet_pl.runtime.values import validate

GROUPS = ("activation", "pooling", "loss", "optimizer", "scheduler", "model", "data", "experiment")
# Values users type, good and bad: numbers out of range, wrong types, nulls.
VALUES = {
    "optimizer.lr": ["0.01", "1e-4", "0", "-1", "fast", "null", "[1]"],
    "optimizer.weight_decay": ["0", "0.1", "-0.5", "x"],
    "loss.label_smoothing": ["0", "0.1", "1", "1.5", "-0.1", "x"],
    "data.batch_size": ["1", "64", "0", "-3", "2.5", "many", "true"],
    "data.eval_batch_size": ["500", "0"],
    "data.val_size": ["0.1", "100", "0", "1.5", "-0.2", "half"],
    "data.image_size": ["28", "32", "29", "20", "big"],
    "trainer.max_epochs": ["1", "-1", "-2", "0", "3.5", "forever"],
    "model.input_size": ["28", "32", "36", "16", "12", "0", "abc"],
    "model.num_classes": ["10", "2", "0", "-1"],
    "seed": ["0", "123", "-5", "1.5", "s"],
}


def options(group: str) -> list[str]:
    return [*sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml")), "no_such_option"]


override = st.one_of(
    st.sampled_from(GROUPS).flatmap(lambda g: st.sampled_from(options(g)).map(lambda o, g=g: f"{g}={o}")),
    st.sampled_from(sorted(VALUES)).flatmap(lambda k: st.sampled_from(VALUES[k]).map(lambda v, k=k: f"{k}={v}")),
)
overrides = st.lists(override, max_size=6, unique_by=lambda o: o.split("=")[0])


def user_error_in(err: BaseException) -> UserError | None:
    while err is not None and not isinstance(err, UserError):
        err = err.__cause__ or err.__context__
    return err


def build(args: list[str]) -> torch.Tensor:
    cfg = compose_config([*args, "paths.output_dir=unused"])
    validate(cfg)
    instantiate(cfg.data)  # checks its arguments; reads no files until setup
    net = instantiate(cfg.model)
    optimizer = instantiate(cfg.optimizer)(net.parameters())
    if cfg.scheduler.get("scheduler"):
        make_scheduler(instantiate(cfg.scheduler.scheduler), optimizer, total_steps=100)
    x = torch.zeros(2, *net.input_shape)
    out = net(x)
    loss = instantiate(cfg.loss)(out, torch.zeros(2, dtype=torch.long))
    assert out.shape == (2, cfg.model.num_classes) and torch.isfinite(loss)
    return out


@settings(
    max_examples=int(os.environ.get("LENET_FUZZ_EXAMPLES", "50")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,  # the same examples on every run, so CI cannot fail by luck
)
@given(overrides)
def test_any_override_combination_builds_or_fails_clearly(args):
    try:
        build(args)
    except Exception as err:
        found = user_error_in(err)
        assert found is not None, f"{args} raised {type(err).__name__}: {err}"
        message = str(found)
        assert (message and "\n" not in message.strip()) or "Available options" in message or "Could not" in message, (
            f"{args}: error is not one paragraph: {message!r}"
        )
