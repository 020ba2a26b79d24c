"""NUFFT SENSE operator: agreement with the Cartesian operator, Toeplitz normal, density compensation, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from inrecon.data.sampling import radial_trajectory, spiral_trajectory
from inrecon.data.scans import MRIScan
from inrecon.errors import InreconError, ShapeError
from inrecon.physics.measurement import build_measurement
from inrecon.physics.mri import SenseOp
from inrecon.physics.nufft import NufftSenseOp, check_trajectory, density_compensation

C64 = torch.complex64


def cartesian_traj(shape) -> torch.Tensor:
    """Every grid point k = 2 pi (m - N // 2) / N, row-major over the grid (matches SenseOp's layout)."""
    axes = [2 * math.pi * (torch.arange(n) - n // 2) / n for n in shape]
    grid = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([g.reshape(-1) for g in grid], 1)


def crandn(shape, gen):
    return torch.randn(shape, generator=gen, dtype=C64)


def smooth_phantom(n: int) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(n) - n // 2, torch.arange(n) - n // 2, indexing="ij")
    r2 = (yy / (0.22 * n)) ** 2 + (xx / (0.16 * n)) ** 2
    return (torch.exp(-(r2**2)) * (1 + 0.3 * torch.cos(xx / (0.08 * n)))).to(C64)


@pytest.mark.parametrize("shape", [(16, 12), (15, 10), (6, 8, 10)])
@pytest.mark.parametrize("interp", ["sparse", "table"])
def test_matches_cartesian_sense_on_grid(shape, interp, gen):
    maps = crandn((3, *shape), gen)
    x = crandn(shape, gen)
    op = NufftSenseOp(maps, cartesian_traj(shape), shape, interp=interp)
    ref = SenseOp(maps)
    y, y_ref = op(x), ref(x).reshape(3, -1)
    # Kaiser-Bessel approximation error; measured ~1.0e-5 to 1.4e-5 (2x oversampling, width 6).
    assert float((y - y_ref).norm() / y_ref.norm()) < 1e-4
    r = crandn((3, math.prod(shape)), gen)
    xa, xa_ref = op.adjoint(r), ref.adjoint(r.reshape(3, *shape))
    assert float((xa - xa_ref).norm() / xa_ref.norm()) < 1e-4


def test_smaller_kernel_is_less_accurate_but_close(gen):
    shape = (16, 16)
    maps, x = crandn((2, *shape), gen), crandn(shape, gen)
    y_ref = SenseOp(maps)(x).reshape(2, -1)
    errs = {}
    for width in (4, 6):
        y = NufftSenseOp(maps, cartesian_traj(shape), shape, kernel_width=width)(x)
        errs[width] = float((y - y_ref).norm() / y_ref.norm())
    assert errs[6] < errs[4] < 5e-3


def test_batch_axes_and_real_input(gen):
    shape = (12, 10)
    op = NufftSenseOp(crandn((2, *shape), gen), radial_trajectory(8, 12), shape)
    x = crandn((3, *shape), gen)
    y = op(x)
    assert y.shape == (3, 2, 96)
    torch.testing.assert_close(y[1], op(x[1]))
    torch.testing.assert_close(op.adjoint(y)[2], op.adjoint(y[2]))
    xr = torch.randn(shape, generator=gen)
    torch.testing.assert_close(op(xr), op(xr.to(C64)))
    xr.requires_grad_(True)
    r = crandn((2, 96), gen)
    (op(xr).conj() * r).real.sum().backward()  # gradient of Re<A x, r> w.r.t. real x is Re(A^H r)
    torch.testing.assert_close(xr.grad, op.adjoint(r).real)


@pytest.mark.parametrize("shape", [(20, 16), (6, 8, 10)])
@pytest.mark.parametrize("coils", [None, 3])
def test_sparse_and_table_interpolation_agree(shape, coils, gen):
    """The CSR products (exact Kaiser-Bessel weights) and torchkbnufft's table interpolation are the same
    operator to the table's accuracy, with batch axes, without coil combination, and an exact adjoint pair."""
    traj = (torch.rand((300, len(shape)), generator=gen) * 2 - 1) * math.pi
    maps = None if coils is None else crandn((coils, *shape), gen)
    kw = {} if coils is not None else {"image_shape": shape, "n_coils": 2}
    sparse = NufftSenseOp(maps, traj, interp="sparse", **kw)
    table = NufftSenseOp(maps, traj, interp="table", **kw)
    x = crandn((2, *sparse.domain_shape), gen)
    r = crandn((2, *sparse.range_shape), gen)
    y, xa = sparse(x), sparse.adjoint(r)
    assert float((y - table(x)).norm() / y.norm()) < 3e-3  # measured 7e-4 to 8e-4
    assert float((xa - table.adjoint(r)).norm() / xa.norm()) < 3e-3
    lhs, rhs = torch.vdot(y.flatten(), r.flatten()), torch.vdot(x.flatten(), xa.flatten())
    assert abs(complex(lhs - rhs)) < 1e-5 * abs(complex(lhs))
    xg = x.clone().requires_grad_(True)
    (sparse(xg).conj() * r).real.sum().backward()  # torch: the gradient of Re<A x, r> is A^H r
    torch.testing.assert_close(xg.grad, xa, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("shape", [(20, 16), (15, 10), (6, 8, 8)])
def test_toeplitz_normal_matches_adjoint_of_forward(shape, gen):
    traj = (torch.rand((400, len(shape)), generator=gen) * 2 - 1) * math.pi
    op = NufftSenseOp(crandn((3, *shape), gen), traj, shape)
    x = crandn((2, *shape), gen)
    ref = op.adjoint(op(x))
    err = float((op.normal(x) - ref).norm() / ref.norm())
    assert err < 2e-3  # measured 1.3e-4 to 2.8e-4 on random trajectories
    torch.testing.assert_close(op.gram(x), op.normal(x))
    plain = NufftSenseOp(op.maps, traj, shape, toeplitz=False)
    torch.testing.assert_close(plain.normal(x), ref)


def test_toeplitz_normal_is_differentiable(gen):
    shape = (10, 10)
    op = NufftSenseOp(crandn((2, *shape), gen), radial_trajectory(6, 10), shape)
    x = crandn(shape, gen).requires_grad_(True)
    loss = op.normal(x).abs().pow(2).sum()
    loss.backward()
    # d/dx* ||G x||^2 = 2 G^H G x = 2 G (G x) for Hermitian G
    ref = 2 * op.normal(op.normal(x.detach()))
    assert float((x.grad - ref).norm() / ref.norm()) < 1e-3


def test_density_compensation_gridding_scale():
    n = 64
    img = smooth_phantom(n)
    traj = radial_trajectory(round(n * math.pi / 2), n)  # Nyquist radial: 101 spokes
    dcf = density_compensation(traj, (n, n))
    assert dcf.shape == (traj.shape[0],) and dcf.dtype == torch.float32 and bool((dcf > 0).all())
    op = NufftSenseOp(None, traj, (n, n), n_coils=1)
    rec = op.adjoint(dcf * op(img[None]))[0]
    rel = float((rec - img).norm() / img.norm())
    scale = float((torch.vdot(rec.reshape(-1), img.reshape(-1)) / rec.norm() ** 2).real)
    # measured: relative error 0.029, least-squares scale 0.996
    assert rel < 0.05
    assert abs(scale - 1) < 0.02
    # the weights cover the disc |k| < pi: sum ~ pi/4 of the grid (measured 0.793)
    assert abs(float(dcf.sum()) / n**2 - math.pi / 4) < 0.03


def test_density_compensation_is_one_on_cartesian_grid():
    dcf = density_compensation(cartesian_traj((32, 24)), (32, 24), iters=5)
    assert float(dcf.min()) > 0.99 and float(dcf.max()) < 1.01  # measured 0.995


def test_density_compensation_spiral_centre_denser():
    traj = spiral_trajectory((32, 32), 4)
    dcf = density_compensation(traj, (32, 32), iters=10)
    r = traj.norm(dim=1)
    assert float(dcf[r < 0.5].mean()) < 0.5 * float(dcf[r > 2.5].mean())


def test_measurement_builds_nufft_for_noncartesian_scan(gen):
    shape = (12, 12)
    traj = radial_trajectory(10, 12)
    maps = crandn((2, *shape), gen)
    scan = MRIScan(kspace=crandn((2, traj.shape[0]), gen), trajectory=traj, image_shape=shape, sens_maps=maps)
    meas = build_measurement(scan)
    assert isinstance(meas.physics, NufftSenseOp) and meas.physics.range_shape == (2, 120)
    assert meas.n_samples == 240 and meas.n_units == 120
    nomaps = build_measurement(
        MRIScan(kspace=scan.kspace, trajectory=traj, image_shape=shape), coil_images=True
    )
    assert nomaps.domain_shape == (2, 12, 12)
    # samples are ordered trajectory point by trajectory point (all coils of a point together)
    torch.testing.assert_close(meas.y * meas.scale, scan.kspace.transpose(0, 1).reshape(-1))


def test_trajectory_errors():
    with pytest.raises(InreconError, match="radians"):
        check_trajectory(torch.full((5, 2), 4.0))
    with pytest.raises(ShapeError, match="transposed"):
        check_trajectory(torch.zeros(2, 50))
    with pytest.raises(ShapeError):
        check_trajectory(torch.zeros(50, 3), ndim=2)
    with pytest.raises(InreconError, match="NaN"):
        check_trajectory(torch.tensor([[0.0, float("nan")]]))
    with pytest.raises(InreconError, match="real"):
        check_trajectory(torch.zeros(5, 2, dtype=C64))
    t = check_trajectory(np.zeros((4, 2), dtype=np.float64))
    assert t.dtype == torch.float32


def test_constructor_errors(gen):
    traj = radial_trajectory(4, 8)
    maps = crandn((2, 8, 8), gen)
    with pytest.raises(ShapeError, match="image_shape"):
        NufftSenseOp(maps, traj, (8, 9))
    with pytest.raises(ShapeError, match="n_coils"):
        NufftSenseOp(maps, traj, (8, 8), n_coils=3)
    with pytest.raises(InreconError, match="n_coils"):
        NufftSenseOp(None, traj, (8, 8))
    with pytest.raises(InreconError, match="complex"):
        NufftSenseOp(maps.real, traj, (8, 8))
    with pytest.raises(InreconError, match="oversampling"):
        NufftSenseOp(maps, traj, (8, 8), oversampling=1.0)
    with pytest.raises(InreconError, match="kernel_width"):
        NufftSenseOp(maps, traj, (8, 8), kernel_width=1)
    with pytest.raises(InreconError, match="interp"):
        NufftSenseOp(maps, traj, (8, 8), interp="fast")
    with pytest.raises(ShapeError):
        NufftSenseOp(maps, torch.zeros(10, 3), (8, 8))
    with pytest.raises(InreconError, match="iters"):
        density_compensation(traj, (8, 8), iters=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(gen):
    shape = (16, 16)
    maps, x = crandn((3, *shape), gen), crandn(shape, gen)
    traj = radial_trajectory(12, 16)
    op = NufftSenseOp(maps, traj, shape)
    op_gpu = NufftSenseOp(maps.cuda(), traj.cuda(), shape)
    y = op(x)
    torch.testing.assert_close(op_gpu(x.cuda()).cpu(), y, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(op_gpu.adjoint(y.cuda()).cpu(), op.adjoint(y), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(op_gpu.normal(x.cuda()).cpu(), op.normal(x), rtol=1e-3, atol=1e-4)
    moved = op.to("cuda")
    torch.testing.assert_close(moved(x.cuda()).cpu(), y, rtol=1e-4, atol=1e-5)
    dcf = density_compensation(traj.cuda(), shape, iters=5)
    torch.testing.assert_close(dcf.cpu(), density_compensation(traj, shape, iters=5), rtol=1e-3, atol=1e-5)


@pytest.mark.realdata
def test_real_radial_phantom_pipeline(shared_data):
    """Real 16-coil radial FLASH (29 spokes, full circle): ESPIRiT from the gridded centre + CG-SENSE.

    The central 192 of the 384 readout samples (2x readout oversampling) are the samples of
    ``radial_trajectory(29, 192, full_circle=True)`` on a 192x192 grid covering the oversampled FOV (up to a
    transpose and BART's sub-sample gradient-delay correction, ignored here). With that trajectory the
    reconstruction is a sharp phantom inside the central disc; a wrong one (half-circle angles) smears energy
    outside it.
    """
    from inrecon.data.io.bart import read_cfl
    from inrecon.physics.coils import espirit_maps_noncartesian
    from inrecon.recon.classical.solvers import conjugate_gradient

    ns = 29
    raw = read_cfl(shared_data(f"mri/radial16ch_phantom/kMB1_top_SP{ns}.cfl"))  # (384, 29, 1, 16)
    k = torch.from_numpy(np.ascontiguousarray(raw.reshape(384, ns, 16)[96:288].transpose(2, 1, 0)))
    k = k.reshape(16, -1)
    yy, xx = torch.meshgrid(torch.arange(192) - 96, torch.arange(192) - 96, indexing="ij")
    disc = yy**2 + xx**2 < 50**2

    def reconstruct(traj):
        scan = MRIScan(kspace=k, trajectory=traj, image_shape=(192, 192))
        op = NufftSenseOp(espirit_maps_noncartesian(scan), traj, (192, 192))
        x = conjugate_gradient(op.normal, op.adjoint(k), iters=10)
        residual = float((op(x) - k).norm() / k.norm())
        energy = x.abs() ** 2
        return residual, float(energy[disc].sum() / energy.sum())

    residual, inside = reconstruct(radial_trajectory(ns, 192, full_circle=True))
    assert residual < 0.25  # measured 0.182 (noise floor)
    assert inside > 0.98  # measured 0.994
    _, inside_wrong = reconstruct(radial_trajectory(ns, 192))
    assert inside_wrong < 0.9  # measured 0.801
