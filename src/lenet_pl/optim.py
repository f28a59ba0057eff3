"""The 1998 paper's optimiser: stochastic diagonal Levenberg-Marquardt (SDLM), and its step schedule.

LeCun et al. (1998), Appendix C: each parameter w_k takes the step

    w_k <- w_k - eta / (mu + h_kk) * dE/dw_k

where h_kk estimates the second derivative of the loss with respect to w_k, re-estimated on a
few hundred samples before each pass, and mu (0.02) keeps the step bounded where h_kk is small.

Three pieces, each usable on its own:
- `SDLM`: the torch Optimizer (any model). It needs h_kk, which it receives from
- `SDLMCurvature`: a Lightning Callback that, before each pass, computes the paper's h_kk (the
  diagonal Gauss-Newton estimate of `lenet_pl.curvature`, averaged over the per-sample values
  of the first `samples` training samples of the pass) and hands it to every SDLM optimizer of
  the trainer. `optimizer=sdlm` adds it to the run's callbacks.
- `PiecewiseConstantLR`: the step schedule (`scheduler=lecun1998`), stepped once per pass.

Mini-batches. The paper updates after every sample, with the per-sample gradient. A batch of B
samples gives one step with the batch-mean gradient, and h_kk (a per-sample second derivative)
is the same either way, so to first order (the weights move little within B samples) one batch
step of B x eta moves the weights as far as the paper's B single-sample steps of eta:
sum_b eta g_b / (mu + h) = B eta mean_b(g_b) / (mu + h). Hence lr = B x eta.

What that gives in practice (docs/reproducing-1998.md): with the paper's initialisation (+-2.4/F_i)
the paper's h_kk is far below mu for almost every weight, so the step is ~eta/mu x gradient, and
at the paper's eta every unit saturates within 10 steps, per sample as well as in batches; that
literal set-up trains only at eta/64. The `lenet1998` preset follows the code of LeCun's group
instead (+-2.4/sqrt(F_i), an energy with a 1/2, eta = 1e-4). `divide_by="sqrt_fan_in_share"` is the
per-weight rate of the group's older simulator SN2.8. `SDLMCurvature(estimate="hessian_row_magnitude")`,
mean |(Hz)_k| over random +-1 vectors z (Hessian-vector products), is larger where weights
interact, which keeps larger steps stable: the project used it before, at 4 x B x eta.
"""

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from lenet_pl.curvature import fan_in_times_share, gauss_newton_diagonal, hessian_row_magnitude
from lenet_pl.runtime.errors import ConfigError

log = logging.getLogger("lenet_pl")


class SDLM(Optimizer):
    """Stochastic diagonal Levenberg-Marquardt: p <- p - lr / (mu + h) * grad, h set by `set_hessian_diagonal`.

    Args:
        params: the parameters (or parameter groups) to train.
        lr: the global step size eta (the paper's 5e-4 for one sample per step).
        mu: the Levenberg-Marquardt damping, 0.02 in the paper.
        divide_by: "none" (the paper's text: one eta for every parameter) or "sqrt_fan_in_share"
            (SN2.8's default: each parameter's step divided by sqrt of the fan-in x share of its
            connections, `lenet_pl.curvature.fan_in_times_share`, installed by `SDLMCurvature`).
    """

    DIVIDE_BY = ("none", "sqrt_fan_in_share")

    def __init__(
        self,
        params: Iterable[nn.Parameter] | Iterable[dict[str, Any]],
        lr: float = 5e-4,
        mu: float = 0.02,
        divide_by: str = "none",
    ):
        if not lr > 0:
            raise ConfigError(f"optimizer.lr={lr!r} is not allowed: SDLM's step size must be positive.")
        if not mu > 0:
            raise ConfigError(f"optimizer.mu={mu!r} is not allowed: SDLM's damping mu must be positive (paper: 0.02).")
        if divide_by not in self.DIVIDE_BY:
            raise ConfigError(
                f"optimizer.divide_by={divide_by!r} is not known; choose one of {list(self.DIVIDE_BY)} (none: one "
                "step size for every weight, as the paper prints it; sqrt_fan_in_share: SN2.8's default, the step "
                "divided by sqrt(fan-in x share) of each weight)."
            )
        super().__init__(params, {"lr": lr, "mu": mu})
        self.divide_by = divide_by

    @torch.no_grad()
    def set_hessian_diagonal(self, estimates: dict[Tensor, Tensor]) -> None:
        """Install h_kk (one tensor per parameter, same shape, >= 0) for the following steps."""
        for group in self.param_groups:
            for p in group["params"]:
                if p in estimates:
                    self.state[p]["hessian_diagonal"] = estimates[p].detach().abs().to(p)

    @torch.no_grad()
    def set_connection_counts(self, counts: dict[Tensor, Tensor]) -> None:
        """Install each parameter's fan-in x share (divide_by="sqrt_fan_in_share" divides its step by the root)."""
        for group in self.param_groups:
            for p in group["params"]:
                if p in counts:
                    self.state[p]["rate_scale"] = counts[p].detach().to(p).rsqrt()

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                h = self.state[p].get("hessian_diagonal")
                if h is None:
                    raise ConfigError(
                        "optimizer SDLM has no second-derivative estimate h_kk to take a step with. Add the "
                        "lenet_pl.optim.SDLMCurvature callback (optimizer=sdlm adds it as callbacks.sdlm_curvature; "
                        "do not remove it), or call set_hessian_diagonal() before step() when using SDLM directly."
                    )
                grad = p.grad
                if self.divide_by != "none":
                    scale = self.state[p].get("rate_scale")
                    if scale is None:
                        raise ConfigError(
                            f"optimizer SDLM with divide_by={self.divide_by!r} has no connection counts for a "
                            "parameter; the SDLMCurvature callback installs them (only for the layers of "
                            "lenet_pl.curvature.WEIGHTED), or call set_connection_counts() before step()."
                        )
                    grad = grad * scale
                p.addcdiv_(grad, h + group["mu"], value=-group["lr"])
        return loss


