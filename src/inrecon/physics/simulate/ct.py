"""Simulate a 2D CT acquisition from an image: line integrals, optionally with Poisson (photon-count) noise.

Images are attenuation per mm scaled so that the HU window [-800, 400] maps to [0, 1] (the DisINR convention);
for noise, a pixel value ``v`` is converted to a physical attenuation ``v * mu_per_unit`` (default 0.02 / mm,
roughly water for v ~ 1) so that realistic photon counts give realistic noise, and converted back afterwards.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

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
    rays_per_detector: int = 1,
) -> CTScan:
    """Project ``image`` along ``geometry``/``angles``; add Poisson noise for ``photons`` per ray.

    Parameters
    ----------
    image
        The object, ``(H, W)`` on the geometry's grid, or ``(k H, k W)`` for an integer ``k > 1``: the object
        on a ``k`` times finer grid over the same field of view (pixel size ``pixel_size_mm / k``). Data
        projected from the reconstruction grid itself are exactly what a reconstruction on that grid models
        (the "inverse crime"), which flatters every method that fits them, most of all on noise-free data; a
        finer object leaves the detail a real object has below the grid's resolution in the data.
    geometry, angles
        The acquisition (the geometry's ``image_shape`` is the reconstruction grid) and the view angles
        (radians).
    photons
        Incident photons per detector cell for Poisson noise; ``None``: noise-free.
    mu_per_unit
        Attenuation per mm of an image value of 1 (the noise model's conversion to physical units).
    seed
        Seed of the Poisson draw.
    rays_per_detector
        Line integrals per detector cell, spread evenly over its width; their transmitted intensities
        ``exp(-mu p)`` are averaged before the logarithm, as a detector of finite width averages them (1: one
        ray through the cell's centre).

    Returns
    -------
    CTScan
        Sinogram ``(views, n_detectors)`` in image units x mm, with the object on the geometry's grid as
        ``target`` (the ``k x k`` block mean of a finer ``image``) and the parameters in ``provenance``.
    """
    img = as_tensor(image, torch.float32)
    grid = tuple(int(s) for s in geometry.image_shape)
    k = img.shape[0] // grid[0] if img.ndim == 2 else 0
    if k < 1 or tuple(img.shape) != (k * grid[0], k * grid[1]):
        raise InreconError(
            f"image has shape {tuple(img.shape)} but the geometry's image_shape is {grid}",
            "pass the object on the geometry's grid or on a grid an integer number of times finer along both "
            "axes (e.g. 512 x 512 for a 128 x 128 geometry)",
        )
    if photons is not None and photons <= 0:
        raise InreconError(f"photons={photons}", "use a positive photon count per ray (e.g. 1e5) or no noise")
    rays = rays_per_detector
    if isinstance(rays, bool) or not isinstance(rays, (int, np.integer)) or rays < 1:
        raise InreconError(
            f"rays_per_detector={rays_per_detector!r}", "use a positive integer (1: one ray per cell)"
        )
    rays = int(rays)
    fine = dataclasses.replace(
        geometry,
        image_shape=tuple(img.shape),
        pixel_size_mm=geometry.pixel_size_mm / k,
        n_detectors=geometry.n_detectors * rays,
        detector_spacing_mm=geometry.detector_spacing_mm / rays,
    )
    op = CTProjector(fine, angles)
    with torch.no_grad():
        sino = op(img)
        if rays > 1 or photons is not None:
            transmitted = torch.exp(-(sino * mu_per_unit).double())
            transmitted = transmitted.reshape(sino.shape[0], geometry.n_detectors, rays).mean(-1)
            if photons is not None:
                g = torch.Generator().manual_seed(seed)
                transmitted = torch.poisson(photons * transmitted, generator=g).clamp_min(1.0) / photons
            sino = (-torch.log(transmitted) / mu_per_unit).float()
        target = F.avg_pool2d(img[None, None], k)[0, 0] if k > 1 else img
    return CTScan(
        sinogram=sino,
        angles=as_tensor(angles, torch.float32),
        geometry=geometry,
        target=target,
        provenance={
            "simulated": True,
            "photons": photons,
            "mu_per_unit": mu_per_unit,
            "seed": seed,
            "object_grid_factor": k,
            "rays_per_detector": rays,
        },
    )
