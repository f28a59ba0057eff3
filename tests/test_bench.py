"""The speed work: the benchmark's output, data placement, the fast preset, channels_last/compile, the lean logging."""

import functools
import json
import math
import re
import statistics
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ProgressBar
from omegaconf import OmegaConf

from conftest import run_together
from lenet_pl import bench
from lenet_pl.data import MNISTDataModule, resolve_device
from lenet_pl.runtime.build import build
from lenet_pl.runtime.compose import compose_config
from lenet_pl.runtime.errors import ConfigError
from lenet_pl.runtime.values import validate

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised where there is no CUDA")


def tiny_overrides(root: Path) -> list[str]:
    """A synthetic data set small enough for the whole benchmark to run in seconds."""
    return [
        f"data.root={root}",
        "data.verify=false",
        "data.val_size=200",
        "data.batch_size=32",
        "data.eval_batch_size=100",
    ]


def parse_report(text: str) -> dict[str, str]:
    return dict(re.findall(r"^([\w./]+): (.*)$", text, flags=re.MULTILINE))


# bf16 in the slow suite: the default suite runs the bench loops in bf16 in test_precision.py
@pytest.mark.parametrize("precision", ["fp32", pytest.param("bf16", marks=pytest.mark.slow)])
def test_bench_prints_well_formed_results(synthetic_root, tmp_path, capsys, precision):
    json_path = tmp_path / "bench.json"
    # No loggers, image callbacks or progress bar: their start-up would dominate runs this short.
    overrides = [*tiny_overrides(synthetic_root), "logger=none", "callbacks=none", "trainer.enable_progress_bar=false"]
    overrides.append(f"precision={precision}")
    tta = ["--tta", "experiment=fast", *(f"--tta={o}" for o in [*overrides, "trainer.max_epochs=2"])]
    argv = ["--steps", "4", "--warmup", "1", "--repeats", "2", "--paired-steps", "6", "--target", "0.5", *tta]
    argv += ["--output", str(json_path)]
    assert bench.main([*argv, *overrides]) == 0
    fields = parse_report(capsys.readouterr().out)

    speeds = {name: float(fields[f"samples_per_s.{name}"].split()[0]) for name in bench.PIPELINES}
    for name, value in speeds.items():
        assert math.isfinite(value) and value > 0, name
        assert float(fields[f"samples_per_cpu_s.{name}"]) > 0
    # The printed ratios are those of the printed medians (rounded to whole samples/s).
    assert float(fields["ratio.lightning/plain"]) == pytest.approx(speeds["lightning"] / speeds["plain"], rel=0.05)
    assert float(fields["ratio.naive/plain"]) == pytest.approx(speeds["naive"] / speeds["plain"], rel=0.05)
    assert int(fields["batch_size"]) == 32 and int(fields["steps"]) == 4 and fields["device"] == "cpu"
    assert int(fields["model_params"]) == 61_706  # the default LeNet-5 (dense C3, 32x32 inputs)
    assert 0 < float(fields["peak_rss_mb.bench"]) < 4096
    assert 0 < float(fields["peak_rss_mb.training_run"]) < 4096
    # 6 timed step pairs, in one block (the loggers' period, 50 steps, is longer than the run).
    paired = fields["ratio.lightning/plain.paired"]
    assert re.fullmatch(r"[\d.]+   \(median of the 1 of 1 blocks of 6 step pairs where \(a\) ran fastest\)", paired)
    assert float(paired.split()[0]) == pytest.approx(float(fields["ratio.lightning/plain.paired_all_steps"]), abs=1e-3)
    assert fields["ratio.lightning/plain.paired_all_blocks"].startswith(paired.split()[0])

    # The synthetic digits are easy: the fast preset passes 50% test accuracy within its 2 epochs.
    assert float(fields["time_to_accuracy.target"]) == 0.5
    seconds = float(fields["time_to_accuracy.seconds"])
    assert 0 < seconds <= float(fields["time_to_accuracy.fit_seconds"])
    assert float(fields["time_to_accuracy.cpu_seconds"]) > 0
    history = re.findall(r"(\d+):([\d.]+)@([\d.]+)s", fields["time_to_accuracy.history"])
    assert [int(epoch) for epoch, _, _ in history] == [1, 2]
    assert all(0 <= float(acc) <= 1 for _, acc, _ in history)

    results = json.loads(json_path.read_text())
    assert len(results["runs"]["plain"]) == 2  # one per repeat
    medians = results["samples_per_s"]
    assert results["ratio_lightning_to_plain"] == pytest.approx(medians["lightning"] / medians["plain"])
    assert medians["naive"] == pytest.approx(
        sorted(results["runs"]["naive"])[0] / 2 + sorted(results["runs"]["naive"])[1] / 2
    )
    assert results["paired"]["steps"] == 6 and len(results["paired"]["block_ratios"]) == 1
    assert 0 < results["paired"]["ratio"] < 10
    assert results["time_to_accuracy"]["overrides"][0] == "experiment=fast"
    assert results["machine"]["cores"] >= 1 and results["machine"]["torch"] == torch.__version__
    assert f"precision={precision}" in results["time_to_accuracy"]["overrides"]
    units = results["machine"]["cpu_bf16_units"]  # how a reader of the figures tells which CPU ran them
    assert units == "none (bf16 is emulated)" or set(units) <= {"AMX", "AVX512_BF16"}


