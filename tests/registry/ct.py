"""Registry cases for the CT projector (fan and parallel beam, small sizes)."""

from __future__ import annotations

import math

import numpy as np
import torch

from inrecon.data.scans import CTGeometry
from inrecon.physics.ct import CTProjector

from . import OpCase

F32 = torch.float32


def _angles(n: int, full: bool = True, offset: float = 0.1) -> torch.Tensor:
    return torch.tensor(np.linspace(0, (2 if full else 1) * math.pi, n, endpoint=False) + offset)


CASES = [
    OpCase(
        "ct_fan_24x20",
        lambda: CTProjector(CTGeometry("fan", 31, 1.5, (24, 20), 1.0, 60.0, 40.0), _angles(13)),
        (24, 20),
        F32,
        (13, 31),
        F32,
    ),
    OpCase(
        "ct_parallel_24x20",
        lambda: CTProjector(CTGeometry("parallel", 31, 1.0, (24, 20), 1.0), _angles(13, full=False)),
        (24, 20),
        F32,
        (13, 31),
        F32,
    ),
    OpCase(
        "ct_parallel_odd_pixel0.6",
        lambda: CTProjector(CTGeometry("parallel", 23, 0.5, (15, 9), 0.6), _angles(7, offset=0.3)),
        (15, 9),
        F32,
        (7, 23),
        F32,
    ),
    OpCase(
        "ct_fan_view_subset",
        lambda: CTProjector(CTGeometry("fan", 31, 1.5, (24, 20), 1.0, 60.0, 40.0), _angles(13)).select_views(
            [5, 0, 9]
        ),
        (24, 20),
        F32,
        (3, 31),
        F32,
    ),
]
