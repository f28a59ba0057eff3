"""The faithful 1998 LeNet-5 (experiment=lenet1998): its parts, counts, optimiser, schedule, distortions, training."""

import json
import math
import re
from types import SimpleNamespace

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image
from torch import nn

from conftest import REPO, run_in_process
from lenet_pl.augment import RandomAffineDistortion
from lenet_pl.curvature import fan_in_times_share, gauss_newton_diagonal
from lenet_pl.layers import (
    RBFMAPLoss,
    RBFOutput,
    RBFPenaltyLoss,
    ScaledTanh,
    Subsampling,
    TableConv2d,
    c3_connection_table,
    digit_bitmaps,
)
from lenet_pl.model import format_layer_table, layer_table
from lenet_pl.module import LeNetModule
from lenet_pl.optim import SDLM, PiecewiseConstantLR, SDLMCurvature
from lenet_pl.per_pass import read_error_per_pass
from lenet_pl.runtime.compose import compose_config
from lenet_pl.runtime.errors import ConfigError, user_message

PAPER_PARAMS = {"C1": 156, "S2": 12, "C3": 1_516, "S4": 32, "C5": 48_120, "F6": 10_164, "output": 0}
PAPER_CONNECTIONS = {
    "C1": 122_304, "S2": 5_880, "C3": 151_600, "S4": 2_000, "C5": 48_120, "F6": 10_164, "output": 840,
}  # fmt: skip


def lenet1998(*overrides: str):
    return compose_config(["experiment=lenet1998", *overrides])


def test_rbf_centres_are_ten_distinct_plus_minus_one_bitmaps_of_7x12():
    centres = digit_bitmaps()
    assert centres.shape == (10, 84)
    assert set(centres.unique().tolist()) == {-1.0, 1.0}
    hamming = (centres[:, None, :] != centres[None, :, :]).sum(dim=-1)
    off_diagonal = hamming[~torch.eye(10, dtype=torch.bool)]
    assert off_diagonal.min() >= 6  # every pair differs in several pixels, not just one
    # The bitmap of "1" is mostly background, that of "8" mostly ink.
    assert (centres[1] > 0).sum() < (centres[8] > 0).sum()


def test_rbf_output_is_the_negative_squared_distance_to_fixed_centres():
    rbf = RBFOutput(84, 10)
    assert sum(p.numel() for p in rbf.parameters()) == 0
    x = torch.randn(5, 84)
    expected = -torch.cdist(x, digit_bitmaps()).pow(2)
    assert torch.allclose(rbf(x), expected, atol=1e-4)
    # Feeding a digit's own bitmap: penalty 0 for that class, so it is the argmax.
    assert torch.equal(rbf(digit_bitmaps()).argmax(dim=1), torch.arange(10))
    assert rbf(digit_bitmaps()).diagonal().abs().max() == 0
    with pytest.raises(ValueError, match="84"):
        RBFOutput(100, 10)


def test_eq8_loss_is_the_correct_class_penalty_and_eq9_adds_the_rubbish_class_term():
    penalties = torch.tensor([[1.0, 5.0, 9.0], [4.0, 2.0, 3.0]])
    outputs, target = -penalties, torch.tensor([0, 2])
    assert RBFPenaltyLoss()(outputs, target).item() == pytest.approx((1.0 + 3.0) / 2)
    j = 0.1
    by_hand = [
        p[t] + math.log(math.exp(-j) + sum(math.exp(-v) for v in p))
        for p, t in zip(penalties.tolist(), target.tolist(), strict=True)
    ]
    assert RBFMAPLoss(j=j)(outputs, target).item() == pytest.approx(sum(by_hand) / 2, rel=1e-6)
    # Large penalties (1e4) do not overflow: the log term tends to -j.
    big = -torch.full((1, 10), 1e4)
    assert RBFMAPLoss(j=j)(big, torch.tensor([3])).item() == pytest.approx(1e4 - j)


