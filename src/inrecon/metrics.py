"""Image quality metrics: PSNR, SSIM and NRMSE with the conventions of the papers (scikit-image formulas).

Conventions, shared by every function here:

- **Magnitude for complex images.** A complex input (MRI) is replaced by its magnitude before scoring; real
  inputs (CT, volumes) are scored as they are (negative values kept).
- **Scaling** (``scale=True``): the reconstruction is multiplied by the least-squares factor
  ``s = <rec, ref> / <rec, rec>`` computed over the ROI (the whole image without one), which removes the
  arbitrary global scale of a reconstruction (Bilevel INR paper: "least-squares scaled to the reference").
- **ROI** (bool, same shape as the images): PSNR and NRMSE use only ROI pixels; SSIM computes scikit-image's
  full SSIM map on the whole image and averages it over the ROI pixels. Without an ROI, SSIM is
  scikit-image's mean over the map with a border of ``(win_size - 1) // 2`` pixels cropped.
- **Data range** (PSNR, SSIM): ``ref.max() - ref.min()`` over the ROI when one is given (the pixels being
  scored), else over the whole reference; pass ``data_range`` to override.

All computations run in float64 with torch on the inputs' device (CPU or CUDA); numpy inputs are accepted.
On float64 inputs the values equal ``skimage.metrics.peak_signal_noise_ratio``,
``normalized_root_mse`` (``normalization="euclidean"``) and ``structural_similarity`` to better than 1e-5.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from inrecon.checks import require_finite
from inrecon.errors import InreconError, ShapeError

__all__ = ["evaluate", "nrmse", "psnr", "ssim", "ssim_map"]

ArrayLike = torch.Tensor | np.ndarray


def _as_real64(x: ArrayLike, name: str, device: torch.device | None) -> torch.Tensor:
    t = torch.as_tensor(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x
    if not isinstance(t, torch.Tensor):
        raise InreconError(f"{name} is a {type(x).__name__}", f"pass {name} as a torch tensor or numpy array")
    if t.dtype == torch.bool:
        raise InreconError(f"{name} is a boolean array", f"pass {name} as a real or complex image")
    if device is not None:
        t = t.to(device)
    require_finite(t, name)
    t = t.detach()
    t = t.abs() if t.is_complex() else t
    return t.to(torch.float64)


def _prepare(
    rec: ArrayLike, ref: ArrayLike, roi: ArrayLike | None, scale: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Magnitudes in float64 on rec's device, shapes checked, ROI as bool, optional LS scaling applied."""
    device = rec.device if isinstance(rec, torch.Tensor) else None
    r = _as_real64(rec, "rec", device)
    g = _as_real64(ref, "ref", r.device)
    if r.shape != g.shape:
        raise ShapeError(
            f"rec has shape {tuple(r.shape)} but ref has shape {tuple(g.shape)}",
            "score a reconstruction against a reference on the same grid (crop or resample one of them)",
        )
    m = None
    if roi is not None:
        m = torch.as_tensor(np.ascontiguousarray(roi)) if isinstance(roi, np.ndarray) else roi
        m = m.to(r.device)
        if tuple(m.shape) != tuple(r.shape):
            raise ShapeError(
                f"roi has shape {tuple(m.shape)} but the images have shape {tuple(r.shape)}",
                "give a boolean ROI on the image grid",
            )
        if m.is_complex() or (m.dtype != torch.bool and not bool(((m == 0) | (m == 1)).all())):
            raise InreconError("roi holds values other than 0 and 1", "pass the ROI as a boolean mask")
        m = m.to(torch.bool)
        if not bool(m.any()):
            raise InreconError("roi is empty (no pixel selected)", "pass a ROI with at least one True pixel")
    if scale:
        rs, gs = (r[m], g[m]) if m is not None else (r, g)
        den = float((rs * rs).sum())
        if den > 0:
            r = r * (float((rs * gs).sum()) / den)
    return r, g, m


