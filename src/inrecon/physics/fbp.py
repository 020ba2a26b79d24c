"""Filtered backprojection for 2D parallel-beam and flat-detector fan-beam CT (vectorised torch, CPU or GPU).

Parallel beam: each view is filtered with the discretised ramp kernel of Kak & Slaney (``h[0] = 1/(4 tau^2)``,
``h[n odd] = -1/(pi n tau)^2``, ``h[n even] = 0``), zero-padded to at least twice the detector length so the
circular convolution does not wrap, optionally apodised (Shepp-Logan, cosine, Hann); then backprojected pixel
by pixel with linear interpolation, each view weighted by its share of the angular range (``pi / V`` for ``V``
uniform views over 180 or 360 degrees; non-uniform sets get half the gaps to their neighbours).

Fan beam (flat detector): detector coordinates are rescaled to a virtual detector through the isocentre,
pre-weighted by ``D / sqrt(D^2 + s^2)`` (``D`` = source-to-centre distance), ramp filtered with half the
kernel, and backprojected with the distance weight ``1 / U^2``, ``U = (D - x . e_s) / D``. A full scan (views
spread over 360 degrees) uses uniform angular weights; a short scan gets Parker weights, and a warning when it
covers less than 180 degrees plus the fan angle. The result is in the units of the image the sinogram came
from (attenuation per mm for sinograms of line integrals computed with mm).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from inrecon.checks import require_finite, require_real
from inrecon.data.scans import CTGeometry, as_tensor
from inrecon.errors import InreconError, ShapeError
from inrecon.physics.ct import detector_positions
from inrecon.physics.operator import LinearOperator

__all__ = ["FILTERS", "DetectorFilter", "fbp", "padded_length", "ramp_filter", "view_weights"]

FILTERS = ("ram-lak", "shepp-logan", "cosine", "hann")
# Views backprojected at once: bounds the (B, views, H*W) temporaries.
_BP_ELEMENTS = 8_000_000


def ramp_filter(
    n_pad: int, spacing: float, filter: str = "ram-lak", cutoff: float = 1.0, device=None
) -> torch.Tensor:
    """Frequency response (``rfft`` layout, ``(n_pad // 2 + 1,)`` float32) of ``spacing * h`` apodised.

    Parameters
    ----------
    n_pad
        Length of the zero-padded detector row (even).
    spacing
        Detector spacing ``tau`` (mm); the response includes the ``tau`` of the discrete convolution.
    filter
        ``"ram-lak"`` (plain ramp), ``"shepp-logan"``, ``"cosine"`` or ``"hann"``.
    cutoff
        Fraction of the Nyquist frequency beyond which the response is zero, in ``(0, 1]``.
    """
    if filter not in FILTERS:
        raise InreconError(f"unknown FBP filter {filter!r}", f"choose one of {', '.join(FILTERS)}")
    if not (0 < cutoff <= 1):
        raise InreconError(f"FBP cutoff is {cutoff} but must lie in (0, 1]", "give a fraction of Nyquist")
    n = np.concatenate([np.arange(0, n_pad // 2 + 1), np.arange(-(n_pad // 2) + 1, 0)]).astype(np.float64)
    h = np.zeros(n_pad)
    h[0] = 1.0 / (4.0 * spacing**2)
    odd = (n % 2) != 0
    h[odd] = -1.0 / (math.pi * n[odd] * spacing) ** 2
    response = spacing * np.real(np.fft.rfft(h))
    x = np.fft.rfftfreq(n_pad) / (0.5 * cutoff)  # 1 at the cutoff
    if filter == "shepp-logan":
        window = np.sinc(x / 2)
    elif filter == "cosine":
        window = np.cos(0.5 * math.pi * np.minimum(x, 1.0))
    elif filter == "hann":
        window = 0.5 * (1.0 + np.cos(math.pi * np.minimum(x, 1.0)))
    else:
        window = np.ones_like(x)
    window = np.where(x <= 1.0, window, 0.0)
    return torch.as_tensor(response * window, dtype=torch.float32, device=device)


def padded_length(n_detectors: int) -> int:
    """Zero-padded detector length for filtering without wrap-around: a power of two >= 2 n (at least 64)."""
    return max(64, 1 << int(math.ceil(math.log2(2 * n_detectors))))


class DetectorFilter(LinearOperator):
    """Filter every view of a ``(V, N)`` sinogram along the detector with a real, even frequency ``response``
    (``rfft`` layout, length ``n_pad // 2 + 1``), zero-padded to ``n_pad`` and cropped back to ``N``.

    A real, even response is the spectrum of a real, even kernel, so the operator is self-adjoint. The square
    root of the ramp (:func:`ramp_filter`) is the CT data weighting of the INR methods
    (:mod:`inrecon.physics.measurement`).
    """

    def __init__(self, response: torch.Tensor, n_views: int, n_detectors: int):
        super().__init__((n_views, n_detectors), (n_views, n_detectors))
        self.register_buffer("response", response)
        self.n_pad = 2 * (response.numel() - 1)
        self.n_det = int(n_detectors)

    def _forward(self, x):
        spec = torch.fft.rfft(x, n=self.n_pad, dim=-1)
        return torch.fft.irfft(spec * self.response, n=self.n_pad, dim=-1)[..., : self.n_det]

    _adjoint = _forward


def _filter_rows(p: torch.Tensor, spacing: float, filter: str, cutoff: float) -> torch.Tensor:
    n = p.shape[-1]
    n_pad = padded_length(n)
    resp = ramp_filter(n_pad, spacing, filter, cutoff, device=p.device)
    spec = torch.fft.rfft(p, n=n_pad, dim=-1)
    return torch.fft.irfft(spec * resp, n=n_pad, dim=-1)[..., :n]


def view_weights(angles: np.ndarray | torch.Tensor, period: float) -> np.ndarray:
    """Angular weight (radians) of each view: half the gaps to its two neighbours on a circle of ``period``.

    For parallel beam ``period = pi``: ``V`` uniform views over 180 or over 360 degrees all get ``pi / V``
    (two views of the same line share its weight). Returns float64 ``(V,)``, summing to ``period``.
    """
    a = np.mod(np.asarray(torch.as_tensor(angles).cpu(), dtype=np.float64).reshape(-1), period)
    if a.size == 1:
        return np.full(1, period)
    order = np.argsort(a, kind="stable")
    s = a[order]
    gaps = np.diff(np.concatenate([s, s[:1] + period]))
    out = np.empty_like(s)
    out[order] = 0.5 * (gaps + np.roll(gaps, 1))
    return out


def _parker_weights(beta: np.ndarray, gamma: np.ndarray, delta: float) -> np.ndarray:
    """Parker (1982) short-scan weights ``(V, N)`` for source angles ``beta`` in ``[0, pi + 2 delta]``.

    ``gamma`` is the fan angle of each detector in *our* orientation, where the ray conjugate to
    ``(beta, gamma)`` is ``(beta + pi - 2 gamma, -gamma)``; Parker's formula is written for the opposite sign.
    """
    b = beta[:, None]
    g = -gamma[None, :]  # Parker's convention
    w = np.ones((beta.size, gamma.size))
    with np.errstate(divide="ignore", invalid="ignore"):
        rise = np.sin(0.25 * math.pi * b / (delta - g)) ** 2
        fall = np.sin(0.25 * math.pi * (math.pi + 2 * delta - b) / (delta + g)) ** 2
    w = np.where(b < 2 * delta - 2 * g, rise, w)
    w = np.where(b > math.pi - 2 * g, fall, w)
    w = np.where((b < 0) | (b > math.pi + 2 * delta), 0.0, w)
    return np.nan_to_num(np.clip(w, 0.0, 1.0))


def _check_inputs(sinogram, geometry: CTGeometry, angles) -> tuple[torch.Tensor, np.ndarray]:
    if not isinstance(geometry, CTGeometry):
        raise InreconError(f"geometry is a {type(geometry).__name__}", "pass an inrecon CTGeometry")
    s = as_tensor(sinogram)
    require_real(s, "sinogram")
    if s.ndim not in (2, 3):
        raise ShapeError(
            f"sinogram has shape {tuple(s.shape)} but must be (views, detectors) or "
            "(batch, views, detectors)",
            "reshape the sinogram to (V, N) or (B, V, N)",
        )
    require_finite(s, "sinogram")
    a = as_tensor(angles)
    require_real(a, "angles")
    a = np.asarray(a.detach().cpu(), dtype=np.float64).reshape(-1)
    require_finite(a, "angles")
    if a.size != s.shape[-2]:
        raise ShapeError(
            f"sinogram has {s.shape[-2]} views but angles has {a.size} entries",
            "give one angle per sinogram row (transpose the sinogram if it is (detectors, views))",
        )
    if s.shape[-1] != geometry.n_detectors:
        raise ShapeError(
            f"sinogram has {s.shape[-1]} detector columns but the geometry says {geometry.n_detectors}",
            "fix n_detectors or transpose the sinogram to (views, detectors)",
        )
    return s, a


def _backproject(
    q: torch.Tensor,
    angles: np.ndarray,
    weights: torch.Tensor,
    geometry: CTGeometry,
    det_first: float,
    det_step: float,
) -> torch.Tensor:
    """``sum_v weights[v] * q[v](s_v(x, y)) / U_v^2`` with linear interpolation; ``q`` is ``(B, V, N)``.

    ``det_first`` / ``det_step`` place the detector samples (mm, on the virtual detector for fan beam).
    """
    b, v, n = q.shape
    h, w = geometry.image_shape
    p = geometry.pixel_size_mm
    dev = q.device
    xs = (torch.arange(w, device=dev, dtype=torch.float32) - w / 2 + 0.5) * p
    ys = (h / 2 - 0.5 - torch.arange(h, device=dev, dtype=torch.float32)) * p
    xx, yy = xs[None, :].expand(h, w).reshape(-1), ys[:, None].expand(h, w).reshape(-1)
    # Pack each sample with the slope to its right neighbour (zero beyond the detector) as one complex number,
    # so linear interpolation needs a single gather: value = re + frac * im.
    qp = torch.nn.functional.pad(q, (1, 1))
    pair = torch.complex(qp[..., :-1], qp[..., 1:] - qp[..., :-1])  # (B, V, N + 1)
    t = torch.as_tensor(angles, dtype=torch.float32, device=dev)
    out = torch.zeros(b, h * w, device=dev, dtype=q.dtype)
    chunk = max(1, _BP_ELEMENTS // max(1, b * h * w))
    for v0 in range(0, v, chunk):
        tc = t[v0 : v0 + chunk, None]
        cos, sin = torch.cos(tc), torch.sin(tc)
        s = xx * cos + yy * sin  # (vc, HW) coordinate along u
        wv = weights[v0 : v0 + chunk, None]
        if geometry.kind == "fan":
            d = float(geometry.source_to_center_mm)
            mag = d / (d - (xx * sin - yy * cos))  # D / (source-to-point distance along the central ray)
            s = s * mag
            wv = wv * mag * mag
        # index into ``pair``: sample i of the detector sits at i + 1 (after the zero pad)
        idx = ((s - det_first) * (1.0 / det_step) + 1.0).clamp_(0.0, float(n))
        i0 = idx.long()
        frac = idx - i0
        vc = tc.shape[0]
        val = torch.gather(pair[:, v0 : v0 + vc], 2, i0.expand(b, vc, -1))
        out += ((val.real + frac * val.imag) * wv).sum(1)
    return out.reshape(b, h, w)


def fbp(
    sinogram: torch.Tensor | np.ndarray,
    geometry: CTGeometry,
    angles: torch.Tensor | np.ndarray,
    filter: str = "ram-lak",
    cutoff: float = 1.0,
) -> torch.Tensor:
    """Filtered backprojection of a parallel-beam or flat-detector fan-beam sinogram.

    Parameters
    ----------
    sinogram
        float32 ``(V, N)`` or ``(B, V, N)`` line integrals (dimensionless: attenuation per mm times mm).
    geometry
        :class:`~inrecon.data.scans.CTGeometry` (ASTRA conventions, mm).
    angles
        View angles, radians, ``(V,)``.
    filter
        ``"ram-lak"``, ``"shepp-logan"``, ``"cosine"`` or ``"hann"``.
    cutoff
        Frequency cutoff as a fraction of Nyquist, in ``(0, 1]``.

    Returns
    -------
    torch.Tensor
        float32 ``(H, W)`` (or ``(B, H, W)``) attenuation per mm, on the sinogram's device.

    Warns
    -----
    UserWarning
        When the views cover too little of the circle for an exact reconstruction (parallel: less than 180
        degrees; fan: less than 180 degrees plus the fan angle).
    """
    s, ang = _check_inputs(sinogram, geometry, angles)
    ramp_filter(64, 1.0, filter, cutoff)  # validate the choice before any work
    squeeze = s.ndim == 2
    q = s.to(torch.float32)
    q = q[None] if squeeze else q
    dev = q.device
    det = detector_positions(geometry)
    if geometry.kind == "parallel":
        distinct = np.unique(np.round(np.mod(ang, math.pi), 9))
        if distinct.size < 2 or _max_gap(distinct, math.pi) > 2.5 * _median_gap(distinct, math.pi):
            warnings.warn(
                "parallel-beam views do not cover 180 degrees evenly; FBP will show limited-angle artefacts",
                stacklevel=2,
            )
        weights = torch.as_tensor(view_weights(ang, math.pi), dtype=torch.float32, device=dev)
        q = _filter_rows(q, geometry.detector_spacing_mm, filter, cutoff)
        out = _backproject(q, ang, weights, geometry, float(det[0]), geometry.detector_spacing_mm)
    else:
        d = float(geometry.source_to_center_mm)
        scale = d / (d + float(geometry.center_to_detector_mm))
        sv = det * scale  # virtual detector through the isocentre
        step = geometry.detector_spacing_mm * scale
        pre = torch.as_tensor(d / np.sqrt(d * d + sv * sv), dtype=torch.float32, device=dev)
        gaps_full = _max_gap(ang, 2 * math.pi) <= 1.5 * _median_gap(ang, 2 * math.pi) + 1e-9
        if gaps_full and ang.size > 1:
            weights = torch.as_tensor(view_weights(ang, 2 * math.pi), dtype=torch.float32, device=dev)
            q = q * pre
        else:
            weights, parker = _short_scan_weights(ang, sv, d)
            weights = torch.as_tensor(weights, dtype=torch.float32, device=dev)
            q = q * pre * torch.as_tensor(2.0 * parker, dtype=torch.float32, device=dev)
        q = 0.5 * _filter_rows(q, step, filter, cutoff)
        out = _backproject(q, ang, weights, geometry, float(sv[0]), step)
    return out[0] if squeeze else out


def _median_gap(ang: np.ndarray, period: float) -> float:
    a = np.sort(np.mod(ang, period))
    if a.size < 2:
        return period
    return float(np.median(np.diff(np.concatenate([a, a[:1] + period]))))


def _max_gap(ang: np.ndarray, period: float) -> float:
    a = np.sort(np.mod(ang, period))
    if a.size < 2:
        return period
    return float(np.diff(np.concatenate([a, a[:1] + period])).max())


def _short_scan_weights(ang: np.ndarray, sv: np.ndarray, d: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-view step and Parker weights ``(V, N)`` for a fan-beam short scan (views in order of rotation)."""
    a = np.asarray(ang, dtype=np.float64)
    if a.size < 2:
        raise InreconError("fan-beam FBP needs at least two views", "acquire more views")
    beta = np.unwrap(a)
    if beta[-1] < beta[0]:  # rotation in the negative direction: mirror so beta increases
        raise InreconError(
            "fan-beam short scan with decreasing angles is not supported by FBP",
            "reverse the order of the views (and sinogram rows) so the angles increase",
        )
    beta = beta - beta[0]
    if np.any(np.diff(beta) <= 0):
        raise InreconError(
            "fan-beam short-scan angles are not strictly increasing", "sort the views by angle"
        )
    gamma = np.arctan(sv / d)
    half_fan = float(np.abs(gamma).max())
    span = float(beta[-1])
    delta = 0.5 * (span - math.pi)
    if delta < half_fan - 1e-6:
        warnings.warn(
            f"fan-beam short scan covers {math.degrees(span):.1f} degrees, less than 180 plus the fan angle "
            f"({math.degrees(math.pi + 2 * half_fan):.1f}); FBP will show limited-angle artefacts",
            stacklevel=3,
        )
        delta = max(delta, 1e-6)
    step = np.gradient(beta) if beta.size > 2 else np.full(beta.size, span)
    return step, _parker_weights(beta, gamma, delta)