def test_c3_connection_table_is_table_one_of_the_paper():
    table = c3_connection_table()
    assert table.shape == (6, 16) and table.dtype == torch.bool
    assert int(table.sum()) == 60
    expected = {j: {(j + k) % 6 for k in range(3)} for j in range(6)}
    expected |= {6 + j: {(j + k) % 6 for k in range(4)} for j in range(6)}
    expected |= {12: {0, 1, 3, 4}, 13: {1, 2, 4, 5}, 14: {0, 2, 3, 5}, 15: set(range(6))}
    assert {j: set(table[:, j].nonzero().flatten().tolist()) for j in range(16)} == expected


def test_table_conv_is_a_dense_convolution_with_the_unconnected_kernels_zero():
    conv = TableConv2d(6, 16, 5)
    assert sum(p.numel() for p in conv.parameters()) == 60 * 25 + 16
    dense = conv.dense_weight()
    nonzero_pairs = dense.abs().sum(dim=(2, 3)) != 0
    assert torch.equal(nonzero_pairs, c3_connection_table().t())
    x = torch.randn(2, 6, 14, 14, requires_grad=True)
    out = conv(x)
    assert out.shape == (2, 16, 10, 10)
    assert torch.allclose(out, F.conv2d(x, dense, conv.bias), atol=1e-6)
    # C3 map 0 combines S2 maps 0, 1, 2 only: its gradient w.r.t. map 3 is exactly zero.
    (grad,) = torch.autograd.grad(out[:, 0].sum(), x)
    assert grad[:, 3:].abs().max() == 0 and grad[:, :3].abs().min() >= 0 and grad[:, :3].abs().max() > 0


def test_subsampling_is_a_trainable_scaled_sum_of_2x2_blocks():
    layer = Subsampling(3)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([1.0, 0.5, -2.0]))
        layer.bias.copy_(torch.tensor([0.0, 1.0, 3.0]))
    x = torch.arange(3 * 4 * 4, dtype=torch.float).view(1, 3, 4, 4)
    out = layer(x)
    block_sum = x[0, 1, 0:2, 2:4].sum()  # map 1, top-right 2x2 block
    assert out.shape == (1, 3, 2, 2)
    assert out[0, 1, 0, 1].item() == pytest.approx(0.5 * block_sum.item() + 1.0)
    assert sum(p.numel() for p in layer.parameters()) == 6


def test_lenet1998_layer_table_has_the_papers_counts_exactly():
    net = instantiate(lenet1998().model)
    rows = {r.name: r for r in layer_table(net)}
    assert {n: r.params for n, r in rows.items()} == PAPER_PARAMS
    assert {n: r.connections for n, r in rows.items()} == PAPER_CONNECTIONS
    assert sum(p.numel() for p in net.parameters() if p.requires_grad) == 60_000
    assert isinstance(net.C1[1], ScaledTanh) and isinstance(net.S2[1], ScaledTanh)
    assert isinstance(net.C3[0], TableConv2d) and isinstance(net.output, RBFOutput)


def test_summary_cli_prints_the_1998_table():
    result = run_in_process("lenet_pl.summary", "experiment=lenet1998", cwd=REPO)
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()}
    assert lines["S2"] == ["6x14x14", "12", "5,880"]
    assert lines["C3"] == ["16x10x10", "1,516", "151,600"]
    assert lines["output"] == ["10", "0", "840"]
    assert lines["total"] == ["60,000", "340,908"]
    assert result.stdout.strip() == format_layer_table(layer_table(instantiate(lenet1998().model)))


