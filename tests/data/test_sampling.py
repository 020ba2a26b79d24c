"""Sampling patterns: accelerations, calibration regions, determinism, trajectories, argument errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from inrecon.data.sampling import (
    acceleration,
    acs_lines_bilevel,
    cartesian_1d,
    poisson_disc,
    radial_spokes_for_af,
    radial_trajectory,
    spiral_trajectory,
)
from inrecon.errors import InreconError, ShapeError


# --- Cartesian 1D -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("af", [4, 6, 8])
def test_cartesian_1d_lines_and_acs(af):
    m = cartesian_1d((256, 256), af, acs=24)
    assert m.dtype == torch.bool and m.shape == (256, 256)
    cols = m[0]
    assert bool((m == cols[None, :]).all()), "phase encode is the last axis: whole columns are sampled"
    assert bool(cols[128 - 12 : 128 + 12].all())
    outside = torch.ones(256, dtype=torch.bool)
    outside[116:140] = False
    idx = torch.nonzero(cols & outside).flatten()
    assert bool((idx % af == 0).all())
    assert int(cols.sum()) == len(set(range(0, 256, af)) | set(range(116, 140)))
    assert acceleration(m) < af  # the ACS block lowers the achieved acceleration
    if af == 6:
        assert abs(acceleration(m) - 256 / 63) < 1e-9  # 43 lattice lines + 24 ACS - 4 shared


def test_cartesian_1d_axis_offset_seed_and_odd():
    rows = cartesian_1d((30, 20), 3, acs=4, axis=0)
    assert bool((rows == rows[:, :1]).all())
    assert bool(rows[13:17, 0].all())  # centre 30 // 2 - 2 .. + 2
    m1 = cartesian_1d((16, 33), 4, acs=5, offset=2)
    assert bool(m1[0, 2]) and not bool(m1[0, 0])
    assert bool(m1[0, 14:19].all())  # odd length: centre index 16, block 14..18
    a, b = cartesian_1d((16, 64), 4, seed=5), cartesian_1d((16, 64), 4, seed=5)
    assert torch.equal(a, b)
    offsets = {int(torch.nonzero(cartesian_1d((8, 64), 4, acs=0, seed=s)[0])[0]) for s in range(20)}
    assert len(offsets) > 1 and offsets <= {0, 1, 2, 3}
    m3 = cartesian_1d((4, 10, 12), 2, acs=2)
    assert m3.shape == (4, 10, 12) and bool((m3 == m3[:1, :1, :]).all())


def test_acs_lines_bilevel():
    assert acs_lines_bilevel(256) == 10
    assert acs_lines_bilevel(368) == 14
    assert acs_lines_bilevel(20) == 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(shape=(64, 64), af=1), "af"),
        (dict(shape=(64, 64), af=0.5), "af"),
        (dict(shape=(64, 64), af=2.5), "integer"),
        (dict(shape=(64, 64), af=4, acs=65), "acs"),
        (dict(shape=(64, 64), af=4, acs=-1), "acs"),
        (dict(shape=(64, 64), af=4, axis=2), "axis"),
        (dict(shape=(64, 64), af=4, offset=4), "offset"),
        (dict(shape=(64, 64), af=4, offset=1, seed=0), "seed"),
        (dict(shape=(64, 64), af=128), "af"),
    ],
)
def test_cartesian_1d_errors(kwargs, match):
    with pytest.raises(InreconError, match=match):
        cartesian_1d(**kwargs)


def test_shape_errors():
    with pytest.raises(ShapeError):
        cartesian_1d((64,), 4)
    with pytest.raises(ShapeError):
        cartesian_1d((64, 0), 4)
    with pytest.raises(ShapeError):
        poisson_disc((8, 64, 64), 4)
    with pytest.raises(InreconError, match="mask"):
        acceleration(torch.zeros(4, 4, dtype=torch.bool))


# --- Poisson disc -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("af", [3, 8, 12, 20])
def test_poisson_disc_acceleration_and_calibration(af):
    m = poisson_disc((160, 192), af, calib=(24, 24), seed=3)
    assert m.dtype == torch.bool and m.shape == (160, 192)
    assert abs(acceleration(m) / af - 1) < 0.05
    assert bool(m[80 - 12 : 80 + 12, 96 - 12 : 96 + 12].all())


def test_poisson_disc_variable_density_and_minimum_distance():
    m = poisson_disc((128, 128), 6, calib=(0, 0), seed=1).numpy()
    yy, xx = np.meshgrid(np.arange(128) - 64, np.arange(128) - 64, indexing="ij")
    r = np.sqrt(yy**2 + xx**2) / 64
    inner, outer = m[r < 0.3].mean(), m[(r > 0.7) & (r < 1)].mean()
    assert inner > 3 * outer
    assert not m[r > 1.02].any()  # corners cropped
    u = poisson_disc((128, 128), 6, calib=(0, 0), seed=1, variable_density=False, crop_corners=False).numpy()
    assert abs(u[r < 0.3].mean() / u[(r > 0.7) & (r < 1)].mean() - 1) < 0.25
    # Uniform Poisson disc: no two samples closer than 0.8 * r0, so no 4-neighbour pairs at this density
    assert not (u[1:] & u[:-1]).any() and not (u[:, 1:] & u[:, :-1]).any()


def test_poisson_disc_deterministic_and_seeded():
    a = poisson_disc((96, 96), 5, calib=16, seed=7)
    assert torch.equal(a, poisson_disc((96, 96), 5, calib=16, seed=7))
    assert not torch.equal(a, poisson_disc((96, 96), 5, calib=16, seed=8))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(shape=(64, 64), af=1.0), "af"),
        (dict(shape=(64, 64), af=40), "at most"),
        (dict(shape=(64, 64), af=12, calib=(24, 24)), "calibration block alone"),
        (dict(shape=(64, 64), af=4, calib=(80, 8)), "larger than the grid"),
        (dict(shape=(64, 64), af=1.2), "ellipse"),
        (dict(shape=(64, 64), af=4, tol=0.2), "tol"),
    ],
)
def test_poisson_disc_errors(kwargs, match):
    with pytest.raises(InreconError, match=match):
        poisson_disc(**kwargs)


# --- radial and spiral --------------------------------------------------------------------------------------
def test_radial_trajectory_geometry():
    t = radial_trajectory(4, 8)
    assert t.shape == (32, 2) and t.dtype == torch.float32
    assert float(t.min()) >= -math.pi - 1e-6 and float(t.max()) < math.pi
    spoke0 = t[:8]  # theta = 0: along kx, ky = 0
    r = (torch.arange(8) - 4) * 2 * math.pi / 8
    torch.testing.assert_close(spoke0[:, 1], r)
    torch.testing.assert_close(spoke0[:, 0], torch.zeros(8))
    spoke2 = t[16:24]  # theta = pi/2: along ky
    torch.testing.assert_close(spoke2[:, 0], r, atol=1e-6, rtol=0)
    full = radial_trajectory(4, 8, full_circle=True)
    # theta = pi: kx = -r, wrapped into [-pi, pi)
    wrapped = torch.remainder(-r + math.pi, 2 * math.pi) - math.pi
    torch.testing.assert_close(full[16:24, 1], wrapped, atol=1e-6, rtol=0)


def test_radial_golden_angle_and_af():
    t = radial_trajectory(5, 16, golden_angle=True)
    ang = torch.atan2(t[15::16, 0], t[15::16, 1])  # last sample of each spoke (r > 0)
    d = torch.remainder(ang[1:] - ang[:-1], math.pi)  # spokes through the centre: directions modulo pi
    torch.testing.assert_close(d, torch.full((4,), math.pi / ((1 + math.sqrt(5)) / 2)), atol=1e-5, rtol=0)
    assert radial_spokes_for_af(256, 10) == 40
    assert radial_spokes_for_af(256, 1.5) == round(256 * math.pi / 3)
    with pytest.raises(InreconError):
        radial_spokes_for_af(256, 1)
    with pytest.raises(InreconError):
        radial_trajectory(0, 16)


def test_spiral_trajectory():
    t = spiral_trajectory((64, 64), 8)
    assert t.ndim == 2 and t.shape[1] == 2 and t.dtype == torch.float32
    assert float(t.min()) >= -math.pi - 1e-6 and float(t.max()) < math.pi
    r = t.norm(dim=1)
    assert float(r.max()) > math.pi - 1e-3
    n_per = t.shape[0] // 8
    il = t[:n_per]
    step = (il[1:] - il[:-1]).norm(dim=1)
    assert float(step[:-1].max()) <= 2 * math.pi / 64 * 1.01  # at most one Cartesian cell apart
    # variable density: more samples in the inner half radius than an area-uniform design would give
    assert float((r < math.pi / 2).float().mean()) > 0.4
    t2 = spiral_trajectory((64, 64), 8, 500, density_power=1.0, af=2.0)
    assert t2.shape == (4000, 2)
    with pytest.raises(InreconError, match="density_power"):
        spiral_trajectory((64, 64), 8, density_power=0.5)
    with pytest.raises(InreconError, match="af"):
        spiral_trajectory((64, 64), 8, af=0.5)
