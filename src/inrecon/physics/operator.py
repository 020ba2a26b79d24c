"""Linear operators with exact adjoints, composable and differentiable.

A :class:`LinearOperator` is an ``nn.Module`` (so its buffers move with ``.to(device)``) that implements
``_forward`` and ``_adjoint``. The algebra ``A.H``, ``A @ B``, ``A + B``, ``a * A`` and ``A.gram`` builds new
operators lazily. Calling ``A(x)`` (or ``A @ x``) applies the forward map.

Gradients: operators made of differentiable torch ops (FFTs, products) get exact adjoint gradients from autograd
for free. Operators whose autograd path would be slow or unsupported (sparse matrices, NUFFT) set
``adjoint_as_backward = True``; their backward pass is then *defined* as the adjoint, so ``x.grad`` after
``loss(A(x)).backward()`` is ``A^H dL/dy`` exactly and costs one adjoint application.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from inrecon.errors import ShapeError

__all__ = [
    "Composition",
    "Diagonal",
    "Identity",
    "LinearOperator",
    "Scaled",
    "Select",
    "Sum",
    "dot",
    "power_norm",
]


def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Inner product ``<a, b> = sum(conj(a) * b)`` (real part for real inputs), as a 0-dim tensor."""
    if a.is_complex() or b.is_complex():
        return torch.vdot(
            a.reshape(-1).to(torch.result_type(a, b)), b.reshape(-1).to(torch.result_type(a, b))
        )
    return torch.dot(a.reshape(-1), b.reshape(-1))


class _ApplyWithGrad(torch.autograd.Function):
    """``apply(x)`` whose backward pass is ``grad_fn(grad)`` (the adjoint of ``apply``)."""

    @staticmethod
    def forward(ctx, x, apply, grad_fn):  # type: ignore[override]
        ctx.grad_fn = grad_fn
        return apply(x)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        return ctx.grad_fn(grad), None, None


