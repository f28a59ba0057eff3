"""Train LeNet-5, then test the best checkpoint. The entry point of every run and sweep.

python -m lenet_pl.train                                  # the classic setup (conf/train.yaml)
python -m lenet_pl.train experiment=modern                # ReLU, max-pooling, Adam
python -m lenet_pl.train -m activation=tanh,relu pooling=avg,max
"""

import ctypes
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor, ProgressBar
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from lenet_pl import CONFIG_DIR
from lenet_pl.checkpoints import adopt_checkpoint, check_compatible, load_checkpoint, resolve_checkpoint
from lenet_pl.config import run_hparams, validate
from lenet_pl.data import MNISTDataModule
from lenet_pl.errors import UserError, user_message
from lenet_pl.model import format_layer_table, layer_table
from lenet_pl.module import LeNetModule

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


def build(cfg: DictConfig, callbacks: Sequence[L.Callback] = ()) -> tuple[MNISTDataModule, LeNetModule, L.Trainer]:
    """The data module, LightningModule and Trainer of the run `cfg` describes (train and bench share this)."""
    configure_process(cfg)
    L.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data)
    scheduler = cfg.scheduler.get("scheduler")
    module = LeNetModule(
        net=instantiate(cfg.model),
        loss=instantiate(cfg.loss),
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(scheduler) if scheduler else None,
        scheduler_interval=cfg.scheduler.get("interval", "epoch"),
        num_classes=cfg.model.num_classes,
        compile=cfg.get("compile", False),
        channels_last=cfg.get("channels_last", False),
        config=OmegaConf.to_container(cfg, resolve=True),
    )
    loggers = [instantiate(c) for c in cfg.logger.values()]
    all_callbacks = [instantiate(c) for c in cfg.callbacks.values()] + list(callbacks)
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
    trainer: L.Trainer = instantiate(cfg.trainer, logger=loggers, callbacks=all_callbacks, **no_validation)
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
    (output_dir / "metrics.json").write_text(json.dumps({"hparams": hparams, "metrics": metrics}, indent=2))
    return metrics


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        metrics = train(cfg)
    except Exception as err:
        # failure.json tells `lenet_pl.report` that this run failed, rather than is still running.
        output_dir = Path(HydraConfig.get().runtime.output_dir)
        failure = {"error": type(err).__name__, "message": user_message(err)}
        (output_dir / "failure.json").write_text(json.dumps(failure, indent=2))
        if not isinstance(err, UserError | HydraException) or HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # a bug shows its traceback; in a sweep Hydra runs the other jobs, then exits non-zero
        log.error("error: %s", user_message(err))
        sys.exit(1)
    # Sweepers (Optuna) optimise the returned value.
    return metrics.get(cfg.get("optimized_metric"))


if __name__ == "__main__":
    main()
