"""Data-fidelity losses between predicted and measured samples (docs/methods.md section 3).

All take flat sample vectors ``pred, y`` of shape ``(M,)`` (complex for MRI, real for CT/volumes) and average
over real and imaginary parts, as the Bilevel authors' code does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from inrecon.config import PosFloat
from inrecon.errors import InreconError

__all__ = ["LOSSES", "LossConfig", "data_loss"]

LOSSES = ("mse", "l1", "self_weighted", "self_weighted_normalized")
LossKind = Literal["mse", "l1", "self_weighted", "self_weighted_normalized"]


@dataclass
class LossConfig:
    """The data term of a fit."""

    kind: LossKind = "mse"
    """mse, l1, self_weighted (Bilevel eq. 9: the squared residual divided by |prediction|^2 + delta), or
    self_weighted_normalized (the same divided by the mean of its weights: the MSE's scale at every delta)."""
    delta: PosFloat = 1e-3
    """The self-weighted loss's controller, relative to data scaled to a largest magnitude of 1."""


def data_loss(
    pred: torch.Tensor,
    y: torch.Tensor,
    kind: str = "mse",
    delta: float = 1e-3,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean loss over samples (and over real/imaginary parts).

    ``self_weighted`` is the Bilevel paper's eq. 9: ``mean(|pred - y|^2 / (|pred|^2 + delta))`` with the
    weights ``|pred|`` detached; ``delta`` is relative to data scaled to max magnitude 1.
    ``self_weighted_normalized`` divides that by ``mean(1 / (|pred|^2 + delta))``: the same relative weights
    with the scale of the MSE, so that ``delta`` shapes the weighting only. Eq. 9's own scale falls as ``1 /
    delta`` for the many samples with ``|pred|^2 << delta``, and coupled L2 weight decay (a fixed multiple of
    the weights added to the loss's gradient) then grows relative to the data term as ``delta`` grows.

    ``weight`` (``(M,)`` real, or ``None``) multiplies each sample's term before the mean (a held-out loss
    weighted by the k-space area each sample stands for, :attr:`~inrecon.physics.measurement.Measurement.density`).
    """
    diff = pred - y
    d = torch.view_as_real(diff) if diff.is_complex() else diff
    if kind == "mse":
        per = d.square()
    elif kind == "l1":
        per = d.abs()
    elif kind in ("self_weighted", "self_weighted_normalized"):
        w2 = pred.detach().abs().square() + delta
        per = d.square() / (w2.unsqueeze(-1) if diff.is_complex() else w2)  # eq. 9, computed as before
        if kind == "self_weighted_normalized":
            per = per / w2.reciprocal().mean()
    else:
        raise InreconError(f"unknown loss {kind!r}", f"choose one of {', '.join(LOSSES)}")
    if weight is not None:
        per = per * (weight.unsqueeze(-1) if diff.is_complex() else weight)
    return per.mean()
