"""A denoiser as an INR's image prior: plug-and-play splitting whose data step is the INR's own fit.

Plug-and-play splitting alternates a data step, ``x = argmin ||A x - y||^2 + mu ||x - (z - u)||^2``, with a
denoiser, ``z = D(x + u)`` (and, for ADMM, ``u = u + x - z``). The classical methods solve the data step over
pixels by conjugate gradients (:func:`~inrecon.recon.classical.solvers.plug_and_play`); here ``x`` is the image
an INR renders, and the data step is ``inner_steps`` Adam updates of its weights on the data term (the method's own,
e.g. CT's ramp-and-counts weighting) plus ``c ||x - (z - u)||^2``. It runs as one :func:`~inrecon.engine.trainer.
train` run of ``iterations * inner_steps`` steps (one Adam state throughout), with :class:`Splitting` as the callback that
denoises every ``inner_steps`` steps and moves the coupling's target.

A term ``w ||x - D(x)||^2`` in the loss (RED, stop 54) or a pull towards a denoised image without a dual
variable refreshed every 50 steps at the fit's own learning rate (stop 62) gained nothing over TV; the splitting
with a 10x smaller learning rate, started from the fitted INR, does (benchmarks/RESULTS.md, stop 66).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

import torch

from inrecon.config import NonNegFloat, PosFloat, PosInt
from inrecon.engine.callbacks import Evaluate, Progress
from inrecon.engine.fit import FitTask, Model, evaluator
from inrecon.engine.losses import LossConfig
from inrecon.engine.trainer import Callback, Checkpoint, OptimConfig, Run, StepOutput, train
from inrecon.errors import InreconError
from inrecon.physics.measurement import Measurement

__all__ = ["Splitting", "SplittingConfig", "operator_norm_sq", "split_with_denoiser"]


@dataclass
class SplittingConfig:
    """Plug-and-play splitting after an INR's fit (module docstring); ``noise=0`` (the default) turns it off."""

    noise: NonNegFloat | Literal["auto"] = 0.0
    """The denoiser's noise level relative to the image scale the classical ``pnp`` / ``pnp-ct`` use for the
    scan, so that one number means the same in both; ``auto``: the level those methods' hold-out chooses for
    the scan (where their hold-out keeps TV's image instead, no splitting runs; NGP skips it on scans the
    denoiser cannot take: 3D scans, volumes, images under 16 x 16); 0: off."""
    noise_factor: PosFloat = 1.0
    """``noise=auto``: the splitting's noise level is this multiple of the classical method's hold-out choice."""
    iterations: PosInt = 12
    """Splitting iterations (each: ``inner_steps`` Adam updates, then one denoiser call)."""
    inner_steps: PosInt = 50
    """Adam updates of each data step (NGP: at most ``optim.steps // iterations``, so that the splitting never
    runs more steps than the fit's own budget)."""
    inner_lr: PosFloat = 1e-3
    """Adam's learning rate in the splitting (constant; the fit's own is 10x larger)."""
    mu: PosFloat = 0.15
    """Coupling weight relative to ``||A||^2`` of the fitted measurement, as the classical methods' ``mu``."""
    scheme: Literal["hqs", "admm"] = "hqs"
    """hqs: half-quadratic splitting (``u = 0``); admm: with the scaled dual variable."""


def operator_norm_sq(meas: Measurement, iters: int = 30) -> float:
    """``||A||^2`` of the measurement's (weighted) operator by power iteration on its normal operator, from a
    seeded random start."""
    g = torch.Generator().manual_seed(0)
    dtype = torch.complex64 if meas.y.is_complex() else torch.float32
    x = torch.randn(meas.domain_shape, generator=g, dtype=dtype).to(meas.y.device)
    normal = meas.normal()
    s = 0.0
    with torch.no_grad():
        x = x / x.norm().clamp_min(1e-30)
        for _ in range(iters):
            v = normal(x)
            s = float(v.norm())
            if s == 0.0:
                return 0.0
            x = v / s
    return s


