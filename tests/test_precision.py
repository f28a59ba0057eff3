"""Mixed bf16 as a named choice (conf/precision/): it composes, trains on a CPU, says what this CPU does with it."""

import logging
import math

import pytest
import torch

from lenet_pl import bench
from lenet_pl.runtime import precision as runtime_precision
from lenet_pl.runtime.build import build
from lenet_pl.runtime.compose import compose_config
from lenet_pl.runtime.errors import ConfigError

# Presets that reproduce a published number: they must stay in fp32 whatever the default becomes.
PUBLISHED = ("classic", "seed_keras", "lenet1998")


@pytest.mark.parametrize(
    ("choice", "precision"), [(None, "32-true"), ("fp32", "32-true"), ("bf16", "bf16-mixed"), ("fp16", "16-mixed")]
)
def test_precision_choices_set_the_trainer_precision(choice, precision):
    overrides = [] if choice is None else [f"precision={choice}"]
    assert compose_config(overrides).trainer.precision == precision
    # A later trainer choice (CPU, GPU, DDP) keeps the precision: they are separate axes.
    assert compose_config([*overrides, "trainer=cpu"]).trainer.precision == precision


@pytest.mark.parametrize("experiment", PUBLISHED)
def test_presets_that_reproduce_published_numbers_are_fp32(experiment):
    assert compose_config([f"experiment={experiment}"]).trainer.precision == "32-true"


def test_an_unknown_precision_lists_the_choices():
    with pytest.raises(ConfigError) as info:
        compose_config(["precision=fp8"])
    message = str(info.value)
    assert "precision/fp8" in message
    for option in ("fp32", "bf16", "fp16"):
        assert option in message


def test_bf16_trains_on_the_cpu_with_bf16_activations_and_fp32_weights(synthetic_root, tmp_path):
    overrides = [
        f"data.root={synthetic_root}",
        "data.verify=false",
        "data.val_size=200",
        "data.batch_size=64",
        "experiment=fast",
    ]
    overrides += ["precision=bf16", "trainer=cpu", "trainer.max_epochs=2", "logger=none", "callbacks=none"]
    overrides += ["trainer.enable_progress_bar=false", f"paths.output_dir={tmp_path}"]
    datamodule, module, trainer = build(compose_config(overrides))
    assert trainer.precision == "bf16-mixed"
    dtypes: set[torch.dtype] = set()
    hook = module.net.C1[0].register_forward_hook(lambda _m, _i, out: dtypes.add(out.dtype))
    trainer.fit(module, datamodule=datamodule)
    hook.remove()
    # Autocast ran the convolutions in bf16; the weights (and so the checkpoints) stay fp32.
    assert torch.bfloat16 in dtypes
    assert {p.dtype for p in module.parameters()} == {torch.float32}
    # 2 epochs of 16 steps on the synthetic digits: the network learns, as in fp32.
    loss = float(trainer.callback_metrics["train/loss_epoch"])
    assert math.isfinite(loss) and loss < 1.0
    assert float(trainer.callback_metrics["val/acc"]) > 0.9


@pytest.mark.parametrize(
    ("units", "level", "words"),
    [
        (["AMX", "AVX512_BF16"], logging.INFO, "with AMX and AVX512_BF16: bf16 runs on its bf16 units"),
        ([], logging.WARNING, "without bf16 units (neither AMX nor AVX512_BF16): bf16 is emulated"),
    ],
)
def test_the_log_says_whether_this_cpu_runs_bf16_natively(monkeypatch, caplog, tmp_path, units, level, words):
    monkeypatch.setattr("lenet_pl.runtime.build.cpu_bf16_units", lambda: units)
    quiet = ["trainer=cpu", "logger=none", "callbacks=none", f"paths.output_dir={tmp_path}"]
    with caplog.at_level(logging.INFO, logger="lenet_pl"):
        build(compose_config(["precision=bf16", *quiet]))
    notes = [r for r in caplog.records if "bf16" in r.getMessage()]
    assert len(notes) == 1 and notes[0].levelno == level and words in notes[0].getMessage()
    if not units:
        assert "precision=fp32 is the faster choice" in notes[0].getMessage()

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="lenet_pl"):  # fp32 runs say nothing about bf16
        build(compose_config(quiet))
    assert not [r for r in caplog.records if "bf16" in r.getMessage()]


def test_cpu_bf16_units_follow_torchs_cpu_flags(monkeypatch):
    flags = {"amx_bf16": False, "avx512_bf16": True, "avx2": True}
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: flags)
    assert runtime_precision.cpu_bf16_units() == ["AVX512_BF16"]
    flags.update(amx_bf16=True)
    assert runtime_precision.cpu_bf16_units() == ["AMX", "AVX512_BF16"]
    flags.update(amx_bf16=False, avx512_bf16=False)
    assert runtime_precision.cpu_bf16_units() == []


@pytest.mark.parametrize(
    ("units", "cuda", "cuda_bf16", "trainer", "expected"),
    [
        (["AVX512_BF16"], False, False, "cpu", "bf16-mixed"),
        (["AMX"], False, False, "default", "bf16-mixed"),
        ([], False, False, "default", "32-true"),  # emulated bf16 would be slower than fp32
        ([], True, True, "default", "bf16-mixed"),  # a GPU with bf16
        ([], True, False, "gpu", "16-mixed"),  # an older GPU
        ([], True, True, "cpu", "32-true"),  # told to train on a CPU without bf16 units, GPU or not
    ],
)
def test_auto_precision_is_bf16_only_where_it_runs_fast(monkeypatch, units, cuda, cuda_bf16, trainer, expected):
    monkeypatch.setattr(runtime_precision, "cpu_bf16_units", lambda: units)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *_, **__: cuda_bf16)
    assert compose_config(["precision=auto", f"trainer={trainer}"]).trainer.precision == expected


def test_the_benchmark_loops_run_bf16_and_its_fit_inherits_the_precision():
    args = bench.parse_args(["experiment=fast", "precision=bf16", "threads=1"])
    assert args.tta_overrides == ["experiment=fast", "precision=bf16", "threads=1"]
    reference = bench._Reference(compose_config(["experiment=fast", "precision=bf16"]), torch.device("cpu"))
    assert reference.autocast_dtype == torch.bfloat16 and reference.scaler is None
    fp32 = compose_config(["experiment=fast", "precision=fp32"])
    assert bench._Reference(fp32, torch.device("cpu")).autocast_dtype is None
