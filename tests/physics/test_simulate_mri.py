"""Simulated acquisitions: SNR, determinism, Cartesian vs non-Cartesian, metadata, maps, errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from inrecon.data.sampling import cartesian_1d, radial_trajectory
from inrecon.errors import InreconError, ShapeError
from inrecon.physics.coils import rss
from inrecon.physics.fft import fftc
from inrecon.physics.mri import SenseOp
from inrecon.physics.nufft import NufftSenseOp
from inrecon.physics.simulate.mri import coil_sensitivities, simulate_mri, smooth_phase_map


def phantom(shape) -> np.ndarray:
    axes = [(np.arange(n) - n // 2) / (n / 2) for n in shape]
    grids = np.meshgrid(*axes, indexing="ij")
    r2 = sum(g**2 for g in grids)
    return ((r2 < 0.6) * (1 + 0.4 * grids[-1])).astype(np.float32)


@pytest.mark.parametrize("snr_db", [0.0, 15.0, 30.0])
def test_snr_is_as_requested_cartesian(snr_db):
    mask = cartesian_1d((64, 48), 3, acs=8)
    scan = simulate_mri(phantom((64, 48)), n_coils=4, mask=mask, snr_db=snr_db, seed=1)
    clean = simulate_mri(phantom((64, 48)), n_coils=4, mask=mask, seed=1)
    noise = (scan.kspace - clean.kspace)[:, mask]
    signal = clean.kspace[:, mask]
    measured = 20 * math.log10(float(signal.abs().pow(2).mean().sqrt() / noise.abs().pow(2).mean().sqrt()))
    assert abs(measured - snr_db) < 0.5  # measured +0.037 dB
    assert abs(scan.provenance["snr_db_realised"] - measured) < 1e-3
    assert bool((scan.kspace[:, ~mask] == 0).all())  # no noise off the mask


def test_snr_non_cartesian_and_noise_std():
    traj = radial_trajectory(30, 32)
    scan = simulate_mri(phantom((32, 32)), n_coils=3, trajectory=traj, snr_db=20, seed=2)
    clean = simulate_mri(phantom((32, 32)), n_coils=3, trajectory=traj, seed=2)
    noise = scan.kspace - clean.kspace
    measured = 20 * math.log10(
        float(clean.kspace.abs().pow(2).mean().sqrt() / noise.abs().pow(2).mean().sqrt())
    )
    assert abs(measured - 20) < 0.5
    s2 = simulate_mri(phantom((32, 32)), n_coils=3, trajectory=traj, noise_std=0.01, seed=2)
    std = float((s2.kspace - clean.kspace).abs().pow(2).mean().sqrt())
    assert abs(std / 0.01 - 1) < 0.05


def test_deterministic_with_seed():
    a = simulate_mri(phantom((32, 32)), n_coils=4, snr_db=20, seed=5)
    b = simulate_mri(phantom((32, 32)), n_coils=4, snr_db=20, seed=5)
    c = simulate_mri(phantom((32, 32)), n_coils=4, snr_db=20, seed=6)
    assert torch.equal(a.kspace, b.kspace) and torch.equal(a.sens_maps, b.sens_maps)
    assert not torch.equal(a.kspace, c.kspace)


def test_cartesian_and_noncartesian_agree_on_grid_points():
    shape = (24, 20)
    axes = [2 * math.pi * (torch.arange(n) - n // 2) / n for n in shape]
    traj = torch.stack([g.reshape(-1) for g in torch.meshgrid(*axes, indexing="ij")], 1)
    cart = simulate_mri(phantom(shape), n_coils=3, seed=4)
    nonc = simulate_mri(phantom(shape), n_coils=3, trajectory=traj, seed=4)
    assert nonc.trajectory is not None and cart.mask is not None and bool(cart.mask.all())
    ref = cart.kspace.reshape(3, -1)
    assert float((nonc.kspace - ref).norm() / ref.norm()) < 1e-4  # NUFFT accuracy, measured ~1e-5


def test_model_and_metadata():
    img = phantom((40, 36))
    scan = simulate_mri(img, n_coils=5, snr_db=None, smooth_phase=False, seed=0)
    # noiseless, no phase: k-space is exactly the SENSE model of the image
    torch.testing.assert_close(
        scan.kspace, SenseOp(scan.sens_maps)(torch.from_numpy(img).to(torch.complex64))
    )
    torch.testing.assert_close(scan.target, torch.from_numpy(img))
    assert scan.roi.dtype == torch.bool and bool(scan.roi[torch.from_numpy(img) > 0].all())
    assert float(scan.roi.float().mean()) < 0.8
    json.dumps(scan.provenance)
    assert scan.provenance["snr_db_requested"] is None and scan.provenance["noise_std"] == 0.0
    phased = simulate_mri(img, n_coils=5, seed=0)
    x = SenseOp(phased.sens_maps).adjoint(phased.kspace)  # maps are normalised: A^H A = I when fully sampled
    torch.testing.assert_close(x.abs(), torch.from_numpy(img), atol=1e-5, rtol=0)
    inside = torch.from_numpy(img) > 0
    assert float(x[inside].angle().std()) > 0.1  # a real smooth phase was applied


def test_given_maps_dcf_and_3d():
    shape = (6, 10, 12)
    maps = coil_sensitivities(shape, 4, seed=1)
    scan = simulate_mri(phantom(shape), maps=maps, snr_db=25, seed=1)
    assert scan.kspace.shape == (4, *shape) and torch.equal(scan.sens_maps, maps)
    assert scan.provenance["maps"] == "given"
    traj = radial_trajectory(20, 16)
    nc = simulate_mri(phantom((16, 16)), n_coils=2, trajectory=traj, dcf=True, seed=0)
    assert nc.dcf is not None and nc.dcf.shape == (traj.shape[0],)
    op = NufftSenseOp(nc.sens_maps, nc.trajectory, nc.image_shape)
    assert op(torch.zeros(16, 16, dtype=torch.complex64)).shape == nc.kspace.shape


@pytest.mark.parametrize("shape", [(32, 40), (8, 16, 12)])
def test_coil_sensitivities_normalised_and_smooth(shape):
    m = coil_sensitivities(shape, 8, seed=3)
    assert m.shape == (8, *shape) and m.dtype == torch.complex64
    torch.testing.assert_close(rss(m), torch.ones(shape), atol=1e-5, rtol=0)
    # smooth: most of the maps' energy lies in the central quarter of k-space along every axis
    k = fftc(m, tuple(range(1, m.ndim))).abs() ** 2
    axes = [(torch.arange(n) - n // 2).abs() / n for n in shape]
    low = torch.stack(torch.meshgrid(*axes, indexing="ij")).amax(0) <= 1 / 8
    assert float(k[:, low].sum() / k.sum()) > 0.9  # measured 0.97 (32x40), 0.92 (8x16x12), 0.99 (128x128)
    regular = coil_sensitivities(shape, 8)
    torch.testing.assert_close(regular, coil_sensitivities(shape, 8))
    assert not torch.equal(regular, m)
    # each coil is brightest near its own element: the ring gives coils distinct maxima
    peaks = {int(torch.argmax(m[c].abs())) for c in range(8)}
    assert len(peaks) >= 6


def test_smooth_phase_map():
    p = smooth_phase_map((32, 32), seed=1)
    assert p.shape == (32, 32) and p.dtype == torch.float32
    assert float(p.max() - p.min()) <= 2 * math.pi + 1e-5
    assert float(torch.diff(p, dim=0).abs().max()) < 0.5


def test_errors():
    img = phantom((16, 16))
    with pytest.raises(InreconError, match="both mask and trajectory"):
        simulate_mri(img, mask=torch.ones(16, 16, dtype=torch.bool), trajectory=radial_trajectory(4, 16))
    with pytest.raises(InreconError, match="snr_db and noise_std"):
        simulate_mri(img, snr_db=10, noise_std=0.1)
    with pytest.raises(InreconError, match="noise_std"):
        simulate_mri(img, noise_std=-1.0)
    with pytest.raises(ShapeError, match="mask"):
        simulate_mri(img, mask=torch.ones(16, 15, dtype=torch.bool))
    with pytest.raises(ShapeError):
        simulate_mri(img, maps=torch.ones(3, 16, 15, dtype=torch.complex64))
    with pytest.raises(ShapeError):
        simulate_mri(np.zeros(16, dtype=np.float32))
    with pytest.raises(InreconError, match="NaN"):
        simulate_mri(np.full((8, 8), np.nan, dtype=np.float32))
    with pytest.raises(InreconError, match="n_coils"):
        coil_sensitivities((8, 8), 0)
    with pytest.raises(InreconError, match="ring_radius"):
        coil_sensitivities((8, 8), 4, ring_radius=0.5)