@pytest.mark.parametrize(
    ("overrides", "bound_of"),
    [
        ((), lambda fan_in: 2.4 / fan_in**0.5),  # the preset: the paper's 2.4, the group's sqrt
        (("model.init.divide_by=fan_in",), lambda fan_in: 2.4 / fan_in),  # the paper's text
        (("model.init.scale=1.0",), lambda fan_in: 1.0 / fan_in**0.5),  # eblearn's MNIST demo
    ],
    ids=["preset_2_4_over_sqrt_fan_in", "paper_text_2_4_over_fan_in", "eblearn_1_over_sqrt_fan_in"],
)
def test_weights_start_uniform_within_the_rule_and_biases_at_zero(overrides, bound_of):
    torch.manual_seed(0)
    net = instantiate(lenet1998(*overrides).model)
    for layer, fan_in in ((net.C1[0], 25), (net.C5[0], 16 * 25), (net.F6[0], 120), (net.S2[0], 4)):
        bound = bound_of(fan_in)
        assert layer.weight.abs().max() <= bound
        assert layer.weight.abs().max() > 0.8 * bound  # spread over the range, not a narrower default
        assert layer.bias.abs().max() == 0
    c3 = net.C3[0]
    inputs_per_kernel = c3_connection_table().sum(dim=0)[c3.pair_index // 6] * 25
    assert (c3.weight.abs().amax(dim=1) <= bound_of(inputs_per_kernel.float())).all()


def test_lenet1998_preset_scales_pixels_to_minus_0_1_and_1_175_and_uses_sdlm_with_the_schedule():
    cfg = lenet1998()
    data = instantiate(cfg.data)
    x = data.preprocess(torch.tensor([[[0] * 28] * 27 + [[255] * 28]], dtype=torch.uint8))
    assert x.shape == (1, 1, 32, 32)
    assert x[0, 0, 0, 0].item() == pytest.approx(-0.1, abs=1e-6)  # padding is background too
    assert x[0, 0, 29, 5].item() == pytest.approx(1.175, abs=1e-6)
    optimizer = instantiate(cfg.optimizer)([nn.Parameter(torch.zeros(2))])
    assert isinstance(optimizer, SDLM) and optimizer.defaults["mu"] == 0.02 and optimizer.divide_by == "none"
    # eblearn's 1e-4 per sample times the batch size (conf/experiment/lenet1998.yaml says why not the paper's 5e-4).
    assert optimizer.defaults["lr"] == pytest.approx(1e-4 * cfg.data.batch_size)
    assert cfg.trainer.max_epochs == 20
    callback = instantiate(cfg.callbacks.sdlm_curvature)
    assert isinstance(callback, SDLMCurvature) and (callback.samples, callback.estimate) == (500, "gauss_newton")
    # The paper's protocol: every training digit, no validation split, error after every pass.
    assert cfg.data.val_size == 0 and instantiate(cfg.data).has_validation is False
    assert cfg.callbacks.error_per_pass._target_ == "lenet_pl.error_per_pass.ErrorPerPass"
    loss = instantiate(cfg.loss)
    assert isinstance(loss, RBFMAPLoss) and loss.scale == 0.5  # the 1/2 of the group's energies
    assert instantiate(lenet1998("loss=rbf_map").loss).scale == 1.0
    assert isinstance(instantiate(compose_config(["experiment=lenet1998", "loss=rbf_mse"]).loss), RBFPenaltyLoss)


def test_step_schedule_is_the_papers_over_20_passes():
    param = nn.Parameter(torch.zeros(1))
    optimizer = SDLM([param], lr=5e-4)
    scheduler = instantiate(compose_config(["scheduler=lecun1998"]).scheduler.scheduler)(optimizer)
    assert isinstance(scheduler, PiecewiseConstantLR)
    lrs = []
    for _ in range(20):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()  # no gradients: a no-op, but the order torch expects
        scheduler.step()
    paper = [5e-4] * 2 + [2e-4] * 3 + [1e-4] * 3 + [5e-5] * 4 + [1e-5] * 8
    assert lrs == pytest.approx(paper)
    restored = PiecewiseConstantLR(SDLM([param], lr=5e-4), [2, 5, 8, 12], [1, 0.4, 0.2, 0.1, 0.02])
    restored.load_state_dict(scheduler.state_dict())
    assert restored.last_epoch == 20
    with pytest.raises(ConfigError, match="one more factor"):
        PiecewiseConstantLR(optimizer, [2, 5], [1.0, 0.5])


def test_sdlm_step_on_a_quadratic_is_eta_over_mu_plus_h_times_the_gradient():
    # Least squares with a linear unit: E = mean (w.x - t)^2 is a quadratic whose Hessian diagonal is
    # 2 mean x_k^2, which is what the Gauss-Newton estimate gives.
    torch.manual_seed(0)
    unit = nn.Linear(4, 1, bias=False)
    x = torch.randn(32, 4) * torch.tensor([0.1, 1.0, 3.0, 10.0])
    t = torch.randn(32, 1)

    def loss(out, target):
        return (out - target).pow(2).sum(dim=1).mean()

    h = gauss_newton_diagonal(unit, loss, x, t)[unit.weight]
    assert torch.allclose(h, 2 * x.pow(2).mean(dim=0, keepdim=True), rtol=1e-5)
    optimizer = SDLM(unit.parameters(), lr=0.1, mu=0.02)
    with pytest.raises(ConfigError, match="SDLMCurvature"):
        loss(unit(x), t).backward()
        optimizer.step()
    optimizer.zero_grad()
    optimizer.set_hessian_diagonal({unit.weight: h})
    before = unit.weight.detach().clone()
    loss(unit(x), t).backward()
    grad = unit.weight.grad.clone()
    optimizer.step()
    assert torch.allclose(unit.weight.detach(), before - 0.1 / (0.02 + h) * grad)
    # Where the Hessian is diagonal (each sample has one non-zero input), eta = 1 and a tiny mu make
    # the step Newton's: it lands on the minimum in one step, whatever the curvature of each weight.
    x = torch.diag(torch.tensor([0.1, 1.0, 3.0, 10.0])).repeat(2, 1)
    newton = SDLM(unit.parameters(), lr=1.0, mu=1e-9)
    newton.set_hessian_diagonal(gauss_newton_diagonal(unit, loss, x, t[:8]))
    newton.zero_grad()
    loss(unit(x), t[:8]).backward()
    newton.step()
    best = torch.linalg.lstsq(x, t[:8]).solution.t()
    assert torch.allclose(unit.weight.detach(), best, atol=1e-4)
    with pytest.raises(ConfigError, match="mu"):
        SDLM(unit.parameters(), lr=0.1, mu=0.0)
    with pytest.raises(ConfigError, match="samples=0"):
        SDLMCurvature(samples=0)


def test_fan_in_times_share_counts_every_connection_of_the_1998_layers():
    net = instantiate(lenet1998().model)
    counts = fan_in_times_share(net, torch.zeros(1, 1, 32, 32))
    # Each unit's fan-in counts its inputs and its bias; each weight is used once per output position.
    c1, s2, c3, s4, c5, f6 = (net.C1[0], net.S2[0], net.C3[0], net.S4[0], net.C5[0], net.F6[0])
    expected = {
        c1.weight: 26 * 28 * 28, c1.bias: 26 * 28 * 28,
        s2.weight: 5 * 4 * 14 * 14, s2.bias: 5 * 14 * 14,  # the coefficient multiplies 4 inputs per unit
        s4.weight: 5 * 4 * 5 * 5, s4.bias: 5 * 5 * 5,
        c5.weight: 16 * 25 + 1, c5.bias: 16 * 25 + 1,
        f6.weight: 121, f6.bias: 121,
    }  # fmt: skip
    for param, value in expected.items():
        assert counts[param].shape == param.shape
        assert (counts[param] == value).all(), (tuple(param.shape), counts[param].unique())
    # C3: Table I gives each map 3, 4 or 6 input maps, so its units have 76, 101 or 151 connections.
    maps = c3_connection_table().sum(dim=0)
    unit_fan_in = maps * 25 + 1
    assert (counts[c3.bias] == unit_fan_in * 100).all()
    assert (counts[c3.weight] == (unit_fan_in[c3.pair_index // 6] * 100)[:, None].float()).all()
    assert sorted(unit_fan_in.unique().tolist()) == [76, 101, 151]


def test_sdlm_divided_by_sqrt_fan_in_share_takes_that_fraction_of_each_step():
    torch.manual_seed(0)
    unit = nn.Linear(3, 2)
    x, t = torch.randn(8, 3), torch.randn(8, 2)

    def loss(out, target):
        return (out - target).pow(2).sum(dim=1).mean()

    h = gauss_newton_diagonal(unit, loss, x, t)
    counts = fan_in_times_share(unit, x)
    assert (counts[unit.weight] == 4).all() and (counts[unit.bias] == 4).all()  # 3 inputs + the bias
    plain, divided = SDLM(unit.parameters(), lr=0.1), SDLM(unit.parameters(), lr=0.1, divide_by="sqrt_fan_in_share")
    with pytest.raises(ConfigError, match="connection counts"):
        divided.set_hessian_diagonal(h)
        loss(unit(x), t).backward()
        divided.step()
    before = [p.detach().clone() for p in unit.parameters()]
    divided.set_connection_counts(counts)
    divided.step()
    moved = [p.detach() - b for p, b in zip(unit.parameters(), before, strict=True)]
    for p, b in zip(unit.parameters(), before, strict=True):
        p.data.copy_(b)
    plain.set_hessian_diagonal(h)
    plain.step()
    for p, b, m in zip(unit.parameters(), before, moved, strict=True):
        assert torch.allclose(m, (p.detach() - b) / 2)  # 1/sqrt(4)
        assert m.abs().max() > 0
    with pytest.raises(ConfigError, match=r"divide_by='fan_in' is not known.*sqrt_fan_in_share"):
        SDLM(unit.parameters(), divide_by="fan_in")
    with pytest.raises(ConfigError, match=re.escape("optimizer.divide_by='per_layer' is not known")):
        instantiate(lenet1998("optimizer.divide_by=per_layer").optimizer)([nn.Parameter(torch.zeros(1))])


def test_the_half_energy_halves_gradient_and_curvature_so_mu_guards_twice_as_much():
    torch.manual_seed(0)
    net = instantiate(lenet1998().model)
    x, y = torch.randn(6, 1, 32, 32), torch.arange(6)
    full, half = RBFMAPLoss(), RBFMAPLoss(scale=0.5)
    assert half(net(x), y).item() == pytest.approx(full(net(x), y).item() / 2, rel=1e-6)
    h_full, h_half = gauss_newton_diagonal(net, full, x, y), gauss_newton_diagonal(net, half, x, y)
    for p in net.parameters():
        assert torch.allclose(h_half[p], h_full[p] / 2, rtol=1e-5, atol=1e-12)
    # So eta / (mu + h) on the half energy is eta / (2 mu + h) on the full one, gradient for gradient.
    for bad in (0, -0.5, True, "half"):
        with pytest.raises(ConfigError, match=f"loss.scale={bad!r}"):
            RBFMAPLoss(scale=bad)
    for bad in (float("nan"), float("inf"), True, "abc"):  # j is used only in the first forward pass
        with pytest.raises(ConfigError, match=r"loss.j=.* is not allowed: it must be a finite number"):
            RBFMAPLoss(j=bad)
    assert RBFMAPLoss(j=-1.0).j == -1.0  # any finite rubbish-class level is a valid criterion


def test_distortions_move_ink_differently_per_image_and_keep_dtype_and_shape():
    torch.manual_seed(0)
    images = torch.zeros(64, 1, 32, 32, dtype=torch.uint8)
    images[:, :, 8:24, 12:20] = 255
    distorted = RandomAffineDistortion()(images)
    assert distorted.shape == images.shape and distorted.dtype == torch.uint8
    changed = (distorted != images).flatten(1).any(dim=1)
    assert changed.float().mean() > 0.9
    assert len({tuple(d.flatten().tolist()) for d in distorted}) == 64  # one random map per image
    ink_ratio = distorted.float().sum(dim=(1, 2, 3)) / images.float().sum(dim=(1, 2, 3))
    assert ((ink_ratio > 0.6) & (ink_ratio < 1.5)).all()  # the digit stays in the frame at about its size
    identity = RandomAffineDistortion(translate=0, scale=0, squeeze=0, shear=0, rotate=0)
    floats = torch.rand(4, 1, 32, 32)
    assert torch.allclose(identity(floats), floats, atol=1e-5)


def test_data_augment_distorts_training_batches_only(synthetic_root):
    data = instantiate(
        compose_config(
            [
                "experiment=lenet1998",
                "data.augment=distortions",
                "data.val_size=200",
                f"data.root={synthetic_root}",
                "data.verify=false",
            ]
        ).data
    )
    data.setup()
    images, labels = next(iter(data.train_dataloader()))
    data.trainer = SimpleNamespace(training=False)
    plain, _ = data.on_after_batch_transfer((images, labels), 0)
    assert torch.equal(plain, data.preprocess(images))
    data.trainer = SimpleNamespace(training=True)
    torch.manual_seed(1)
    distorted, same_labels = data.on_after_batch_transfer((images, labels), 0)
    assert torch.equal(same_labels, labels) and distorted.shape == plain.shape
    assert (distorted - plain).abs().flatten(1).amax(dim=1).min() > 0.5
    assert distorted.min().item() == pytest.approx(-0.1, abs=1e-5)  # background stays background
    with pytest.raises(InstantiationException) as failure:
        instantiate(compose_config(["data.augment=wobble"]).data)
    assert "data.augment='wobble' is not known; choose one of ['distortions', 'none']" in user_message(failure.value)


def test_the_papers_protocol_trains_on_every_digit_tests_the_last_pass_and_draws_fig5(synthetic_root, tmp_path):
    # Two seeds as a sweep: each run trains on all 1,200 synthetic training digits (no validation
    # split), records training and test error after each pass, and is tested after its last pass.
    sweep = tmp_path / "sweep"
    result = run_in_process(
        "lenet_pl.train",
        "-m",
        "experiment=lenet1998",
        "seed=0,1",
        f"data.root={synthetic_root}",
        "data.verify=false",
        "trainer.max_epochs=2",
        "callbacks.sdlm_curvature.samples=64",
        "trainer.enable_progress_bar=false",
        "threads=1",
        f"hydra.sweep.dir={sweep}",
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    runs = sorted(p.parent for p in sweep.glob("*/metrics.json"))
    assert len(runs) == 2
    for run in runs:
        assert "turned off: ModelCheckpoint(monitor='val/acc')" in (run / "train.log").read_text()
        metrics = json.loads((run / "metrics.json").read_text())["metrics"]
        assert metrics["tested"] == "network after the last epoch" and metrics["best_checkpoint"] == ""
        assert not any(key.startswith("val/") for key in metrics)
        assert metrics["global_step"] == 2 * math.ceil(1200 / 16)  # every training digit, twice
        assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.ckpt"]
        rows = read_error_per_pass(run / "error_per_pass.csv")
        assert [r["pass"] for r in rows] == [1, 2]
        assert all(0 <= r["train_error"] <= 1 for r in rows)
        # The network tested is the one after the last pass: the same test error as that pass's row.
        assert rows[-1]["test_error"] == pytest.approx(1 - metrics["test/acc"], abs=1e-6)
        with Image.open(run / "error_per_pass.png") as png:
            assert png.format == "PNG" and png.size == (840, 540)
    report = run_in_process("lenet_pl.report", str(sweep), cwd=REPO)
    assert report.returncode == 0, report.stderr
    assert "## Error per pass (as the paper's Fig. 5" in report.stdout
    assert "After the last pass, mean over 2 runs: training error" in report.stdout
    with Image.open(sweep / "report" / "error_per_pass.png") as png:
        assert png.size == (1260, 540)  # both runs, the legend beside the plot


# The paper's text: +-2.4/F_i, Eq. 9 without the 1/2, and the largest step of 0.008 x 2^-k that trains from it.
PAPER_TEXT = ("loss=rbf_map", "model.init.divide_by=fan_in", "optimizer.lr=0.000125")


def sdlm_steps_on_real_mnist(root, seed: int, steps: int = 200, overrides=PAPER_TEXT) -> tuple[tuple, tuple, dict]:
    """(loss, accuracy) on 1,000 test digits before and after `steps` of lenet1998 + `overrides`, and the SDLM state."""
    # Fewer curvature samples than the preset's 500 keep it fast.
    cfg = lenet1998(f"data.root={root}", "callbacks.sdlm_curvature.samples=160", "paths.output_dir=unused", *overrides)
    L.seed_everything(seed)
    data = instantiate(cfg.data)
    data.prepare_data()
    data.setup()
    test_x, test_y = data.splits["test"]
    test_x, test_y = data.preprocess(test_x[:1000]), test_y[:1000]
    module = LeNetModule(config=OmegaConf.to_container(cfg, resolve=True))  # as `train` builds it

    def evaluate() -> tuple[float, float]:
        with torch.no_grad():
            out = module(test_x)
        return module.loss(out, test_y).item(), (out.argmax(dim=1) == test_y).float().mean().item()

    before = evaluate()
    trainer = L.Trainer(
        max_steps=steps,
        callbacks=[instantiate(cfg.callbacks.sdlm_curvature)],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,  # the preset has no validation split
        accelerator="cpu",
    )
    trainer.fit(module, datamodule=data)
    return before, evaluate(), {"optimizer": trainer.optimizers[0], "net": module.net}


def test_a_few_hundred_sdlm_steps_on_real_mnist_train_lenet1998_as_the_paper_prints_it(real_mnist_root):
    # The paper's literal text (PAPER_TEXT), whose 200-step figures were measured on several CPUs; the
    # preset's first steps were measured on one (docs/reproducing-1998.md). A 200-step trajectory differs
    # between CPUs (and thread counts): assert what held with a wide margin for seeds 0, 1, 2 at 1 and
    # 2 threads, with and without oneDNN: loss 83.9 -> 20.5-20.8, accuracy 5-12% -> 77.5-78.1% on
    # 1,000 test digits.
    (loss_before, acc_before), (loss_after, acc_after), state = sdlm_steps_on_real_mnist(real_mnist_root, seed=0)
    assert acc_before < 0.3
    assert loss_after < 0.5 * loss_before
    assert acc_after > 0.5
    h = state["optimizer"].state[state["net"].F6[0].weight]["hessian_diagonal"]
    assert h.shape == (84, 120) and (h >= 0).all() and h.mean() > 0


@pytest.mark.parametrize("augment", ["none", "distortions"])
def test_the_presets_first_300_steps_on_real_mnist_do_not_saturate(real_mnist_root, augment):
    # The preset's +-2.4/sqrt(fan-in) keeps h_kk above mu for most weights, so its first steps are
    # Newton-scaled; eblearn's +-1/sqrt(fan-in) saturated seeds 0 and 1 within 50 steps (loss 42 ->
    # 104-110, accuracy ~10%). Measured on an AMD EPYC Zen 4, seeds 0-3, 300 steps: loss 85-98 ->
    # 9.5-13, accuracy 78-90% on 1,000 test digits, with and without distortions; saturation would
    # leave the accuracy near 10% and raise the loss.
    (loss_before, _), (loss_after, acc_after), _ = sdlm_steps_on_real_mnist(
        real_mnist_root, seed=0, steps=300, overrides=(f"data.augment={augment}",)
    )
    assert loss_after < 0.3 * loss_before
    assert acc_after > 0.6


@pytest.mark.slow
@pytest.mark.parametrize(("augment", "max_error"), [("none", 0.0125), ("distortions", 0.011)])
def test_lenet1998_under_the_papers_protocol_after_20_passes(real_mnist_root, tmp_path, augment, max_error):
    # The mean over seeds 0, 1, 2 as a sweep on the joblib launcher, one thread per job. Measured
    # on seeds 0-2 (docs/reproducing-1998.md, AMD EPYC Zen 4): 1.09% and 0.94%; the paper's 0.95% and 0.8% are not
    # reached. The margins allow for other CPUs' trajectories.
    sweep = tmp_path / "sweep"
    result = run_in_process(
        "lenet_pl.train",
        "-m",
        "experiment=lenet1998",
        f"data.augment={augment}",
        "seed=0,1,2",
        "threads=1",
        "hydra/launcher=joblib",
        f"data.root={real_mnist_root}",
        "trainer.enable_progress_bar=false",
        f"hydra.sweep.dir={sweep}",
        cwd=REPO,
        timeout=6 * 3600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    runs = sorted(p.parent for p in sweep.glob("*/metrics.json"))
    metrics = [json.loads((run / "metrics.json").read_text())["metrics"] for run in runs]
    assert len(runs) == 3 and all(m["epochs"] == 20 for m in metrics)
    errors = [1 - m["test/acc"] for m in metrics]
    assert sum(errors) / 3 <= max_error, errors
    per_pass = [read_error_per_pass(run / "error_per_pass.csv") for run in runs]
    assert all(len(rows) == 20 for rows in per_pass)
    assert all(rows[-1]["test_error"] == pytest.approx(e, abs=1e-6) for rows, e in zip(per_pass, errors, strict=True))
