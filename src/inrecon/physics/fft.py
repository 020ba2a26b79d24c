"""Centred, orthonormal FFTs (the fastMRI / sigpy convention) and the checkerboard trick.

The centred transform is ``fftshift(fft(ifftshift(x), norm="ortho"))`` along the given axes. For an axis of
even length ``N`` it equals ``c_k * fft(c_n * x)`` with checkerboards ``c_n = (-1)**n`` (times ``(-1)**(N/2)``)
on the image side and ``c_k = (-1)**k`` on the k-space side, so operators can fold the signs into arrays they
already multiply by (coil maps, sampling masks) and skip the shifts entirely.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["checkerboards", "fftc", "ifftc"]


def fftc(x: torch.Tensor, dims: Sequence[int] = (-2, -1)) -> torch.Tensor:
    """Centred orthonormal forward FFT of ``x`` along ``dims``."""
    dims = tuple(dims)
    return torch.fft.fftshift(
        torch.fft.fftn(torch.fft.ifftshift(x, dim=dims), dim=dims, norm="ortho"), dim=dims
    )


def ifftc(k: torch.Tensor, dims: Sequence[int] = (-2, -1)) -> torch.Tensor:
    """Centred orthonormal inverse FFT of ``k`` along ``dims`` (the adjoint of :func:`fftc`)."""
    dims = tuple(dims)
    return torch.fft.fftshift(
        torch.fft.ifftn(torch.fft.ifftshift(k, dim=dims), dim=dims, norm="ortho"), dim=dims
    )


def checkerboards(shape: Sequence[int], device=None) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Image-side and k-space-side sign arrays for a grid ``shape`` whose every axis has even length.

    Returns ``(c_img, c_k)`` (float32, shape ``shape``, on ``device``) such that
    ``fftc(x) == c_k * fft(c_img * x, norm="ortho")``, or ``None`` when an axis is odd.
    """
    if any(n % 2 for n in shape):
        return None
    c = torch.ones((), dtype=torch.float32, device=device)
    sign = 1.0
    for ax, n in enumerate(shape):
        v = 1.0 - 2.0 * (torch.arange(n, device=device) % 2).float()
        view = [1] * len(shape)
        view[ax] = n
        c = c * v.view(view)
        sign *= (-1.0) ** (n // 2)
    return c * sign, c.clone()
