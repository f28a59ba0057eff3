"""Train LeNet-5, then test the best checkpoint. The entry point of every run and sweep.

python -m lenet_pl.train                                  # the classic setup (conf/train.yaml)
python -m lenet_pl.train experiment=modern                # ReLU, max-pooling, Adam
python -m lenet_pl.train -m activation=tanh,relu pooling=avg,max
"""

import ctypes
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from hydra.types import RunMode
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.callbacks import LearningRateMonitor, ProgressBar
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue, OmegaConfBaseException

from lenet_pl import CONFIG_DIR
from lenet_pl.checkpoints import adopt_checkpoint, check_compatible, load_checkpoint, resolve_checkpoint
from lenet_pl.config import cpu_bf16_units, instantiate_node, run_hparams, validate
from lenet_pl.data import MNISTDataModule
from lenet_pl.divergence import TrainingDiverged
from lenet_pl.errors import ConfigError, OutputError, UserError, user_cause, user_message
from lenet_pl.model import format_layer_table, layer_table
from lenet_pl.module import LeNetModule, check_model_fits_data
from lenet_pl.outputs import disk_error, output_dirs, output_error, remove_unstarted_dirs, write_atomically
from lenet_pl.per_digit import write_test_predictions

log = logging.getLogger("lenet_pl")


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory in the process; False where it is not glibc.

    A LeNet step allocates and frees activations of a few MB. By default glibc serves blocks that
    large with mmap and hands them back to the OS when freed, or trims the heap top, so the next
    step faults every page in again: thousands of page faults a step, up to a third of a CPU step at
    batch 256 (BENCHMARKS.md). Raising both thresholds keeps the memory for reuse; the peak is the same.
    """
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):  # no C library to ask (Windows) or no mallopt (macOS)
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    # 32 MiB is the largest mmap threshold glibc accepts on 64-bit; trim only past 1 GiB of free heap.
    return bool(mallopt(m_mmap_threshold, 32 << 20)) and bool(mallopt(m_trim_threshold, 1 << 30))


def configure_process(cfg: DictConfig) -> None:
    """Threads and allocator of this process, as `cfg` asks (training and the benchmark's loops alike)."""
    if cfg.get("threads"):  # intra-op threads; sweeps running jobs side by side give each a share of the cores
        torch.set_num_threads(cfg.threads)
    if cfg.get("keep_freed_memory", True):
        keep_freed_memory()


def note_cpu_precision(trainer: L.Trainer) -> None:
    """Say in the log whether mixed bf16 on this CPU runs on bf16 units or is emulated (slower than fp32)."""
    if trainer.precision not in ("bf16-mixed", "bf16-true") or not isinstance(trainer.accelerator, CPUAccelerator):
        return
    units = cpu_bf16_units()
    if units:
        log.info("precision %s on a CPU with %s: bf16 runs on its bf16 units.", trainer.precision, " and ".join(units))
    else:
        log.warning(
            "precision %s on a CPU without bf16 units (neither AMX nor AVX512_BF16): bf16 is emulated here and "
            "trains slower than fp32 (BENCHMARKS.md, 'bf16'); precision=fp32 is the faster choice on this CPU.",
            trainer.precision,
        )


def build(cfg: DictConfig, callbacks: Sequence[L.Callback] = ()) -> tuple[MNISTDataModule, LeNetModule, L.Trainer]:
    """The data module, LightningModule and Trainer of the run `cfg` describes (train and bench share this)."""
    configure_process(cfg)
    L.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate_node(cfg, "data")
    # Built from the resolved config alone, the way load_from_checkpoint rebuilds it from a checkpoint.
    module = LeNetModule(config=OmegaConf.to_container(cfg, resolve=True))
    check_model_fits_data(module, datamodule)
    loggers = [instantiate_node(cfg, f"logger.{name}") for name in cfg.logger]
    all_callbacks = [instantiate_node(cfg, f"callbacks.{name}") for name in cfg.callbacks] + list(callbacks)
    if not loggers:  # logger=none: LearningRateMonitor refuses to run without a logger, and has nothing to do
        all_callbacks = [c for c in all_callbacks if not isinstance(c, LearningRateMonitor)]
    if not cfg.trainer.get("enable_progress_bar", True):  # Lightning refuses a bar callback with the bar off
        all_callbacks = [c for c in all_callbacks if not isinstance(c, ProgressBar)]
    if not datamodule.has_validation:  # data.val_size=0: nothing to monitor, so no best checkpoint or early stop
        dropped = [c for c in all_callbacks if str(getattr(c, "monitor", None) or "").startswith("val/")]
        all_callbacks = [c for c in all_callbacks if c not in dropped]
        if dropped:
            log.info(
                "data.val_size=0: no validation split, so nothing monitors validation (turned off: %s); "
                "the run is tested after its last epoch.",
                ", ".join(f"{type(c).__name__}(monitor={c.monitor!r})" for c in dropped),
            )
    no_validation = {} if datamodule.has_validation else {"limit_val_batches": 0}  # and no empty-loader warning
    trainer: L.Trainer = instantiate_node(cfg, "trainer", logger=loggers, callbacks=all_callbacks, **no_validation)
    note_cpu_precision(trainer)
    return datamodule, module, trainer


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
    if module.test_predicted is not None:  # for per-digit comparisons of runs (lenet_pl.mcnemar)
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
        log.error("error: %s", user_message(err))
        if hydra_cfg.mode == RunMode.MULTIRUN:
            raise err from None  # the job fails; the sweep goes on, and `cli` reports it at the end
        sys.exit(1)
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


_OURS = "LENET_PL_SET_HYDRA_FULL_ERROR"


def cli() -> None:
    """`python -m lenet_pl.train`: Hydra's app, with every user error reported as one paragraph, exit 1.

    Hydra prints an error raised outside the run itself (its run dir, logs and .hydra files not
    writable; a failed sweep job, re-raised once all jobs ran) as a traceback. Here Hydra lets it
    through instead (HYDRA_FULL_ERROR=1), and a user's error (bad input, a full or read-only disk)
    is printed as one paragraph; a bug still shows its traceback. HYDRA_FULL_ERROR=1 set by the
    user keeps Hydra's own behaviour: full tracebacks.
    """
    if os.environ.get("HYDRA_FULL_ERROR") == "1" and not os.environ.get(_OURS):
        main()
        return
    # Inherited by the processes a run starts (DDP re-runs this command), marked as ours, not the user's.
    os.environ["HYDRA_FULL_ERROR"] = os.environ[_OURS] = "1"
    # A full disk also fails TensorBoard's writer thread and the train.log handler, which would each
    # print a traceback of their own; the run's own error (below) says what happened, once.
    threading.excepthook = _quiet_about_the_disk(threading.excepthook)
    logging.raiseExceptions = False
    try:
        main()
    except Exception as err:
        message = _user_facing(err)
        if message is None:
            raise
        sweep = "-m" in sys.argv[1:] or "--multirun" in sys.argv[1:]
        if sweep and isinstance(err, UserError):  # raised by a job (composing the sweep raises Hydra's errors)
            message = f"a job of the sweep failed (the others ran; each failed job's dir holds failure.json): {message}"
        print(f"error: {message}", file=sys.stderr)
        sys.exit(1)


def _quiet_about_the_disk(
    hook: Callable[[threading.ExceptHookArgs], Any],
) -> Callable[[threading.ExceptHookArgs], Any]:
    """`hook`, except for a thread that died of a full or read-only disk: the main thread reports that."""

    def quiet(args: threading.ExceptHookArgs) -> Any:
        if disk_error(args.exc_value) is None:
            return hook(args)
        return None

    return quiet


def _user_facing(err: BaseException) -> str | None:
    """The one-paragraph message for an error the user can fix, or None for a bug."""
    if isinstance(err, OutputError):
        return str(err)
    if (disk := disk_error(err)) is not None:  # before the run started: its dir, logs or .hydra files
        folder = output_dirs[-1] if output_dirs else None
        removed = remove_unstarted_dirs()
        message = str(output_error(disk, folder, started=False))
        if removed:
            message += (
                f" Its folder, which held only Hydra's start-up files, was removed: {', '.join(map(str, removed))}."
            )
        return message
    if isinstance(err, UserError):
        return user_message(err)
    if isinstance(err, HydraException):  # composition: an unknown choice, a malformed override
        cause = err.__cause__
        return str(err).strip() + (f"\n{cause}" if isinstance(cause, OmegaConfBaseException) else "")
    return None


if __name__ == "__main__":
    cli()
