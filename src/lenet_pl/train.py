"""Train LeNet-5, then test the best checkpoint. The entry point of every run and sweep.

python -m lenet_pl.train                                  # the classic setup (conf/train.yaml)
python -m lenet_pl.train experiment=modern                # ReLU, max-pooling, Adam
python -m lenet_pl.train -m activation=tanh,relu pooling=avg,max
"""

import json
import logging
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from hydra.types import RunMode
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig
from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue

from lenet_pl import CONFIG_DIR
from lenet_pl.divergence import TrainingDiverged
from lenet_pl.model import format_layer_table, layer_table
from lenet_pl.per_digit import write_test_predictions
from lenet_pl.runtime.build import build
from lenet_pl.runtime.checkpoints import adopt_checkpoint, check_compatible, load_checkpoint, resolve_checkpoint
from lenet_pl.runtime.cli import hydra_app
from lenet_pl.runtime.compose import register_resolvers
from lenet_pl.runtime.errors import ConfigError, OutputError, RunFailed, UserError, user_cause, user_message
from lenet_pl.runtime.naming import run_hparams
from lenet_pl.runtime.outputs import disk_error, output_dirs, output_error, remove_unstarted_dirs, write_atomically
from lenet_pl.runtime.values import validate
from lenet_pl.sweeps.progress import finish_progress

