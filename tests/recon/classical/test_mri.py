"""Wavelet transform, hold-out selection and the classical MRI reconstructions on small synthetic scans."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from inrecon.data.scans import MRIScan
from inrecon.errors import InreconError, ShapeError
from inrecon.metrics import psnr
from inrecon.physics.measurement import build_measurement
from inrecon.physics.mri import SenseOp
from inrecon.physics.nufft import NufftSenseOp
from inrecon.physics.wavelets import Wavelet
from inrecon.recon.api import run_method
from inrecon.recon.classical.selection import holdout_loss, refine_weight
from inrecon.recon.classical.solvers import conjugate_gradient

C64 = torch.complex64


# --- synthetic data -------------------------------------------------------------------------------------------
def _phantom(n: int = 64) -> torch.Tensor:
    """Piecewise-constant ellipses with a smooth phase, complex64 ``(n, n)``."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, n), torch.linspace(-1, 1, n), indexing="ij")
    img = torch.zeros(n, n)
    for cy, cx, ay, ax, v in [
        (0, 0, 0.8, 0.65, 1.0),
        (0.1, -0.2, 0.3, 0.2, -0.4),
        (-0.3, 0.25, 0.2, 0.15, 0.5),
        (0.45, 0.1, 0.1, 0.25, 0.3),
    ]:
        img = img + v * ((((yy - cy) / ay) ** 2 + ((xx - cx) / ax) ** 2) <= 1).float()
    phase = torch.exp(1j * (0.6 * xx + 0.3 * yy))
    return (img * phase).to(C64)


def _maps(n: int = 64, c: int = 4) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, n), torch.linspace(-1, 1, n), indexing="ij")
    maps = []
    for k in range(c):
        a = 2 * math.pi * k / c
        bump = torch.exp(-((yy - 1.2 * math.sin(a)) ** 2 + (xx - 1.2 * math.cos(a)) ** 2) / 1.5)
        maps.append(bump * torch.exp(1j * (k * 0.7 + 0.5 * xx)))
    m = torch.stack(maps).to(C64)
    return m / m.abs().square().sum(0).sqrt()


