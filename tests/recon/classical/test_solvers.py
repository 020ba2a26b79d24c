"""Solvers reach known optima on small problems with closed-form or brute-force answers."""

from __future__ import annotations

import pytest
import torch

from inrecon.errors import InreconError
from inrecon.physics.operator import Diagonal, Identity
from inrecon.physics.transforms import FiniteDifference
from inrecon.recon.classical.solvers import (
    conjugate_gradient,
    fista,
    group_magnitude,
    once_per_object,
    pdhg,
    plug_and_play,
    project_l21_ball,
    prox_l1,
    prox_l2_data_conj,
    stacked_norm,
)


def test_cg_solves_spd_system(gen):
    m = torch.randn(20, 20, generator=gen, dtype=torch.float64)
    a = m @ m.T + 20 * torch.eye(20, dtype=torch.float64)
    b = torch.randn(20, generator=gen, dtype=torch.float64)
    x = conjugate_gradient(lambda v: a @ v, b, iters=50, tol=1e-12)
    torch.testing.assert_close(x, torch.linalg.solve(a, b))


def test_fista_lasso_matches_soft_threshold_for_orthogonal_problem(gen):
    # min 0.5||x - y||^2 + lam |x|_1 has the closed form soft(y, lam)
    y = torch.randn(50, generator=gen, dtype=torch.float64)
    x = fista(lambda v: v - y, lambda v, t: prox_l1(v, 0.3 * t), torch.zeros_like(y), step=1.0, iters=5)
    torch.testing.assert_close(x, prox_l1(y, 0.3))


def test_prox_l1_complex_shrinks_magnitude():
    v = torch.tensor([3 + 4j, 0.1 + 0j], dtype=torch.complex128)
    out = prox_l1(v, 1.0)
    torch.testing.assert_close(out, torch.tensor([2.4 + 3.2j, 0], dtype=torch.complex128))


def test_pdhg_tv_denoise_1d_piecewise_constant(gen):
    # TV denoising of a noisy step recovers a near-step and lowers the error vs the noisy input.
    clean = torch.cat([torch.zeros(40), torch.ones(40)]).double().reshape(1, 80)
    noisy = clean + 0.1 * torch.randn(clean.shape, generator=gen, dtype=torch.float64)
    ident, grad = Identity((1, 80)), FiniteDifference((1, 80))
    norm = stacked_norm([ident, grad], noisy)
    step = 0.99 / norm
    x = pdhg(
        [(ident, prox_l2_data_conj(noisy)), (grad, project_l21_ball(0.2, axis=0))],
        torch.zeros_like(noisy),
        tau=step,
        sigma=step,
        iters=500,
    )
    assert (x - clean).norm() < 0.5 * (noisy - clean).norm()


def test_stacked_norm_of_diagonal():
    d = torch.tensor([1.0, -3.0, 2.0], dtype=torch.float64)
    assert abs(stacked_norm([Diagonal(d)], torch.ones(3, dtype=torch.float64)) - 3.0) < 1e-6


def test_group_magnitude_is_the_norm_over_the_axis(gen):
    # the fast group norm of the TV prox equals torch's vector_norm, real and complex, on any axis
    for dtype in (torch.float64, torch.complex128):
        p = torch.randn(3, 5, 2, 4, generator=gen, dtype=dtype)
        for axis in (0, -2, 3):
            torch.testing.assert_close(group_magnitude(p, axis), torch.linalg.vector_norm(p, dim=axis))
            assert (
                group_magnitude(p, axis, keepdim=True).shape
                == torch.linalg.vector_norm(p, dim=axis, keepdim=True).shape
            )


def test_project_l21_ball_projects_each_group_onto_the_ball(gen):
    p = 3 * torch.randn(2, 6, 6, generator=gen, dtype=torch.complex128)
    out = project_l21_ball(0.5, axis=0)(p, 1.0)
    mag_in, mag_out = torch.linalg.vector_norm(p, dim=0), torch.linalg.vector_norm(out, dim=0)
    torch.testing.assert_close(mag_out, mag_in.clamp_max(0.5))
    # the direction of each group is kept
    torch.testing.assert_close(out * mag_in, p * mag_out)


def test_once_per_object_computes_once_per_identity_and_arguments():
    calls = []

    def norm(t, scale):
        calls.append((id(t), scale))
        return float(t.norm()) * scale

    memo = once_per_object(norm)
    a, b = torch.ones(4), torch.ones(4)  # equal values, different objects
    assert memo(a, 2.0) == memo(a, 2.0) == 4.0
    assert memo(b, 2.0) == 4.0 and memo(a, 3.0) == 6.0
    assert len(calls) == 3  # a twice at 2.0 counted once; b and another argument computed anew
    assert once_per_object(norm)(a, 2.0) == 4.0 and len(calls) == 4  # a new wrapper starts empty


def test_plug_and_play_admm_reaches_the_constrained_least_squares_solution():
    """With a projection as the "denoiser", ADMM solves min ||A x - y||^2 subject to the constraint; HQS at the
    same mu stops at a biased point between the data and the constraint."""
    g = torch.Generator().manual_seed(3)
    a = torch.randn(30, 12, generator=g, dtype=torch.float64)
    y = a @ torch.rand(12, generator=g, dtype=torch.float64) * 2.0
    project = lambda v: v.clamp(0.0, 0.5)  # noqa: E731
    normal, aty = (lambda v: a.T @ (a @ v)), a.T @ y
    # the reference: projected gradient descent to convergence
    ref = torch.zeros(12, dtype=torch.float64)
    step = 1.0 / float(torch.linalg.matrix_norm(a, 2)) ** 2
    for _ in range(20000):
        ref = project(ref - step * (normal(ref) - aty))
    mu = 0.3 * float(torch.linalg.matrix_norm(a, 2)) ** 2
    x0 = torch.zeros(12, dtype=torch.float64)
    admm = plug_and_play(normal, aty, project, x0, mu, iters=300, cg_iters=30, splitting="admm")
    hqs = plug_and_play(normal, aty, project, x0, mu, iters=300, cg_iters=30, splitting="hqs")
    assert torch.allclose(admm, ref, atol=1e-6)
    assert (hqs - ref).abs().max() > 1e-2
    with pytest.raises(InreconError, match="splitting"):
        plug_and_play(normal, aty, project, x0, mu, iters=1, splitting="fista")