class SDLMCurvature(L.Callback):
    """Before each pass, the paper's h_kk on the first `samples` training samples of the pass, installed in every SDLM.

    The samples are those the pass is about to train on, preprocessed (and distorted, with
    `data.augment`) as training batches are. Other optimizers are left alone.

    Args:
        samples: samples per estimate (the paper: 500).
        estimate: "gauss_newton", the paper's (`lenet_pl.curvature.gauss_newton_diagonal`), or
            "hessian_row_magnitude" (`lenet_pl.curvature.hessian_row_magnitude`, random probes).
        probes: random vectors per batch, for "hessian_row_magnitude" only.
    """

    ESTIMATES = ("gauss_newton", "hessian_row_magnitude")

    def __init__(self, samples: int = 500, estimate: str = "gauss_newton", probes: int = 4) -> None:
        for key, value in (("samples", samples), ("probes", probes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(
                    f"callbacks.sdlm_curvature.{key}={value!r} is not allowed: it must be a whole number of at least 1."
                )
        if estimate not in self.ESTIMATES:
            raise ConfigError(
                f"callbacks.sdlm_curvature.estimate={estimate!r} is not known; choose one of {list(self.ESTIMATES)}."
            )
        self.samples, self.estimate, self.probes = samples, estimate, probes

    def _estimate(self, net: nn.Module, loss: Callable, x: Tensor, y: Tensor) -> dict[nn.Parameter, Tensor]:
        if self.estimate == "gauss_newton":
            return gauss_newton_diagonal(net, loss, x, y)
        return hessian_row_magnitude(net, loss, x, y, self.probes)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        optimizers = [opt for opt in trainer.optimizers if isinstance(opt, SDLM)]
        if not optimizers:
            return
        net = getattr(pl_module, "net", pl_module)
        total: dict[nn.Parameter, Tensor] = {}
        seen = 0
        for batch in trainer.train_dataloader:  # a fresh pass over the same order as the coming epoch
            x, y = trainer.strategy.batch_to_device(batch)  # to the device, preprocessed as for training
            take = min(len(y), self.samples - seen)
            for p, h in self._estimate(net, pl_module.loss, x[:take], y[:take]).items():
                total[p] = total[p] + h * take if p in total else h * take
            seen += take
            if seen >= self.samples:
                break
        estimates = {p: h / seen for p, h in total.items()}
        counts = fan_in_times_share(net, x) if any(opt.divide_by != "none" for opt in optimizers) else {}
        for opt in optimizers:
            opt.set_hessian_diagonal(estimates)
            opt.set_connection_counts(counts)
        # Where h_kk < mu the step is capped near lr/mu x gradient: how much of the net that is says
        # whether the run is Levenberg-Marquardt or plain SGD at lr/mu.
        mu = optimizers[0].param_groups[0]["mu"]
        values = torch.cat([h.flatten() for h in estimates.values()])
        below = (values < mu).float().mean().item()
        pl_module.log_dict({"sdlm/h_below_mu": below, "sdlm/h_median": values.median().item()})
        log.info(
            "SDLM curvature before pass %d: h_kk < mu for %.1f%% of %d parameters (median h_kk %.3g, mu %g)",
            trainer.current_epoch + 1,
            100 * below,
            len(values),
            values.median().item(),
            mu,
        )


class PiecewiseConstantLR(LambdaLR):
    """The learning rate times factors[i] from epoch milestones[i-1] on (factors[0] before the first milestone).

    The paper's schedule for SDLM, eta = 5e-4 for 2 passes, 2e-4 for 3, 1e-4 for 3, 5e-5 for 4,
    then 1e-5, is milestones (2, 5, 8, 12) with factors (1, 0.4, 0.2, 0.1, 0.02).
    """

    def __init__(self, optimizer: Optimizer, milestones: Sequence[int], factors: Sequence[float]) -> None:
        milestones, factors = list(milestones), list(factors)
        if len(factors) != len(milestones) + 1 or milestones != sorted(milestones):
            raise ConfigError(
                f"scheduler milestones={milestones} and factors={factors} do not fit: give increasing "
                "milestones and exactly one more factor than milestones."
            )
        self.milestones, self.factors = milestones, factors
        super().__init__(optimizer, self.factor)

    def factor(self, epoch: int) -> float:
        stage = sum(epoch >= m for m in self.milestones)
        return self.factors[stage]

    def state_dict(self) -> dict[str, Any]:
        # LambdaLR would try to store the bound method; the milestones and factors are enough.
        return {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "lr_lambdas")}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.__dict__.update(state_dict)