def test_paired_summary_takes_whole_blocks_and_reports_the_quieter_half():
    # Blocks of 2 pairs; in blocks 1 and 3 a slow spell made (a) 2-3x slower, and the ratio went up.
    plain = [1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 3.0, 3.0, 9.0]
    lightning = [2.0, 2.0, 2.0, 2.0, 4.0, 4.0, 3.0, 3.0, 1.0]
    summary = bench.paired_summary(lightning, plain, 2)
    assert summary["block_ratios"] == [0.5, 1.0, 0.25, 1.0]  # the 9th pair makes no whole block
    assert summary["block_step_seconds"][2] == [1.0, 4.0]
    assert summary["quiet_blocks"] == 2 and summary["ratio"] == 0.375  # blocks 0 and 2: (a) fastest there
    assert summary["ratio_all_blocks"] == 0.75
    assert summary["ratio_all_steps"] == pytest.approx(23 / 23)
    assert bench.paired_summary(lightning[:2], plain[:2], 2)["ratio"] == 0.5  # one block is its own quieter half


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["--steps", "0"], "--steps=0"), (["--target", "1.5"], "--target=1.5"), (["--repeats", "-1"], "--repeats=-1")],
)
def test_bench_rejects_bad_options(argv, message, capsys):
    assert bench.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_bench_options_and_overrides_mix_and_the_fit_inherits_data_and_threads():
    args = bench.parse_args(["experiment=fast", "--steps", "3", "data.root=/d", "threads=1", "--repeats", "2"])
    assert (args.steps, args.repeats) == (3, 2)
    assert args.overrides == ["experiment=fast", "data.root=/d", "threads=1"]
    assert args.tta_overrides == ["experiment=fast", "data.root=/d", "threads=1"]


