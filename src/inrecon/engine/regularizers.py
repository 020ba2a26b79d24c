"""Image-domain priors any INR fit can add to its data term (through :class:`~inrecon.engine.fit.FitTask`).

Weights are relative to data scaled to a largest sample magnitude of 1 (the INR convention), so one weight
means the same on scans of any intensity.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from inrecon.config import NonNegFloat

__all__ = ["PriorConfig", "make_prior", "total_variation"]


@dataclass
class PriorConfig:
    """Explicit image priors added to the data term."""

    tv: NonNegFloat = 0.0
    """Weight of the isotropic total variation of the rendered image (mean over pixels; complex images use
    the modulus of the complex gradient). 0: none."""


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """Isotropic total variation of a 2D or 3D image (real or complex), averaged over pixels.

    Forward differences along every image axis, cropped to the common interior, ``sqrt(sum |d|^2 + 1e-12)``.
    """
    nd = image.ndim
    diffs = []
    for ax in range(nd):
        d = torch.diff(image, dim=ax)
        crop = tuple(slice(None) if a == ax else slice(0, image.shape[a] - 1) for a in range(nd))
        diffs.append(d[crop].abs().square())
    return (sum(diffs) + 1e-12).sqrt().mean()


def make_prior(cfg: PriorConfig) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """``image -> penalty`` for ``cfg``, or ``None`` when every weight is 0."""
    if cfg.tv <= 0:
        return None
    w = float(cfg.tv)
    return lambda image: w * total_variation(image)
