"""CT simulation: the object on the reconstruction grid or a finer one, detector apertures, photon noise."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from inrecon.data.phantoms import body_ct_phantom
from inrecon.data.shared import disinr_fan_geometry
from inrecon.errors import InreconError
from inrecon.physics.ct import CTProjector
from inrecon.physics.simulate.ct import full_scan_angles, simulate_ct


@pytest.fixture(scope="module")
def setup():
    geom = disinr_fan_geometry((24, 24))
    return geom, full_scan_angles(12), torch.as_tensor(body_ct_phantom((24, 24), seed=0))


def test_object_on_the_grid_is_the_projection(setup):
    geom, angles, img = setup
    scan = simulate_ct(img, geom, angles)
    assert torch.equal(scan.sinogram, CTProjector(geom, angles)(img))
    assert torch.equal(scan.target, img)
    assert scan.provenance["object_grid_factor"] == 1 and scan.provenance["rays_per_detector"] == 1


def test_noise_is_poisson_in_the_counts_and_seeded(setup):
    geom, angles, img = setup
    clean = CTProjector(geom, angles)(img).double() * 0.02
    scan = simulate_ct(img, geom, angles, photons=1e4, seed=3)
    counts = torch.poisson(1e4 * torch.exp(-clean), generator=torch.Generator().manual_seed(3)).clamp_min(1.0)
    assert torch.allclose(scan.sinogram, (-torch.log(counts / 1e4) / 0.02).float())
    assert torch.equal(simulate_ct(img, geom, angles, photons=1e4, seed=3).sinogram, scan.sinogram)
    assert not torch.equal(simulate_ct(img, geom, angles, photons=1e4, seed=4).sinogram, scan.sinogram)


def test_a_finer_copy_of_a_pixel_image_gives_the_same_data(setup):
    # The projector integrates exactly along each ray through square pixels, so the same object on a grid
    # three times finer must give the same line integrals, and the target is the fine image's block mean.
    geom, angles, img = setup
    fine = img.repeat_interleave(3, 0).repeat_interleave(3, 1)
    scan = simulate_ct(fine, geom, angles)
    assert scan.sinogram.shape == (12, geom.n_detectors)
    assert torch.allclose(scan.sinogram, CTProjector(geom, angles)(img), rtol=1e-5, atol=1e-4)
    assert torch.allclose(scan.target, img, atol=1e-6)
    assert scan.geometry == geom and scan.provenance["object_grid_factor"] == 3


def test_detail_below_the_grid_reaches_the_data(setup):
    # A fine object that is not a pixel image of the grid: the data differ from the projection of its
    # block mean, which is what a reconstruction on the grid can explain.
    geom, angles, _ = setup
    fine = torch.as_tensor(body_ct_phantom((48, 48), seed=1))
    scan = simulate_ct(fine, geom, angles)
    coarse = CTProjector(geom, angles)(F.avg_pool2d(fine[None, None], 2)[0, 0])
    rel = float((scan.sinogram - coarse).norm() / coarse.norm())
    assert 1e-4 < rel < 0.2
    assert torch.allclose(scan.target, F.avg_pool2d(fine[None, None], 2)[0, 0])


def test_detector_aperture_averages_the_transmitted_intensity(setup):
    geom, angles, img = setup
    rays = 4
    sub = dataclasses.replace(
        geom, n_detectors=geom.n_detectors * rays, detector_spacing_mm=geom.detector_spacing_mm / rays
    )
    lines = CTProjector(sub, angles)(img).double().reshape(12, geom.n_detectors, rays)
    expected = -torch.log(torch.exp(-0.02 * lines).mean(-1)) / 0.02
    scan = simulate_ct(img, geom, angles, rays_per_detector=rays)
    assert torch.allclose(scan.sinogram.double(), expected, rtol=1e-5, atol=1e-4)
    # The log of a mean transmission is at most the mean line integral (Jensen), and the cell is no longer
    # represented by its central ray alone.
    assert bool((scan.sinogram.double() <= lines.mean(-1) + 1e-3).all())
    assert not torch.allclose(scan.sinogram, CTProjector(geom, angles)(img), atol=1e-3)


def test_bad_inputs_are_named(setup):
    geom, angles, img = setup
    with pytest.raises(InreconError, match="integer number of times finer"):
        simulate_ct(torch.zeros(36, 36), geom, angles)
    with pytest.raises(InreconError, match="integer number of times finer"):
        simulate_ct(torch.zeros(48, 24), geom, angles)
    with pytest.raises(InreconError, match="rays_per_detector"):
        simulate_ct(img, geom, angles, rays_per_detector=0)
    with pytest.raises(InreconError, match="rays_per_detector"):
        simulate_ct(img, geom, angles, rays_per_detector=1.5)
    with pytest.raises(InreconError, match="rays_per_detector"):
        simulate_ct(img, geom, angles, rays_per_detector="4")
    with pytest.raises(InreconError, match="integer number of times finer"):
        simulate_ct(torch.zeros(12, 12), geom, angles)
    with pytest.raises(InreconError, match="integer number of times finer"):
        simulate_ct(torch.zeros(24), geom, angles)
    with pytest.raises(InreconError, match="photons"):
        simulate_ct(img, geom, angles, photons=0)
