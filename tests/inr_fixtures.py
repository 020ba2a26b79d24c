"""Tiny simulated scans for INR tests (fast on 2 CPU cores)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from inrecon.data.phantoms import body_ct_phantom, brain_phantom
from inrecon.data.scans import CTGeometry, CTScan, MRIScan
from inrecon.physics.mri import SenseOp
from inrecon.physics.simulate.ct import simulate_ct


def ring_maps(shape, n_coils: int) -> torch.Tensor:
    h, w = shape
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    maps = []
    for a in np.linspace(0, 2 * np.pi, n_coils, endpoint=False):
        mag = torch.exp(-((yy - 0.9 * np.cos(a)) ** 2 + (xx - 0.9 * np.sin(a)) ** 2) / 0.8)
        maps.append(mag * torch.exp(1j * (torch.tensor(float(a)) + 0.5 * xx)))
    m = torch.stack(maps).to(torch.complex64)
    return m / m.abs().square().sum(0).sqrt()


def tiny_mri(seed: int = 0, shape=(32, 32), n_coils: int = 4, af: int = 3, noise: float = 0.003) -> MRIScan:
    img = torch.tensor(brain_phantom(shape, seed=seed), dtype=torch.complex64)
    maps = ring_maps(shape, n_coils)
    mask = torch.zeros(shape, dtype=torch.bool)
    mask[:, ::af] = True
    c = shape[1] // 2
    mask[:, c - 4 : c + 4] = True
    g = torch.Generator().manual_seed(100 + seed)
    k = SenseOp(maps, mask)(img)
    k = (
        k + noise * torch.complex(torch.randn(k.shape, generator=g), torch.randn(k.shape, generator=g))
    ) * mask
    return MRIScan(kspace=k, mask=mask, sens_maps=maps, target=img.abs())


def stacked_3d(scan: MRIScan, depth: int = 4, keep_maps: bool = False) -> MRIScan:
    """``scan`` repeated ``depth`` times along a new slice axis: a 3D scan without mask or reference (for methods
    that must refuse 3D), with its maps repeated the same way or dropped."""
    maps = scan.sens_maps[:, None].repeat(1, depth, 1, 1) if keep_maps else None
    kspace = scan.kspace[:, None].repeat(1, depth, 1, 1)
    return dataclasses.replace(scan, kspace=kspace, mask=None, sens_maps=maps, target=None, image_shape=None)


def tiny_ct(photons: float | None = None, views: int = 12) -> CTScan:
    """A 32 x 32 body phantom, fan beam over 360 degrees, 48 detectors; Poisson noise at ``photons`` per ray."""
    geom = CTGeometry("fan", 48, 1.5, (32, 32), 1.0, 80.0, 50.0)
    angles = torch.tensor(np.linspace(0, 2 * math.pi, views, endpoint=False))
    return simulate_ct(body_ct_phantom((32, 32), seed=2), geom, angles, photons=photons, seed=1)