class LinearOperator(nn.Module):
    """Base class: a linear map from ``domain_shape`` to ``range_shape``.

    Subclasses implement :meth:`_forward` and :meth:`_adjoint` and pass the shapes (without batch axes) to
    ``__init__``. ``None`` for a shape means "not checked".
    """

    adjoint_as_backward: bool = False
    capturable: bool = True
    """Whether forward and adjoint issue no host synchronisation, so that a CUDA graph can record them."""

    def __init__(
        self,
        domain_shape: Sequence[int] | None = None,
        range_shape: Sequence[int] | None = None,
    ):
        super().__init__()
        self.domain_shape = tuple(int(s) for s in domain_shape) if domain_shape is not None else None
        self.range_shape = tuple(int(s) for s in range_shape) if range_shape is not None else None

    # --- to implement -------------------------------------------------------------------------------------
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # --- application --------------------------------------------------------------------------------------
    def _check(self, t: torch.Tensor, shape: tuple[int, ...] | None, what: str) -> None:
        if shape is None:
            return
        if tuple(t.shape[t.ndim - len(shape) :]) != shape or t.ndim < len(shape):
            raise ShapeError(
                f"{type(self).__name__} expects its {what} with trailing shape {shape}, got {tuple(t.shape)}",
                f"pass an array of shape (..., {', '.join(map(str, shape))}) or rebuild the operator for "
                "this size",
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply ``A`` to ``x`` of shape ``domain_shape``."""
        self._check(x, self.domain_shape, "input")
        if self.adjoint_as_backward and torch.is_grad_enabled() and x.requires_grad:
            return _ApplyWithGrad.apply(x, self._forward, self._adjoint)
        return self._forward(x)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Apply ``A^H`` to ``y`` of shape ``range_shape``."""
        self._check(y, self.range_shape, "adjoint input")
        if self.adjoint_as_backward and torch.is_grad_enabled() and y.requires_grad:
            return _ApplyWithGrad.apply(y, self._adjoint, self._forward)
        return self._adjoint(y)

    # --- algebra ------------------------------------------------------------------------------------------
    @property
    def H(self) -> LinearOperator:
        """The adjoint operator ``A^H``."""
        return _Adjoint(self)

    @property
    def gram(self) -> LinearOperator:
        """The normal operator ``A^H A`` (subclasses may override with something faster)."""
        return Composition(self.H, self)

    def __matmul__(self, other):
        if isinstance(other, LinearOperator):
            return Composition(self, other)
        if isinstance(other, torch.Tensor):
            return self(other)
        return NotImplemented

    def __add__(self, other):
        if isinstance(other, LinearOperator):
            return Sum(self, other)
        return NotImplemented

    def __sub__(self, other):
        if isinstance(other, LinearOperator):
            return Sum(self, Scaled(other, -1.0))
        return NotImplemented

    def __mul__(self, scalar):
        if isinstance(scalar, int | float | complex):
            return Scaled(self, scalar)
        return NotImplemented

    __rmul__ = __mul__

    def __hash__(self):  # nn.Module is hashable by identity; keep it so after defining __eq__-free algebra
        return id(self)


class _Adjoint(LinearOperator):
    def __init__(self, op: LinearOperator):
        super().__init__(op.range_shape, op.domain_shape)
        self.op = op
        self.adjoint_as_backward = op.adjoint_as_backward

    @property
    def capturable(self) -> bool:
        return self.op.capturable

    def _forward(self, x):
        return self.op._adjoint(x)

    def _adjoint(self, y):
        return self.op._forward(y)

    @property
    def H(self):
        return self.op


class Composition(LinearOperator):
    """``(A @ B)(x) = A(B(x))``."""

    def __init__(self, a: LinearOperator, b: LinearOperator):
        super().__init__(b.domain_shape, a.range_shape)
        self.a, self.b = a, b

    @property
    def capturable(self) -> bool:
        return self.a.capturable and self.b.capturable

    def forward(self, x):
        return self.a(self.b(x))

    def adjoint(self, y):
        return self.b.adjoint(self.a.adjoint(y))

    def _forward(self, x):
        return self.a._forward(self.b._forward(x))

    def _adjoint(self, y):
        return self.b._adjoint(self.a._adjoint(y))


class Sum(LinearOperator):
    """``(A + B)(x) = A(x) + B(x)``."""

    def __init__(self, a: LinearOperator, b: LinearOperator):
        super().__init__(a.domain_shape, a.range_shape)
        self.a, self.b = a, b

    @property
    def capturable(self) -> bool:
        return self.a.capturable and self.b.capturable

    def forward(self, x):
        return self.a(x) + self.b(x)

    def adjoint(self, y):
        return self.a.adjoint(y) + self.b.adjoint(y)

    def _forward(self, x):
        return self.a._forward(x) + self.b._forward(x)

    def _adjoint(self, y):
        return self.a._adjoint(y) + self.b._adjoint(y)


class Scaled(LinearOperator):
    """``(s A)(x) = s * A(x)`` for a Python scalar ``s``; the adjoint uses ``conj(s)``."""

    def __init__(self, op: LinearOperator, scalar: float | complex):
        super().__init__(op.domain_shape, op.range_shape)
        self.op, self.scalar = op, scalar

    def forward(self, x):
        return self.scalar * self.op(x)

    def adjoint(self, y):
        return self.scalar.conjugate() * self.op.adjoint(y)

    def _forward(self, x):
        return self.scalar * self.op._forward(x)

    def _adjoint(self, y):
        return self.scalar.conjugate() * self.op._adjoint(y)


class Identity(LinearOperator):
    """``I(x) = x`` on arrays of ``shape`` (the measurement operator of volume fitting)."""

    def __init__(self, shape: Sequence[int] | None = None):
        super().__init__(shape, shape)

    def _forward(self, x):
        return x

    def _adjoint(self, y):
        return y


class Diagonal(LinearOperator):
    """Pointwise multiplication by a fixed array ``d`` (broadcast over leading axes): ``D(x) = d * x``."""

    def __init__(self, d: torch.Tensor):
        super().__init__(tuple(d.shape), tuple(d.shape))
        self.register_buffer("d", d)

    def _forward(self, x):
        return self.d * x

    def _adjoint(self, y):
        return self.d.conj() * y if self.d.is_complex() else self.d * y


class Select(LinearOperator):
    """Pick the entries ``idx`` of the flattened input: ``(..., *in_shape) -> (..., len(idx))``.

    The adjoint scatters into zeros (summing repeated indices), so ``Select(idx) @ A`` is the forward model of
    the samples ``idx`` of ``A``'s range: the one way a measurement model restricts itself to acquired,
    training or held-out samples.
    """

    def __init__(self, idx: torch.Tensor, in_shape: Sequence[int]):
        in_shape = tuple(int(s) for s in in_shape)
        super().__init__(in_shape, (int(idx.numel()),))
        self.register_buffer("idx", idx.reshape(-1).to(torch.long))
        self.n_in = int(torch.tensor(in_shape).prod()) if in_shape else 1

    def _forward(self, x):
        lead = x.shape[: x.ndim - len(self.domain_shape)]
        return x.reshape(*lead, self.n_in).index_select(-1, self.idx)

    def _adjoint(self, y):
        lead = y.shape[:-1]
        out = y.new_zeros(*lead, self.n_in)
        out.index_add_(out.ndim - 1, self.idx, y)
        return out.reshape(*lead, *self.domain_shape)


@torch.no_grad()
def power_norm(op: LinearOperator, x0: torch.Tensor, iters: int = 30) -> float:
    """Estimate the spectral norm ``||A||_2`` by power iteration on ``A^H A``, starting from ``x0``."""
    x = x0 / x0.norm().clamp_min(1e-30)
    s = torch.tensor(0.0)
    for _ in range(iters):
        y = op.adjoint(op(x))
        s = y.norm()
        if float(s) == 0.0:
            return 0.0
        x = y / s
    return float(s.sqrt())
