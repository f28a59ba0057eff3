"""Build a run from its config: this process's threads and allocator, the data module, the LeNetModule and
the Trainer with its loggers and callbacks. `python -m lenet_pl.train` fits what `build` returns; the
benchmark times the same objects."""

import ctypes
import logging
from collections.abc import Sequence

import lightning as L
import torch
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.callbacks import LearningRateMonitor, ProgressBar
from omegaconf import DictConfig, OmegaConf

from lenet_pl.data import MNISTDataModule
from lenet_pl.module import LeNetModule, check_model_fits_data
from lenet_pl.runtime.precision import cpu_bf16_units
from lenet_pl.runtime.values import instantiate_node

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
