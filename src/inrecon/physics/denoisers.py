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
--check``); about 1.5 s on one CPU thread.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from inrecon.errors import InreconError, ShapeError

__all__ = ["block_matching_denoise", "dct_matrix", "match_patches"]


def dct_matrix(n: int, device=None) -> torch.Tensor:
    """The orthonormal DCT-II matrix ``(n, n)``, float32 (rows: frequencies; its transpose is its inverse)."""
    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None, :]
    m = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    m[0] /= math.sqrt(2.0)
    return m.to(device=device, dtype=torch.float32)


def match_patches(
    guide: torch.Tensor, refs: torch.Tensor, patch: int, radius: int, group: int
) -> torch.Tensor:
    """Block matching on ``guide`` ``(H, W)``: for every reference corner of ``refs`` ``(R, 2)`` (row, column),
    the ``group`` patches nearest to it whose corners lie within ``+-radius`` pixels, itself first.

    Returns ``(R, group)`` flat indices into the ``(H - patch + 1) x (W - patch + 1)`` grid of patch corners
    (the column order of ``torch.nn.functional.unfold``)."""
    h, w = guide.shape
    ry, rx = refs[:, 0], refs[:, 1]
    offsets = [(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)]
    dist = torch.empty(len(offsets), len(refs), device=guide.device)
    for j, (dy, dx) in enumerate(offsets):
        # squared differences to the image shifted by (dy, dx), summed over each patch; inf where it leaves the grid
        diff = torch.full((h, w), math.inf, device=guide.device)
        y0, y1, x0, x1 = max(0, -dy), min(h, h - dy), max(0, -dx), min(w, w - dx)
        diff[y0:y1, x0:x1] = (guide[y0:y1, x0:x1] - guide[y0 + dy : y1 + dy, x0 + dx : x1 + dx]) ** 2
        dist[j] = F.avg_pool2d(diff[None, None], patch, stride=1)[0, 0][ry, rx]
    dist[offsets.index((0, 0))] = -1.0  # the reference itself first
    pick = torch.topk(dist, group, dim=0, largest=False).indices  # (group, R)
    table = torch.tensor(offsets, device=guide.device)
    oy, ox = table[pick, 0], table[pick, 1]
    return ((ry[None] + oy) * (w - patch + 1) + rx[None] + ox).T


def _filter_stage(noisy, guide, pilot, sigma, patch, radius, group, stride, threshold) -> torch.Tensor:
    """One stage (module docstring): hard thresholding where ``pilot`` is None, else Wiener shrinkage."""
    h, w = noisy.shape
    dev = noisy.device
    ys = sorted({*range(0, h - patch + 1, stride), h - patch})
    xs = sorted({*range(0, w - patch + 1, stride), w - patch})
    refs = torch.cartesian_prod(torch.tensor(ys, device=dev), torch.tensor(xs, device=dev))
    idx = match_patches(guide, refs, patch, radius, group).reshape(-1)
    c, g = dct_matrix(patch, dev), dct_matrix(group, dev)

    def spectra(image):
        stack = F.unfold(image[None, None], patch)[0][:, idx].T.reshape(-1, group, patch, patch)
        return torch.einsum("gk,rkab->rgab", g, torch.einsum("ai,rkij,bj->rkab", c, stack, c))

    spec = spectra(noisy)
    if pilot is None:
        keep = spec.abs() > threshold * sigma
        spec = spec * keep
        weight = 1.0 / (sigma**2 * keep.flatten(1).sum(1).clamp_min(1))
    else:
        power = spectra(pilot) ** 2
        shrink = power / (power + sigma**2)
        spec = spec * shrink
        weight = 1.0 / (sigma**2 * shrink.flatten(1).square().sum(1).clamp_min(1e-8))
    est = torch.einsum("ai,rkab,bj->rkij", c, torch.einsum("gk,rgab->rkab", g, spec), c)
    win = torch.kaiser_window(patch, periodic=False, beta=2.0, device=dev)
    win = (win[:, None] * win[None, :]).reshape(-1, 1)
    wk = weight.repeat_interleave(group)[None]
    corners = (h - patch + 1) * (w - patch + 1)
    num = torch.zeros(patch * patch, corners, device=dev).index_add_(
        1, idx, est.reshape(-1, patch**2).T * win * wk
    )
    den = torch.zeros(patch * patch, corners, device=dev).index_add_(
        1, idx, (win * wk).expand(-1, idx.numel())
    )
    total = F.fold(den[None], (h, w), patch)[0, 0]
    return F.fold(num[None], (h, w), patch)[0, 0] / total.clamp_min(torch.finfo(total.dtype).tiny)


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
        basic = _filter_stage(x, x, None, group=groups[0], **common)
        final = _filter_stage(x, basic, basic, group=groups[1], **common)
    return final[pad:-pad, pad:-pad]
