"""IMJENSE: joint coil sensitivities (normalised polynomials) + INR image + TV, Cartesian and non-Cartesian."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from inrecon.data.sampling import radial_trajectory
from inrecon.errors import InreconError
from inrecon.metrics import psnr
from inrecon.models.coils import PolynomialCoils
from inrecon.physics.simulate.mri import simulate_mri
from inrecon.recon.api import run_method
from tests.inr_fixtures import ring_maps, stacked_3d, tiny_mri

FAST = {"n_levels": 6, "log2_table_size": 10, "poly_order": 5, "eval_every": 10}


def test_polynomial_coils_are_normalised_and_fit_smooth_maps():
    maps = ring_maps((24, 20), 3)
    coils = PolynomialCoils(3, (24, 20), order=6)
    coils.fit_to(maps, torch.ones(24, 20))
    est = coils().detach()
    torch.testing.assert_close(est.abs().square().sum(0), torch.ones(24, 20), atol=1e-4, rtol=0)
    # smooth ring maps are well represented by an order-6 polynomial (up to the normalisation)
    corr = (est.conj() * maps).sum(0).abs() / (
        est.abs().square().sum(0).sqrt() * maps.abs().square().sum(0).sqrt()
    )
    assert float(corr.mean()) > 0.99


def test_imjense_estimates_maps_itself_and_beats_zero_filled():
    scan = tiny_mri(seed=4)
    no_maps = dataclasses.replace(scan, sens_maps=None)
    res = run_method("imjense", no_maps, {"steps": 80, "patience": 20, **FAST})
    assert res.info["sens_maps_estimated"]
    zf = run_method("zf", no_maps).image
    assert psnr(res.image, scan.target, scale=True) > psnr(zf, scan.target, scale=True) + 1.0


def test_data_consistency_keeps_acquired_samples():
    scan = tiny_mri(seed=5)
    a = run_method("imjense", scan, {"steps": 15, "stop": "none", "dc": False, **FAST}).image
    b = run_method("imjense", scan, {"steps": 15, "stop": "none", "dc": True, **FAST}).image
    assert not torch.allclose(a, b)


def test_imjense_non_cartesian_runs():
    traj = radial_trajectory(24, 32)
    img = torch.zeros(32, 32)
    img[8:24, 10:22] = 1.0
    scan = simulate_mri(img, n_coils=4, trajectory=traj, snr_db=30, seed=0)
    scan = dataclasses.replace(scan, sens_maps=None)
    res = run_method("imjense", scan, {"steps": 10, "stop": "none", **FAST})
    assert torch.isfinite(torch.view_as_real(res.image)).all()


def test_imjense_rejects_3d():
    with pytest.raises(InreconError, match="2D"):
        run_method("imjense", stacked_3d(tiny_mri()), {})
