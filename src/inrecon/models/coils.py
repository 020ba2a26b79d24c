"""Smooth coil sensitivities estimated with the image: a 2D polynomial per coil (IMJENSE, Feng et al., IEEE TMI
2024), used by IMJENSE and by NGP's ``coils="joint"``."""

from __future__ import annotations

import torch
from torch import nn

from inrecon.errors import InreconError

__all__ = ["PolynomialCoils"]


def _legendre(n: int, order: int, device) -> torch.Tensor:
    """Legendre polynomials P_0..P_order on ``n`` pixel centres in [-1, 1]: ``(order+1, n)`` float64."""
    x = (torch.arange(n, dtype=torch.float64, device=device) + 0.5) / n * 2 - 1
    ps = [torch.ones_like(x), x]
    for k in range(1, order):
        ps.append(((2 * k + 1) * x * ps[k] - k * ps[k - 1]) / (k + 1))
    return torch.stack(ps[: order + 1])


class PolynomialCoils(nn.Module):
    """Smooth coil sensitivities: ``S_c(y, x) = sum_{i+j<=P} a_cij L_i(y) L_j(x)``, normalised to unit RSS.

    Shapes: ``forward() -> (C, H, W)`` complex64.
    """

    def __init__(self, n_coils: int, image_shape: tuple[int, int], order: int, device=None):
        super().__init__()
        if len(image_shape) != 2:
            raise InreconError("the polynomial coil model is 2D", "reconstruct 3D data slice by slice")
        H, W = image_shape
        ly, lx = _legendre(H, order, device), _legendre(W, order, device)
        terms = [(i, j) for i in range(order + 1) for j in range(order + 1 - i)]
        basis = torch.stack([ly[i][:, None] * lx[j][None, :] for i, j in terms]).reshape(len(terms), H * W)
        self.register_buffer("basis", basis.to(torch.float32))
        self.coef = nn.Parameter(torch.zeros(n_coils, len(terms), 2, device=device))
        self.image_shape = (H, W)

    def raw(self) -> torch.Tensor:
        c = torch.view_as_complex(self.coef)
        return (c @ self.basis.to(c.dtype)).reshape(-1, *self.image_shape)

    def forward(self) -> torch.Tensor:
        s = self.raw()
        rss = s.abs().square().sum(0, keepdim=True).sqrt()
        return s / (rss + 1e-6)

    @torch.no_grad()
    def fit_to(self, maps: torch.Tensor, weight: torch.Tensor) -> None:
        """Initialise by weighted least squares to ``maps (C, H, W)`` with pixel weights ``weight (H, W)``."""
        w = weight.reshape(-1).to(torch.float64).sqrt()
        b = self.basis.to(torch.float64) * w[None, :]
        gram = b @ b.T + 1e-8 * torch.eye(b.shape[0], dtype=torch.float64, device=b.device)
        rhs = (maps.reshape(maps.shape[0], -1).to(torch.complex128) * w[None, :]) @ b.T.to(torch.complex128)
        coef = torch.linalg.solve(gram.to(torch.complex128), rhs.T).T
        self.coef.copy_(torch.view_as_real(coef.to(torch.complex64)))
