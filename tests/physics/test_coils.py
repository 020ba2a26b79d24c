"""Coil tools: ESPIRiT (vs known maps and vs sigpy on real data), compression, prewhitening, helpers."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

from inrecon.data.sampling import cartesian_1d, poisson_disc, radial_trajectory, spiral_trajectory
from inrecon.errors import InreconError, ShapeError
from inrecon.physics.coils import (
    calibration_width,
    coil_compress,
    espirit_maps,
    espirit_maps_noncartesian,
    noise_covariance,
    noise_from_region,
    normalize_maps,
    prewhiten,
    rss,
)
from inrecon.physics.fft import fftc
from inrecon.physics.simulate.mri import simulate_mri

C64 = torch.complex64


def coherence(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-pixel |<a, b>| / (|a| |b|) over the coil axis."""
    return (a.conj() * b).sum(0).abs() / (rss(a) * rss(b)).clamp_min(1e-12)


def disc_image(shape) -> np.ndarray:
    axes = [(np.arange(n) - n // 2) / (n / 2) for n in shape]
    grids = np.meshgrid(*axes, indexing="ij")
    r2 = sum(g**2 for g in grids)
    img = (r2 < 0.7**2) * (1.0 + 0.5 * np.cos(4 * grids[-1]) * np.sin(3 * grids[-2]))
    return img.astype(np.float32)


def test_espirit_recovers_true_maps_2d():
    mask = cartesian_1d((128, 120), 4, acs=24)
    scan = simulate_mri(disc_image((128, 120)), n_coils=8, mask=mask, snr_db=30, seed=3)
    maps, lam = espirit_maps(scan.kspace, return_eigenvalues=True)
    assert maps.shape == (8, 128, 120) and maps.dtype == C64
    support = rss(maps) > 0.5
    inside = scan.roi & support
    assert float(inside.sum()) > 0.97 * float(scan.roi.sum())  # maps cover the object
    c = coherence(maps, scan.sens_maps)[inside]
    assert float(c.min()) > 0.99 and float(c.mean()) > 0.999
    torch.testing.assert_close(rss(maps)[support], torch.ones(int(support.sum())), atol=1e-4, rtol=0)
    assert float(lam[scan.roi].min()) > 0.95
    # phase referenced to coil 0: its map is real and non-negative
    assert float(maps[0][support].imag.abs().max()) < 1e-5
    assert float(maps[0][support].real.min()) >= 0


def test_espirit_slabs_give_the_same_maps(monkeypatch):
    from inrecon.physics import coils

    scan = simulate_mri(disc_image((40, 36)), n_coils=4, snr_db=35, seed=2)
    whole = espirit_maps(scan.kspace, calib_width=16)
    monkeypatch.setattr(coils, "_SLAB_ENTRIES", 1)  # one row of pixels per slab
    rows = espirit_maps(scan.kspace, calib_width=16)
    torch.testing.assert_close(rows, whole)


def test_espirit_power_iteration_matches_eigh():
    scan = simulate_mri(disc_image((64, 64)), n_coils=6, snr_db=35, seed=1)
    a = espirit_maps(scan.kspace, calib_width=20)
    b = espirit_maps(scan.kspace, calib_width=20, iters=60)
    both = (rss(a) > 0.5) & (rss(b) > 0.5)
    assert float(both.sum()) > 0.99 * float((rss(a) > 0.5).sum())
    assert float(coherence(a, b)[both].min()) > 0.999


def test_espirit_3d():
    shape = (24, 28, 26)
    scan = simulate_mri(disc_image(shape), n_coils=4, snr_db=35, seed=2)
    maps = espirit_maps(scan.kspace, calib_width=14, kernel_width=4)
    assert maps.shape == (4, *shape)
    inside = scan.roi & (rss(maps) > 0.5)
    assert float(inside.sum()) > 0.95 * float(scan.roi.sum())
    assert float(coherence(maps, scan.sens_maps)[inside].mean()) > 0.995


@pytest.mark.parametrize("kind", ["radial", "spiral"])
def test_espirit_noncartesian_recovers_true_maps(kind):
    n = 96
    traj = radial_trajectory(48, n) if kind == "radial" else spiral_trajectory((n, n), 8)
    scan = simulate_mri(disc_image((n, n)), n_coils=6, trajectory=traj, snr_db=30, seed=5)
    maps = espirit_maps_noncartesian(scan)
    inside = scan.roi & (rss(maps) > 0.5)
    assert float(inside.sum()) > 0.97 * float(scan.roi.sum())
    c = coherence(maps, scan.sens_maps)[inside]
    assert float(c.mean()) > 0.999 and float(c.min()) > 0.99
    with pytest.raises(InreconError, match="non-Cartesian"):
        espirit_maps_noncartesian(simulate_mri(disc_image((32, 32)), n_coils=2))


def test_calibration_width():
    m = torch.zeros(40, 50, dtype=torch.bool)
    m[20 - 6 : 20 + 6, 25 - 6 : 25 + 6] = True
    assert calibration_width(m) == 12
    m[20, 25] = False
    assert calibration_width(m) == 0
    assert calibration_width(cartesian_1d((64, 64), 4, acs=16, offset=1)) == 16
    assert calibration_width(cartesian_1d((64, 64), 4, acs=16)) == 17  # lattice line 40 extends the block
    assert calibration_width(torch.ones(5, 7, 9, dtype=torch.bool)) == 5


def test_espirit_errors(gen):
    k = torch.randn(4, 32, 32, generator=gen, dtype=C64)
    mask = poisson_disc((32, 32), 3, calib=(0, 0), seed=0, variable_density=False)
    with pytest.raises(InreconError, match="calibration"):
        espirit_maps(k * mask)
    hole = torch.ones(32, 32, dtype=torch.bool)
    hole[16, 17] = False
    with pytest.raises(InreconError, match="calibration"):
        espirit_maps(k, mask=hole)
    with pytest.raises(InreconError, match="unsampled"):
        espirit_maps(k * cartesian_1d((32, 32), 2, acs=10), calib_width=16)
    with pytest.raises(InreconError, match="complex"):
        espirit_maps(k.real)
    with pytest.raises(ShapeError):
        espirit_maps(k[0])
    with pytest.raises(ShapeError, match="mask"):
        espirit_maps(k, mask=torch.ones(32, 31, dtype=torch.bool))
    with pytest.raises(InreconError, match="threshold"):
        espirit_maps(k, threshold=0)
    with pytest.raises(InreconError, match="crop"):
        espirit_maps(k, crop=1.0)


@pytest.mark.realdata
def test_espirit_matches_sigpy_on_real_brain(shared_data):
    sigpy_mri = pytest.importorskip("sigpy.mri")
    from inrecon.data.io.bart import read_cfl

    raw = read_cfl(shared_data("mri/brain8ch_bart/ksp.cfl"))  # BART (1, 180, 230, 8)
    ksp = np.ascontiguousarray(np.moveaxis(raw.reshape(raw.shape[-3:]), -1, 0))  # (8, 180, 230)
    kt = torch.from_numpy(ksp)
    width = calibration_width((kt != 0).any(0))
    assert width == 20  # the fully sampled centre of this Poisson-disc mask
    t0 = time.perf_counter()
    ours = espirit_maps(kt)  # the call the classical methods make
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = sigpy_mri.app.EspiritCalib(
        ksp, calib_width=width, thresh=0.02, kernel_width=6, crop=0.95, show_pbar=False
    ).run()
    t_sigpy = time.perf_counter() - t0
    ref = torch.from_numpy(np.asarray(ref))
    sa, sb = rss(ours) > 0.5, rss(ref) > 0.5
    both = sa & sb
    assert float(both.sum()) > 0.99 * max(float(sa.sum()), float(sb.sum()))  # measured: identical, 29200
    c = coherence(ours, ref)[both]
    assert float(c.min()) > 0.99  # measured: 1.0 (maps equal to 1.5e-5 in absolute value)
    print(
        f"ESPIRiT 180x230x8: ours {t_ours:.2f} s, sigpy {t_sigpy:.2f} s, min coherence {float(c.min()):.6f}"
    )


# --- compression and noise ----------------------------------------------------------------------------------
def test_coil_compress_energy():
    scan = simulate_mri(disc_image((64, 64)), n_coils=12, snr_db=40, seed=4)
    k = scan.kspace
    full, mat = coil_compress(k, 12)
    torch.testing.assert_close(mat @ mat.mH, torch.eye(12, dtype=C64), atol=1e-5, rtol=0)
    assert abs(float(full.abs().pow(2).sum() / k.abs().pow(2).sum()) - 1) < 1e-5
    comp, mat6 = coil_compress(k, 6)
    assert comp.shape == (6, 64, 64) and mat6.shape == (6, 12)
    torch.testing.assert_close(comp, torch.einsum("vc,chw->vhw", mat6, k))
    energy = comp.abs().pow(2).sum((1, 2))
    assert bool((energy[:-1] >= energy[1:]).all())
    frac = float(energy.sum() / k.abs().pow(2).sum())
    assert frac > 0.99  # measured 0.99994 for 12 smooth ring coils -> 6 (0.985 -> 2, 0.9995 -> 4)
    # the same matrix compresses the maps consistently: compressed k-space = SENSE with compressed maps
    maps_c = torch.einsum("vc,chw->vhw", mat6, scan.sens_maps)
    with pytest.raises(InreconError, match="n_virtual"):
        coil_compress(k, 13)
    assert maps_c.shape == (6, 64, 64)


def test_prewhiten_makes_noise_white(gen):
    c, s = 6, 20000
    a = torch.randn(c, c, generator=gen, dtype=C64) * 0.3 + torch.eye(c, dtype=C64)
    white = torch.randn(c, s, generator=gen, dtype=C64)  # E|n|^2 = 1 per entry
    noise = a @ white
    kspace = a @ torch.randn(c, 500, generator=gen, dtype=C64)
    wk, w = prewhiten(kspace, noise)
    assert wk.shape == kspace.shape and w.shape == (c, c)
    cov_w = noise_covariance(w.to(torch.complex128) @ noise.to(torch.complex128))
    err = float((cov_w - torch.eye(c, dtype=torch.complex128)).abs().max())
    assert err < 1e-6  # exact on the noise it was estimated from
    held_out = w @ (a @ torch.randn(c, s, generator=gen, dtype=C64))
    err_new = float((noise_covariance(held_out) - torch.eye(c, dtype=torch.complex128)).abs().max())
    assert err_new < 0.06  # fresh noise: statistical error only, measured max |entry - I| = 0.029
    wk2, w2 = prewhiten(kspace, noise_covariance(noise))
    torch.testing.assert_close(w2, w)
    torch.testing.assert_close(wk2, wk)
    assert bool((w.triu(1) == 0).all())


def test_noise_from_region(gen):
    c, n = 4, 64
    a = torch.randn(c, c, generator=gen, dtype=C64) * 0.3 + torch.eye(c, dtype=C64)
    img = torch.zeros(c, n, n, dtype=C64)
    img[:, 16:48, 16:48] = 5.0
    k = fftc(img) + torch.einsum("cd,dhw->chw", a, torch.randn(c, n, n, generator=gen, dtype=C64))
    region = torch.zeros(n, n, dtype=torch.bool)
    region[:10] = True
    samples = noise_from_region(k, region)
    assert samples.shape == (c, 640)
    psi = noise_covariance(samples)
    true = (a @ a.mH).to(torch.complex128)
    assert float((psi - true).abs().max() / true.abs().max()) < 0.15
    assert noise_from_region(k, region, domain="kspace").shape == (c, 640)
    with pytest.raises(InreconError, match="domain"):
        noise_from_region(k, region, domain="x")
    with pytest.raises(ShapeError):
        noise_from_region(k, region[:-1])


def test_noise_errors(gen):
    with pytest.raises(InreconError, match="samples"):
        noise_covariance(torch.randn(8, 4, generator=gen, dtype=C64))
    with pytest.raises(ShapeError):
        prewhiten(torch.randn(4, 10, generator=gen, dtype=C64), torch.randn(3, 100, generator=gen, dtype=C64))
    cov = torch.zeros(3, 3, dtype=C64)
    cov[0, 0] = cov[1, 1] = 1
    with pytest.raises(InreconError, match="positive definite"):
        prewhiten(torch.randn(3, 10, generator=gen, dtype=C64), cov)


def test_normalize_maps_and_rss(gen):
    m = torch.randn(5, 8, 9, generator=gen, dtype=C64)
    m[:, 0, 0] = 0
    n = normalize_maps(m)
    r = rss(n)
    assert float(r[0, 0]) == 0.0
    torch.testing.assert_close(r[1:], torch.ones(7, 9), atol=1e-6, rtol=0)
    torch.testing.assert_close(rss(m), torch.sqrt((m.abs() ** 2).sum(0)))
    assert math.isclose(float(rss(torch.tensor([3.0, 4.0]))), 5.0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_coils_on_cuda():
    scan = simulate_mri(disc_image((64, 64)), n_coils=6, snr_db=35, seed=1)
    a = espirit_maps(scan.kspace, calib_width=20)
    b = espirit_maps(scan.kspace.cuda(), calib_width=20).cpu()
    both = (rss(a) > 0.5) & (rss(b) > 0.5)
    assert float(coherence(a, b)[both].min()) > 0.999
    comp, mat = coil_compress(scan.kspace.cuda(), 3)
    assert comp.is_cuda and mat.is_cuda
