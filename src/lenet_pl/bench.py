"""How fast the project trains, against a hand-written PyTorch loop and the usual tutorial pipeline.

python -m lenet_pl.bench                                   # the default config (conf/train.yaml)
python -m lenet_pl.bench experiment=fast --steps 200       # any train.py overrides after the options
python -m lenet_pl.bench --no-time-to-accuracy data.root=/path/to/data
python -m lenet_pl.bench --no-throughput --tta-seeds 0 1 2 42 --tta experiment=fast --tta threads=2

In ONE process, on the same model, batch size, data and number of steps, it times
  (a) plain:     a hand-written loop over the in-memory uint8 tensors (the ceiling),
  (b) lightning: the project's training, built from the config as train.py builds it,
  (c) naive:     torchvision MNIST with per-sample ToTensor/Normalize through a DataLoader,
repeating the three in turn (so that load on a shared machine hits all of them alike) and
printing the median samples/s of each and the ratios (b)/(a) and (c)/(a). A shared machine's
speed drifts by several percent between runs seconds apart, so (b)/(a) is measured a second
way too: one fit in which every training step of (b) is followed by one step of (a), both
timed, the ratio taken over blocks of consecutive pairs (`--paired-steps`). Then, in a child
process, it fits the fastest preset (`experiment=fast`) and reports the seconds from the
start of `fit` until the test accuracy first reaches the target, and the child's peak RSS.
Results are printed as `key: value` lines (and written as JSON with --output FILE).
"""

import argparse
import contextlib
import copy
import json
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from queue import Empty
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import Tensor
from torch.utils.data import DataLoader
from torchvision import transforms

from lenet_pl.data import MNISTDataModule, resolve_device
from lenet_pl.module import make_scheduler
from lenet_pl.runtime.build import build, configure_process
from lenet_pl.runtime.cli import ArgumentParser, command
from lenet_pl.runtime.compose import compose_config
from lenet_pl.runtime.precision import cpu_bf16_units