def _mask(n: int = 64, af: float = 3.5, calib: int = 12, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, n), torch.linspace(-1, 1, n), indexing="ij")
    r = (yy**2 + xx**2).sqrt()
    prob = (1 - r / r.max()) ** 2
    prob = prob * (n * n / af) / prob.sum()
    m = torch.rand(n, n, generator=g) < prob.clamp(max=1)
    s = slice(n // 2 - calib // 2, n // 2 + calib // 2)
    m[s, s] = True
    return m


def _scan(noise: float = 0.01, mask=True, seed: int = 0, scale: float = 1.0) -> MRIScan:
    x = _phantom()
    maps = _maps()
    m = _mask() if mask is True else None
    k = SenseOp(maps)(x)
    g = torch.Generator().manual_seed(seed + 7)
    k = k + noise * torch.complex(torch.randn(k.shape, generator=g), torch.randn(k.shape, generator=g))
    if m is not None:
        k = k * m
    return MRIScan((k * scale).to(C64), mask=m, sens_maps=maps, target=x.abs())


@pytest.fixture(scope="module")
def scan() -> MRIScan:
    return _scan()


# --- hold-out split -------------------------------------------------------------------------------------------
def test_holdout_split_cartesian_draws_locations(scan):
    meas = build_measurement(scan)
    train, val = meas.split(0.2, seed=3)
    n_loc, C = int(scan.mask.sum()), scan.n_coils
    assert train.numel() + val.numel() == meas.n_samples == n_loc * C
    assert not bool(torch.isin(train, val).any())
    assert val.numel() == round(0.2 * n_loc) * C  # whole locations: every coil of a held-out location
    assert torch.equal(meas.split(0.2, seed=3)[1], val) and not torch.equal(meas.split(0.2, seed=4)[1], val)
    # the fully sampled calibration square is part of the draw: about 20 % of it is held out
    loc = scan.mask.reshape(-1).nonzero().reshape(-1)[meas.sample_unit[val]]
    held = torch.zeros(64 * 64, dtype=torch.bool)
    held[loc] = True
    centre = held.reshape(64, 64)[26:38, 26:38].float().mean()
    assert 0.08 < float(centre) < 0.35


def test_holdout_split_noncartesian_and_errors():
    k = torch.randn(3, 1000, dtype=C64)
    s = MRIScan(k, trajectory=(torch.rand(1000, 2) * 2 - 1) * 3.0, image_shape=(16, 16))
    meas = build_measurement(s, coil_images=True)
    train, val = meas.split(0.25, seed=0)
    assert val.numel() == 250 * 3 and train.numel() == 750 * 3
    with pytest.raises(InreconError, match="fraction"):
        meas.split(1.0)


def test_subsets_partition_the_samples(scan):
    meas = build_measurement(scan)
    tr, va = meas.split(0.2, 0)
    a, b = meas.subset(tr), meas.subset(va)
    assert a.n_samples + b.n_samples == meas.n_samples
    x = _phantom()
    both = torch.zeros(meas.n_samples, dtype=C64)
    both[tr], both[va] = a.predict(x), b.predict(x)
    torch.testing.assert_close(both, meas.predict(x))
    # the subset's fast normal operator is A_train^H A_train
    torch.testing.assert_close(a.normal()(x), a.adjoint(a.predict(x)), rtol=1e-4, atol=1e-5)


def test_weight_search_picks_smallest_loss(scan):
    def recon(train, iters):
        return conjugate_gradient(train.normal(), train.adjoint(train.y), iters=int(iters), tol=0.0)

    meas = build_measurement(scan, scale="robust")
    grid = [1.0, 2.0, 4.0, 8.0, 30.0]
    best, scores = refine_weight(recon, meas, grid, False, 0.2, 0, False, search="grid")
    assert list(scores) == grid and best == min(scores, key=scores.get)
    assert scores[1.0] > scores[4.0]  # one CG step underfits clearly
    # the walk solves fewer of them (from the middle, downhill) and reaches the same winner here
    walked, part = refine_weight(recon, meas, grid, False, 0.2, 0, False)
    assert walked == best and 4.0 in part and len(part) < len(grid)
    assert all(part[w] == scores[w] for w in part)  # the same split, the same solves
    with pytest.raises(InreconError, match="unknown weight search"):
        refine_weight(recon, meas, grid, False, 0.2, 0, False, search="all")
    with pytest.raises(ShapeError, match="coil maps"):
        holdout_loss(meas, torch.zeros(4, 64, 64, dtype=C64))


# --- methods --------------------------------------------------------------------------------------------------
def test_zero_filled_fully_sampled_is_exact():
    s = _scan(noise=0.0, mask=None)
    x = _phantom()
    img = run_method("zf", s).image
    assert float((img - x).abs().max()) < 1e-5
    rss = run_method("zf", s, {"coil_combine": "rss"})
    assert rss.info["coil_combine"] == "rss" and float(rss.image.imag.abs().max()) == 0
    assert float((rss.image.real - x.abs()).abs().max()) < 1e-5


def test_cgsense_auto_beats_zf_and_is_scale_free(scan):
    ref = scan.target
    zf = psnr(run_method("zf", scan).image, ref, scale=True)
    res = run_method("cgsense", scan)
    p = psnr(res.image, ref, scale=True)
    scores = res.info["holdout_scores"]
    assert res.info["iters_chosen"] == min(scores, key=scores.get)
    assert p > zf + 2.5, (p, zf)
    big = run_method("cgsense", dataclasses.replace(scan, kspace=scan.kspace * 1e6))
    assert big.info["iters_chosen"] == res.info["iters_chosen"]
    assert float((big.image / 1e6 - res.image).norm() / res.image.norm()) < 1e-4


def test_l1wavelet_is_optimal_and_scale_free(scan):
    res = run_method("l1wavelet", scan, {"lam": 1e-3, "iters": 150})
    x, lam = res.image, res.info["lam_abs"]
    op = SenseOp(scan.sens_maps, scan.mask)
    w = Wavelet(scan.image_shape, "db4")

    def objective(v):
        return 0.5 * float((op(v) - scan.kspace).abs().square().sum()) + lam * float(w(v).abs().sum())

    f0 = objective(x)
    g = torch.Generator().manual_seed(0)
    for _ in range(4):  # near a minimiser, random perturbations increase the objective
        d = torch.randn(x.shape, generator=g, dtype=C64) * 0.02 * float(x.abs().mean())
        assert objective(x + d) > f0
    assert objective(x * 1.02) > f0 and objective(x * 0.98) > f0
    cg = psnr(run_method("cgsense", scan, {"iters": 30}).image, scan.target, scale=True)
    assert psnr(x, scan.target, scale=True) > cg + 1.0
    # lam > 1 (relative to max|W A^H y|) gives the zero image
    assert float(run_method("l1wavelet", scan, {"lam": 1.05, "iters": 5}).image.abs().max()) == 0.0
    big = run_method(
        "l1wavelet", dataclasses.replace(scan, kspace=scan.kspace * 1e5), {"lam": 1e-3, "iters": 150}
    )
    assert float((big.image / 1e5 - x).norm() / x.norm()) < 1e-3


def test_l1wavelet_auto_picks_min_holdout(scan):
    over = {"lam": "auto", "lam_candidates": (1e-3, 1e-2, 1e-1), "iters": 60, "search": "grid"}
    res = run_method("l1wavelet", scan, over)
    scores = res.info["holdout_scores"]
    assert len(scores) == 5  # three candidates + two refinements around the winner
    assert res.info["lam"] == min(scores, key=scores.get)
    assert scores[0.1] > min(scores.values())  # far too strong is penalised


def test_tv_on_piecewise_constant(scan):
    res = run_method("tv", scan, {"lam": 1e-3, "iters": 150})
    cg = psnr(run_method("cgsense", scan, {"iters": 30}).image, scan.target, scale=True)
    assert psnr(res.image, scan.target, scale=True) > cg + 2.0
    assert res.image.dtype == C64 and res.info["iterations"] == 150


def test_tv_smooth_phase_prior_removes_imaginary_noise(scan):
    """The phantom's phase is smooth: TV's phase term (the default) leaves less in the imaginary part after
    removing the true phase and gives a better image than plain TV (phase=0)."""
    x = _phantom()
    true_phase = x / x.abs().clamp_min(1e-9)
    out = {}
    for w in (0.0, 0.0015):
        img = run_method("tv", scan, {"lam": 1e-3, "iters": 150, "phase": w}).image
        out[w] = (psnr(img, x, scale=True), float((img * true_phase.conj()).imag.abs().mean()))
    assert out[0.0015][1] < 0.85 * out[0.0][1]
    assert out[0.0015][0] > out[0.0][0] + 0.3


def test_bad_configs_raise_before_work(scan):
    with pytest.raises(InreconError, match="auto"):
        run_method("l1wavelet", scan, {"lam": "best"})
    with pytest.raises(InreconError, match="lam"):
        run_method("tv", scan, {"lam": -1})
    with pytest.raises(InreconError, match="iters"):
        run_method("cgsense", scan, {"iters": 0})
    with pytest.raises(InreconError, match="wavelet"):
        run_method("l1wavelet", scan, {"wavelet": "coif2"})
    with pytest.raises(InreconError, match="coil_combine"):
        run_method("zf", scan, {"coil_combine": "sum"})


def test_noncartesian_without_maps_estimates_them():
    n, x = 32, _phantom(32)
    s = _radial(n, spokes=40)
    s = dataclasses.replace(s, sens_maps=None)
    zf = psnr(run_method("zf", s).image, x, scale=True)
    cg = run_method("cgsense", s, {"max_iters": 20})
    assert psnr(cg.image, x, scale=True) > zf + 3


def test_espirit_maps_when_scan_has_none():
    pytest.importorskip("inrecon.physics.coils")
    s = _scan(noise=0.002)
    s = dataclasses.replace(s, sens_maps=None)
    res = run_method("cgsense", s, {"iters": 8})
    assert psnr(res.image, s.target, scale=True) > 25


def _radial(n: int, spokes: int) -> MRIScan:
    ang = torch.arange(spokes) * math.pi / spokes
    r = (torch.arange(n) - n / 2) * 2 * math.pi / n
    traj = torch.stack([r[None] * torch.sin(ang[:, None]), r[None] * torch.cos(ang[:, None])], -1).reshape(
        -1, 2
    )
    x, maps = _phantom(n), _maps(n, 4)
    k = NufftSenseOp(maps, traj, (n, n))(x)
    return MRIScan(k, trajectory=traj, image_shape=(n, n), sens_maps=maps, target=x.abs())


def test_noncartesian_radial():
    n = 32
    s, x = _radial(n, spokes=24), _phantom(n)
    zf = psnr(run_method("zf", s).image, x, scale=True)
    cg = run_method("cgsense", s, {"max_iters": 20})
    l1 = run_method("l1wavelet", s, {"lam": 1e-3, "iters": 50})
    assert psnr(cg.image, x, scale=True) > zf + 3
    assert psnr(l1.image, x, scale=True) > zf + 3


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(scan):
    gpu = scan.to("cuda")
    for name, cfg in (("cgsense", {"iters": 6}), ("l1wavelet", {"iters": 30}), ("tv", {"iters": 30})):
        a = run_method(name, scan, cfg).image
        b = run_method(name, gpu, cfg).image
        assert b.device.type == "cuda"
        assert float((b.cpu() - a).norm() / a.norm()) < 1e-3


def test_3d_scan_runs_every_method():
    g = torch.Generator().manual_seed(0)
    shape = (8, 16, 16)
    x = torch.zeros(shape, dtype=C64)
    x[2:6, 4:12, 3:13] = 1.0
    maps = torch.randn((3, *shape), generator=g, dtype=C64)
    maps = maps / maps.abs().square().sum(0).sqrt()
    mask = torch.rand(shape, generator=g) < 0.5
    mask[3:5, 6:10, 6:10] = True
    k = SenseOp(maps, mask)(x)
    s = MRIScan(k, mask=mask, sens_maps=maps)
    zf = psnr(run_method("zf", s).image, x, scale=True)
    for name, cfg in (("cgsense", {}), ("l1wavelet", {"iters": 40}), ("tv", {"lam": 1e-3, "iters": 60})):
        res = run_method(name, s, cfg)
        assert res.image.shape == shape
        assert psnr(res.image, x, scale=True) > zf + 3, name


# --- plug-and-play with the block-matching denoiser -------------------------------------------------------------
def _textured_scan(noise: float = 0.01) -> MRIScan:
    """The library's brain phantom (grey and white matter, not piecewise-constant ellipses) with a smooth phase,
    4 coils, variable-density AF 3."""
    import numpy as np

    from inrecon.data.phantoms import brain_phantom

    n = 64
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, n), torch.linspace(-1, 1, n), indexing="ij")
    img = torch.from_numpy(np.abs(brain_phantom((n, n))).astype(np.float32))
    x = (img / img.max() * torch.exp(1j * (0.6 * xx + 0.3 * yy))).to(C64)
    maps, m = _maps(), _mask(af=3.0)
    g = torch.Generator().manual_seed(7)
    k = SenseOp(maps)(x)
    k = (k + noise * torch.complex(torch.randn(k.shape, generator=g), torch.randn(k.shape, generator=g))) * m
    return MRIScan(k.to(C64), mask=m, sens_maps=maps, target=x.abs())


