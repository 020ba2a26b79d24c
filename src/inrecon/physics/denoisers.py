"""Image denoisers for plug-and-play priors: block-matching collaborative filtering (the two stages of BM3D).

Written here from the algorithm's description (Dabov, Foi, Katkovnik and Egiazarian, "Image denoising by sparse
3-D transform-domain collaborative filtering", IEEE TIP 2007); the reference implementation's licence allows
non-commercial use only, so the library does not use it. Each stage, for every reference patch (``patch x patch``
pixels, top-left corners every ``stride`` pixels and on the last row and column):

1. *Block matching*: the ``group`` patches nearest to it in squared distance among those whose corner lies within
   ``+-radius`` pixels (itself first), found on a guide image (the noisy one, then the first stage's estimate).
2. *Collaborative filtering*: the stack of those patches through a separable orthonormal DCT (both patch axes and
   the stack axis). Stage one keeps the coefficients above ``threshold * sigma`` (hard thresholding); stage two
   multiplies each by ``p^2 / (p^2 + sigma^2)``, ``p`` the same coefficient of the first stage's estimate
   (empirical Wiener shrinkage).
3. *Aggregation*: the filtered patches back to their places, each stack weighted by ``1 / (sigma^2 n)`` (``n``
   the coefficients kept; stage two: the squared shrinkage factors summed) times a Kaiser window, divided by the
   summed weights.

The orthonormal transforms keep white noise white with the same ``sigma``, so the threshold is in the image's
units. On the library's 128 x 128 brain phantom with white Gaussian noise it gives 28.2 / 32.5 dB at sigma 0.1 /
0.05 (noisy 20.0 / 26.0), 0.3-0.45 dB below the reference implementation (``benchmarks/nonlocal_prior.py
--check``); on one CPU thread beside another job 0.33 s at 128 x 128, 1.2 s at 256 x 256, 5.8 s at 512 x 512
(benchmarks/RESULTS.md, stop 65).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from inrecon.errors import InreconError, ShapeError
from inrecon.physics.mri import smooth_phase

__all__ = ["block_matching_denoise", "dct_matrix", "denoise_complex", "match_patches", "reference_corners"]


def dct_matrix(n: int, device=None) -> torch.Tensor:
    """The orthonormal DCT-II matrix ``(n, n)``, float32 (rows: frequencies; its transpose is its inverse)."""
    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None, :]
    m = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    m[0] /= math.sqrt(2.0)
    return m.to(device=device, dtype=torch.float32)


def reference_corners(n: int, patch: int, stride: int) -> list[int]:
    """The reference patches' corners along an axis of ``n`` pixels: every ``stride``-th, and the last one."""
    return sorted({*range(0, n - patch + 1, stride), n - patch})


def _corner_means(values: torch.Tensor, patch: int, stride: int) -> torch.Tensor:
    """Means of ``values`` ``(H, W)`` over the ``patch x patch`` windows at the reference corners
    (:func:`reference_corners` of both axes): ``(rows, cols)``. Pooled with the stride, the last row and column
    apart where the stride does not reach them, so each mean is summed as a stride-1 pooling sums it."""
    h, w = values.shape
    pool = lambda v, s: F.avg_pool2d(v[None, None], patch, stride=s)[0, 0]  # noqa: E731
    grid = pool(values, stride)
    last_row, last_col = (h - patch) % stride != 0, (w - patch) % stride != 0
    if last_col:
        grid = torch.cat([grid, pool(values[:, w - patch :], (stride, patch))], 1)
    if last_row:
        row = pool(values[h - patch :], (patch, stride))
        if last_col:
            row = torch.cat([row, pool(values[h - patch :, w - patch :], patch)], 1)
        grid = torch.cat([grid, row], 0)
    return grid


