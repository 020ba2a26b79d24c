"""Registry cases for the operator algebra and the Cartesian SENSE operator."""

from __future__ import annotations

import torch

from inrecon.physics.mri import SenseOp
from inrecon.physics.operator import Diagonal, Identity

from . import OpCase

C64 = torch.complex64


def _maps(c, shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn((c, *shape), generator=g, dtype=C64)


def _mask(shape, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g) > 0.6


CASES = [
    OpCase("identity", lambda: Identity((5, 7)), (5, 7), torch.float32, (5, 7), torch.float32),
    OpCase(
        "diagonal_complex",
        lambda: Diagonal(torch.randn(4, 6, dtype=C64)),
        (4, 6),
        C64,
        (4, 6),
        C64,
    ),
    OpCase(
        "sense2d_even",
        lambda: SenseOp(_maps(4, (16, 12)), _mask((16, 12))),
        (16, 12),
        C64,
        (4, 16, 12),
        C64,
    ),
    OpCase(
        "sense2d_odd",
        lambda: SenseOp(_maps(3, (15, 10)), _mask((15, 10))),
        (15, 10),
        C64,
        (3, 15, 10),
        C64,
    ),
    OpCase(
        "sense3d",
        lambda: SenseOp(_maps(2, (6, 8, 10)), _mask((6, 8, 10))),
        (6, 8, 10),
        C64,
        (2, 6, 8, 10),
        C64,
    ),
    OpCase(
        "multicoil_fft_no_maps",
        lambda: SenseOp(None, _mask((8, 8)), image_shape=(8, 8), n_coils=3),
        (3, 8, 8),
        C64,
        (3, 8, 8),
        C64,
    ),
    OpCase(
        "composition_scaled_sum",
        lambda: (
            (2.0 * SenseOp(_maps(2, (8, 6)), _mask((8, 6)))) @ Diagonal(torch.randn(8, 6, dtype=C64))
            + SenseOp(_maps(2, (8, 6), 5), None)
        ),
        (8, 6),
        C64,
        (2, 8, 6),
        C64,
    ),
]

from inrecon.physics.transforms import FiniteDifference  # noqa: E402

CASES += [
    OpCase(
        "finite_difference_2d",
        lambda: FiniteDifference((9, 7)),
        (9, 7),
        torch.float32,
        (2, 9, 7),
        torch.float32,
    ),
    OpCase(
        "finite_difference_3d_complex", lambda: FiniteDifference((4, 5, 3)), (4, 5, 3), C64, (3, 4, 5, 3), C64
    ),
    OpCase(
        "finite_difference_len2",
        lambda: FiniteDifference((2, 6)),
        (2, 6),
        torch.float32,
        (2, 2, 6),
        torch.float32,
    ),
]
