"""Orthonormal Daubechies wavelet transforms (periodic boundary) as linear operators, 2D and 3D.

The filters are derived here from Daubechies' construction: the squared magnitude response of the
``N``-vanishing-moment low-pass filter is ``cos(w/2)**(2N) P(sin(w/2)**2)`` with
``P(y) = sum_{k<N} binom(N-1+k, k) y**k``; the minimum-phase spectral factor of ``P`` (its roots inside the
unit circle, "extremal phase") times ``((1 + z**-1)/2)**N`` gives the ``2N`` taps of ``dbN``, the same taps as
PyWavelets' ``rec_lo``. The high-pass filter is the alternating flip ``g[m] = (-1)**m h[2N-1-m]``.

One analysis level along an axis of even length ``n`` maps ``x`` to ``[a, d]`` (low band first, each ``n/2``)
with ``a[k] = sum_m h[m] x[(2k+m) mod n]`` and ``d[k] = sum_m g[m] x[(2k+m) mod n]``. With periodic indexing
this matrix is exactly orthogonal for every even ``n``, so the adjoint is the inverse.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
import torch

from inrecon.errors import InreconError, ShapeError
from inrecon.physics.operator import LinearOperator

__all__ = ["Wavelet", "daubechies_filter", "max_levels"]

_MAX_ORDER = 10


@functools.cache
def daubechies_filter(order: int) -> tuple[float, ...]:
    """Low-pass synthesis taps of the extremal-phase Daubechies wavelet with ``order`` vanishing moments.

    Parameters
    ----------
    order
        Number of vanishing moments ``N`` (1 = Haar), 1 to 10.

    Returns
    -------
    tuple of float
        ``2 * order`` taps ``h`` with ``sum(h) = sqrt(2)``, ``sum(h**2) = 1`` and
        ``sum_n h[n] h[n + 2k] = 0`` for ``k != 0`` (float64 precision).
    """
    if not (isinstance(order, int | np.integer) and 1 <= int(order) <= _MAX_ORDER):
        raise InreconError(
            f"Daubechies order {order!r} is not supported",
            f"use an integer from 1 to {_MAX_ORDER} (wavelet='db1' ... 'db{_MAX_ORDER}', 'haar' = 'db1')",
        )
    n = int(order)
    # P(y) in powers of y, y = sin^2(w/2) = (2 - z - 1/z) / 4
    p_coef = [math.comb(n - 1 + k, k) for k in range(n)]
    # Laurent polynomial in z: sum_k c_k ((2 - z - 1/z)/4)^k; multiply by z^(n-1) -> ordinary polynomial
    q = np.zeros(2 * n - 1)  # coefficient of z^j (j = 0..2n-2) after multiplying by z^(n-1)
    base = np.array([-0.25, 0.5, -0.25])  # (2 - z - 1/z)/4 times z: coefficients of z^0, z^1, z^2
    term = np.array([1.0])
    for k, c in enumerate(p_coef):
        # term = (z * y)^k has degree 2k; shift so that it sits centred at z^(n-1)
        off = (n - 1) - k
        q[off : off + term.size] += c * term
        term = np.convolve(term, base)
    roots = np.roots(q[::-1]) if n > 1 else np.array([])
    inside = roots[np.abs(roots) < 1.0]
    # minimum-phase factor: prod (z - r) over the roots inside the unit circle (conjugate pairs -> real)
    factor = np.real(np.poly(inside)) if inside.size else np.array([1.0])
    h = np.array([1.0])
    for _ in range(n):
        h = np.convolve(h, [1.0, 1.0])
    h = np.convolve(h, factor)
    h = h * (math.sqrt(2.0) / h.sum())
    if h[0] < h[-1] and n > 1:  # keep the PyWavelets orientation (largest taps first)
        h = h[::-1]
    return tuple(float(v) for v in h)


def _parse(wavelet: str) -> int:
    name = str(wavelet).lower()
    if name == "haar":
        return 1
    if name.startswith("db") and name[2:].isdigit():
        return int(name[2:])
    raise InreconError(
        f"unknown wavelet {wavelet!r}", f"use 'haar' or 'db1' ... 'db{_MAX_ORDER}' (Daubechies, orthonormal)"
    )


def max_levels(shape: Sequence[int], wavelet: str = "db4") -> int:
    """Default number of levels: ``floor(log2(min(shape) / (filter_length - 1)))``, at least 1.

    This is PyWavelets' ``dwt_max_level`` rule, so the coarsest band is still longer than the filter.
    """
    length = 2 * _parse(wavelet)
    if length == 2:
        return max(1, int(math.floor(math.log2(min(shape)))))
    return max(1, int(math.floor(math.log2(min(shape) / (length - 1)))))


def _analysis_last(x: torch.Tensor, h: tuple[float, ...], g: tuple[float, ...]) -> torch.Tensor:
    """One periodic analysis level along the last axis (even length): ``[a, d]``."""
    xe, xo = x[..., 0::2], x[..., 1::2]
    a = d = None
    for q in range(len(h) // 2):
        re = torch.roll(xe, -q, dims=-1) if q else xe
        ro = torch.roll(xo, -q, dims=-1) if q else xo
        ta = h[2 * q] * re + h[2 * q + 1] * ro
        td = g[2 * q] * re + g[2 * q + 1] * ro
        a = ta if a is None else a + ta
        d = td if d is None else d + td
    return torch.cat([a, d], dim=-1)


def _synthesis_last(c: torch.Tensor, h: tuple[float, ...], g: tuple[float, ...]) -> torch.Tensor:
    """Inverse (= adjoint) of :func:`_analysis_last`."""
    half = c.shape[-1] // 2
    a, d = c[..., :half], c[..., half:]
    even = odd = None
    for q in range(len(h) // 2):
        ra = torch.roll(a, q, dims=-1) if q else a
        rd = torch.roll(d, q, dims=-1) if q else d
        te = h[2 * q] * ra + g[2 * q] * rd
        to = h[2 * q + 1] * ra + g[2 * q + 1] * rd
        even = te if even is None else even + te
        odd = to if odd is None else odd + to
    return torch.stack([even, odd], dim=-1).reshape(c.shape)


class Wavelet(LinearOperator):
    """Multi-level orthonormal Daubechies DWT with periodic boundaries on the last ``len(shape)`` axes.

    Parameters
    ----------
    shape
        Image shape ``(H, W)`` or ``(D, H, W)`` (1D ``(N,)`` works too).
    wavelet
        ``"haar"`` or ``"db1"`` ... ``"db10"`` (number of vanishing moments).
    levels
        Decomposition levels; default :func:`max_levels` (PyWavelets' rule).

    Notes
    -----
    **Padding.** Each axis is zero-padded at its end to ``padded_shape``, the next multiple of ``2**levels``
    (e.g. 180 x 230 with 4 levels -> 192 x 240). The operator is then an isometry into the larger coefficient
    space: ``W^H W = I`` exactly and ``W^H`` (crop after the inverse) is the exact adjoint; when no padding is
    needed ``W`` is orthogonal (``W W^H = I`` too).

    **Coefficient layout** (Mallat's pyramid in one tensor of shape ``(..., *padded_shape)``): level 1 splits
    every axis into its low half followed by its high half; level ``l`` repeats this inside the all-low corner
    ``[: P_0 / 2**(l-1), ...]``. After ``levels`` levels the corner ``[: P_i / 2**levels]`` along every axis
    holds the approximation band and every other region one detail band.

    Shapes
    ------
    forward: ``(..., *shape)`` real or complex -> ``(..., *padded_shape)`` same dtype.
    adjoint: ``(..., *padded_shape)`` -> ``(..., *shape)``.
    """

    adjoint_as_backward = True

    def __init__(self, shape: Sequence[int], wavelet: str = "db4", levels: int | None = None):
        shape = tuple(int(s) for s in shape)
        if not shape or min(shape) < 1:
            raise ShapeError(f"wavelet shape {shape} is empty", "give the image shape, e.g. (H, W)")
        order = _parse(wavelet)
        if levels is None:
            levels = max_levels(shape, wavelet)
        if not (isinstance(levels, int | np.integer) and levels >= 1):
            raise InreconError(f"levels is {levels!r} but must be an integer >= 1", "use e.g. levels=4")
        levels = int(levels)
        step = 2**levels
        padded = tuple(-(-s // step) * step for s in shape)
        super().__init__(shape, padded)
        self.shape = shape
        self.padded_shape = padded
        self.levels = levels
        self.wavelet = f"db{order}"
        self.h = daubechies_filter(order)
        n = len(self.h)
        self.g = tuple(((-1) ** m) * self.h[n - 1 - m] for m in range(n))

    def _along(self, x: torch.Tensor, axis: int, fn) -> torch.Tensor:
        return fn(x.movedim(axis, -1), self.h, self.g).movedim(-1, axis)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        nd = len(self.shape)
        pads = []
        for s, p in zip(reversed(self.shape), reversed(self.padded_shape)):
            pads += [0, p - s]
        c = torch.nn.functional.pad(x, pads) if any(pads) else x.clone()
        sizes = list(self.padded_shape)
        for _ in range(self.levels):
            corner = c[(..., *[slice(0, s) for s in sizes])]
            for ax in range(nd):
                corner = self._along(corner, ax - nd, _analysis_last)
            c[(..., *[slice(0, s) for s in sizes])] = corner
            sizes = [s // 2 for s in sizes]
        return c

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        nd = len(self.shape)
        c = y.clone()
        for lev in reversed(range(self.levels)):
            sizes = [p // 2**lev for p in self.padded_shape]
            idx = (..., *[slice(0, s) for s in sizes])
            corner = c[idx]
            for ax in reversed(range(nd)):
                corner = self._along(corner, ax - nd, _synthesis_last)
            c[idx] = corner
        return c[(..., *[slice(0, s) for s in self.shape])]

    def band_sizes(self) -> list[tuple[int, ...]]:
        """Per level (finest first), the shape of that level's bands: ``padded_shape / 2**level``."""
        return [tuple(p // 2**lev for p in self.padded_shape) for lev in range(1, self.levels + 1)]

    def extra_repr(self) -> str:
        return (
            f"shape={self.shape}, wavelet={self.wavelet!r}, levels={self.levels}, padded={self.padded_shape}"
        )
