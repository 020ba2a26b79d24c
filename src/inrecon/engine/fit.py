"""Fitting a model's image to a :class:`~inrecon.physics.measurement.Measurement`: the task every INR fit runs.

A :class:`Model` is what a method builds: the module holding its trainable state, its Adam parameter groups,
and ``render() -> image`` (with gradients). :class:`FitTask` turns it into a training task for
:func:`~inrecon.engine.trainer.train`: each step renders the image, predicts every acquired sample through the
measurement's operator, and minimises the data term on the training samples plus an optional image prior.
Pointwise measurements (volume fitting) larger than ``batch_size`` are fitted in seeded coordinate batches.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import nn

from inrecon.engine.losses import LossConfig, data_loss
from inrecon.engine.trainer import StepOutput, Task
from inrecon.physics.measurement import Measurement

__all__ = ["FitTask", "Model", "evaluator"]


@dataclass
class Model:
    """A trainable reconstruction.

    Attributes
    ----------
    module
        Every trainable tensor (checkpointed, restored).
    groups
        Adam parameter groups, e.g. encoder and decoder with their own weight decay.
    render
        ``() -> image`` on the measurement's grid, with gradients (complex for MRI).
    to_domain
        ``image -> operator input`` when the operator's domain is not the image (IMJENSE: coil images).
    at
        ``coords (n, D) -> values (n,)``: the field at arbitrary coordinates (pointwise batches of volumes).
    render_nograd
        ``() -> image`` without gradients, e.g. in chunks for large volumes (default: ``render``).
    """

    module: nn.Module
    groups: list[dict]
    render: Callable[[], torch.Tensor]
    to_domain: Callable[[torch.Tensor], torch.Tensor] | None = None
    at: Callable[[torch.Tensor], torch.Tensor] | None = None
    render_nograd: Callable[[], torch.Tensor] | None = None

    def image(self) -> torch.Tensor:
        with torch.no_grad():
            return (self.render_nograd or self.render)()


class _Batches:
    """Seeded coordinate batches: a fixed permutation cycled, batch ``k`` a function of ``k`` (resumable)."""

    def __init__(self, n: int, batch: int, seed: int, device):
        g = torch.Generator().manual_seed(seed)
        self.perm = torch.randperm(n, generator=g).to(device)
        self.batch = min(batch, n)

    def __call__(self, k: int) -> torch.Tensor:
        n = self.perm.numel()
        start = (k * self.batch) % n
        idx = self.perm[start : start + self.batch]
        if idx.numel() < self.batch:
            idx = torch.cat([idx, self.perm[: self.batch - idx.numel()]])
        return idx


class FitTask(Task):
    """Fit ``model`` to ``meas``: ``loss(A render() [train], y[train]) + prior(render())``.

    ``train`` (sample indices) restricts the data term to a split's training part; the prediction of every
    sample is kept in :attr:`StepOutput.pred` for the hold-out callback. With a pointwise measurement larger
    than ``batch_size`` (and a model with ``at``), each step fits a coordinate batch instead (no hold-out).
    """

    def __init__(
        self,
        model: Model,
        meas: Measurement,
        loss: LossConfig,
        *,
        train: torch.Tensor | None = None,
        prior: Callable[[torch.Tensor], torch.Tensor] | None = None,
        batch_size: int = 2**18,
        seed: int = 0,
    ):
        self.model, self.meas, self.prior = model, meas, prior
        # delta is relative to data whose largest sample is 1 (meas.peak under another data scale)
        self.loss = loss if meas.peak == 1.0 else replace(loss, delta=loss.delta * meas.peak**2)
        self.module = model.module
        self.train = train
        self.y_train = meas.y if train is None else meas.y[train]
        self.batched = meas.pointwise and model.at is not None and meas.n_samples > batch_size
        # a full-image step is the same every time; a CUDA graph can record it when the physics allows
        self.capturable = not self.batched and meas.base.capturable
        if self.batched:
            from inrecon.models.fields import grid_coords

            self.coords = grid_coords(meas.image_shape, device=meas.y.device)
            self.batches = _Batches(meas.n_samples, batch_size, seed, meas.y.device)

    def param_groups(self) -> list[dict]:
        return self.model.groups

    def step(self, step: int) -> StepOutput:
        if self.batched:
            idx = self.batches(step)
            pred = self.model.at(self.coords[idx])
            return StepOutput(data_loss(pred, self.meas.y[idx], self.loss.kind, self.loss.delta))
        image = self.model.render()
        x = image if self.model.to_domain is None else self.model.to_domain(image)
        pred = self.meas.predict(x)
        p = pred if self.train is None else pred[self.train]
        loss = data_loss(p, self.y_train, self.loss.kind, self.loss.delta)
        if self.prior is not None:
            loss = loss + self.prior(image)
        return StepOutput(loss, image=image, pred=pred)

    def image(self) -> torch.Tensor:
        return self.model.image()


def evaluator(meas: Measurement) -> Callable[[torch.Tensor], dict] | None:
    """``image (scaled) -> {"psnr", "ssim"}`` against the measurement's reference (``None`` without one).

    Non-finite images score NaN instead of raising.
    """
    if meas.target is None:
        return None
    from inrecon.metrics import evaluate

    def ev(image: torch.Tensor) -> dict:
        img = meas.finalize(image)
        flat = torch.view_as_real(img) if img.is_complex() else img
        if not bool(torch.isfinite(flat).all()):
            return {"psnr": math.nan, "ssim": math.nan}
        m = evaluate(img, meas.target, roi=meas.roi, scale=meas.complex_image)
        return {"psnr": m["psnr"], "ssim": m["ssim"]}

    return ev