log = logging.getLogger("lenet_pl")
# conf/train.yaml names run dirs with ${unique_dir:...} and ${sweep_job_name:...}, which Hydra resolves
# before main runs, here and in every process a launcher starts a job in (they import this module).
register_resolvers()


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit and test one run described by `cfg`; returns its final metrics (also written to metrics.json)."""
    validate(cfg)
    output_dir = Path(cfg.paths.output_dir)
    datamodule, module, trainer = build(cfg)
    # Resolve and check the checkpoint before anything is trained: a wrong path or a checkpoint of
    # another model fails here, in one paragraph, instead of deep inside Lightning.
    ckpt_path = resolve_checkpoint(cfg.get("ckpt_path"), cfg, cfg.paths.output_root, output_dir)
    if ckpt_path is not None:
        checkpoint = load_checkpoint(ckpt_path)
        check_compatible(checkpoint, module, ckpt_path)
        log.info(
            "Resuming from %s (epoch %s, step %s)", ckpt_path, checkpoint.get("epoch"), checkpoint.get("global_step")
        )
        # Under DDP every process runs this; the first of each node copies (before `fit` starts the others).
        ckpt_path = adopt_checkpoint(
            checkpoint, ckpt_path, output_dir / "checkpoints", copy_files=trainer.local_rank == 0
        )

    if trainer.is_global_zero:
        log.info("LeNet-5 layers:\n%s", format_layer_table(layer_table(module.net)))
    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    fit_seconds = time.perf_counter() - start
    fit_metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}  # test() replaces these

    # The best checkpoint on validation; with no validation split, the network after the last epoch.
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if not datamodule.has_validation:
        best = ""  # the weights in memory are the last epoch's (a last.ckpt may lag behind an early stop)
    test_results = trainer.test(module, datamodule=datamodule, ckpt_path=best or None, weights_only=True)
    metrics = {
        **fit_metrics,
        **{k: float(v) for k, v in test_results[0].items()},
        "epochs": trainer.current_epoch,
        "global_step": trainer.global_step,
        "fit_seconds": fit_seconds,
        "best_checkpoint": best,
        "tested": "best validation checkpoint" if best else "network after the last epoch",
    }
    if not trainer.is_global_zero:  # DDP: one process reports and writes
        return metrics
    log.info("Test accuracy: %.2f%% (test loss %.4f)", 100 * metrics["test/acc"], metrics["test/loss"])

    hparams = run_hparams(cfg, HydraConfig.get().runtime.choices)
    final = {
        f"final/{k.replace('/', '_')}": metrics[k] for k in ("val/acc_best", "test/acc", "test/loss") if k in metrics
    }
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):  # the hparams tab ranks runs by these final metrics
            logger.log_hyperparams(hparams, metrics=final)
        else:
            logger.log_hyperparams(hparams)
        logger.finalize("success")  # test() already closed it: without this the write may be lost at exit
    if module.test_predicted is not None:  # for per-digit comparisons of runs (lenet_pl.sweeps.mcnemar)
        write_test_predictions(output_dir, module.test_predicted, *datamodule.splits["test"])
    write_atomically(
        output_dir / "metrics.json", json.dumps({"hparams": hparams, "metrics": metrics}, indent=2).encode()
    )
    return metrics


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        metrics = train(cfg)
    except Exception as err:
        hydra_cfg = HydraConfig.get()
        output_dir = Path(hydra_cfg.runtime.output_dir)
        if isinstance(err, InterpolationResolutionError | MissingMandatoryValue):  # ${...} or ??? on the command line
            err = ConfigError(" ".join(str(err).split()))
        elif (disk := disk_error(err, output_dir)) is not None:
            resumed = resolve_checkpoint_quietly(cfg)
            err = output_error(
                disk,
                output_dir,
                list(hydra_cfg.overrides.task),
                [output_dir / "checkpoints", *([resumed.parent] if resumed else [])],
            )
        record_failure(output_dir, err)
        if not isinstance(err, UserError | HydraException):
            raise  # a bug shows its traceback; in a sweep Hydra runs the other jobs, then exits non-zero
        if hydra_cfg.mode == RunMode.MULTIRUN:
            log.error("error: %s", user_message(err))  # the job's log says why it failed
        else:
            log_to_file(f"error: {user_message(err)}")  # the console gets it once, from the harness, on stderr
        # A run: `cli` reports it. A sweep: the job fails, the others run, and `cli` reports it at the end.
        raise (user_cause(err) or err) from None
    # Sweepers (Optuna) optimise the returned value.
    return metrics.get(cfg.get("optimized_metric"))


def resolve_checkpoint_quietly(cfg: DictConfig) -> Path | None:
    """The checkpoint the run resumed from, if any (it is still good when the run's own copies are not)."""
    try:
        return resolve_checkpoint(cfg.get("ckpt_path"), cfg, cfg.paths.output_root, cfg.paths.output_dir)
    except UserError:
        return None


def record_failure(output_dir: Path, err: BaseException) -> None:
    """failure.json tells `lenet_pl.report` that this run failed, rather than is still running; on a
    full disk it may not be written either, which the report then shows as "stopped without a record".

    `is_result`: the failure says something about the run's config (it diverged, or the config is
    invalid), so running it again would fail again and a resumed sweep keeps it as the job's result.
    Any other failure (a bug, a full disk, missing data) is run again when the sweep resumes.
    """
    failure = {
        "error": type(err).__name__,
        "message": user_message(err),
        "is_result": isinstance(user_cause(err), TrainingDiverged | ConfigError),
    }
    try:
        write_atomically(output_dir / "failure.json", json.dumps(failure, indent=2).encode())
    except OSError as write_err:
        log.warning("could not write %s: %s", output_dir / "failure.json", write_err.strerror)


def log_to_file(message: str) -> None:
    """Write `message` to the run's log file (train.log) alone, at level ERROR."""
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def cli() -> None:
    """`python -m lenet_pl.train`: Hydra's app through the command-line harness (lenet_pl.runtime.cli), which
    answers with Hydra's help (conf/hydra/help/train.yaml) and ends a user's error in one line."""
    # A full disk also fails TensorBoard's writer thread and the train.log handler, which would each
    # print a traceback of their own; the run's own error (below) says what happened, once.
    threading.excepthook = _quiet_about_the_disk(threading.excepthook)
    logging.raiseExceptions = False
    sys.exit(hydra_app(main, explain=_user_facing, renamed=("data_root", "paths.data_dir")))


def _quiet_about_the_disk(
    hook: Callable[[threading.ExceptHookArgs], Any],
) -> Callable[[threading.ExceptHookArgs], Any]:
    """`hook`, except for a thread that died of a full or read-only disk: the main thread reports that."""

    def quiet(args: threading.ExceptHookArgs) -> Any:
        if disk_error(args.exc_value) is None:
            return hook(args)
        return None

    return quiet


def _user_facing(err: Exception) -> UserError | HydraException | None:
    """The user's error that `err` stands for (one line, with its exit code), or None for a bug."""
    sweep = "-m" in sys.argv[1:] or "--multirun" in sys.argv[1:]
    finish_progress()  # the sweep's last progress line, then the error
    if sweep and user_cause(err) is not None:  # raised by a job (composing the sweep raises Hydra's errors)
        return RunFailed(
            f"a job of the sweep failed (the others ran; each failed job's dir holds failure.json): {user_message(err)}"
        )
    if isinstance(err, OutputError):
        return err
    if (disk := disk_error(err)) is not None:  # before the run started: its dir, logs or .hydra files
        folder = output_dirs[-1] if output_dirs else None
        removed = remove_unstarted_dirs()
        message = str(output_error(disk, folder, started=False))
        if removed:
            message += (
                f" Its folder, which held only Hydra's start-up files, was removed: {', '.join(map(str, removed))}."
            )
        return OutputError(message)
    if isinstance(err, UserError | HydraException):  # HydraException: composition, e.g. an unknown choice
        return err
    return None


if __name__ == "__main__":
    cli()
