"""Generic checks every LinearOperator must pass: adjointness, gradient = adjoint, linearity, shape errors."""

from __future__ import annotations

import torch

from inrecon.physics.operator import LinearOperator, dot


def random_like(shape, dtype, gen) -> torch.Tensor:
    if dtype.is_complex:
        return torch.complex(
            torch.randn(shape, generator=gen, dtype=torch.float64),
            torch.randn(shape, generator=gen, dtype=torch.float64),
        ).to(dtype)
    return torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)


def adjoint_error(op: LinearOperator, x: torch.Tensor, y: torch.Tensor) -> float:
    """Relative mismatch ``|<Ax, y> - <x, A^H y>| / (||Ax|| ||y||)``."""
    lhs = dot(op(x), y)
    rhs = dot(x, op.adjoint(y))
    scale = float(op(x).norm() * y.norm()) + 1e-30
    return float((lhs - rhs).abs()) / scale


def gradient_error(op: LinearOperator, x: torch.Tensor, y: torch.Tensor) -> float:
    """Relative mismatch between autograd's gradient of ``Re<Ax, y>`` and ``A^H y``."""
    xr = x.clone().requires_grad_(True)
    out = op(xr)
    loss = dot(out, y).real if out.is_complex() else dot(out, y)
    loss.backward()
    ref = op.adjoint(y)
    return float((xr.grad - ref).norm() / (ref.norm() + 1e-30))


def linearity_error(op: LinearOperator, x1, x2, a: float = 0.7, b: float = -1.3) -> float:
    lhs = op(a * x1 + b * x2)
    rhs = a * op(x1) + b * op(x2)
    return float((lhs - rhs).norm() / (rhs.norm() + 1e-30))