def _data_range(g: torch.Tensor, m: torch.Tensor | None, data_range: float | None) -> float:
    if data_range is None:
        v = g[m] if m is not None else g
        data_range = float(v.max() - v.min())
    if not (math.isfinite(data_range) and data_range > 0):
        raise InreconError(
            f"the data range is {data_range} (the reference is constant over the scored pixels)",
            "pass data_range explicitly (e.g. 1.0 for images scaled to [0, 1])",
        )
    return float(data_range)


def psnr(
    rec: ArrayLike,
    ref: ArrayLike,
    roi: ArrayLike | None = None,
    scale: bool = False,
    data_range: float | None = None,
) -> float:
    """Peak signal-to-noise ratio in dB: ``10 log10(data_range**2 / mean((rec - ref)**2))``.

    Parameters
    ----------
    rec, ref
        Reconstruction and reference, same shape (any number of axes), real or complex (magnitude is used).
    roi
        Optional bool mask of the same shape: only these pixels are scored.
    scale
        Least-squares scale ``rec``'s magnitude to ``ref`` over the ROI first.
    data_range
        Peak-to-peak range of the reference; default ``ref.max() - ref.min()`` over the ROI.

    Returns
    -------
    float
        PSNR in dB (``inf`` for identical images).
    """
    r, g, m = _prepare(rec, ref, roi, scale)
    dr = _data_range(g, m, data_range)
    diff = (r - g)[m] if m is not None else (r - g)
    mse = float((diff * diff).mean())
    return math.inf if mse == 0 else 10.0 * math.log10(dr * dr / mse)


def nrmse(rec: ArrayLike, ref: ArrayLike, roi: ArrayLike | None = None, scale: bool = False) -> float:
    """Normalised root-mean-square error ``||ref - rec|| / ||ref||`` (scikit-image's "euclidean").

    Parameters
    ----------
    rec, ref
        Same shape, real or complex (magnitude is used).
    roi
        Optional bool mask: norms over these pixels only.
    scale
        Least-squares scale ``rec``'s magnitude to ``ref`` over the ROI first.

    Returns
    -------
    float
        Dimensionless error (0 for identical images).
    """
    r, g, m = _prepare(rec, ref, roi, scale)
    if m is not None:
        r, g = r[m], g[m]
    den = float(g.norm())
    if den == 0:
        raise InreconError("the reference is zero over the scored pixels", "check the reference and the ROI")
    return float((g - r).norm()) / den


def _symmetric_pad(x: torch.Tensor, dim: int, pad: int) -> torch.Tensor:
    """Pad ``x`` along ``dim`` by ``pad`` on both sides with edge-including reflection (scipy "reflect")."""
    n = x.shape[dim]
    idx = torch.arange(-pad, n + pad, device=x.device)
    period = 2 * n
    idx = torch.remainder(idx, period)
    idx = torch.where(idx >= n, period - 1 - idx, idx)
    return x.index_select(dim, idx)


def _filter1d(x: torch.Tensor, weights: torch.Tensor, dim: int) -> torch.Tensor:
    pad = (weights.numel() - 1) // 2
    xp = _symmetric_pad(x, dim, pad)
    n = x.shape[dim]
    out = torch.zeros_like(x)
    for k in range(weights.numel()):
        out = out + weights[k] * xp.narrow(dim, k, n)
    return out


def _window(gaussian: bool, win_size: int, device: torch.device) -> torch.Tensor:
    if gaussian:
        # scipy.ndimage.gaussian_filter with sigma 1.5, truncate 3.5 -> radius 5 (11 taps)
        sigma, radius = 1.5, int(3.5 * 1.5 + 0.5)
        t = torch.arange(-radius, radius + 1, dtype=torch.float64, device=device)
        w = torch.exp(-0.5 * (t / sigma) ** 2)
        return w / w.sum()
    return torch.full((win_size,), 1.0 / win_size, dtype=torch.float64, device=device)


