"""NGP with jointly estimated coil sensitivities (``coils="joint"``): the coil-image measurement is the same data
in the same units as the one with maps, and the fit starts from those maps and moves them."""

from __future__ import annotations

import pytest
import torch

from inrecon.errors import InreconError
from inrecon.metrics import psnr
from inrecon.physics.measurement import MeasurementConfig, joint_coil_measurement, measure
from inrecon.recon.api import run_method
from inrecon.recon.inr.ngp import NGPConfig, field_model
from tests.inr_fixtures import stacked_3d, tiny_ct, tiny_mri

FAST = {"n_levels": 6, "log2_table_size": 10, "eval_every": 10}


@pytest.mark.parametrize("scale", ["max", "image"])
def test_the_coil_image_measurement_is_the_same_data_in_the_same_units(scale):
    scan = tiny_mri(seed=2)
    cfg = MeasurementConfig(scale=scale)
    sense, coil = measure(scan, cfg), joint_coil_measurement(scan, cfg)
    assert coil.domain_shape == (scan.n_coils, *scan.image_shape) and coil.image_shape == sense.image_shape
    torch.testing.assert_close(coil.y, sense.y)
    assert coil.scale == sense.scale and torch.equal(coil.sample_unit, sense.sample_unit)
    # combining the coil images' adjoint with the maps is the adjoint with maps (what the priors see)
    torch.testing.assert_close(coil.image_adjoint(coil.y), sense.adjoint(sense.y), atol=1e-5, rtol=1e-4)
    assert torch.equal(coil.support, sense.support)
    # ... and the model with the maps themselves predicts what the measurement with maps predicts
    image = torch.randn(scan.image_shape, dtype=torch.complex64)
    torch.testing.assert_close(
        coil.predict(coil.image_maps * image), sense.predict(image), atol=1e-5, rtol=1e-4
    )


def test_joint_coils_start_from_the_maps_and_are_fitted_with_the_image():
    scan = tiny_mri(seed=3)
    cfg = NGPConfig(coils="joint", coil_order=6)
    meas = joint_coil_measurement(scan, cfg.data)
    model = field_model(meas, cfg)
    start = model.module["coils"]().detach()
    maps = meas.image_maps
    inside = meas.support
    corr = (start.conj() * maps).sum(0).abs()[inside] / maps.abs().square().sum(0).sqrt()[inside]
    assert float(corr.mean()) > 0.95  # the polynomials start at the maps where the object is
    # the data term reaches the coil coefficients (they are trained with the field) and their Adam group
    loss = (meas.predict(model.to_domain(model.render())) - meas.y).abs().square().sum()
    loss.backward()
    coef = model.module["coils"].coef
    assert coef.grad is not None and float(coef.grad.abs().max()) > 0
    assert any(coef is p and g["lr"] == cfg.coil_lr for g in model.groups for p in g["params"])
    res = run_method("ngp", scan, {"coils": "joint", "coil_order": 6, "steps": 60, "patience": 20, **FAST})
    zf = run_method("zf", scan).image
    assert psnr(res.image, scan.target, scale=True) > psnr(zf, scan.target, scale=True) + 1.0


def test_joint_coils_need_an_mri_scan():
    with pytest.raises(InreconError, match="need an MRI scan"):
        run_method("ngp", tiny_ct(), {"coils": "joint"})


def test_joint_coils_are_2d():
    with pytest.raises(InreconError, match="2D"):
        run_method("ngp", stacked_3d(tiny_mri(), keep_maps=True), {"coils": "joint", "steps": 5})
