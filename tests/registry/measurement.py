"""Registry cases for the measurement model's operators: sample selection, detector filters, and the composed
``A = Select @ Weight @ Project`` / ``Select @ F @ S`` of real scans (tiny sizes)."""

from __future__ import annotations

import math

import numpy as np
import torch

from inrecon.data.phantoms import body_ct_phantom
from inrecon.data.scans import CTGeometry, MRIScan
from inrecon.physics.fbp import DetectorFilter, padded_length, ramp_filter
from inrecon.physics.measurement import build_measurement
from inrecon.physics.operator import Select
from inrecon.physics.simulate.ct import simulate_ct
from tests.registry import OpCase

C64, F32 = torch.complex64, torch.float32


def _idx(n: int, k: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=g)[:k]


def _ct_scan(photons=None):
    geom = CTGeometry("fan", 40, 1.5, (24, 24), 1.0, 60.0, 40.0)
    angles = torch.tensor(np.linspace(0, 2 * math.pi, 11, endpoint=False))
    return simulate_ct(body_ct_phantom((24, 24), seed=0), geom, angles, photons=photons)


def _mri_scan():
    g = torch.Generator().manual_seed(3)
    maps = torch.randn((3, 12, 10), generator=g, dtype=C64)
    mask = torch.rand(12, 10, generator=g) > 0.5
    k = torch.randn((3, 12, 10), generator=g, dtype=C64) * mask
    return MRIScan(k, mask=mask, sens_maps=maps)


def _ct_measurement(weighting: str):
    m = build_measurement(_ct_scan(photons=1e4), ct_weighting=weighting, ct_units="view")
    return m.subset(m.split(0.3, 1)[0]).op


def _ramp(n_views=5, n_det=17):
    resp = ramp_filter(padded_length(n_det), 1.3).clamp_min(0).sqrt()
    return DetectorFilter(resp, n_views, n_det)


def _case(name, factory, domain, dtype) -> OpCase:
    return OpCase(name, factory, domain, dtype, tuple(factory().range_shape), dtype)


CASES = [
    OpCase("select_real", lambda: Select(_idx(35, 20), (5, 7)), (5, 7), F32, (20,), F32),
    OpCase("select_complex", lambda: Select(_idx(24, 9, 2), (2, 3, 4)), (2, 3, 4), C64, (9,), C64),
    OpCase("detector_sqrt_ramp", _ramp, (5, 17), F32, (5, 17), F32),
    _case("measurement_ct_ramp_counts_subset", lambda: _ct_measurement("ramp+counts"), (24, 24), F32),
    _case("measurement_ct_counts_subset", lambda: _ct_measurement("counts"), (24, 24), F32),
    _case("measurement_mri_cartesian", lambda: build_measurement(_mri_scan()).op, (12, 10), C64),
]