def ssim_map(
    rec: torch.Tensor, ref: torch.Tensor, data_range: float, gaussian: bool = False, win_size: int = 7
) -> torch.Tensor:
    """The full SSIM map of two real float64 images of the same shape (2D or 3D), scikit-image's formula.

    Uniform window: ``win_size`` taps per axis, sample covariance (``NP / (NP - 1)``). Gaussian window: sigma
    1.5 truncated at 3.5 sigma (11 taps), population covariance. Borders are filled by edge-including
    reflection (scipy's "reflect"). K1 = 0.01, K2 = 0.03.
    """
    w = _window(gaussian, win_size, rec.device)
    ndim = rec.ndim

    def filt(x: torch.Tensor) -> torch.Tensor:
        for d in range(ndim):
            x = _filter1d(x, w, d)
        return x

    cov_norm = 1.0 if gaussian else (win_size**ndim) / (win_size**ndim - 1.0)
    ux, uy = filt(rec), filt(ref)
    uxx, uyy, uxy = filt(rec * rec), filt(ref * ref), filt(rec * ref)
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    return ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))


def ssim(
    rec: ArrayLike, ref: ArrayLike, roi=None, scale=False, data_range=None, gaussian=False, win_size=None
) -> float:
    """Structural similarity of 2D or 3D images, equal to ``skimage.metrics.structural_similarity``.

    ``rec``, ``ref`` (shape ``(H, W)`` or ``(D, H, W)``, every axis at least ``win_size`` long), ``scale`` and
    ``data_range`` are as in :func:`psnr`; with ``roi`` the result is the mean of the full SSIM map (computed on
    the whole image) over the ROI, without it the map's mean with a ``(win_size - 1) // 2`` border cropped (as
    skimage).

    Parameters
    ----------
    gaussian
        Gaussian window (sigma 1.5, population covariance; skimage's ``gaussian_weights=True,
        use_sample_covariance=False``) instead of the uniform window with sample covariance.
    win_size
        Odd window width; default 7 for the uniform window and 11 for the Gaussian one (skimage's defaults).

    Returns
    -------
    float
        SSIM, at most 1.
    """
    r, g, m = _prepare(rec, ref, roi, scale)
    if r.ndim not in (2, 3):
        raise ShapeError(
            f"ssim needs 2D or 3D images, got shape {tuple(r.shape)}",
            "pass one image (H, W) or one volume (D, H, W); loop over a batch",
        )
    if win_size is None:
        win_size = 11 if gaussian else 7
    if win_size < 1 or win_size % 2 == 0:
        raise InreconError(f"win_size is {win_size} but must be an odd positive integer", "use e.g. 7")
    if gaussian and win_size != 11:
        raise InreconError(
            f"win_size={win_size} with gaussian=True; the Gaussian window (sigma 1.5) is 11 wide",
            "leave win_size unset with gaussian=True",
        )
    if min(r.shape) < win_size:
        raise ShapeError(
            f"image shape {tuple(r.shape)} is smaller than the SSIM window ({win_size})",
            "pass a smaller odd win_size or a larger image",
        )
    dr = _data_range(g, m, data_range)
    smap = ssim_map(r, g, dr, gaussian=gaussian, win_size=win_size)
    if m is not None:
        return float(smap[m].mean())
    pad = (win_size - 1) // 2
    crop = smap[tuple(slice(pad, s - pad) for s in smap.shape)]
    return float(crop.mean())


def evaluate(
    rec: ArrayLike,
    ref: ArrayLike,
    roi: ArrayLike | None = None,
    scale: bool = False,
    data_range: float | None = None,
) -> dict[str, float]:
    """PSNR (dB), SSIM (uniform 7-wide window) and NRMSE with one set of conventions (module docstring).

    Returns
    -------
    dict
        ``{"psnr": float, "ssim": float, "nrmse": float}`` (Python floats).
    """
    r, g, m = _prepare(rec, ref, roi, scale)
    return {
        "psnr": psnr(r, g, m, data_range=data_range),
        "ssim": ssim(r, g, m, data_range=data_range),
        "nrmse": nrmse(r, g, m),
    }