class Splitting(Callback):
    """Every ``every`` steps: ``z = denoise(x + u)`` of the image the step rendered, ``u = u + x - z`` (ADMM), and
    the coupling's target ``z - u`` for the next data step. ``target`` starts at ``x0`` (``z = x0``, ``u = 0``)."""

    def __init__(
        self,
        x0: torch.Tensor,
        denoise: Callable[[torch.Tensor], torch.Tensor],
        every: int,
        kind: str,
        total: int,
    ):
        self.denoise, self.every, self.kind, self.total = denoise, every, kind, total
        self.z, self.u = x0.detach().clone(), torch.zeros_like(x0)
        self.target = self.z

    def on_forward(self, run: Run, step: int, out: StepOutput) -> None:
        # the step counter is 0-based: the image of step every-1 is the data step's last
        if (step + 1) % self.every or step + 1 >= self.total or out.image is None:
            return
        with torch.no_grad():
            x = out.image.detach()
            self.z = self.denoise(x + self.u)
            if self.kind == "admm":
                self.u = self.u + x - self.z
            self.target = self.z - self.u

    def state_dict(self) -> dict:
        return {"z": self.z, "u": self.u}

    def load_state_dict(self, state: dict) -> None:
        self.z, self.u = state["z"], state["u"]
        self.target = self.z - self.u


def split_with_denoiser(
    meas: Measurement,
    model: Model,
    cfg: SplittingConfig,
    denoise: Callable[[torch.Tensor], torch.Tensor],
    *,
    train_idx: torch.Tensor | None = None,
    holdout: Callback | None = None,
    checkpoint: Checkpoint | None = None,
    show_progress: bool | None = None,
    eval_every: int = 50,
    desc: str = "splitting",
) -> Run:
    """Run :class:`SplittingConfig`'s splitting on ``model`` (already fitted to ``meas``: its image is the
    start), fitting every sample of ``meas`` (or those of ``train_idx``, with ``holdout`` scoring the rest) with
    the MSE data term; ``denoise``: image -> denoised image on the
    measurement's grid and in its units. The model's weights are updated in place; the last data step's image
    is the result (``model.image()``)."""
    if meas.pointwise:
        raise InreconError(
            "a denoiser prior needs a measured scan (MRI or CT), not a volume fit",
            "leave splitting.noise at 0 for volumes",
        )
    x0 = model.image()
    norm_sq = operator_norm_sq(meas)
    # the MSE is a mean over real numbers (real and imaginary parts): c = mu ||A||^2 / n makes the loss
    # (||A x - y||^2 + mu ||A||^2 ||x - t||^2) / n, the classical splitting's data step
    n_fit = meas.n_samples if train_idx is None else len(train_idx)
    n_real = n_fit * (2 if meas.y.is_complex() else 1)
    c = cfg.mu * norm_sq / n_real
    total = cfg.iterations * cfg.inner_steps
    split = Splitting(x0, denoise, cfg.inner_steps, cfg.scheme, total)

    def coupling(image: torch.Tensor) -> torch.Tensor:
        return c * (image - split.target).abs().square().sum()

    # the splitting's own optimiser: no weight decay (the coupling is the prior), Adam's usual beta2 and eps
    plain = replace(model, groups=[{**g, "weight_decay": 0.0} for g in model.groups])
    task = FitTask(plain, meas, LossConfig(kind="mse"), train=train_idx, prior=coupling)
    callbacks: list[Callback] = [split] if holdout is None else [split, holdout]
    ev = evaluator(meas)
    if ev is not None:
        callbacks.append(Evaluate(ev, eval_every))
    callbacks.append(Progress(desc, show_progress))
    optim = OptimConfig(steps=total, lr=cfg.inner_lr, beta2=0.999, eps=1e-8, schedule="constant")
    return train(task, optim, callbacks, checkpoint=checkpoint)
