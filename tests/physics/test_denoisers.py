"""The block-matching denoiser: its transforms, its block matching, what it removes and what it keeps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inrecon.data.phantoms import brain_phantom
from inrecon.errors import InreconError, ShapeError
from inrecon.physics.denoisers import block_matching_denoise, dct_matrix, match_patches, reference_corners


def _psnr(a: torch.Tensor, ref: torch.Tensor) -> float:
    return float(10 * torch.log10(ref.max() ** 2 / ((a - ref) ** 2).mean()))


@pytest.fixture(scope="module")
def phantom() -> torch.Tensor:
    img = torch.from_numpy(np.abs(brain_phantom((96, 96))).astype(np.float32))
    return img / img.max()


def test_dct_matrix_is_orthonormal_dct_ii():
    for n in (4, 8, 16):
        m = dct_matrix(n)
        assert torch.allclose(m @ m.T, torch.eye(n), atol=1e-6)
    # DCT-II by its definition, frequency k at sample i: cos(pi (2i + 1) k / 2n), orthonormal scaling
    m = dct_matrix(8).double()
    i = torch.arange(8, dtype=torch.float64)
    assert torch.allclose(m[3], torch.cos(torch.pi * (2 * i + 1) * 3 / 16) * 0.5, atol=1e-6)
    assert torch.allclose(m[0], torch.full((8,), 8**-0.5, dtype=torch.float64), atol=1e-6)


def test_block_matching_finds_an_exact_copy():
    g = torch.Generator().manual_seed(0)
    img = torch.rand(40, 40, generator=g)
    img[20:28, 25:33] = img[5:13, 6:14]  # the patch at corner (5, 6) copied to corner (20, 25)
    corner = lambda r, c: r * (40 - 8 + 1) + c  # noqa: E731
    idx = match_patches(img, patch=8, radius=20, group=4, stride=1)  # stride 1: every corner a reference
    assert idx.shape == (33 * 33, 4)
    assert idx[corner(5, 6), 0] == corner(5, 6) and idx[corner(5, 6), 1] == corner(20, 25)  # itself, its copy
    assert idx[corner(20, 25), 0] == corner(20, 25) and idx[corner(20, 25), 1] == corner(5, 6)
    # a search radius that does not reach the copy cannot return it
    near = match_patches(img, patch=8, radius=4, group=4, stride=1)
    assert corner(20, 25) not in near[corner(5, 6)].tolist()


def test_reference_corners_reach_the_last_patch_and_match_a_dense_search():
    assert reference_corners(41, 8, 3) == [*range(0, 34, 3)]  # the last corner, 33, is on the stride
    assert reference_corners(40, 8, 3) == [*range(0, 31, 3), 32]
    # the strided search returns, for each reference, exactly what the dense search returns for that corner
    g = torch.Generator().manual_seed(2)
    for h, w in ((41, 38), (40, 40)):
        img = torch.rand(h, w, generator=g)
        dense = match_patches(img, patch=8, radius=5, group=6, stride=1)
        strided = match_patches(img, patch=8, radius=5, group=6, stride=3)
        rows, cols = reference_corners(h, 8, 3), reference_corners(w, 8, 3)
        at = [r * (w - 8 + 1) + c for r in rows for c in cols]
        assert torch.equal(strided, dense[at])


def test_denoiser_removes_white_noise(phantom):
    g = torch.Generator().manual_seed(1)
    for sigma, gain in ((0.1, 7.0), (0.05, 5.0)):
        noisy = phantom + sigma * torch.randn(phantom.shape, generator=g)
        out = block_matching_denoise(noisy, sigma)
        assert out.shape == phantom.shape and out.dtype == torch.float32
        assert _psnr(out, phantom) > _psnr(noisy, phantom) + gain, sigma


def test_denoiser_keeps_a_constant_and_nearly_keeps_a_clean_image(phantom):
    const = torch.full((32, 40), 0.7)
    assert torch.allclose(block_matching_denoise(const, 0.05), const, atol=1e-5)
    # with no noise in the image, a small sigma changes it little (the thresholds fall below its detail)
    assert _psnr(block_matching_denoise(phantom, 0.005), phantom) > 40.0


def test_denoiser_refuses_what_it_cannot_denoise():
    with pytest.raises(ShapeError, match="real"):
        block_matching_denoise(torch.zeros(32, 32, dtype=torch.complex64), 0.1)
    with pytest.raises(ShapeError, match=r"\(H, W\)"):
        block_matching_denoise(torch.zeros(2, 32, 32), 0.1)
    with pytest.raises(ShapeError, match="2 \\* patch"):
        block_matching_denoise(torch.zeros(12, 40), 0.1)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(InreconError, match="sigma"):
            block_matching_denoise(torch.zeros(32, 32), bad)


def test_close_to_the_reference_implementation(phantom):
    """Against the BM3D authors' package where it is installed (not a dependency: its licence allows
    non-commercial use only). Measured: 0.3-0.45 dB below it on the 128 x 128 phantom."""
    bm3d = pytest.importorskip("bm3d", reason="the reference bm3d package is not installed (optional)")
    g = torch.Generator().manual_seed(2)
    noisy = phantom + 0.1 * torch.randn(phantom.shape, generator=g)
    ours = _psnr(block_matching_denoise(noisy, 0.1), phantom)
    ref = _psnr(torch.from_numpy(bm3d.bm3d(noisy.numpy(), 0.1)).float(), phantom)
    assert ours > ref - 0.8
