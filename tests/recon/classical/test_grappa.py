"""GRAPPA: agreement with pygrappa (the same kernels, regularisation and calibration windows), 1D / 2D / 3D
Cartesian sampling, the hold-out choice of the Tikhonov weight, coil combination, and the real 8-coil brain."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inrecon.config import build_config
from inrecon.data.phantoms import brain_phantom
from inrecon.data.sampling import cartesian_1d, poisson_disc
from inrecon.data.scans import MRIScan
from inrecon.errors import InreconError
from inrecon.metrics import evaluate
from inrecon.physics.fft import fftc
from inrecon.physics.simulate.mri import simulate_mri
from inrecon.recon.api import run_method
from inrecon.recon.classical.grappa import GrappaConfig, acs_block, grappa_kspace
from inrecon.recon.methods import METHODS


def _scan(pattern: str, shape=(64, 64), coils=6, snr_db=40.0) -> MRIScan:
    if pattern == "1d":
        mask = cartesian_1d(shape, af=3, acs=16)
    elif pattern == "2d":  # 2 x 2 lattice with a 16 x 16 calibration square
        mask = np.zeros(shape, dtype=bool)
        mask[::2, ::2] = True
        c0, c1 = shape[0] // 2, shape[1] // 2
        mask[c0 - 8 : c0 + 8, c1 - 8 : c1 + 8] = True
    else:
        mask = poisson_disc(shape, af=3, calib=(16, 16), seed=0)
    return simulate_mri(brain_phantom(shape, seed=0), n_coils=coils, mask=mask, snr_db=snr_db, seed=0)


def _psnr(scan, image) -> float:
    return evaluate(image, scan.target, roi=scan.roi, scale=True)["psnr"]


@pytest.mark.parametrize("pattern", ["1d", "2d", "poisson"])
def test_matches_pygrappa(pattern):
    pygrappa = pytest.importorskip("pygrappa", reason="pygrappa is not installed (pip install pygrappa)")
    scan = _scan(pattern)
    calib = scan.kspace[(slice(None), *acs_block(scan.mask))].numpy()
    ref = pygrappa.grappa(scan.kspace.numpy(), calib, kernel_size=(5, 5), coil_axis=0, lamda=0.01)
    # pygrappa's conventions: lam relative to ||S^H S||_F / n_sources, windows centred on every calibration
    # point (zero-filled where they overhang the block)
    cfg = GrappaConfig(calib_padding=True)
    ours, info = grappa_kspace(scan.kspace, scan.mask, (5, 5), 0.01, cfg, show_progress=False)
    err = np.linalg.norm(ours.numpy() - ref) / np.linalg.norm(ref)
    assert err < 1e-3  # measured 2.4e-6 (1d), 2.7e-6 (poisson): float32 data, complex128 solves
    assert info["n_holes"] == int((~scan.mask).sum())


def test_acs_block_is_the_largest_centred_box():
    mask = torch.as_tensor(cartesian_1d((40, 50), af=4, acs=10))
    block = acs_block(mask)
    assert [s.stop - s.start for s in block] == [40, 10]  # ACS lines: the full readout
    m = torch.zeros(40, 50, dtype=torch.bool)
    m[14:26, 18:30] = True
    assert acs_block(m) == (slice(14, 26), slice(18, 30))
    m[20, 25] = False  # the centre itself is missing
    with pytest.raises(InreconError, match="calibration"):
        acs_block(m)


@pytest.mark.parametrize("pattern", ["1d", "2d", "poisson"])
def test_beats_zero_filling_and_chooses_lam_by_holdout(pattern):
    scan = _scan(pattern)
    res = run_method("grappa", scan, show_progress=False)
    zf = run_method("zf", scan, {"coil_combine": "rss"}, show_progress=False)
    scores = res.info["holdout_scores"]
    assert res.info["lam"] == min(scores, key=scores.get)
    assert res.image.shape == (64, 64) and res.image.dtype == torch.complex64
    # measured (grappa / zf): 1d 29.47 / 18.72, 2d 33.57 / 17.50, poisson 28.21 / 19.45 dB
    assert _psnr(scan, res.image) > _psnr(scan, zf.image) + 5.0


def test_acquired_samples_are_kept_and_fully_sampled_data_pass_through():
    scan = _scan("1d")
    k, _ = grappa_kspace(scan.kspace, scan.mask, (5, 5), 0.01)
    m = scan.mask
    torch.testing.assert_close(k[:, m], scan.kspace[:, m])
    full = simulate_mri(brain_phantom((32, 32), seed=1), n_coils=4, seed=1)
    k2, info = grappa_kspace(full.kspace, full.mask, (5, 5), "auto")
    assert info["n_holes"] == 0 and torch.equal(k2, full.kspace)


def test_coil_combination_with_maps_is_complex_and_consistent():
    scan = _scan("2d")
    rss = run_method("grappa", scan, {"lam": 0.03}, show_progress=False).image
    sense = run_method("grappa", scan, {"lam": 0.03, "combine": "maps"}, show_progress=False).image
    assert float(rss.imag.abs().max()) == 0.0 and float(sense.imag.abs().max()) > 0.0
    assert abs(_psnr(scan, rss) - _psnr(scan, sense)) < 1.0  # measured 29.18 / 29.26 dB


def test_3d_cartesian():
    d, h, w, c = 12, 24, 24, 4
    img = torch.as_tensor(np.stack([brain_phantom((h, w), seed=s) for s in range(d)])).to(torch.complex64)
    maps2d = simulate_mri(brain_phantom((h, w), seed=0), n_coils=c, seed=0).sens_maps
    maps = (maps2d[:, None] * torch.exp(0.3j * torch.linspace(-1, 1, d))[:, None, None]).to(torch.complex64)
    k = fftc(maps * img, dims=(1, 2, 3))
    mask = torch.zeros(d, h, w, dtype=torch.bool)
    mask[:, ::2, :] = True  # 2-fold along H, full readout along W, full D
    mask[:, h // 2 - 4 : h // 2 + 4, :] = True
    scan = MRIScan(kspace=k * mask, mask=mask, target=img.abs())
    res = run_method("grappa", scan, {"lam": 1e-4}, show_progress=False)
    assert res.image.shape == (d, h, w) and res.info["acs"] == [d, 9, w]  # 8 ACS rows + a lattice row
    zf = run_method("zf", scan, {"coil_combine": "rss"}, show_progress=False).image
    truth = (maps * img).abs().square().sum(0).sqrt()
    err = float((res.image.abs() - truth).norm() / truth.norm())
    assert err < 0.02 and err < 0.2 * float((zf.abs() - truth).norm() / truth.norm())  # measured 1.3 % / 11 %


def test_registered_and_refuses_bad_input():
    spec = METHODS["grappa"]
    assert spec.modalities == ("mri",)
    with pytest.raises(InreconError, match="kernel"):
        build_config(GrappaConfig, {"kernel": (0, 5)})
    traj = torch.rand(100, 2) * 6 - 3
    radial = MRIScan(kspace=torch.ones(2, 100, dtype=torch.complex64), trajectory=traj, image_shape=(16, 16))
    with pytest.raises(InreconError, match="Cartesian"):
        run_method("grappa", radial)
    scan = _scan("1d")
    with pytest.raises(InreconError, match="axes"):
        grappa_kspace(scan.kspace, scan.mask, (5, 5, 5))


@pytest.mark.realdata
def test_real_8coil_brain(shared_data):
    shared_data("mri/brain8ch_bart/ksp.cfl")
    from inrecon.data.shared import brain8ch
    from inrecon.physics.coils import with_espirit_support

    scan = with_espirit_support(brain8ch())
    res = run_method("grappa", scan, show_progress=False)
    # measured 31.01 dB / 0.848 with lam = 0.1 chosen (the pygrappa default 0.01 gives 25.08 dB)
    assert _psnr(scan, res.image) > 30.5
    assert res.info["lam"] == 0.1 and res.info["acs"] == [20, 20]