def test_pnp_beats_tv_on_a_textured_scan():
    """Measured: TV (hold-out weight) 31.89 dB, plug-and-play from it 32.35 (noise level 0.0149 by hold-out)."""
    s = _textured_scan()
    tv = run_method("tv", s, {"lam": "auto"})
    res = run_method("pnp", s)
    assert res.image.shape == (64, 64) and res.image.dtype == C64
    assert res.info["denoiser_used"] and res.info["start_tv"] == tv.info["lam"]
    scores = res.info["holdout_scores"]
    assert res.info["lam"] == min(scores, key=scores.get)
    assert scores[res.info["lam"]] < res.info["start_holdout_scores"][tv.info["lam"]]
    assert psnr(res.image, s.target, scale=True) > psnr(tv.image, s.target, scale=True) + 0.3


def test_pnp_falls_back_to_tv_where_the_holdout_prefers_it(scan):
    """On piecewise-constant ellipses (TV's own model) no noise level predicts the held-out samples better than
    TV's image: the result is TV's, bit for bit."""
    res = run_method("pnp", scan, {"lam_candidates": (0.0125, 0.05), "iters": 3})
    tv = run_method("tv", scan, {"lam": "auto"})
    assert not res.info["denoiser_used"] and res.info["lam"] is None
    assert min(res.info["holdout_scores"].values()) >= res.info["start_holdout_scores"][res.info["start_tv"]]
    assert torch.equal(res.image, tv.image)


def test_pnp_refuses_a_3d_or_tiny_scan_before_work():
    shape = (8, 16, 16)
    maps = torch.ones((1, *shape), dtype=C64)
    s = MRIScan(SenseOp(maps)(torch.ones(shape, dtype=C64)), sens_maps=maps)
    with pytest.raises(ShapeError, match="2D"):
        run_method("pnp", s)
    small_maps = torch.ones((1, 12, 12), dtype=C64)
    small = MRIScan(SenseOp(small_maps)(torch.ones((12, 12), dtype=C64)), sens_maps=small_maps)
    with pytest.raises(ShapeError, match="16 x 16"):
        run_method("pnp", small)
    with pytest.raises(InreconError, match="noise level"):
        run_method("pnp", small, {"lam": 0})