PIPELINES = ("plain", "lightning", "naive")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed_steps(
    batches: Iterator[tuple[Tensor, Tensor]],
    step: Callable[[Tensor, Tensor], None],
    warmup: int,
    steps: int,
    device: torch.device,
) -> tuple[float, float]:
    """Wall and CPU seconds taken by `steps` training steps after `warmup` untimed ones (batch fetching included)."""
    for _ in range(warmup):
        step(*next(batches))
    _sync(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step(*next(batches))
    _sync(device)
    return time.perf_counter() - start, time.process_time() - cpu_start


def _endless(make_epoch: Callable[[], Any]) -> Iterator[Any]:
    while True:
        yield from make_epoch()


class _Reference:
    """A fresh model, loss and optimizer from the config, trained by a plain loop: the work of one step.

    It does what the config asks of the Lightning run too: NHWC memory order, torch.compile,
    a per-step learning-rate schedule, and mixed precision (fp16 with loss scaling on CUDA; on a
    CPU Lightning runs 16-mixed as bf16).
    """

    def __init__(self, cfg: DictConfig, device: torch.device) -> None:
        torch.manual_seed(cfg.seed)
        self.net = instantiate(cfg.model).to(device)
        self.memory_format = torch.channels_last if cfg.get("channels_last") else torch.contiguous_format
        self.net.to(memory_format=self.memory_format)
        if cfg.get("compile"):
            self.net.compile()
        self.loss = instantiate(cfg.loss)
        self.optimizer = instantiate(cfg.optimizer)(self.net.parameters())
        self.scheduler = None
        if cfg.scheduler.get("scheduler") and cfg.scheduler.get("interval") == "step":  # epoch ones: not in a run
            # A schedule sized by the run gets one longer than any benchmark.
            self.scheduler = make_scheduler(instantiate(cfg.scheduler.scheduler), self.optimizer, 10**9)
        self.device = device
        precision = str(cfg.trainer.get("precision", "32-true"))
        fp16 = precision == "16-mixed" and device.type == "cuda"
        self.autocast_dtype = torch.float16 if fp16 else torch.bfloat16 if "mixed" in precision else None
        self.scaler = torch.amp.GradScaler(device.type) if fp16 else None
        # The epoch's training loss and accuracy, kept the way the project keeps them (LeNetModule.training_step).
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.zeros((), dtype=torch.long, device=device)

    def step(self, x: Tensor, y: Tensor) -> None:
        x = x.contiguous(memory_format=self.memory_format)
        with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
            outputs = self.net(x)
            loss = self.loss(outputs, y)
        self.loss_sum.add_(loss.detach(), alpha=len(y))
        self.correct.add_((outputs.detach().argmax(dim=1) == y).sum())
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            self.optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        if self.scheduler is not None:
            self.scheduler.step()


def _plain_batches(datamodule: MNISTDataModule, device: torch.device) -> Iterator[tuple[Tensor, Tensor]]:
    """(a)'s batches, endlessly: shuffled indices into the in-memory uint8 tensors, preprocessed on `device`."""
    images, labels = datamodule.splits["train"]
    batch_size = datamodule.batch_size
    generator = torch.Generator().manual_seed(0)

    def epoch() -> Iterator[tuple[Tensor, Tensor]]:
        order = torch.randperm(len(labels), generator=generator).to(images.device)
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            x, y = images[index].to(device, non_blocking=True), labels[index].to(device, non_blocking=True)
            yield datamodule.preprocess(x), y

    return _endless(epoch)


def time_plain(
    cfg: DictConfig, datamodule: MNISTDataModule, device: torch.device, warmup: int, steps: int
) -> tuple[float, float]:
    """(a) (wall, CPU) seconds of a hand-written loop: shuffled indices into the in-memory uint8 tensors."""
    return _timed_steps(_plain_batches(datamodule, device), _Reference(cfg, device).step, warmup, steps, device)


class _StepClock(L.Callback):
    """Times training steps `warmup` .. `warmup + steps - 1` of a fit, from inside the loop."""

    def __init__(self, warmup: int, steps: int) -> None:
        self.warmup, self.steps = warmup, steps
        self.calls = 0
        self.start = self.end = self.cpu_start = self.cpu_end = 0.0

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self.calls == self.warmup:
            _sync(pl_module.device)
            self.start, self.cpu_start = time.perf_counter(), time.process_time()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self.calls += 1
        if self.calls == self.warmup + self.steps:
            _sync(pl_module.device)
            self.end, self.cpu_end = time.perf_counter(), time.process_time()


def _lightning_config(cfg: DictConfig, max_steps: int) -> DictConfig:
    """`cfg` for a timed fit of `max_steps` steps: no validation and no checkpoints, so that it does (a)'s work."""
    overrides = {"max_steps": max_steps, "max_epochs": -1, "limit_val_batches": 0, "num_sanity_val_steps": 0}
    cfg = copy.deepcopy(cfg)  # the caller's config stays as it was
    with _open(cfg):
        cfg.trainer.update(overrides, enable_checkpointing=False)
        for name, callback in list(cfg.callbacks.items()):
            if str(callback.get("_target_", "")).endswith("ModelCheckpoint"):
                del cfg.callbacks[name]
    return cfg


def time_lightning(cfg: DictConfig, warmup: int, steps: int) -> tuple[float, float]:
    """(b) (wall, CPU) seconds of the project's training: loggers, callbacks, metrics, progress bar as configured.

    Validation is switched off so that both loops do the same work; timing starts after
    `warmup` steps, so the fixed cost of starting a fit (setup, first batch) is left out, and
    so is the checkpoint written when it ends (dropped: there is no validation to rank it by).
    """
    clock = _StepClock(warmup, steps)
    datamodule, module, trainer = build(_lightning_config(cfg, warmup + steps), callbacks=[clock])
    trainer.fit(module, datamodule=datamodule)
    return clock.end - clock.start, clock.cpu_end - clock.cpu_start


class _PairedSteps(L.Callback):
    """Runs one step of (a) after every step of the fit it is in, and times both.

    A (b) step is the time from the end of one (a) step to the start of the next: all that the fit
    does for one batch, its callbacks, loggers and progress bar included. Block by block the two
    see the same moments of a shared machine, which run-level repeats seconds apart do not.
    """

    def __init__(self, reference: _Reference, batches: Iterator[tuple[Tensor, Tensor]], warmup: int) -> None:
        self.reference, self.batches, self.warmup = reference, batches, warmup
        self.lightning: list[float] = []
        self.plain: list[float] = []
        self.mark = 0.0  # when the last (a) step ended
        self.pairs = 0

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        _sync(pl_module.device)
        start = time.perf_counter()
        self.reference.step(*next(self.batches))
        _sync(pl_module.device)
        end = time.perf_counter()
        if self.pairs > self.warmup:  # the first (b) step has no (a) step before it to time it from
            self.lightning.append(start - self.mark)
            self.plain.append(end - start)
        self.mark = end
        self.pairs += 1


def time_paired(
    cfg: DictConfig, datamodule: MNISTDataModule, device: torch.device, warmup: int, steps: int
) -> tuple[list[float], list[float]]:
    """Seconds of each of `steps` (b) steps and of the (a) step run right after it, in one fit."""
    paired = _PairedSteps(_Reference(cfg, device), _plain_batches(datamodule, device), warmup)
    # One step more than timed: a (b) step is timed from the (a) step before it.
    fit_datamodule, module, trainer = build(_lightning_config(cfg, warmup + steps + 1), callbacks=[paired])
    trainer.fit(module, datamodule=fit_datamodule)
    return paired.lightning, paired.plain


def paired_summary(lightning: list[float], plain: list[float], block: int) -> dict[str, Any]:
    """(b)/(a) from paired step times, over blocks of `block` consecutive pairs (a last, shorter block is dropped).

    Each block's ratio is its throughput ratio, sum of (a) seconds / sum of (b) seconds, so the
    steps that log or redraw the bar count in full. On a shared machine the ratio drifts towards 1
    in slow spells (other jobs slow the convolutions, not the Python around them), so the figure
    reported is the median over the quieter half of the blocks: those whose (a) steps ran fastest.
    """
    blocks = range(0, len(lightning) - block + 1, block)
    plain_sums = [sum(plain[start : start + block]) for start in blocks]
    lightning_sums = [sum(lightning[start : start + block]) for start in blocks]
    ratios = [a / b for a, b in zip(plain_sums, lightning_sums, strict=True)]
    quiet = sorted(range(len(ratios)), key=plain_sums.__getitem__)[: max(1, len(ratios) // 2)]
    return {
        "steps": len(lightning),
        "block": block,
        "block_ratios": ratios,
        "block_step_seconds": [[a / block, b / block] for a, b in zip(plain_sums, lightning_sums, strict=True)],
        "ratio": statistics.median(ratios[i] for i in quiet),
        "quiet_blocks": len(quiet),
        "ratio_all_blocks": statistics.median(ratios),
        "ratio_all_steps": sum(plain) / sum(lightning),
    }


def time_naive(
    cfg: DictConfig, datamodule: MNISTDataModule, device: torch.device, warmup: int, steps: int, workers: int
) -> tuple[float, float]:
    """(c) (wall, CPU) seconds of the tutorial pipeline: PIL images, per-sample transforms, a shuffling DataLoader."""
    per_sample = [transforms.Pad(datamodule.pad)] if datamodule.pad else []
    transform = transforms.Compose(
        [*per_sample, transforms.ToTensor(), transforms.Normalize((datamodule.mean,), (datamodule.std,))]
    )
    dataset = datamodule.dataset(str(datamodule.root), train=True, download=False, transform=transform)
    loader = DataLoader(
        dataset,
        batch_size=datamodule.batch_size,
        shuffle=True,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
    )
    ref = _Reference(cfg, device)

    def step(x: Tensor, y: Tensor) -> None:
        ref.step(x.to(device, non_blocking=True), y.to(device, non_blocking=True))

    return _timed_steps(_endless(lambda: loader), step, warmup, steps, device)


class _open:
    """Context manager that lifts OmegaConf's struct flag, so that the benchmark may set trainer keys."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg

    def __enter__(self) -> DictConfig:
        OmegaConf.set_struct(self.cfg, False)
        return self.cfg

    def __exit__(self, *exc: object) -> None:
        OmegaConf.set_struct(self.cfg, True)


class TestAccuracyProbe(L.Callback):
    """Measures the test accuracy after every training epoch and notes when it first reaches `target`.

    The clock starts when the probe is made (just before `fit`), and the time spent measuring
    is taken off, so `seconds_to_target` is the training's own time to the target accuracy.
    CPU seconds (of all the process's threads) are kept too: on a busy machine they say what
    the wall time would be on a free one.
    """

    def __init__(self, target: float) -> None:
        self.target = target
        self.start, self.cpu_start = time.perf_counter(), time.process_time()
        self.probe_seconds = self.probe_cpu_seconds = 0.0
        self.history: list[dict[str, float]] = []
        self.seconds_to_target: float | None = None
        self.cpu_seconds_to_target: float | None = None

    @torch.no_grad()
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        _sync(pl_module.device)
        now, cpu_now = time.perf_counter(), time.process_time()
        datamodule = trainer.datamodule
        images, labels = datamodule.splits["test"]
        was_training = pl_module.training
        pl_module.eval()
        correct = 0
        for start in range(0, len(labels), datamodule.eval_batch_size):
            x = datamodule.preprocess(images[start : start + datamodule.eval_batch_size].to(pl_module.device))
            y = labels[start : start + datamodule.eval_batch_size].to(pl_module.device)
            correct += int((pl_module(x).argmax(dim=1) == y).sum())
        pl_module.train(was_training)
        accuracy = correct / len(labels)
        elapsed = now - self.start - self.probe_seconds
        cpu_elapsed = cpu_now - self.cpu_start - self.probe_cpu_seconds
        epoch = trainer.current_epoch + 1
        self.history.append({"epoch": epoch, "seconds": elapsed, "cpu_seconds": cpu_elapsed, "test_acc": accuracy})
        if self.seconds_to_target is None and accuracy >= self.target:
            self.seconds_to_target, self.cpu_seconds_to_target = elapsed, cpu_elapsed
        self.probe_seconds += time.perf_counter() - now
        self.probe_cpu_seconds += time.process_time() - cpu_now


def _peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM starts afresh at exec; ru_maxrss of a spawned child
    would start from its parent's size at fork."""
    status = Path("/proc/self/status")
    for line in status.read_text().splitlines() if status.is_file() else []:
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def _time_to_accuracy_child(overrides: list[str], target: float, output: str, queue: multiprocessing.Queue) -> None:
    cfg = compose_config([*overrides, f"paths.output_dir={output}"])
    datamodule, module, trainer = build(cfg, callbacks=[])
    probe = TestAccuracyProbe(target)
    trainer.callbacks.append(probe)
    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule)
    queue.put(
        {
            "seconds_to_target": probe.seconds_to_target,
            "cpu_seconds_to_target": probe.cpu_seconds_to_target,
            "fit_seconds": time.perf_counter() - start - probe.probe_seconds,
            "history": probe.history,
            "peak_rss_mb": _peak_rss_mb(),
        }
    )


def time_to_accuracy(overrides: list[str], target: float) -> dict[str, Any]:
    """Fit `overrides` in a fresh process: seconds from `fit` to `target` test accuracy, and the process's peak RSS."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    with tempfile.TemporaryDirectory(prefix="lenet_bench_") as output:
        child = context.Process(target=_time_to_accuracy_child, args=(overrides, target, output, queue))
        child.start()
        result = None
        try:
            while result is None and (child.is_alive() or not queue.empty()):
                with contextlib.suppress(Empty):
                    result = queue.get(timeout=1.0)
        finally:
            if result is None:
                child.terminate()
            child.join()
    if result is None or child.exitcode != 0:
        raise RuntimeError(f"the time-to-accuracy run failed (exit code {child.exitcode}); its error is printed above")
    return result


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "lightning": L.__version__,
        "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else "none",
        "cpu_bf16_units": cpu_bf16_units() or "none (bf16 is emulated)",
    }
    if hasattr(os, "getloadavg"):
        info["load_average_1min"] = round(os.getloadavg()[0], 2)
    return info


def training_device(cfg: DictConfig) -> torch.device:
    """The device the Lightning run trains on: CUDA when the trainer may use it and there is one."""
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def time_to_accuracy_runs(args: argparse.Namespace) -> dict[str, Any]:
    """The time-to-accuracy fit, once, or once per seed of `--tta-seeds` (each in a fresh process)."""
    if not args.tta_seeds:
        fit = time_to_accuracy(args.tta_overrides, args.target)
        return {"overrides": args.tta_overrides, "target": args.target, **fit}
    runs = {}
    for seed in args.tta_seeds:
        overrides = [*args.tta_overrides, f"seed={seed}"]
        runs[seed] = {"overrides": overrides, "target": args.target, **time_to_accuracy(overrides, args.target)}
        print(f"  time to {args.target}: seed {seed}: {_seconds(runs[seed]['seconds_to_target'])}", flush=True)
    seconds = [run["seconds_to_target"] for run in runs.values()]
    return {
        "overrides": args.tta_overrides,
        "target": args.target,
        "seeds": runs,
        # The preset's figure is its slowest seed: a recipe must reach the target on every one.
        "slowest_seconds": None if None in seconds else max(seconds),
        "not_reached": [seed for seed, run in runs.items() if run["seconds_to_target"] is None],
    }


def _seconds(value: float | None) -> str:
    return "not reached" if value is None else f"{value:.2f}"


def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    if not args.throughput:
        return {"machine": machine(), "time_to_accuracy": time_to_accuracy_runs(args)}
    with tempfile.TemporaryDirectory(prefix="lenet_bench_") as output:
        cfg = compose_config([*args.overrides, f"paths.output_dir={output}"])
        configure_process(cfg)  # threads and malloc as the Lightning runs have them, for (a) and (c) too
        datamodule: MNISTDataModule = instantiate(cfg.data)  # as the Lightning runs make it, for (a) and (c)
        datamodule.prepare_data()
        datamodule.setup("fit")
        device = training_device(cfg)
        data_device = resolve_device(cfg.data.get("device", "auto"), device)
        datamodule.splits = {name: (x.to(data_device), y.to(data_device)) for name, (x, y) in datamodule.splits.items()}
        params = sum(p.numel() for p in instantiate(cfg.model).parameters())
        results: dict[str, Any] = {
            "machine": machine(),
            "overrides": list(args.overrides),
            "model_params": params,
            "batch_size": datamodule.batch_size,
            "device": str(device),
            "data_device": str(data_device),
            "steps": args.steps,
            "warmup": args.warmup,
            "repeats": args.repeats,
            "naive_workers": args.naive_workers,
            "paired_steps": args.paired_steps,
        }
        runs: dict[str, list[float]] = {name: [] for name in PIPELINES}
        cpu_runs: dict[str, list[float]] = {name: [] for name in PIPELINES}
        samples = args.steps * datamodule.batch_size
        timers = {
            "plain": lambda: time_plain(cfg, datamodule, device, args.warmup, args.steps),
            "lightning": lambda: time_lightning(cfg, args.warmup, args.steps),
            "naive": lambda: time_naive(cfg, datamodule, device, args.warmup, args.steps, args.naive_workers),
        }
        for repeat in range(args.repeats):
            order = PIPELINES[repeat % 3 :] + PIPELINES[: repeat % 3]  # each pipeline takes each slot in turn
            for name in order:
                wall, cpu = timers[name]()
                runs[name].append(samples / wall)
                cpu_runs[name].append(samples / cpu)
                print(f"  repeat {repeat + 1}/{args.repeats} {name:<9} {runs[name][-1]:10.0f} samples/s", flush=True)
        if args.paired_steps:
            lightning, plain = time_paired(cfg, datamodule, device, args.warmup, args.paired_steps)
            # Blocks as long as the loggers' period, so that each holds its share of the steps that log.
            block = min(cfg.trainer.get("log_every_n_steps") or 50, len(lightning))
            results["paired"] = paired_summary(lightning, plain, block)
    results["samples_per_s"] = {name: statistics.median(values) for name, values in runs.items()}
    results["runs"] = runs
    # Samples per CPU-second of the process: less sensitive than wall time to other jobs on the machine.
    results["samples_per_cpu_s"] = {name: statistics.median(values) for name, values in cpu_runs.items()}
    plain = results["samples_per_s"]["plain"]
    results["ratio_lightning_to_plain"] = results["samples_per_s"]["lightning"] / plain
    results["ratio_naive_to_plain"] = results["samples_per_s"]["naive"] / plain
    results["peak_rss_mb"] = _peak_rss_mb()
    if args.time_to_accuracy:
        results["time_to_accuracy"] = time_to_accuracy_runs(args)
    results["machine"]["load_average_1min_end"] = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    return results


def _report_fit(prefix: str, fit: dict[str, Any]) -> list[str]:
    history = " ".join(f"{h['epoch']}:{h['test_acc']:.4f}@{h['seconds']:.1f}s" for h in fit["history"])
    return [
        f"{prefix}.overrides: {' '.join(fit['overrides'])}",
        f"{prefix}.target: {fit['target']}",
        f"{prefix}.seconds: {_seconds(fit['seconds_to_target'])}",
        f"{prefix}.cpu_seconds: {_seconds(fit['cpu_seconds_to_target'])}",
        f"{prefix}.fit_seconds: {fit['fit_seconds']:.2f}",
        f"{prefix}.history: {history}",
    ]


def report_time_to_accuracy(tta: dict[str, Any]) -> list[str]:
    """The time-to-accuracy lines: one fit, or one block per seed and the slowest seed."""
    if "seeds" not in tta:
        return [*_report_fit("time_to_accuracy", tta), f"peak_rss_mb.training_run: {tta['peak_rss_mb']:.0f}"]
    lines = [f"time_to_accuracy.overrides: {' '.join(tta['overrides'])}", f"time_to_accuracy.target: {tta['target']}"]
    for seed, fit in tta["seeds"].items():
        lines += _report_fit(f"time_to_accuracy.seed_{seed}", fit)[2:]
    lines.append(f"time_to_accuracy.slowest_seed_seconds: {_seconds(tta['slowest_seconds'])}")
    lines.append(f"time_to_accuracy.seeds_not_reaching_target: {' '.join(map(str, tta['not_reached'])) or 'none'}")
    peak = max(fit["peak_rss_mb"] for fit in tta["seeds"].values())
    lines.append(f"peak_rss_mb.training_run: {peak:.0f}")
    return lines


def report(results: dict[str, Any]) -> str:
    """The results as `key: value` lines."""
    lines = [f"machine: {json.dumps(results['machine'])}"]
    if "runs" not in results:  # --no-throughput
        return "\n".join([*lines, *report_time_to_accuracy(results["time_to_accuracy"])])
    keys = ("overrides", "model_params", "batch_size", "device", "data_device", "steps", "warmup", "repeats")
    for key in (*keys, "naive_workers"):
        lines.append(f"{key}: {results[key]}")
    for name in PIPELINES:
        runs = " ".join(f"{v:.0f}" for v in results["runs"][name])
        lines.append(f"samples_per_s.{name}: {results['samples_per_s'][name]:.0f}   (runs: {runs})")
    for name in PIPELINES:
        lines.append(f"samples_per_cpu_s.{name}: {results['samples_per_cpu_s'][name]:.0f}")
    lines.append(f"ratio.lightning/plain: {results['ratio_lightning_to_plain']:.3f}")
    lines.append(f"ratio.naive/plain: {results['ratio_naive_to_plain']:.3f}")
    paired = results.get("paired")
    if paired:
        blocks = " ".join(f"{r:.3f}" for r in paired["block_ratios"])
        lines.append(
            f"ratio.lightning/plain.paired: {paired['ratio']:.3f}   (median of the {paired['quiet_blocks']} of "
            f"{len(paired['block_ratios'])} blocks of {paired['block']} step pairs where (a) ran fastest)"
        )
        lines.append(f"ratio.lightning/plain.paired_all_blocks: {paired['ratio_all_blocks']:.3f}   ({blocks})")
        lines.append(f"ratio.lightning/plain.paired_all_steps: {paired['ratio_all_steps']:.3f}")
    lines.append(f"peak_rss_mb.bench: {results['peak_rss_mb']:.0f}")
    if results.get("time_to_accuracy"):
        lines += report_time_to_accuracy(results["time_to_accuracy"])
    return "\n".join(lines)


def arguments() -> ArgumentParser:
    """The command's options; `--help` prints them with the module's docstring."""
    parser = ArgumentParser("bench", __doc__)
    parser.add_argument("--steps", type=int, default=150, help="timed training steps per run (default 150)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps before the clock starts (default 10)")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each pipeline, interleaved (default 5)")
    parser.add_argument("--naive-workers", type=int, default=0, help="DataLoader workers of (c) (default 0)")
    parser.add_argument(
        "--paired-steps",
        type=int,
        default=300,
        help="steps of the paired measurement of (b)/(a), each (b) step followed by an (a) step; 0 skips it "
        "(default 300)",
    )
    parser.add_argument(
        "--no-time-to-accuracy", dest="time_to_accuracy", action="store_false", help="skip the time-to-accuracy fit"
    )
    parser.add_argument(
        "--no-throughput", dest="throughput", action="store_false", help="skip (a), (b), (c): time to accuracy only"
    )
    parser.add_argument("--target", type=float, default=0.99, help="test accuracy to reach (default 0.99)")
    parser.add_argument(
        "--tta-seeds",
        type=int,
        nargs="+",
        metavar="SEED",
        help="run the time-to-accuracy fit once per seed (fresh processes) and report each and the slowest",
    )
    parser.add_argument(
        "--tta",
        dest="tta_overrides",
        action="append",
        metavar="OVERRIDE",
        help="an override of the time-to-accuracy run (repeatable; default: experiment=fast and the data.root given)",
    )
    parser.add_argument("--output", type=Path, help="also write the results to this JSON file")
    parser.add_argument("overrides", nargs="*", help="train.py overrides for the throughput runs, e.g. experiment=fast")
    return parser


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The options and overrides of `argv`; a UserError for a bad one or a mix that measures nothing."""
    parser = arguments()
    args = parser.parse_intermixed_args(argv)  # options may come after the overrides
    for key in ("steps", "repeats"):
        if getattr(args, key) < 1:
            parser.error(f"--{key}={getattr(args, key)} is not allowed: it must be at least 1.")
    if args.warmup < 0 or args.naive_workers < 0 or args.paired_steps < 0:
        parser.error("--warmup, --naive-workers and --paired-steps must be 0 or more.")
    if not args.throughput and not args.time_to_accuracy:
        parser.error("--no-throughput with --no-time-to-accuracy leaves nothing to measure.")
    if args.tta_seeds and len(set(args.tta_seeds)) != len(args.tta_seeds):
        parser.error(f"--tta-seeds {' '.join(map(str, args.tta_seeds))} names a seed twice; give each once.")
    if not 0 < args.target <= 1:
        parser.error(f"--target={args.target} is not allowed: it must be a test accuracy in (0, 1].")
    if args.tta_overrides is None:
        inherited_keys = ("data.root", "threads", "precision", "trainer.precision")
        inherited = [o for o in args.overrides if o.split("=", 1)[0] in inherited_keys]
        args.tta_overrides = ["experiment=fast", *inherited]
    return args


def run(argv: list[str]) -> int:
    args = parse_args(argv)
    results = benchmark(args)
    print(report(results))
    if args.output:
        args.output.write_text(json.dumps(results, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    return command(run, argv, lambda: arguments().format_help(), renamed=("--json", "data_root", "paths.data_dir"))


if __name__ == "__main__":
    sys.exit(main())