def test_bench_reports_bad_overrides_in_one_line(capsys):
    assert bench.main(["--no-time-to-accuracy", "data.device=tpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: data.device='tpu' is not known") and "Traceback" not in err


def test_data_device_auto_follows_the_trainer():
    assert resolve_device("auto") == torch.device("cpu")  # no trainer attached
    assert resolve_device("auto", torch.device("cpu")) == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    if torch.cuda.is_available():
        assert resolve_device("auto", torch.device("cuda", 0)) == torch.device("cuda", 0)


@pytest.mark.parametrize("device", ["tpu", "gpu", "mps", "", 0])
def test_data_device_rejects_unknown_names(device):
    with pytest.raises(ConfigError, match=r"data\.device=.* is not known; choose one of auto, cpu, cuda"):
        MNISTDataModule(device=device)


@no_cuda
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_data_device_cuda_without_cuda_is_a_config_error(device):
    with pytest.raises(ConfigError, match=rf"data\.device='{device}' needs a CUDA GPU.*data\.device=auto"):
        MNISTDataModule(device=device)


def test_data_on_cpu_serves_cpu_batches(synthetic_root):
    datamodule = MNISTDataModule(root=str(synthetic_root), verify=False, val_size=200, batch_size=64, device="auto")
    datamodule.setup("fit")
    assert all(x.device.type == "cpu" and y.device.type == "cpu" for x, y in datamodule.splits.values())
    images, labels = next(iter(datamodule.train_dataloader()))
    assert images.dtype == torch.uint8 and images.shape == (64, 28, 28) and labels.shape == (64,)


@needs_cuda
def test_data_auto_lives_on_the_gpu_when_training_there(synthetic_root, tmp_path):
    """On CUDA, the uint8 data set moves to the GPU at setup and every batch is cut there."""
    overrides = [*tiny_overrides(synthetic_root), "trainer=gpu", "trainer.max_epochs=1", "logger=none"]
    datamodule, module, trainer = build(compose_config([*overrides, f"paths.output_dir={tmp_path}"]))
    devices = []

    class Recorder(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            devices.append(batch[0].device.type)

    trainer.callbacks.append(Recorder())
    trainer.fit(module, datamodule=datamodule)
    assert datamodule.splits["train"][0].device.type == "cuda"
    assert devices and set(devices) == {"cuda"}


def test_fast_preset_composes_into_a_lenet5_sized_model():
    cfg = compose_config(["experiment=fast"])
    net = instantiate(cfg.model)
    params = sum(p.numel() for p in net.parameters())
    assert params <= 62_000
    assert params == 61_706  # the dense-C3 LeNet-5 on 32x32 inputs
    assert cfg.data.image_size == cfg.model.input_size == 32
    assert cfg.data.batch_size == 256 and cfg.trainer.max_epochs == 2
    assert cfg.scheduler.interval == "step" and cfg.scheduler.scheduler.total_steps is None
    assert cfg.channels_last is True
    assert instantiate(cfg.loss).label_smoothing == 0.1
    # bf16 only where it is fast (precision=auto); no TensorBoard pictures, but checkpoints and the guard.
    assert OmegaConf.to_container(cfg.trainer)["precision"] == "${auto_precision:${trainer.accelerator}}"
    kept = {"model_checkpoint", "last_checkpoint", "lr_monitor", "progress_bar", "divergence_guard"}
    assert set(cfg.callbacks) == kept


def test_onecycle_is_sized_by_the_run_and_ends_near_zero(synthetic_root, tmp_path):
    """total_steps: null in the config becomes epochs x batches; the last step's rate is max_lr / 25 / 1000."""
    overrides = [*tiny_overrides(synthetic_root), "experiment=fast", "data.batch_size=250", "trainer.max_epochs=2"]
    cfg = compose_config([*overrides, f"paths.output_dir={tmp_path}", "logger=none", "callbacks=none"])
    rates = []

    class RateRecorder(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            rates.append(trainer.optimizers[0].param_groups[0]["lr"])

    datamodule, module, trainer = build(cfg, callbacks=[RateRecorder()])
    trainer.fit(module, datamodule=datamodule)
    scheduler = trainer.lr_scheduler_configs[0].scheduler
    assert isinstance(scheduler, torch.optim.lr_scheduler.OneCycleLR)
    assert scheduler.total_steps == 2 * 4 == trainer.global_step == len(rates)  # 1000 training images / 250
    assert rates[0] == pytest.approx(cfg.optimizer.lr / 25)
    assert max(rates) == pytest.approx(cfg.optimizer.lr, rel=0.3)  # the peak falls between two of 8 steps
    assert rates[-1] == pytest.approx(cfg.optimizer.lr / 25 / 1000)


def test_channels_last_gives_the_same_outputs(synthetic_root):
    from lenet_pl.module import LeNetModule

    cfg = compose_config(["experiment=fast"])
    kwargs = {"loss": instantiate(cfg.loss), "optimizer": instantiate(cfg.optimizer)}
    torch.manual_seed(0)
    plain = LeNetModule(net=instantiate(cfg.model), **kwargs)
    nhwc = LeNetModule(net=instantiate(cfg.model), channels_last=True, **kwargs)
    nhwc.load_state_dict(plain.state_dict())
    assert nhwc.net.C1[0].weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(8, 1, 32, 32)
    torch.testing.assert_close(nhwc(x), plain(x), rtol=1e-4, atol=1e-5)
    assert set(nhwc.state_dict()) == set(plain.state_dict())


def test_compile_keeps_the_state_dict_keys():
    """compile=true compiles the net in place at setup (lazily: nothing is compiled until it runs)."""
    from lenet_pl.module import LeNetModule

    cfg = compose_config([])
    module = LeNetModule(
        net=instantiate(cfg.model), loss=instantiate(cfg.loss), optimizer=instantiate(cfg.optimizer), compile=True
    )
    keys = set(module.state_dict())
    module.setup("fit")
    module.setup("test")  # compiled once, not wrapped twice
    assert module.compiled and set(module.state_dict()) == keys
    assert not any("_orig_mod" in key for key in keys)


@pytest.mark.slow
def test_compiled_module_matches_eager():
    """Runs the inductor compiler on the CPU (a minute on 2 cores)."""
    from lenet_pl.module import LeNetModule

    cfg = compose_config(["experiment=fast"])
    kwargs = {"loss": instantiate(cfg.loss), "optimizer": instantiate(cfg.optimizer)}
    eager = LeNetModule(net=instantiate(cfg.model), **kwargs)
    compiled = LeNetModule(net=instantiate(cfg.model), compile=True, **kwargs)
    compiled.load_state_dict(eager.state_dict())
    compiled.setup("fit")
    x = torch.randn(16, 1, 32, 32)
    torch.testing.assert_close(compiled(x), eager(x), rtol=1e-4, atol=1e-5)


@needs_cuda
@pytest.mark.parametrize("precision", ["16-mixed", "bf16-mixed"])
def test_gpu_mixed_precision_and_compile_train(synthetic_root, tmp_path, precision):
    overrides = [*tiny_overrides(synthetic_root), "experiment=fast", "trainer=gpu", "trainer.max_epochs=1"]
    overrides += [f"trainer.precision={precision}", "compile=true", f"paths.output_dir={tmp_path}", "logger=none"]
    datamodule, module, trainer = build(compose_config(overrides))
    trainer.fit(module, datamodule=datamodule)
    assert math.isfinite(float(trainer.callback_metrics["train/loss_epoch"]))
    assert module.device.type == "cuda"


def test_training_logs_step_loss_only_when_the_loggers_write(synthetic_root, tmp_path):
    """The step loss reaches the loggers every log_every_n_steps; the epoch loss and accuracy once an epoch."""
    overrides = [*tiny_overrides(synthetic_root), "experiment=fast", "data.batch_size=100", "trainer.max_epochs=2"]
    overrides += ["trainer.log_every_n_steps=3", "logger=csv", "callbacks=none", "trainer.enable_progress_bar=false"]
    cfg = compose_config([*overrides, f"paths.output_dir={tmp_path}"])
    datamodule, module, trainer = build(cfg)
    trainer.fit(module, datamodule=datamodule)
    rows = (tmp_path / "csv" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    table = [dict(zip(header, row.split(","), strict=True)) for row in rows[1:]]
    step_rows = [int(r["step"]) for r in table if r["train/loss_step"]]
    assert trainer.global_step == 2 * 10  # 1000 training images in batches of 100, 2 epochs
    assert step_rows == [2, 5, 8, 11, 14, 17]  # the steps whose count is a multiple of 3
    epoch_rows = [r for r in table if r["train/loss_epoch"]]
    assert len(epoch_rows) == 2 and all(0 < float(r["train/acc"]) <= 1 for r in epoch_rows)


def test_epoch_train_loss_and_accuracy_are_exact_means_over_every_training_sample(synthetic_root, tmp_path):
    """The running sums give the same numbers as evaluating every training image (a partial last batch included)."""
    overrides = [*tiny_overrides(synthetic_root), "data.batch_size=64", "trainer.max_epochs=1", "optimizer.lr=1e-12"]
    overrides += ["logger=none", "callbacks=none", "trainer.enable_progress_bar=false", "trainer.limit_val_batches=0"]
    datamodule, module, trainer = build(compose_config([*overrides, f"paths.output_dir={tmp_path}"]))
    trainer.fit(module, datamodule=datamodule)
    images, labels = datamodule.splits["train"]
    assert len(labels) % 64  # the last batch is a partial one, so a plain mean of batch means would differ
    with torch.no_grad():  # lr 1e-12: the weights are those every step saw
        outputs = module(datamodule.preprocess(images))
    expected_acc = (outputs.argmax(dim=1) == labels).float().mean().item()
    expected_loss = torch.nn.functional.cross_entropy(outputs, labels).item()
    assert 0.05 < expected_acc < 0.95  # an untrained net: neither trivially 0 nor 1
    assert float(trainer.callback_metrics["train/acc"]) == pytest.approx(expected_acc, abs=1e-6)
    assert float(trainer.callback_metrics["train/loss_epoch"]) == pytest.approx(expected_loss, rel=1e-5)
    assert module.train_seen == 0 and module.train_correct.item() == 0  # reset for the next epoch


@pytest.mark.parametrize(
    ("overrides", "bar"),
    [
        ([], "TQDMProgressBar"),  # redrawn every 10 steps: Lightning's default rich bar costs ~0.8 ms a step
        (["callbacks=[default,rich_progress_bar]"], "RichProgressBar"),
        (["trainer.enable_progress_bar=false"], None),
        (["callbacks=[default,rich_progress_bar]", "trainer.enable_progress_bar=false"], None),
    ],
)
def test_progress_bar_is_a_tqdm_bar_redrawn_every_10_steps_or_the_chosen_one_or_none(tmp_path, overrides, bar):
    _, _, trainer = build(compose_config([*overrides, f"paths.output_dir={tmp_path}"]))
    bars = [type(c).__name__ for c in trainer.callbacks if isinstance(c, ProgressBar)]
    assert bars == ([bar] if bar else [])
    if bar == "TQDMProgressBar":
        assert trainer.progress_bar_callback.refresh_rate == 10


FAULTS_PER_STEP = """
import resource, sys, torch
from hydra.utils import instantiate
from lenet_pl.bench import time_plain
from lenet_pl.runtime.compose import compose_config
from lenet_pl.runtime.build import configure_process
cfg = compose_config(["experiment=fast", f"data.root={sys.argv[1]}", "data.verify=false", "data.val_size=200",
                      "threads=1", f"keep_freed_memory={sys.argv[2]}"])
configure_process(cfg)
datamodule = instantiate(cfg.data)
datamodule.setup("fit")
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
time_plain(cfg, datamodule, torch.device("cpu"), warmup=0, steps=20)  # 20 training steps at batch 256
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)
"""


# 4 processes of 20 training steps (~30 s of CPU) for a property of speed: in the slow suite. The default
# suite checks only the setting's allowed values (below).
@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_keep_freed_memory_stops_the_page_faults_of_every_training_step(synthetic_root):
    def faults_per_step(keep: str) -> float:
        args = [sys.executable, "-c", FAULTS_PER_STEP, str(synthetic_root), keep]
        result = subprocess.run(args, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        return float(result.stdout.split()[-1])

    # Measured: ~410-450 minor faults a step with the memory kept (most of them the first step's),
    # every time. By default the count varies from process to process (983, 1,402, 3,025 ... 4,611
    # seen on one machine: glibc moves its thresholds as blocks are freed), so the default is the
    # median of three processes, compared with the kept memory rather than with a fixed count.
    # page faults are counted per process, so the four processes may run side by side
    kept, *default = run_together(*[functools.partial(faults_per_step, keep) for keep in ("true", *["false"] * 3)])
    assert kept < 800
    assert statistics.median(default) > 2.5 * kept


def test_keep_freed_memory_must_be_true_or_false():
    with pytest.raises(ConfigError, match=r"keep_freed_memory='sometimes' is not allowed: give true or false"):
        validate(compose_config(["keep_freed_memory=sometimes"]))


def test_time_to_accuracy_per_seed_reports_each_seed_and_the_slowest(monkeypatch, capsys):
    """--tta-seeds fits once per seed (the seed added last, so it wins) and the figure is the slowest seed."""
    seconds = {0: 6.5, 1: 7.25, 2: None}  # seed 2 never reaches the target
    fits = []

    def fake_fit(overrides, target):
        fits.append(overrides)
        seed = int(overrides[-1].removeprefix("seed="))
        history = [{"epoch": 1, "seconds": 3.0, "cpu_seconds": 6.0, "test_acc": 0.985}]
        done = seconds[seed]
        return {"seconds_to_target": done, "cpu_seconds_to_target": None if done is None else 2 * done,
                "fit_seconds": 7.5, "history": history, "peak_rss_mb": 900.0 + seed}  # fmt: skip

    monkeypatch.setattr(bench, "time_to_accuracy", fake_fit)
    argv = ["--no-throughput", "--tta-seeds", "0", "1", "2", "--tta", "experiment=fast", "--tta", "threads=2"]
    assert bench.main(argv) == 0
    fields = parse_report(capsys.readouterr().out)
    assert fits == [["experiment=fast", "threads=2", f"seed={s}"] for s in (0, 1, 2)]
    assert "samples_per_s.plain" not in fields  # no throughput runs
    assert (fields["time_to_accuracy.seed_0.seconds"], fields["time_to_accuracy.seed_1.seconds"]) == ("6.50", "7.25")
    assert fields["time_to_accuracy.seed_2.seconds"] == "not reached"
    assert fields["time_to_accuracy.slowest_seed_seconds"] == "not reached"
    assert fields["time_to_accuracy.seeds_not_reaching_target"] == "2"
    assert fields["peak_rss_mb.training_run"] == "902"

    seconds[2] = 5.0
    assert bench.main(argv) == 0
    fields = parse_report(capsys.readouterr().out)
    assert fields["time_to_accuracy.slowest_seed_seconds"] == "7.25"
    assert fields["time_to_accuracy.seeds_not_reaching_target"] == "none"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--no-throughput", "--no-time-to-accuracy"], "leaves nothing to measure"),
        (["--tta-seeds", "0", "1", "0"], "--tta-seeds 0 1 0 names a seed twice"),
    ],
)
def test_bench_rejects_option_mixes_that_measure_nothing_or_twice(argv, message, capsys):
    assert bench.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
