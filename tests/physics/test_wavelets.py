"""Daubechies filters and the orthonormal wavelet operator."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from inrecon.errors import InreconError
from inrecon.physics.wavelets import Wavelet, daubechies_filter, max_levels

C64 = torch.complex64


# --- wavelets -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("order", range(1, 11))
def test_daubechies_filter_orthonormal_with_vanishing_moments(order):
    h = np.array(daubechies_filter(order))
    assert h.size == 2 * order
    assert abs(h.sum() - math.sqrt(2)) < 1e-12
    for k in range(order):
        shifted = float(np.dot(h[2 * k :], h[: h.size - 2 * k]))
        assert abs(shifted - (1.0 if k == 0 else 0.0)) < 1e-10
    g = np.array([(-1) ** m * h[h.size - 1 - m] for m in range(h.size)])
    n = np.arange(h.size, dtype=float)
    for p in range(order):  # the high-pass filter annihilates polynomials of degree < order
        assert abs(np.sum(g * n**p)) < 1e-9 * max(1.0, np.sum(np.abs(g) * n**p))
    assert abs(np.sum(g * n**order)) > 1e-3  # ... and not the next degree


def test_daubechies_filters_match_pywavelets():
    pywt = pytest.importorskip("pywt")
    for order in (1, 2, 4, 8):
        np.testing.assert_allclose(daubechies_filter(order), pywt.Wavelet(f"db{order}").rec_lo, atol=1e-10)


def test_wavelet_is_orthonormal_and_pads(gen):
    w = Wavelet((180, 230))  # the real brain grid: db4, 4 levels -> padded to multiples of 16
    assert w.levels == max_levels((180, 230)) == 4 and w.padded_shape == (192, 240)
    x = torch.randn(180, 230, generator=gen, dtype=torch.float64).to(torch.complex128)
    c = w(x)
    assert abs(float(c.norm() / x.norm()) - 1) < 1e-12
    assert float((w.adjoint(c) - x).abs().max()) < 1e-12
    # unpadded: orthogonal both ways, also in 3D and with a batch axis
    w3 = Wavelet((8, 16, 12), "db2", levels=2)
    y = torch.randn(2, 8, 16, 12, generator=gen, dtype=torch.float64)
    assert float((w3(w3.adjoint(y)) - y).abs().max()) < 1e-12
    assert float((w3.adjoint(w3(y)) - y).abs().max()) < 1e-12


def test_wavelet_layout_constant_image():
    w = Wavelet((16, 16), "db3", levels=2)
    c = w(torch.full((16, 16), 3.0, dtype=torch.float64))
    # each level multiplies a constant by sqrt(2) per axis; only the 4x4 approximation corner survives
    np.testing.assert_allclose(c[:4, :4].numpy(), 12.0, atol=1e-12)
    c[:4, :4] = 0
    assert float(c.abs().max()) < 1e-12
    assert w.band_sizes() == [(8, 8), (4, 4)]


def test_wavelet_bad_arguments():
    with pytest.raises(InreconError, match="Fix:"):
        Wavelet((32, 32), "sym4")
    with pytest.raises(InreconError, match="order"):
        Wavelet((32, 32), "db11")
    with pytest.raises(InreconError, match="levels"):
        Wavelet((32, 32), "db2", levels=0)