def match_patches(guide: torch.Tensor, patch: int, radius: int, group: int, stride: int) -> torch.Tensor:
    """Block matching on ``guide`` ``(H, W)``: for every reference corner (:func:`reference_corners` of both
    axes, rows outer), the ``group`` patches nearest to it whose corners lie within ``+-radius`` pixels, itself
    first.

    Returns ``(R, group)`` flat indices into the ``(H - patch + 1) x (W - patch + 1)`` grid of patch corners
    (the column order of ``torch.nn.functional.unfold``)."""
    h, w = guide.shape
    ys = torch.tensor(reference_corners(h, patch, stride), device=guide.device)
    xs = torch.tensor(reference_corners(w, patch, stride), device=guide.device)
    offsets = [(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)]
    dist = torch.empty(len(offsets), len(ys) * len(xs), device=guide.device)
    for j, (dy, dx) in enumerate(offsets):
        # squared differences to the image shifted by (dy, dx), averaged over each patch; inf where it leaves
        # the grid
        diff = torch.full((h, w), math.inf, device=guide.device)
        y0, y1, x0, x1 = max(0, -dy), min(h, h - dy), max(0, -dx), min(w, w - dx)
        diff[y0:y1, x0:x1] = (guide[y0:y1, x0:x1] - guide[y0 + dy : y1 + dy, x0 + dx : x1 + dx]) ** 2
        dist[j] = _corner_means(diff, patch, stride).reshape(-1)
    dist[offsets.index((0, 0))] = -1.0  # the reference itself first
    pick = torch.topk(dist, group, dim=0, largest=False).indices  # (group, R)
    table = torch.tensor(offsets, device=guide.device)
    ry, rx = ys.repeat_interleave(len(xs)), xs.repeat(len(ys))
    return ((ry[None] + table[pick, 0]) * (w - patch + 1) + rx[None] + table[pick, 1]).T


def _patch_spectra(image: torch.Tensor, patch: int) -> torch.Tensor:
    """The 2D DCT of the ``patch x patch`` patch at every corner of ``image`` ``(H, W)``: ``(corners, patch^2)``
    (corners in :func:`torch.nn.functional.unfold`'s order)."""
    c2 = torch.kron(dct_matrix(patch, image.device), dct_matrix(patch, image.device))
    return F.unfold(image[None, None], patch)[0].T @ c2.T


def _filter_stage(
    noisy_spectra, guide, pilot, sigma, patch, radius, group, stride, threshold
) -> torch.Tensor:
    """One stage (module docstring): hard thresholding where ``pilot`` is None, else Wiener shrinkage.
    ``noisy_spectra``: :func:`_patch_spectra` of the noisy image (the same for both stages, so computed once).

    Everything linear is done per patch corner, not per stack entry (a corner is in many stacks): the 2D DCT of
    every patch once before the stacks are gathered, and the inverse 2D DCT after the filtered stacks are summed
    back per corner. The stacks are laid out stack position first, ``(group, R * patch^2)``, so the DCT along
    the stack is one matrix product."""
    h, w = guide.shape
    dev = guide.device
    p2 = patch * patch
    # (group * R,): stack position outer
    idx = match_patches(guide, patch, radius, group, stride).T.reshape(-1)
    c2, g = torch.kron(dct_matrix(patch, dev), dct_matrix(patch, dev)), dct_matrix(group, dev)

    def stacks(per_corner):  # (group, R * patch^2): the stacks' 3D spectra
        return g @ per_corner.index_select(0, idx).view(group, -1)

    spec = stacks(noisy_spectra)
    if pilot is None:
        keep = spec.abs() > threshold * sigma
        spec.mul_(keep)
        kept = torch.count_nonzero(keep.view(group, -1, p2), dim=(0, 2))  # (R,)
        weight = 1.0 / (sigma**2 * kept.clamp_min(1))
    else:
        shrink = stacks(_patch_spectra(pilot, patch)).square_()
        shrink.div_(shrink + sigma**2)
        spec.mul_(shrink)
        energy = shrink.square_().view(group, -1, p2).sum((0, 2))  # (R,)
        weight = 1.0 / (sigma**2 * energy.clamp_min(1e-8))
    weight = weight.to(spec.dtype)
    # each stack weighted, back along the stack axis, summed per corner, then back to pixels with the window
    # (folded into the inverse DCT's columns) and added up where the patches overlap
    coef = g.T @ spec.view(group, -1, p2).mul_(weight[None, :, None]).view(group, -1)
    hc, wc = h - patch + 1, w - patch + 1
    win = torch.kaiser_window(patch, periodic=False, beta=2.0, device=dev)
    win = win[:, None] * win[None, :]
    num = torch.zeros(hc * wc, p2, device=dev).index_add_(0, idx, coef.view(-1, p2)) @ (
        c2 * win.reshape(1, -1)
    )
    den = torch.zeros(hc * wc, device=dev).index_add_(0, idx, weight.repeat(group))
    total = F.conv_transpose2d(den.view(1, 1, hc, wc), win[None, None])[0, 0]
    return _overlap_add(num.view(hc, wc, patch, patch), h, w) / total.clamp_min(torch.finfo(total.dtype).tiny)


