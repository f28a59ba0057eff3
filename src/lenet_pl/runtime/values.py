"""What each config value may be: the rules checked before a run is built (`RULES`, `validate`), and
a value refused while a config node is built, reported by its key (`instantiate_node`)."""

import inspect
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from lenet_pl.runtime.errors import ConfigError, UserError


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# What each plain value may be, checked before anything is built: (key, test, what is allowed).
# Keys a config does not have are skipped. The data module and model check their own arguments
# again when built, for users who build them without a config.
RULES: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    ("optimizer.lr", lambda v: _is_number(v) and v > 0, "the learning rate must be a positive number"),
    ("optimizer.weight_decay", lambda v: _is_number(v) and v >= 0, "it must be a number >= 0"),
    (
        "loss.label_smoothing",
        lambda v: _is_number(v) and 0 <= v <= 1,
        "give a number in [0, 1] (0: the one-hot target; 0.1: 0.91 on the label, 0.01 on each other class)",
    ),
    (
        "trainer.max_epochs",
        lambda v: _is_int(v) and (v >= 1 or v == -1),
        "give a whole number of epochs >= 1 (or -1 to train until stopped)",
    ),
    ("seed", _is_int, "the seed must be a whole number"),
    ("threads", lambda v: v is None or (_is_int(v) and v >= 1), "give a whole number of threads >= 1, or null"),
    ("keep_freed_memory", lambda v: isinstance(v, bool), "give true or false"),
    # torch refuses these too, when the optimizer is built, but does not say what it accepts.
    ("optimizer.momentum", lambda v: _is_number(v) and v >= 0, "the momentum must be a number >= 0"),
    ("optimizer.betas", lambda v: _is_pair_in_unit_interval(v), "give two numbers, each in [0, 1), e.g. [0.9, 0.999]"),
    ("optimizer.eps", lambda v: _is_number(v) and v >= 0, "it must be a number >= 0"),
    # torch accepts these when the schedule is built and fails, or misbehaves, epochs later.
    ("scheduler.scheduler.step_size", lambda v: _is_int(v) and v >= 1, "give a whole number of epochs >= 1"),
    ("scheduler.interval", lambda v: v in ("epoch", "step"), "give epoch or step (when the schedule steps)"),
    ("data.batch_size", lambda v: _is_int(v) and v >= 1, "it must be a whole number of at least 1"),
    ("data.eval_batch_size", lambda v: _is_int(v) and v >= 1, "it must be a whole number of at least 1"),
    ("data.image_size", _is_int, "it must be a whole number of pixels"),
    ("data.mean", _is_number, "it must be a number"),
    ("data.std", lambda v: _is_number(v) and v > 0, "it must be a positive number"),
    ("model.input_size", lambda v: _is_int(v) and v >= 16, "it must be a whole number of pixels, at least 16"),
    ("model.num_classes", lambda v: _is_int(v) and v >= 2, "it must be a whole number of classes, at least 2"),
)


def _is_pair_in_unit_interval(value: Any) -> bool:
    return (
        isinstance(value, list | tuple | ListConfig)
        and len(value) == 2
        and all(_is_number(v) and 0 <= v < 1 for v in value)
    )


_ABSENT = object()


def validate(cfg: DictConfig) -> None:
    """Reject values that would fail later, or silently misbehave, before anything is built."""
    for key, allowed, what in RULES:
        value = OmegaConf.select(cfg, key, default=_ABSENT)
        if value is not _ABSENT and not allowed(value):
            raise ConfigError(f"{key}={value!r} is not allowed: {what}.")


# Exceptions with which torch, Python and our parts refuse an argument value when an object is built.
REFUSALS = (ValueError, TypeError, LookupError, ZeroDivisionError)


def _target_name(node: Any) -> str:
    target = node.get("_target_") if isinstance(node, Mapping | DictConfig) else None
    return str(target) if target else "it"


def _signature_defaults(target: str) -> dict[str, Any]:
    """The default of each argument of `target` (a class or function path), or {} when it cannot be read."""
    try:
        obj = get_object(target)
        parameters = inspect.signature(obj).parameters
    except Exception:  # an unknown target or one without a signature: the message just has no defaults
        return {}
    return {name: p.default for name, p in parameters.items() if p.default is not inspect.Parameter.empty}


