"""Simulate a 2D CT acquisition from an image: line integrals, optionally with Poisson (photon-count) noise.

Images are attenuation per mm scaled so that the HU window [-800, 400] maps to [0, 1] (the DisINR convention);
for noise, a pixel value ``v`` is converted to a physical attenuation ``v * mu_per_unit`` (default 0.02 / mm,
roughly water for v ~ 1) so that realistic photon counts give realistic noise, and converted back afterwards.
"""

from __future__ import annotations

import numpy as np
import torch

from inrecon.data.scans import CTGeometry, CTScan, as_tensor
from inrecon.errors import InreconError
from inrecon.physics.ct import CTProjector

__all__ = ["full_scan_angles", "simulate_ct"]


def full_scan_angles(n_views: int, geometry: str = "fan") -> torch.Tensor:
    """``n_views`` equally spaced angles over [0, 2 pi) (fan) or [0, pi) (parallel), radians float32."""
    if n_views < 1:
        raise InreconError(f"n_views={n_views}", "use at least one view")
    span = 2 * np.pi if geometry == "fan" else np.pi
    return torch.arange(n_views, dtype=torch.float64).mul(span / n_views).float()


def simulate_ct(
    image: np.ndarray | torch.Tensor,
    geometry: CTGeometry,
    angles: torch.Tensor | np.ndarray,
    *,
    photons: float | None = None,
    mu_per_unit: float = 0.02,
    seed: int = 0,
) -> CTScan:
    """Project ``image (H, W)`` along ``geometry``/``angles``; add Poisson noise for ``photons`` per ray.

    Returns a :class:`CTScan` with the image as ``target`` and the parameters in ``provenance``.
    """
    img = as_tensor(image, torch.float32)
    if img.ndim != 2 or tuple(img.shape) != tuple(geometry.image_shape):
        raise InreconError(
            f"image has shape {tuple(img.shape)} but the geometry's image_shape is {geometry.image_shape}",
            "simulate with a geometry built for this image size",
        )
    if photons is not None and photons <= 0:
        raise InreconError(f"photons={photons}", "use a positive photon count per ray (e.g. 1e5) or no noise")
    op = CTProjector(geometry, angles)
    with torch.no_grad():
        sino = op(img)
    if photons is not None:
        g = torch.Generator().manual_seed(seed)
        line = (sino * mu_per_unit).double()
        counts = torch.poisson(photons * torch.exp(-line), generator=g).clamp_min(1.0)
        sino = (-torch.log(counts / photons) / mu_per_unit).float()
    return CTScan(
        sinogram=sino,
        angles=as_tensor(angles, torch.float32),
        geometry=geometry,
        target=img,
        provenance={"simulated": True, "photons": photons, "mu_per_unit": mu_per_unit, "seed": seed},
    )