def _overlap_add(patches: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """``(H, W)`` sums of ``patches`` ``(H - p + 1, W - p + 1, p, p)`` (the patch at every corner) put in place:
    :func:`torch.nn.functional.fold`'s result, by one shifted add per patch pixel (1.5x faster here)."""
    hc, wc, p, _ = patches.shape
    out = torch.zeros(h, w, device=patches.device, dtype=patches.dtype)
    for i in range(p):
        for j in range(p):
            out[i : i + hc, j : j + wc] += patches[:, :, i, j]
    return out


def block_matching_denoise(
    image: torch.Tensor,
    sigma: float,
    *,
    patch: int = 8,
    radius: int = 8,
    stride: int = 3,
    groups: tuple[int, int] = (16, 32),
    threshold: float = 2.7,
) -> torch.Tensor:
    """Denoise a real 2D image with white noise of standard deviation ``sigma`` (module docstring).

    ``image``: real ``(H, W)``, both sides at least ``2 * patch`` (a reflecting border of ``patch`` pixels is
    added); ``sigma`` > 0 in the image's units; ``groups``: the stack sizes of the two stages. Returns a float32
    ``(H, W)`` tensor on ``image``'s device.
    """
    if image.ndim != 2 or image.is_complex():
        raise ShapeError(
            f"block_matching_denoise takes a real (H, W) image, got {'complex ' if image.is_complex() else ''}"
            f"shape {tuple(image.shape)}",
            "denoise the real and imaginary parts (or each slice) separately",
        )
    if min(image.shape) < 2 * patch:
        raise ShapeError(
            f"block_matching_denoise needs both sides >= 2 * patch = {2 * patch}, got {tuple(image.shape)}",
            "use a smaller patch for so small an image",
        )
    if not (math.isfinite(sigma) and sigma > 0):
        raise InreconError(
            f"sigma must be a positive number, got {sigma}", "pass the noise level in image units"
        )
    pad = patch
    x = F.pad(image.float()[None, None], (pad,) * 4, mode="reflect")[0, 0]
    common = {"sigma": sigma, "patch": patch, "radius": radius, "stride": stride, "threshold": threshold}
    with torch.no_grad():
        noisy_spectra = _patch_spectra(x, patch)
        basic = _filter_stage(noisy_spectra, x, None, group=groups[0], **common)
        final = _filter_stage(noisy_spectra, basic, basic, group=groups[1], **common)
    return final[pad:-pad, pad:-pad]


def denoise_complex(x: torch.Tensor, sigma: float, phase_width: float) -> torch.Tensor:
    """A complex image ``x`` ``(H, W)`` denoised as the real and imaginary parts of ``x e^{-i phi}``
    (:func:`block_matching_denoise` at noise level ``sigma``, in ``x``'s units), ``phi`` its phase low-passed by
    :func:`~inrecon.physics.mri.smooth_phase` at ``phase_width``, the phase put back: an MR image's smooth phase
    would otherwise split each structure between two noisy parts."""
    rotation = smooth_phase(x, 2, phase_width)
    v = x * rotation
    out = torch.complex(block_matching_denoise(v.real, sigma), block_matching_denoise(v.imag, sigma))
    return out.to(x.dtype) * rotation.conj()
