"""Registry cases for the non-Cartesian MRI operators (NUFFT SENSE, its Toeplitz normal operator)."""

from __future__ import annotations

import math

import torch

from inrecon.data.sampling import radial_trajectory, spiral_trajectory
from inrecon.physics.nufft import NufftSenseOp

from . import OpCase

C64 = torch.complex64


def _maps(c, shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn((c, *shape), generator=g, dtype=C64)


def _random_traj(k, d, seed=3):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand((k, d), generator=g) * 2 - 1) * math.pi


CASES = [
    OpCase(
        "nufft2d_radial_maps_sparse",
        lambda: NufftSenseOp(_maps(3, (16, 12)), radial_trajectory(9, 16), (16, 12), interp="sparse"),
        (16, 12),
        C64,
        (3, 144),
        C64,
    ),
    OpCase(
        "nufft2d_spiral_maps_table",
        lambda: NufftSenseOp(
            _maps(2, (15, 10)), spiral_trajectory((15, 10), 2, 60), (15, 10), interp="table"
        ),
        (15, 10),
        C64,
        (2, 120),
        C64,
    ),
    OpCase(
        "nufft2d_no_maps",
        lambda: NufftSenseOp(None, _random_traj(100, 2), (8, 10), n_coils=3),
        (3, 8, 10),
        C64,
        (3, 100),
        C64,
    ),
    OpCase(
        "nufft3d_maps_sparse",
        lambda: NufftSenseOp(_maps(2, (6, 8, 10)), _random_traj(150, 3), (6, 8, 10), interp="sparse"),
        (6, 8, 10),
        C64,
        (2, 150),
        C64,
    ),
    OpCase(
        "nufft3d_no_maps_table",
        lambda: NufftSenseOp(None, _random_traj(80, 3, seed=4), (4, 6, 5), n_coils=2, interp="table"),
        (2, 4, 6, 5),
        C64,
        (2, 80),
        C64,
    ),
    OpCase(
        "nufft2d_gram_toeplitz",
        lambda: NufftSenseOp(_maps(3, (12, 12)), _random_traj(200, 2), (12, 12)).gram,
        (12, 12),
        C64,
        (12, 12),
        C64,
    ),
]
