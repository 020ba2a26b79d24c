"""The one measurement model: sample order and units, scales, subsets, the CT data weightings."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from inrecon.data.sampling import radial_trajectory
from inrecon.data.scans import MRIScan, VolumeScan
from inrecon.errors import InreconError, ShapeError
from inrecon.physics.ct import CTProjector
from inrecon.physics.measurement import (
    AUTO_SUPERSAMPLE_CPU_PIXELS,
    MeasurementConfig,
    build_measurement,
    count_weights,
    measure,
    readout_lines,
    resolve_ct_supersample,
    robust_scale,
    sample_areas,
    sinogram_noise,
    supersampled_geometry,
    trajectory_readouts,
)
from inrecon.physics.nufft import density_compensation
from tests.inr_fixtures import tiny_ct, tiny_mri


def test_ct_units_views_hold_out_whole_views():
    meas = build_measurement(tiny_ct(), ct_units="view")
    tr, va = meas.split(0.25, 0)
    views = torch.unique(meas.sample_unit[va])
    assert meas.n_units == 12 and views.numel() == 3 and va.numel() == 3 * 48
    assert not bool(torch.isin(meas.sample_unit[tr], views).any())


def test_held_out_views_are_spread_over_the_angles():
    scan = tiny_ct()  # 12 views
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(1))
    shuffled = replace(scan, sinogram=scan.sinogram[perm], angles=scan.angles[perm])
    for s in (scan, shuffled):
        meas = build_measurement(s, ct_units="view", ct_split="spread")
        for seed in range(6):
            _, va = meas.split(0.25, seed)
            views = torch.unique(meas.sample_unit[va])
            # three views, one in each third of the circle, never two neighbours in angle
            rank = torch.argsort(torch.argsort(s.angles))[views].sort().values
            gaps = torch.diff(torch.cat([rank, rank[:1] + 12]))
            assert views.numel() == 3 and int(gaps.min()) >= 3 and int(gaps.max()) <= 5
    meas = build_measurement(scan, ct_units="view", ct_split="spread")
    offsets = {
        tuple(torch.unique(meas.sample_unit[meas.split(0.25, seed)[1]]).tolist()) for seed in range(20)
    }
    assert len(offsets) == 4  # the seed moves the offset: every 4-view shift is reachable
    rnd = build_measurement(scan, ct_units="view")  # the default: a random draw
    assert rnd.unit_order is None and build_measurement(scan, ct_split="spread").unit_order is None  # entries
    assert any(
        torch.diff(torch.unique(rnd.sample_unit[rnd.split(0.25, seed)[1]])).min() == 1 for seed in range(20)
    )
    with pytest.raises(InreconError, match="hold-out split"):
        build_measurement(scan, ct_units="view", ct_split="even")


def test_mri_readout_units_hold_out_whole_lines():
    scan = tiny_mri()  # columns acquired: lines along axis 0 (fully sampled), 32 x 32, 4 coils
    lines = readout_lines(scan.mask)
    assert (
        lines is not None
        and lines.reshape(32, 32)[:, 5].eq(5).all()
        and lines.reshape(32, 32)[3].eq(torch.arange(32)).all()
    )
    loc = build_measurement(scan)
    meas = build_measurement(scan, mri_units="readout")
    n_lines = int(scan.mask.any(0).sum())
    assert meas.n_units == n_lines and loc.n_units == int(scan.mask.sum())
    torch.testing.assert_close(meas.y, loc.y)  # the same samples in the same order: only the units differ
    tr, va = meas.split(0.25, 0)
    held = torch.unique(meas.sample_unit[va])
    assert held.numel() == round(0.25 * n_lines) and va.numel() == held.numel() * 32 * 4
    assert not bool(torch.isin(meas.sample_unit[tr], held).any())
    # a mask with no fully sampled axis (2D Poisson-like) keeps one unit per location
    mask = torch.rand(32, 32, generator=torch.Generator().manual_seed(0)) < 0.4
    assert readout_lines(mask) is None
    p = build_measurement(replace(scan, kspace=scan.kspace * mask, mask=mask), mri_units="readout")
    assert p.n_units == int(mask.sum())
    with pytest.raises(InreconError, match="hold-out unit"):
        build_measurement(scan, mri_units="spoke")


def test_sample_areas_are_the_voronoi_cells_of_a_cartesian_mask():
    scan = tiny_mri()  # columns 0, 3, ..., 30 and the centre 12..19 acquired, whole columns, 32 x 32, 4 coils
    area = sample_areas(scan).reshape(32, -1)  # acquired cells in C order: row by row
    cols = scan.mask[0].nonzero().reshape(-1).tolist()
    owned = dict(zip(cols, area[0].tolist()))
    # every cell counted once, and every row alike
    assert float(area.sum()) == 32 * 32 and bool((area == area[0]).all())
    assert owned[15] == 1 and owned[6] == 3 and owned[0] == 2 and owned[12] == 2 and owned[30] == 3
    # an error constant on each Voronoi region is summed over the whole grid by the areas at the acquired cells
    err = torch.rand(32, generator=torch.Generator().manual_seed(1))
    region = torch.tensor([min(cols, key=lambda c, j=j: (abs(c - j), c)) for j in range(32)])
    err[21] = err[19]  # column 20 is as near to 19 as to 21: whichever owns it, its error is the same
    err = err[region]  # the error of each column is its owner's
    assert float((area[0] * err[cols]).sum()) == pytest.approx(float(err.sum()), rel=1e-6)
    full = replace(scan, mask=torch.ones_like(scan.mask))
    assert torch.equal(sample_areas(full), torch.ones(32 * 32))
    meas = build_measurement(scan)
    assert (
        meas.density_of_scan.value is None
    )  # computed on first use only (a trajectory's takes a gridding pass)
    d = meas.density
    assert d.shape == (meas.n_samples,) and float(d.mean()) == pytest.approx(1.0, rel=1e-5)
    assert torch.equal(d.reshape(-1, 4), d.reshape(-1, 4)[:, :1].expand(-1, 4))  # one weight per location
    _, va = meas.split(0.2, 0)
    assert torch.equal(meas.subset(va).density, d[va])
    assert build_measurement(tiny_ct()).density is None


def test_sample_areas_of_a_trajectory_are_its_density_compensation():
    traj = radial_trajectory(8, 32)
    kspace = torch.ones(2, traj.shape[0], dtype=torch.complex64)
    scan = MRIScan(kspace=kspace, trajectory=traj, image_shape=(16, 16))
    torch.testing.assert_close(sample_areas(scan), density_compensation(traj, (16, 16)))
    dcf = torch.rand(traj.shape[0])
    assert torch.equal(sample_areas(replace(scan, dcf=dcf)), dcf)


def test_trajectory_readouts_are_the_spokes_of_a_radial_trajectory():
    angles = torch.arange(6) * math.pi / 6
    r = torch.linspace(-math.pi, math.pi * 31 / 32, 32)
    traj = torch.stack([r[None] * angles.cos()[:, None], r[None] * angles.sin()[:, None]], -1).reshape(-1, 2)
    ids = trajectory_readouts(traj)
    assert ids is not None and torch.equal(ids, torch.arange(6).repeat_interleave(32))
    g = torch.Generator().manual_seed(0)
    assert trajectory_readouts(traj[torch.randperm(traj.shape[0], generator=g)]) is None  # no readout order
    assert trajectory_readouts(traj[:32]) is None  # one spoke: nothing to hold out against


def test_count_weights_follow_the_detected_counts():
    scan = tiny_ct(photons=1e4)
    w = count_weights(scan)
    assert w is not None and abs(float(w.mean()) - 1) < 1e-5
    # rays through more attenuation are detected with fewer counts: smaller weight
    assert float(torch.corrcoef(torch.stack([w.reshape(-1), scan.sinogram.reshape(-1)]))[0, 1]) < -0.9
    assert count_weights(tiny_ct()) is None  # noise-free: no photon count, plain least squares


def test_weightings_apply_to_data_and_model_alike():
    scan = tiny_ct(photons=1e9)  # almost noise-free, but with a photon count
    for w in ("none", "ramp", "counts", "ramp+counts"):
        meas = build_measurement(scan, ct_weighting=w, scale="none")
        # the noiseless prediction of the true image is close to the (weighted) data
        r = meas.predict(scan.target) - meas.y
        assert float(r.norm() / meas.y.norm()) < 3e-3, w
    with pytest.raises(InreconError, match="weighting"):
        build_measurement(scan, ct_weighting="hann")


def test_an_apodised_ramp_weights_the_highest_detector_frequencies_less():

    scan = tiny_ct()
    plain = build_measurement(scan, ct_weighting="ramp", scale="none")
    hann = build_measurement(scan, ct_weighting="ramp", ct_ramp_filter="hann", scale="none")
    V, N = scan.sinogram.shape
    # Two residuals, one alternating along the detector (Nyquist) and one slowly varying, through the
    # weighting alone: the data minus a prediction that differs from them by the residual.
    u = torch.arange(N, dtype=torch.float32)
    for name, row, ratio in (
        ("nyquist", (-1.0) ** u, (0.0, 0.2)),
        ("smooth", torch.cos(u * math.pi / N), (0.8, 1.01)),
    ):
        pert = replace(scan, sinogram=scan.sinogram + 0.01 * row.expand(V, N))
        d_plain = build_measurement(pert, ct_weighting="ramp", scale="none").y - plain.y
        d_hann = build_measurement(pert, ct_weighting="ramp", ct_ramp_filter="hann", scale="none").y - hann.y
        r = float(d_hann.norm() / d_plain.norm())
        assert ratio[0] <= r <= ratio[1], (name, r)
    assert measure(scan, MeasurementConfig(ct_weighting="ramp", ct_ramp_filter="hann"), scale="none").y.equal(
        hann.y
    )
    with pytest.raises(InreconError, match="ramp filter"):
        build_measurement(scan, ct_ramp_filter="hamming")


def test_ct_supersampling_models_a_finer_grid_and_returns_its_block_mean():
    scan = tiny_ct()
    coarse = build_measurement(scan, ct_weighting="ramp", scale="none")
    fine = build_measurement(scan, ct_weighting="ramp", ct_supersample=2, scale="none")
    assert fine.image_shape == fine.domain_shape == (64, 64) and fine.output_shape == (32, 32)
    assert coarse.output_shape == coarse.image_shape == (32, 32) and fine.y.equal(coarse.y)
    # the same field of view: an image copied onto the finer grid predicts the same data
    x = scan.target
    x2 = x.repeat_interleave(2, 0).repeat_interleave(2, 1)
    torch.testing.assert_close(fine.predict(x2), coarse.predict(x), rtol=1e-4, atol=1e-4 * float(x.max()))
    # finalize returns the 2 x 2 block mean, on the scan's grid
    z = torch.rand(64, 64, generator=torch.Generator().manual_seed(0))
    out = fine.finalize(z)
    assert out.shape == (32, 32)
    assert float(out[3, 5]) == pytest.approx(float(z[6:8, 10:12].mean()), rel=1e-6)
    # its physics is the projector of the finer geometry (adjoint test)
    P = fine.physics
    assert isinstance(P, CTProjector) and P.geometry == supersampled_geometry(scan.geometry, 2)
    s = torch.rand(P.range_shape, generator=torch.Generator().manual_seed(1))
    assert float((P(z) * s).sum()) == pytest.approx(float((z * P.adjoint(s)).sum()), rel=1e-5)
    assert measure(scan, MeasurementConfig(ct_supersample=2)).image_shape == (64, 64)
    for bad in (0, 1.5, True):
        with pytest.raises(InreconError, match="supersampling"):
            build_measurement(scan, ct_supersample=bad)
    # "auto": 2x finer for a scan of at most 128 x 128 pixels on the CPU (and any scan on a GPU,
    # tests/test_cuda.py), the scan's own grid for a larger one on the CPU; a number as given
    assert measure(scan, MeasurementConfig(ct_supersample="auto")).image_shape == (64, 64)
    assert [resolve_ct_supersample(v, scan) for v in ("auto", 1, 3)] == [2, 1, 3]
    for side, k in ((128, 2), (129, 1), (256, 1)):
        g = scan.geometry  # the same field of view on more pixels
        g = replace(g, image_shape=(side, side), pixel_size_mm=g.pixel_size_mm * g.image_shape[0] / side)
        big = replace(scan, geometry=g, target=None)
        assert resolve_ct_supersample("auto", big) == k, side
    assert AUTO_SUPERSAMPLE_CPU_PIXELS == 128 * 128
    assert resolve_ct_supersample("auto", tiny_mri()) == 1


def test_ct_images_are_projected_onto_nonnegative_values():
    scan = tiny_ct()
    z = torch.randn(32, 32, generator=torch.Generator().manual_seed(0))  # half of it negative
    meas = build_measurement(scan, scale="max")  # the default projects
    out = meas.finalize(z)
    assert meas.nonnegative and float(out.min()) == 0.0
    torch.testing.assert_close(out, z.clamp_min(0) * meas.scale)
    # closer to any non-negative image than the unprojected one
    truth = scan.target
    assert float((out - truth).norm()) < float((z * meas.scale - truth).norm())
    raw = build_measurement(scan, scale="max", ct_nonnegative=False)
    torch.testing.assert_close(raw.finalize(z), z * raw.scale)
    assert not measure(scan, MeasurementConfig(ct_nonnegative=False)).nonnegative
    # block mean first, then the projection, on the scan's grid
    fine = build_measurement(scan, ct_supersample=2, scale="none")
    zf = torch.randn(64, 64, generator=torch.Generator().manual_seed(1))
    block = zf.reshape(32, 2, 32, 2).mean((1, 3))
    torch.testing.assert_close(fine.finalize(zf), block.clamp_min(0))
    # MRI images and volumes (e.g. in HU) keep their values
    assert not build_measurement(tiny_mri()).nonnegative
    volume = VolumeScan(volume=-torch.rand(4, 8, 8))
    vol = build_measurement(volume, scale="none")
    assert not vol.nonnegative and bool((vol.finalize(volume.volume) < 0).all())


def test_scales_and_finalize():
    scan = tiny_mri()
    for how in ("max", "robust", "image", "none"):
        meas = build_measurement(scan, scale=how)
        x = scan.target.to(torch.complex64)
        torch.testing.assert_close(
            meas.finalize(meas.adjoint(meas.y)) / meas.scale, meas.adjoint(meas.y) * meas.support
        )
    assert float(build_measurement(scan, scale="max").y.abs().max()) == pytest.approx(1.0)
    with pytest.raises(ShapeError, match="expects"):
        build_measurement(scan).predict(torch.zeros(4, 32, 32, dtype=torch.complex64))
    assert x.shape == (32, 32)


def test_sinogram_noise_estimates_white_noise_and_ignores_smooth_structure():
    g = torch.Generator().manual_seed(0)
    v, n = torch.meshgrid(torch.linspace(0, 1, 90), torch.linspace(-1, 1, 250), indexing="ij")
    clean = 40.0 * (1 - n**2).clamp_min(0).sqrt() * (1 + 0.2 * torch.cos(6 * v))  # projections of a disc
    for sigma in (0.05, 0.2, 0.8):
        noisy = clean + sigma * torch.randn(clean.shape, generator=g)
        rel = sinogram_noise(noisy) * robust_scale(noisy)
        assert abs(rel - sigma) < 0.1 * sigma
    assert sinogram_noise(clean) < 0.05 * sinogram_noise(clean + 0.05 * torch.randn(clean.shape, generator=g))
    # a simulated scan: Poisson noise raises the estimate well above the noise-free one, and the measurement
    # carries it through its hold-out subsets
    noisy, quiet = build_measurement(tiny_ct(photons=1e4)), build_measurement(tiny_ct())
    assert noisy.noise > 3 * quiet.noise > 0
    tr, _ = noisy.split(0.2, 0)
    assert noisy.subset(tr).noise == noisy.noise
    assert build_measurement(tiny_mri(seed=0)).noise is None


def test_image_scale_puts_the_image_near_1_for_cartesian_and_radial_data():
    """``scale="image"`` divides by what the image itself measures, whatever the operator's gain: the zero-filled
    radial image (no density compensation) overstates the image several times, and the k-space maximum grows
    with the matrix size, so neither is the image's magnitude."""
    from inrecon.data.phantoms import brain_phantom
    from inrecon.data.sampling import radial_trajectory
    from inrecon.data.scans import MRIScan
    from inrecon.physics.nufft import NufftSenseOp
    from tests.inr_fixtures import ring_maps

    cart = tiny_mri()
    shape = (32, 32)
    img = torch.tensor(brain_phantom(shape, seed=1), dtype=torch.complex64)
    maps, traj = ring_maps(shape, 4), radial_trajectory(24, 64)
    k = NufftSenseOp(maps, traj, shape)(img)
    radial = MRIScan(kspace=k, trajectory=traj, image_shape=shape, sens_maps=maps, target=img.abs())
    for scan in (cart, radial):
        peak = robust_scale(scan.target)
        image = build_measurement(scan, scale="image").scale
        # measured: 1.01 (Cartesian), 0.68 (radial: alpha A^H y is a blurred image); robust 1.00 / 22.8
        assert 0.5 < image / peak < 1.5, (image, peak)
        # equivariant: data in other units give the same normalised samples
        big = replace(scan, kspace=scan.kspace * 1000.0)
        assert build_measurement(big, scale="image").scale == pytest.approx(1000.0 * image, rel=1e-4)
    assert build_measurement(radial, scale="robust").scale / robust_scale(radial.target) > 3.0
    assert build_measurement(cart, scale="max").scale / robust_scale(cart.target) > 3.0


def test_measurement_config_passes_its_scale():
    scan = tiny_mri()
    image = build_measurement(scan, scale="image").scale
    assert measure(scan, MeasurementConfig(scale="image")).scale == image
    assert measure(scan, MeasurementConfig()).scale == build_measurement(scan, scale="max").scale
    assert measure(scan, MeasurementConfig(scale="image"), scale="none").scale == 1.0  # a caller's scale wins