def _plain_items(node: Any) -> dict[str, Any]:
    """The node's own values (not its _target_/_partial_ keys nor nested nodes), as plain Python values."""
    if not isinstance(node, Mapping | DictConfig):
        return {}
    items = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
    return {k: v for k, v in items.items() if not str(k).startswith("_") and not isinstance(v, dict)}


def _named_in(key: str, reason: str) -> bool:
    """Whether `reason` (torch's message) is about argument `key`: 'momentum' in 'Invalid momentum value',
    'betas' in 'Invalid beta parameter', 'eps' in 'Invalid epsilon value'."""
    words = re.findall(r"[A-Za-z_]+", reason.lower())
    stems = {key.lower(), key.lower().removesuffix("s")}
    return any(word in stems or (len(key) >= 3 and word.startswith(key.lower())) for word in words)


def _wrong_type(value: Any, default: Any) -> bool:
    """A value whose kind differs from the default's: a word where a number goes, a number where a list goes."""
    if default is None or value is None:
        return False
    if isinstance(default, bool):
        return not isinstance(value, bool)
    if isinstance(default, int | float):
        return not _is_number(value)
    if isinstance(default, tuple | list):
        return not isinstance(value, list | tuple)
    return False


def refusal_message(key: str, node: Any, err: BaseException) -> str:
    """One paragraph: which values of config node `key` were refused, by what, why, and the defaults."""
    reason = " ".join(str(err).split()) or type(err).__name__
    target = _target_name(node)
    items = _plain_items(node)
    defaults = _signature_defaults(target) if target != "it" else {}
    # The values the refusal is about: those its message names, else those of the wrong kind.
    suspects = [k for k in items if _named_in(k, reason)] or [
        k for k in items if k in defaults and _wrong_type(items[k], defaults[k])
    ]
    if suspects:
        values = ", ".join(f"{key}.{k}={items[k]!r}" for k in suspects)
        one = len(suspects) == 1
        message = (
            f"{values} {'is' if one else 'are'} not allowed: {target} refuses {'it' if one else 'them'} ({reason})."
        )
        allowed = ", ".join(f"{k}={defaults[k]!r}" for k in suspects if k in defaults)
        if allowed:
            message += f" {'Its default' if one else 'Their defaults'}, which it accepts: {allowed}."
        return message
    # Nothing points at one value: show those that differ from the defaults (a few), where the cause must be.
    changed = [k for k in items if k not in defaults or items[k] != defaults[k]]
    shown = ", ".join(f"{k}={items[k]!r}" for k in changed[:8]) + (
        f" and {len(changed) - 8} more" if changed[8:] else ""
    )
    return f"{key} with {shown or 'its defaults'} is not allowed: {target} refuses it ({reason})."


@contextmanager
def refused_as_config_error(key: str, node: Any) -> Iterator[None]:
    """Turn torch's (or our parts') refusal of an argument while building config node `key` into a ConfigError.

    One mechanism for every node (data, model, loss, optimizer, scheduler): the message names the
    node's values the refusal is about, the refusing class, its own reason and its defaults. A
    UserError from our own parts already says all that and passes through, out of Hydra's wrapper.
    """
    try:
        yield
    except UserError:
        raise
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, UserError):
            raise cause from err
        full_key = re.search(r"full_key: (\S+)", str(err))
        where = full_key.group(1) if full_key and full_key.group(1).startswith(key) else key
        inner = OmegaConf.select(node, where[len(key) + 1 :]) if where != key and isinstance(node, DictConfig) else node
        raise ConfigError(refusal_message(where, inner, cause or err)) from err
    except REFUSALS as err:
        raise ConfigError(refusal_message(key, node, err)) from err


def instantiate_node(cfg: DictConfig, key: str, **kwargs: Any) -> Any:
    """`instantiate(cfg.<key>)`, with a refused argument reported as a ConfigError naming `key` and the value."""
    node = OmegaConf.select(cfg, key)
    with refused_as_config_error(key, node):
        return instantiate(node, **kwargs)
