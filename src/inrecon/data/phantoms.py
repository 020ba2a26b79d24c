"""Procedural phantom populations: brain MRI and chest CT subjects, plus the modified Shepp-Logan phantom.

Every phantom is a deterministic function of its ``seed`` (numpy only, no files). Shapes are drawn in
physical-like normalised coordinates: the shorter image side spans [-1, 1], ``x`` runs left to right and
``y`` bottom to top (row 0 is the top of the image: anterior for the brain and the chest). A 3D phantom
``(D, H, W)`` spans ``z`` in [-1, 1] over its ``D`` slices (bottom slice first), so the voxels are anisotropic
when ``D`` differs from ``H``; the 2D phantom of a seed is the ``z = 0`` slice of the 3D one (the middle
slice when ``D`` is odd), except that its lesions and nodules are centred on that slice so that it shows them.
Anti-aliasing is in-plane only: a coarse 3D grid shows steps along ``z`` on surfaces nearly parallel to the
slices.

Edges are anti-aliased: each shape is given by an approximate signed distance ``d`` and covers a pixel by
``clip(0.5 - d / pixel, 0, 1)``, a one-pixel linear ramp (the box-filtered edge), so k-space of a phantom has
no spurious Gibbs energy from staircased boundaries.

Intensities are float32 in [0, 1]. Brain phantoms follow T1-, T2- or FLAIR-like tissue orderings; chest CT
phantoms are Hounsfield units windowed to [-800, 400] and scaled to [0, 1] (:func:`hu_to_unit`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from inrecon.errors import InreconError, ShapeError

__all__ = [
    "BRAIN_CONTRASTS",
    "HU_WINDOW",
    "body_ct_phantom",
    "body_ct_volume",
    "brain_phantom",
    "hu_to_unit",
    "population",
    "shepp_logan",
]

#: The CT display window of the project, in HU: [-800, 400] maps to [0, 1].
HU_WINDOW = (-800.0, 400.0)

#: Tissue intensities per contrast (before the per-subject jitter).
BRAIN_CONTRASTS: dict[str, dict[str, float]] = {
    "t1": dict(
        skin=0.45, fat=0.90, bone=0.05, marrow=0.60, csf=0.12, gm=0.52, wm=0.80, deep=0.60, lesion=0.30
    ),
    "t2": dict(
        skin=0.40, fat=0.62, bone=0.04, marrow=0.42, csf=0.97, gm=0.62, wm=0.42, deep=0.52, lesion=0.88
    ),
    "flair": dict(
        skin=0.40, fat=0.68, bone=0.04, marrow=0.45, csf=0.07, gm=0.62, wm=0.45, deep=0.56, lesion=0.96
    ),
}


def hu_to_unit(hu, window: tuple[float, float] = HU_WINDOW):
    """Window Hounsfield units to ``[0, 1]``: ``clip((hu - lo) / (hi - lo), 0, 1)``.

    Parameters
    ----------
    hu
        Any shape, integer or float Hounsfield units: a numpy array or number (float32 array result) or a torch
        tensor (float32 tensor result).
    window
        ``(lo, hi)`` HU mapped to 0 and 1 (default ``(-800, 400)``, the DisINR window).
    """
    lo, hi = float(window[0]), float(window[1])
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        raise InreconError(
            f"HU window {window} is not an increasing pair", "give (low, high) with high > low"
        )
    if type(hu).__module__.startswith("torch"):
        return ((hu.float() - lo) / (hi - lo)).clamp(0.0, 1.0)
    arr = np.asarray(hu)
    if not np.isrealobj(arr):
        raise InreconError("hu must be real Hounsfield units", "pass the magnitude or the real part")
    return np.clip((arr.astype(np.float32) - np.float32(lo)) / np.float32(hi - lo), 0.0, 1.0)


def _u(hu: float) -> float:
    return float(hu_to_unit(hu))


# ------------------------------------------------------------------------------------------------------------
# geometry helpers
# ------------------------------------------------------------------------------------------------------------
def _check_shape(shape: Sequence[int], ndims: tuple[int, ...], name: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in shape)
    except TypeError:
        raise ShapeError(
            f"{name} shape {shape!r} is not a sequence of integers", "give e.g. (256, 256)"
        ) from None
    if len(shape) not in ndims or min(shape) < 8:
        want = " or ".join(f"{n}D" for n in ndims)
        raise ShapeError(
            f"{name} shape {shape} is not a {want} grid of at least 8 pixels per axis",
            "give (H, W)" + (" or (D, H, W)" if 3 in ndims else ""),
        )
    return shape


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Pixel-centre coordinates (float32, shape (H, W)) with the shorter side spanning [-1, 1]."""
    pix = 2.0 / min(h, w)
    x = ((np.arange(w) - (w - 1) / 2) * pix).astype(np.float32)
    y = (((h - 1) / 2 - np.arange(h)) * pix).astype(np.float32)
    return np.broadcast_to(x[None, :], (h, w)), np.broadcast_to(y[:, None], (h, w)), pix


def _z_coords(d: int) -> np.ndarray:
    """Slice positions in [-1, 1] (bottom slice first); the middle slice of an odd count sits at 0."""
    return ((np.arange(d) - (d - 1) / 2) * (2.0 / d)).astype(np.float64)


def _cover(d: np.ndarray, pix: float) -> np.ndarray:
    """Anti-aliased coverage of the region ``d < 0`` (``d`` a signed distance, same units as ``pix``)."""
    return np.clip(0.5 - d * (1.0 / pix), 0.0, 1.0)


def _paint(img: np.ndarray, cov: np.ndarray, value: float | np.ndarray) -> None:
    """Paint ``value`` over ``img`` with opacity ``cov`` (in place)."""
    img += cov * (value - img)


def _ellipse_sd(x, y, cx, cy, a, b, angle=0.0):
    """Approximate signed distance to an ellipse (negative inside), exact to first order at the edge."""
    c, s = math.cos(angle), math.sin(angle)
    dx, dy = x - cx, y - cy
    u = (dx * c + dy * s) / a
    v = (-dx * s + dy * c) / b
    f = np.sqrt(u * u + v * v)
    q = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    return (f - 1.0) * np.where(q > 0, f / np.maximum(q, 1e-12), min(a, b))


def _window(h, w, pix, cx, cy, r):
    """Row and column slices of the pixels within ``r`` of ``(cx, cy)``, or ``None`` when off the grid."""
    c0 = math.floor((cx - r) / pix + (w - 1) / 2) - 1
    c1 = math.ceil((cx + r) / pix + (w - 1) / 2) + 2
    r0 = math.floor((h - 1) / 2 - (cy + r) / pix) - 1
    r1 = math.ceil((h - 1) / 2 - (cy - r) / pix) + 2
    c0, c1, r0, r1 = max(c0, 0), min(c1, w), max(r0, 0), min(r1, h)
    if c0 >= c1 or r0 >= r1:
        return None
    return slice(r0, r1), slice(c0, c1)


def _stamp(img, xg, yg, pix, cx, cy, a, b, angle, value, within=None, ring=None):
    """Paint a small ellipse locally (only the pixels near it are evaluated).

    ``within`` (same shape as ``img``) multiplies the coverage, e.g. to keep vessels inside the lungs;
    ``ring = (thickness, inner_value)`` paints a cortical shell of ``value`` around an ``inner_value`` core.
    """
    win = _window(img.shape[0], img.shape[1], pix, cx, cy, max(a, b) + pix)
    if win is None:
        return
    x, y = xg[win], yg[win]
    d = _ellipse_sd(x, y, cx, cy, a, b, angle)
    cov = _cover(d, pix)
    if within is not None:
        cov = cov * within[win]
    sub = img[win]
    _paint(sub, cov, value)
    if ring is not None:
        t, inner = ring
        if a > t and b > t:
            cov = _cover(_ellipse_sd(x, y, cx, cy, a - t, b - t, angle), pix)
            if within is not None:
                cov = cov * within[win]
            _paint(sub, cov, inner)


def _fourier(phi: np.ndarray, coeffs: np.ndarray) -> np.ndarray:
    """``sum_k A_k cos(k phi + p_k)`` for rows ``(k, A_k, p_k)`` of ``coeffs``."""
    out = np.zeros_like(phi)
    for k, amp, ph in coeffs:
        out += amp * np.cos(k * phi + ph)
    return out


def _smooth_field(rng: np.random.Generator, n: int, fmin: float, fmax: float) -> np.ndarray:
    """Random plane waves ``(n, 5)``: rows ``(kx, ky, kz, phase, weight)`` for :func:`_eval_field`."""
    f = rng.uniform(fmin, fmax, n)
    direction = rng.normal(size=(n, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    return np.column_stack([direction * f[:, None], rng.uniform(0, 2 * np.pi, n), rng.normal(size=n)])


def _eval_field(field: np.ndarray, x, y, z: float) -> np.ndarray:
    out = np.zeros(x.shape, dtype=np.float32)
    for kx, ky, kz, ph, wt in field:
        out += np.float32(wt) * np.cos(np.float32(kx) * x + np.float32(ky) * y + np.float32(kz * z + ph))
    return out / np.float32(np.sqrt(len(field)))


def _polar(x, y, cx, cy, angle, a, b):
    """Head/body frame: normalised radius ``rho``, angle ``phi`` and physical length per unit ``rho``."""
    c, s = math.cos(angle), math.sin(angle)
    dx, dy = x - cx, y - cy
    xr = dx * c + dy * s
    yr = -dx * s + dy * c
    u, v = xr / a, yr / b
    rho = np.sqrt(u * u + v * v)
    phi = np.arctan2(v, u)
    scale = np.sqrt((a * np.cos(phi)) ** 2 + (b * np.sin(phi)) ** 2)
    return xr, yr, rho, phi, scale


def _to_world(cx, cy, angle, xr, yr):
    """Frame coordinates -> image coordinates (inverse of the rotation in :func:`_polar`)."""
    c, s = math.cos(angle), math.sin(angle)
    return cx + xr * c - yr * s, cy + xr * s + yr * c


# ------------------------------------------------------------------------------------------------------------
# brain
# ------------------------------------------------------------------------------------------------------------
@dataclass
class _Brain:
    cx: float
    cy: float
    angle: float
    a: float
    b: float
    c: float  # head half-height along z (3D)
    outline: np.ndarray  # Fourier rows for the skin surface
    t_skin: float
    t_fat: float
    t_skull: float
    t_csf: float
    cortex: float
    sulci: np.ndarray  # rows (phi0, depth, half_width, curvature, z_drift)
    ventricles: float
    deep: float
    lesions: np.ndarray  # rows (x, y, z, rx, ry, rz, angle) in the head frame
    tissue: dict
    texture: np.ndarray
    bias: np.ndarray


def _brain_params(rng: np.random.Generator, contrast: str, is3d: bool) -> _Brain:
    size = rng.uniform(0.84, 1.0)
    age = rng.uniform(0.0, 1.0)  # atrophy: wider sulci and CSF, larger ventricles
    outline = np.array([[k, rng.normal(0, 0.018 / k**0.5), rng.uniform(0, 2 * np.pi)] for k in range(2, 7)])
    sulci = _sulcal_pattern(rng, age)
    n_les = int(min(6, 1 + rng.poisson(1.8)))
    les = []
    for _ in range(n_les):
        r, t = rng.uniform(0.12, 0.42), rng.uniform(-np.pi, np.pi)
        rx = rng.uniform(0.008, 0.03)
        les.append(
            [
                r * math.cos(t),
                r * math.sin(t),
                rng.uniform(-0.35, 0.35) * is3d,
                rx,
                rx * rng.uniform(0.6, 1.6),
                rx * rng.uniform(1.0, 2.5),
                rng.uniform(0, np.pi),
            ]
        )
    base = BRAIN_CONTRASTS[contrast]
    tissue = {k: float(np.clip(v * rng.uniform(0.94, 1.06), 0.0, 1.0)) for k, v in base.items()}
    return _Brain(
        cx=rng.normal(0, 0.03),
        cy=rng.normal(0, 0.03),
        angle=math.radians(rng.normal(0, 6)),
        a=size * rng.uniform(0.70, 0.78),
        b=size * rng.uniform(0.86, 0.93),
        c=rng.uniform(0.95, 1.1),
        outline=outline,
        t_skin=rng.uniform(0.010, 0.016),
        t_fat=rng.uniform(0.012, 0.028),
        t_skull=rng.uniform(0.030, 0.045),
        t_csf=rng.uniform(0.008, 0.014) * (1 + 1.2 * age),
        cortex=rng.uniform(0.022, 0.030),
        sulci=sulci,
        ventricles=rng.uniform(0.8, 1.05) * (1 + 0.6 * age),
        deep=rng.uniform(0.9, 1.1),
        lesions=np.asarray(les, dtype=np.float64).reshape(-1, 7),
        tissue=tissue,
        texture=_smooth_field(rng, 12, 15.0, 40.0),
        bias=_smooth_field(rng, 3, 0.5, 1.5),
    )


def _sulcal_pattern(rng: np.random.Generator, age: float) -> np.ndarray:
    """Sulcal CSF slits as rows ``(phi0, t_start, t_end, half_width, curvature, wiggle, wiggle_freq, drift)``.

    A slit is a curve below the pial surface: at depth ``t`` in ``[t_start, t_end]`` it sits at the angle
    ``phi0 + curvature * t + wiggle * sin(wiggle_freq * t) + drift * z``. Main sulci start at the surface;
    about half of them branch from mid-depth; the interhemispheric and lateral (Sylvian) fissures are deeper.
    """
    n = int(rng.integers(40, 54))
    phis = (np.arange(n) + rng.uniform(-0.35, 0.35, n)) * (2 * np.pi / n) + rng.uniform(0, 2 * np.pi)
    phis = np.mod(phis + np.pi, 2 * np.pi) - np.pi
    phis = phis[np.minimum(np.abs(phis - np.pi / 2), np.abs(phis + np.pi / 2)) > 0.1]
    m = phis.size
    widen = 1 + 1.2 * age
    depth = rng.uniform(0.04, 0.10, m) * (1 + 0.6 * rng.random(m) ** 4)
    rows = np.column_stack(
        [
            phis,
            np.full(m, -1.0),  # open to the surface (and above it, where the brain mask cuts it)
            depth,
            rng.uniform(0.003, 0.0045, m) * widen,
            rng.normal(0, 0.8, m),
            rng.uniform(0, 0.04, m),
            rng.uniform(25, 60, m),
            rng.normal(0, 0.25, m),
        ]
    )
    branches = []
    for r in rows[rng.random(m) < 0.55]:
        t0 = r[2] * rng.uniform(0.35, 0.7)
        ang = r[0] + r[4] * t0 + r[5] * math.sin(r[6] * t0)
        curv = rng.choice([-1, 1]) * rng.uniform(1.0, 2.5)
        branches.append([ang - curv * t0, t0, t0 + rng.uniform(0.02, 0.05), r[3] * 0.9, curv, 0.0, 1.0, r[7]])
    fiss = 0.0055 * widen
    special = [
        [np.pi / 2, -1.0, rng.uniform(0.22, 0.32), fiss, rng.normal(0, 0.05), 0.01, 30.0, 0.0],
        [-np.pi / 2, -1.0, rng.uniform(0.18, 0.28), fiss, rng.normal(0, 0.05), 0.01, 30.0, 0.0],
        [rng.uniform(0.15, 0.35), -1.0, rng.uniform(0.14, 0.22), fiss, rng.normal(0, 0.6), 0.02, 30.0, 0.1],
        [
            np.pi - rng.uniform(0.15, 0.35),
            -1.0,
            rng.uniform(0.14, 0.22),
            fiss,
            rng.normal(0, 0.6),
            0.02,
            30.0,
            0.1,
        ],
    ]
    out = np.concatenate([rows, np.asarray(branches).reshape(-1, 8), np.asarray(special)])
    return out


def _sulcus_distance(phi, rphys, depth_below, sulci, z):
    """Signed distance to the nearest sulcal CSF slit (negative inside a slit); see :func:`_sulcal_pattern`.

    Slits are sorted by their angle at mid-depth and only the six nearest in angle are examined per pixel.
    """
    t_mid = 0.5 * (np.maximum(sulci[:, 1], 0) + sulci[:, 2])
    mid = sulci[:, 0] + sulci[:, 4] * t_mid + sulci[:, 5] * np.sin(sulci[:, 6] * t_mid) + sulci[:, 7] * z
    mid = np.mod(mid + np.pi, 2 * np.pi) - np.pi
    order = np.argsort(mid)
    s = sulci[order]
    idx = np.searchsorted(mid[order], phi)
    n = len(s)
    t = np.maximum(depth_below, 0)
    best = np.full(phi.shape, np.inf, dtype=np.float32)
    for off in (-3, -2, -1, 0, 1, 2):
        j = (idx + off) % n
        sj = s[j]
        ang = sj[..., 0] + sj[..., 4] * t + sj[..., 5] * np.sin(sj[..., 6] * t) + sj[..., 7] * z
        dphi = np.mod(phi - ang + np.pi, 2 * np.pi) - np.pi
        lateral = np.abs(dphi) * rphys
        along = np.maximum(np.maximum(depth_below - sj[..., 2], sj[..., 1] - depth_below), 0)
        dist = np.sqrt(lateral * lateral + along * along) - sj[..., 3]
        np.minimum(best, dist, out=best)
    return best


def _brain_slice(p: _Brain, xg, yg, pix: float, z: float) -> np.ndarray:
    h, w = xg.shape
    img = np.zeros((h, w), dtype=np.float32)
    zs = z / p.c
    if abs(zs) >= 1:
        return img
    sz = math.sqrt(1 - zs * zs)
    T = p.tissue
    _xr, _yr, rho, phi, scale = _polar(xg, yg, p.cx, p.cy, p.angle, p.a * sz, p.b * sz)
    r_skin = 1.0 + _fourier(phi, p.outline)
    d_skin = (rho - r_skin) * scale  # physical distance to the skin, negative inside
    _paint(img, _cover(d_skin, pix), T["skin"])
    t = p.t_skin
    _paint(img, _cover(d_skin + t, pix), T["fat"])
    t += p.t_fat
    skull = p.t_skull * (1 + 0.25 * np.sin(phi - 0.3))  # thicker at the back
    _paint(img, _cover(d_skin + t, pix), T["bone"])
    _paint(img, _cover(d_skin + t + 0.3 * skull, pix), T["marrow"])
    _paint(img, _cover(d_skin + t + 0.7 * skull, pix), T["bone"])
    t = t + skull
    _paint(img, _cover(d_skin + t, pix), T["csf"])
    d_pial = d_skin + t + p.t_csf
    brain = _cover(d_pial, pix)
    _paint(img, brain, T["gm"])
    rphys = rho * scale
    slit = _sulcus_distance(phi, rphys, -d_pial, p.sulci, zs)
    d_wm = np.maximum(d_pial + p.cortex, p.cortex - slit)
    _paint(img, _cover(d_wm, pix), T["wm"])
    _paint(img, _cover(np.maximum(slit, d_pial), pix), T["csf"])
    # deep structures live in the head frame, scaled by the head size
    R = 0.5 * (p.a + p.b)

    def frame_ellipse(ex, ey, ez, ea, eb, ec, ang, value):
        zz = (zs - ez) / ec
        if abs(zz) >= 1:
            return
        k = math.sqrt(1 - zz * zz)
        cx, cy = _to_world(p.cx, p.cy, p.angle, ex * R, ey * R)
        _stamp(img, xg, yg, pix, cx, cy, ea * R * k, eb * R * k, p.angle + ang, value)

    for sgn in (-1, 1):  # lentiform nuclei, thalami, caudate heads
        frame_ellipse(sgn * 0.30, 0.02, 0.0, 0.06 * p.deep, 0.16 * p.deep, 0.22, sgn * 0.15, T["deep"])
        frame_ellipse(sgn * 0.11, -0.12, -0.02, 0.09 * p.deep, 0.12 * p.deep, 0.2, sgn * 0.3, T["deep"])
        frame_ellipse(sgn * 0.13, 0.2, 0.06, 0.06 * p.deep, 0.08 * p.deep, 0.25, 0.0, T["deep"])
    v = p.ventricles
    for sgn in (-1, 1):  # frontal horns, bodies and occipital horns of the lateral ventricles
        frame_ellipse(sgn * (0.025 + 0.035 * v), 0.17, 0.08, 0.035 * v, 0.13 * v, 0.3, sgn * 0.35, T["csf"])
        frame_ellipse(sgn * (0.05 + 0.03 * v), -0.02, 0.12, 0.03 * v, 0.14 * v, 0.25, -sgn * 0.1, T["csf"])
        frame_ellipse(sgn * (0.11 + 0.02 * v), -0.27, 0.05, 0.028 * v, 0.1 * v, 0.25, -sgn * 0.45, T["csf"])
    frame_ellipse(0.0, -0.05, -0.05, 0.012 * v, 0.08, 0.15, 0.0, T["csf"])  # third ventricle
    for lx, ly, lz, rx, ry, rz, ang in p.lesions:
        frame_ellipse(lx, ly, lz, rx, ry, rz, ang, T["lesion"])
    # mild texture inside tissue and a smooth receive-bias field
    tex = 1 + 0.025 * _eval_field(p.texture, xg, yg, zs) * brain
    bias = 1 + 0.04 * _eval_field(p.bias, xg, yg, zs)
    img *= tex * bias
    return img


def brain_phantom(shape: Sequence[int] = (256, 256), seed: int = 0, contrast: str = "t1") -> np.ndarray:
    """A brain-like MRI magnitude image (2D) or volume (3D) of one simulated subject.

    Anatomy: scalp (skin and fat), skull with diploe, subarachnoid CSF, a folded cortex (grey-matter ribbon
    around sulcal CSF slits, white-matter fingers into the gyri, interhemispheric and Sylvian fissures),
    deep grey matter, lateral and third ventricles, a few small white-matter lesions, a mild tissue texture
    and a smooth receive-bias field. The seed varies head size, shape, position and rotation, the folding
    pattern, atrophy (sulcal width, CSF, ventricle size), tissue intensities (+-6 %) and the lesions.

    Parameters
    ----------
    shape
        ``(H, W)`` or ``(D, H, W)``. The shorter in-plane side spans the head's field of view; a 3D volume
        spans the head from bottom to top over its ``D`` slices.
    seed
        Subject seed (any non-negative integer).
    contrast
        ``"t1"`` (WM > GM > CSF, fat bright), ``"t2"`` (CSF > GM > WM, lesions bright) or ``"flair"``
        (T2-like with nulled CSF, lesions brightest).

    Returns
    -------
    numpy.ndarray
        float32 ``shape`` with values in [0, 1] (background 0).
    """
    shape = _check_shape(shape, (2, 3), "brain phantom")
    if contrast not in BRAIN_CONTRASTS:
        raise InreconError(f"contrast {contrast!r} is not known", f"use one of {sorted(BRAIN_CONTRASTS)}")
    rng = np.random.default_rng(_seed(seed))
    p = _brain_params(rng, contrast, len(shape) == 3)
    xg, yg, pix = _grid(*shape[-2:])
    if len(shape) == 2:
        out = _brain_slice(p, xg, yg, pix, 0.0)
    else:
        out = np.stack([_brain_slice(p, xg, yg, pix, float(z)) for z in _z_coords(shape[0])])
    return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)


# ------------------------------------------------------------------------------------------------------------
# chest CT
# ------------------------------------------------------------------------------------------------------------
@dataclass
class _Body:
    cx: float
    cy: float
    angle: float
    a: float
    b: float
    outline: np.ndarray
    t_fat: float
    t_muscle: float
    lung_hu: float
    blood_hu: float
    heart: tuple  # (x, y, a, b, angle) in the body frame (units of the AP half-axis)
    lung_size: float
    ribs: np.ndarray  # rows (phi0, dphi/dz, rib size)
    vessels: np.ndarray  # rows (x0, y0, vx, vy, amp, freq, phase, radius, elongation, angle), body frame
    nodules: np.ndarray  # rows (x, y, z, r, value_hu)
    disc_phase: float
    texture: np.ndarray


def _body_params(rng: np.random.Generator, is3d: bool) -> _Body:
    a = rng.uniform(0.78, 0.92)
    b = a * rng.uniform(0.62, 0.74)
    outline = np.array([[k, rng.normal(0, 0.015), rng.uniform(0, 2 * np.pi)] for k in range(3, 7)])
    outline = np.vstack([outline, [2, rng.uniform(0.0, 0.03), 0.0]])  # flatter back and front
    n_rib = int(rng.integers(7, 10))
    ribs = []
    for side in (-1, 1):
        for k in range(n_rib):
            frac = (k + 0.5 + rng.uniform(-0.2, 0.2)) / n_rib
            phi = -np.pi / 2 + side * (0.35 + frac * 2.3)
            ribs.append([phi, side * rng.uniform(0.6, 1.2), rng.uniform(0.8, 1.2)])
    n_v = int(rng.integers(70, 120))
    vessels = []
    for _ in range(n_v):
        side = rng.choice([-1.0, 1.0])
        r = rng.uniform(0.05, 1.0) ** 0.7  # denser towards the hilum
        t = rng.uniform(-np.pi, np.pi)
        vessels.append(
            [
                side * (0.42 - 0.25 * r * math.cos(t)),
                0.05 + 0.55 * r * math.sin(t),
                rng.normal(0, 0.15),
                rng.normal(0, 0.15),
                rng.uniform(0, 0.05),
                rng.uniform(2, 6),
                rng.uniform(0, 2 * np.pi),
                rng.uniform(0.006, 0.016) * (1.5 - 0.9 * r),
                rng.uniform(1.0, 3.0) if rng.random() < 0.4 else 1.0,
                rng.uniform(0, np.pi),
            ]
        )
    n_nod = int(min(4, rng.poisson(1.3)))
    nodules = []
    for _ in range(n_nod):
        side = rng.choice([-1.0, 1.0])
        nodules.append(
            [
                side * rng.uniform(0.3, 0.7),
                rng.uniform(-0.45, 0.55),
                rng.uniform(-0.5, 0.5) * is3d,
                rng.uniform(0.015, 0.04),
                rng.uniform(-10, 60),
            ]
        )
    return _Body(
        cx=rng.normal(0, 0.02),
        cy=rng.normal(-0.03, 0.03),
        angle=math.radians(rng.normal(0, 2.5)),
        a=a,
        b=b,
        outline=outline,
        t_fat=rng.uniform(0.02, 0.09),
        t_muscle=rng.uniform(0.03, 0.05),
        lung_hu=rng.uniform(-760, -680),
        blood_hu=rng.choice([rng.uniform(35, 55), rng.uniform(150, 300)]),  # without / with contrast agent
        heart=(
            rng.uniform(0.05, 0.2),
            rng.uniform(0.05, 0.2),
            rng.uniform(0.32, 0.4),
            rng.uniform(0.38, 0.48),
            rng.uniform(-0.6, -0.2),
        ),
        lung_size=rng.uniform(0.9, 1.08),
        ribs=np.asarray(ribs),
        vessels=np.asarray(vessels),
        nodules=np.asarray(nodules, dtype=np.float64).reshape(-1, 5),
        disc_phase=rng.uniform(0, 1),
        texture=_smooth_field(rng, 24, 20.0, 60.0),
    )


_SPINE_Y = -0.56  # vertebral body centre, in organ-frame units (see _BodyFrame)


@dataclass(frozen=True)
class _BodyFrame:
    """One slice's pixel grid and the subject's organ frame: inner organs are placed in units of ``B``
    (the AP half-axis at this height) relative to the body centre and rotation."""

    p: _Body
    xg: np.ndarray
    yg: np.ndarray
    pix: float
    B: float

    def world(self, fx, fy):
        """Organ-frame ``(fx, fy)`` -> world coordinates."""
        return _to_world(self.p.cx, self.p.cy, self.p.angle, fx * self.B, fy * self.B)

    def sd(self, fx, fy, fa, fb, ang):
        """Signed distance to an ellipse given in organ-frame units."""
        cx, cy = self.world(fx, fy)
        return _ellipse_sd(self.xg, self.yg, cx, cy, fa * self.B, fb * self.B, self.p.angle + ang)


def _paint_chest_wall(img: np.ndarray, p: _Body, xg, yg, pix: float, a: float, b: float):
    """Paint skin, subcutaneous fat, chest-wall muscle and the cavity; return ``(xr, yr, d_body, d_cav)``."""
    xr, yr, rho, phi, scale = _polar(xg, yg, p.cx, p.cy, p.angle, a, b)
    d_body = (rho - 1 - _fourier(phi, p.outline)) * scale
    _paint(img, _cover(d_body, pix), _u(30))  # skin
    _paint(img, _cover(d_body + 0.006, pix), _u(-100))  # subcutaneous fat
    t_fat = p.t_fat * (1 + 0.5 * np.cos(phi) ** 2)  # thicker at the flanks
    _paint(img, _cover(d_body + t_fat, pix), _u(45))  # chest-wall muscle
    t_mus = t_fat + p.t_muscle * (1 + 1.5 * np.sin(phi) ** 2)
    d_cav = d_body + t_mus
    _paint(img, _cover(d_cav, pix), _u(-80))  # mediastinal fat / cavity
    return xr, yr, d_body, d_cav


def _heart_sd(img: np.ndarray, f: _BodyFrame, z: float) -> tuple[float, np.ndarray]:
    """The heart's size factor at height ``z`` and its signed distance (ones where there is no heart)."""
    hx, hy, ha, hb, hang = f.p.heart
    heart_k = max(0.0, 1 - ((z + 0.3) / 0.75) ** 2) ** 0.5
    d_heart = f.sd(hx, hy - 0.1, ha * heart_k, hb * heart_k, hang) if heart_k > 0 else np.full_like(img, 1.0)
    return heart_k, d_heart


def _paint_lungs(img, f: _BodyFrame, z: float, a: float, xr, yr, d_cav, d_heart) -> np.ndarray:
    """Paint the lungs (big ellipses trimmed by the cavity wall, the heart and the spine); return their
    coverage."""
    p, xg, yg, pix, B = f.p, f.xg, f.yg, f.pix, f.B
    zl = np.clip(1 - ((z - 0.1) / 1.05) ** 2, 0.05, 1)
    ls = p.lung_size * math.sqrt(zl)
    d_spine = f.sd(0.0, _SPINE_Y, 0.22, 0.3, 0.0)
    d_lungs = np.full_like(img, np.inf)
    for side in (-1, 1):
        d = f.sd(side * 0.5 * a / B * 0.82, 0.02, 0.5 * ls * a / B * 0.78, 0.85 * ls, side * 0.1)
        np.minimum(d_lungs, d, out=d_lungs)
    d_lungs = np.maximum(d_lungs, d_cav + 0.012)
    d_lungs = np.maximum(d_lungs, 0.02 - d_heart)
    d_lungs = np.maximum(d_lungs, 0.02 - d_spine)
    d_lungs = np.maximum(d_lungs, 0.012 - np.abs(xr - (0.04 * B)))  # anterior junction line
    lung = _cover(d_lungs, pix)
    gravity = 25 * np.clip(-yr / B, -1, 1)  # dependent lung is denser
    tex = 6 * _eval_field(p.texture, xg, yg, z)
    _paint(img, lung, hu_to_unit(p.lung_hu + gravity + tex).astype(np.float32))
    return lung


def _paint_liver_and_heart(img, f: _BodyFrame, z: float, a: float, d_cav, heart_k: float, d_heart) -> None:
    """Paint the liver dome (lowest slices) and the heart: pericardial fat, myocardium, blood pool."""
    p, pix, B = f.p, f.pix, f.B
    liver_k = min(1.0, max(0.0, (-0.3 - z) / 0.7))
    if liver_k > 0:
        k = math.sqrt(liver_k)
        d_liver = np.maximum(f.sd(-0.3, -0.05, 0.75 * k * a / B, 0.8 * k, 0.2), d_cav)
        _paint(img, _cover(d_liver, pix), _u(60))
    if heart_k > 0:
        hx, hy, ha, hb, hang = p.heart
        _paint(img, _cover(d_heart, pix), _u(-90))
        _paint(img, _cover(d_heart + 0.012, pix), _u(45))
        _paint(
            img,
            _cover(f.sd(hx + 0.04, hy - 0.08, 0.6 * ha * heart_k, 0.6 * hb * heart_k, hang), pix),
            _u(p.blood_hu),
        )


def _paint_mediastinum(img: np.ndarray, f: _BodyFrame, z: float) -> None:
    """Stamp the great vessels, the trachea or main bronchi and the oesophagus."""
    p, xg, yg, pix, B = f.p, f.xg, f.yg, f.pix, f.B
    world = f.world
    blood = _u(p.blood_hu)
    cx, cy = world(0.18, -0.42)
    _stamp(img, xg, yg, pix, cx, cy, 0.09 * B, 0.09 * B, 0, blood)  # descending aorta
    if z > -0.35:
        cx, cy = world(-0.02, 0.12 + 0.1 * z)
        _stamp(img, xg, yg, pix, cx, cy, 0.1 * B, 0.1 * B, 0, blood)  # ascending aorta
        cx, cy = world(0.16, 0.2)
        _stamp(img, xg, yg, pix, cx, cy, 0.09 * B, 0.08 * B, 0.4, blood)  # pulmonary trunk
    if z > 0.1:
        cx, cy = world(0.0, -0.22)
        _stamp(img, xg, yg, pix, cx, cy, 0.08 * B, 0.07 * B, 0, _u(20))  # trachea wall
        _stamp(img, xg, yg, pix, cx, cy, 0.065 * B, 0.055 * B, 0, _u(-1000))
    elif z > -0.35:
        for side in (-1, 1):  # main bronchi
            cx, cy = world(side * 0.16, -0.22)
            _stamp(img, xg, yg, pix, cx, cy, 0.045 * B, 0.04 * B, 0, _u(20))
            _stamp(img, xg, yg, pix, cx, cy, 0.032 * B, 0.028 * B, 0, _u(-1000))
    cx, cy = world(0.07, -0.42)
    _stamp(img, xg, yg, pix, cx, cy, 0.045 * B, 0.035 * B, 0, _u(35))  # oesophagus


def _paint_lung_vessels(img: np.ndarray, f: _BodyFrame, z: float, lung: np.ndarray) -> None:
    """Stamp the vessels in the lungs (tubes whose centre drifts with ``z``) and the nodules."""
    p, xg, yg, pix, B = f.p, f.xg, f.yg, f.pix, f.B
    world = f.world
    for x0, y0, vx, vy, amp, fr, ph, r, el, ang in p.vessels:
        vxp = x0 + vx * z + amp * math.sin(fr * z + ph)
        vyp = y0 + vy * z + amp * math.cos(fr * z + ph)
        cx, cy = world(vxp, vyp)
        _stamp(img, xg, yg, pix, cx, cy, r * B * el, r * B, p.angle + ang + 2 * z, _u(40), within=lung)
    for nx, ny, nz, r, hu in p.nodules:
        k = 1 - ((z - nz) / r / B * 0.5) ** 2
        if k > 0:
            cx, cy = world(nx, ny)
            _stamp(img, xg, yg, pix, cx, cy, r * math.sqrt(k), r * math.sqrt(k), 0, _u(hu), within=lung)


def _paint_spine(img: np.ndarray, f: _BodyFrame, z: float, d_body: np.ndarray) -> None:
    """Stamp the paraspinal muscles, the vertebral body (or disc), the canal and the posterior elements."""
    p, xg, yg, pix, B = f.p, f.xg, f.yg, f.pix, f.B
    world = f.world
    spine_y = _SPINE_Y
    disc = math.cos(2 * np.pi * (z * 3.2 + p.disc_phase)) > 0.8
    body = _cover(d_body + 0.006, pix)
    for side in (-1, 1):
        cx, cy = world(side * 0.17, spine_y - 0.2)
        _stamp(img, xg, yg, pix, cx, cy, 0.12 * B, 0.16 * B, side * 0.3, _u(50), within=body)
    cx, cy = world(0.0, spine_y)
    if disc:
        _stamp(img, xg, yg, pix, cx, cy, 0.14 * B, 0.12 * B, 0, _u(90))
    else:
        _stamp(img, xg, yg, pix, cx, cy, 0.14 * B, 0.12 * B, 0, _u(900), ring=(0.015, _u(230)))
    cx, cy = world(0.0, spine_y - 0.22)
    _stamp(img, xg, yg, pix, cx, cy, 0.09 * B, 0.08 * B, 0, _u(700))  # neural arch
    _stamp(img, xg, yg, pix, cx, cy, 0.06 * B, 0.055 * B, 0, _u(15))  # canal and cord
    cx, cy = world(0.0, spine_y - 0.36)
    _stamp(img, xg, yg, pix, cx, cy, 0.025 * B, 0.08 * B, 0, _u(700))  # spinous process
    for side in (-1, 1):
        cx, cy = world(side * 0.15, spine_y - 0.16)
        _stamp(img, xg, yg, pix, cx, cy, 0.1 * B, 0.028 * B, side * 0.35, _u(650))  # transverse process


def _paint_sternum_and_ribs(img: np.ndarray, f: _BodyFrame, z: float, a: float, b: float) -> None:
    """Stamp the sternum and the ribs: small bony ovals in the chest wall whose angle drifts with ``z`` (ribs
    run obliquely)."""
    p, xg, yg, pix, B = f.p, f.xg, f.yg, f.pix, f.B
    cxs, cys = f.world(0.0, 1.0 - (p.t_fat + p.t_muscle * 2.5) / B - 0.05)
    _stamp(img, xg, yg, pix, cxs, cys, 0.1 * B, 0.035 * B, 0, _u(800), ring=(0.01, _u(250)))
    for phi0, dphi, size in p.ribs:
        ang = phi0 + 0.25 * dphi * z
        if math.cos(2 * np.pi * (3.0 * z + phi0)) < -0.35:
            continue  # between ribs at this level
        rr = 1 + float(_fourier(np.array([ang]), p.outline)[0])
        sc = math.hypot(a * math.cos(ang), b * math.sin(ang))
        depth = p.t_fat * (1 + 0.5 * math.cos(ang) ** 2) + 0.6 * p.t_muscle * (1 + 1.5 * math.sin(ang) ** 2)
        rad = rr * sc - depth
        fx, fy = rad * math.cos(ang) * a / sc, rad * math.sin(ang) * b / sc
        cx, cy = _to_world(p.cx, p.cy, p.angle, fx, fy)
        _stamp(
            img,
            xg,
            yg,
            pix,
            cx,
            cy,
            0.04 * B * size,
            0.022 * B * size,
            p.angle + ang + np.pi / 2,
            _u(900),
            ring=(0.007, _u(250)),
        )


def _body_slice(p: _Body, xg, yg, pix: float, z: float) -> np.ndarray:
    """The axial slice at height ``z`` of the subject ``p`` on the grid ``(xg, yg)``, in display units."""
    h, w = xg.shape
    img = np.zeros((h, w), dtype=np.float32)
    a = p.a * (1 + 0.04 * z)
    b = p.b * (1 + 0.03 * z)
    xr, yr, d_body, d_cav = _paint_chest_wall(img, p, xg, yg, pix, a, b)
    f = _BodyFrame(p, xg, yg, pix, b)  # frame unit for inner organs: the AP half-axis
    heart_k, d_heart = _heart_sd(img, f, z)
    lung = _paint_lungs(img, f, z, a, xr, yr, d_cav, d_heart)
    _paint_liver_and_heart(img, f, z, a, d_cav, heart_k, d_heart)
    _paint_mediastinum(img, f, z)
    _paint_lung_vessels(img, f, z, lung)
    _paint_spine(img, f, z, d_body)
    _paint_sternum_and_ribs(img, f, z, a, b)
    return img


def body_ct_phantom(shape: Sequence[int] = (256, 256), seed: int = 0) -> np.ndarray:
    """A chest CT slice of one simulated subject, windowed to [-800, 400] HU and scaled to [0, 1].

    Anatomy (approximate HU -> unit values): air 0, lungs (-760..-680 HU, denser posteriorly, with
    vessel cross-sections and 0-4 nodules) about 0.03-0.1, subcutaneous and mediastinal fat (-100 HU) 0.58,
    chest-wall and paraspinal muscle, heart and great vessels 0.7 (blood up to 0.9 with contrast agent),
    trachea or main bronchi, oesophagus, vertebra with canal and posterior elements, sternum and ribs
    (cortical bone clipped to 1). The seed varies body size, shape, position and rotation, fat thickness,
    lung size and density, heart size and position, contrast enhancement, vessels, ribs and nodules.

    Parameters
    ----------
    shape
        ``(H, W)``; a 3D ``(D, H, W)`` shape is passed to :func:`body_ct_volume`.
    seed
        Subject seed.

    Returns
    -------
    numpy.ndarray
        float32 ``shape`` in [0, 1]; the slice is the ``z = 0`` (mid-thorax) level of the subject's volume.
    """
    shape = _check_shape(shape, (2, 3), "body CT phantom")
    if len(shape) == 3:
        return body_ct_volume(shape, seed)
    p = _body_params(np.random.default_rng(_seed(seed)), False)
    xg, yg, pix = _grid(*shape)
    return np.clip(_body_slice(p, xg, yg, pix, 0.0), 0.0, 1.0).astype(np.float32, copy=False)


def body_ct_volume(shape: Sequence[int] = (100, 256, 256), seed: int = 0) -> np.ndarray:
    """A chest CT volume ``(D, H, W)`` of one simulated subject (see :func:`body_ct_phantom`).

    The ``D`` slices span the thorax from the lung bases (``z = -1``, first slice) to the apices
    (``z = 1``): lungs grow and shrink, the liver dome rises into the lowest slices, the heart is present in
    the lower half, the trachea splits into the
    main bronchi, vessels are tubes drifting smoothly with ``z``, ribs appear and disappear periodically,
    vertebral bodies alternate with discs, nodules are spheres. Values in [0, 1] as for the 2D phantom.
    """
    shape = _check_shape(shape, (3,), "body CT volume")
    p = _body_params(np.random.default_rng(_seed(seed)), True)
    xg, yg, pix = _grid(*shape[1:])
    vol = np.stack([_body_slice(p, xg, yg, pix, float(z)) for z in _z_coords(shape[0])])
    return np.clip(vol, 0.0, 1.0).astype(np.float32, copy=False)


# ------------------------------------------------------------------------------------------------------------
# populations and Shepp-Logan
# ------------------------------------------------------------------------------------------------------------
def _seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise InreconError(f"seed {seed!r} is not a non-negative integer", "pass an integer seed >= 0")
    return int(seed)


def population(
    kind: str = "brain", n: int = 10, shape: Sequence[int] = (256, 256), seed: int = 0, **kw
) -> list[np.ndarray]:
    """``n`` distinct simulated subjects of one kind.

    Subject ``i`` uses the seed ``SeedSequence([seed, i])``, so populations with different ``seed`` share no
    subject (use ``seed=0`` for pre-training and ``seed=1`` for testing) and growing ``n`` keeps the first
    subjects unchanged.

    Parameters
    ----------
    kind
        ``"brain"`` (:func:`brain_phantom`, keyword ``contrast``) or ``"body"`` (:func:`body_ct_phantom`;
        a 3D shape gives :func:`body_ct_volume`).
    n
        Number of subjects (>= 1).
    shape
        ``(H, W)`` or ``(D, H, W)``.
    seed
        Population seed.
    **kw
        Passed to the phantom function.

    Returns
    -------
    list of numpy.ndarray
        ``n`` float32 arrays of ``shape`` in [0, 1].
    """
    makers = {"brain": brain_phantom, "body": body_ct_phantom}
    if kind not in makers:
        raise InreconError(f"population kind {kind!r} is not known", f"use one of {sorted(makers)}")
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise InreconError(f"population size n={n!r} is not a positive integer", "pass n >= 1")
    base = _seed(seed)
    seeds = [int(np.random.SeedSequence([base, i]).generate_state(1)[0]) for i in range(int(n))]
    return [makers[kind](shape, seed=s, **kw) for s in seeds]


# (intensity, semi-axis a, semi-axis b, centre x, centre y, angle in degrees): Toft's modified phantom
_SHEPP_LOGAN = (
    (1.0, 0.69, 0.92, 0.0, 0.0, 0.0),
    (-0.8, 0.6624, 0.874, 0.0, -0.0184, 0.0),
    (-0.2, 0.11, 0.31, 0.22, 0.0, -18.0),
    (-0.2, 0.16, 0.41, -0.22, 0.0, 18.0),
    (0.1, 0.21, 0.25, 0.0, 0.35, 0.0),
    (0.1, 0.046, 0.046, 0.0, 0.1, 0.0),
    (0.1, 0.046, 0.046, 0.0, -0.1, 0.0),
    (0.1, 0.046, 0.023, -0.08, -0.605, 0.0),
    (0.1, 0.023, 0.023, 0.0, -0.606, 0.0),
    (0.1, 0.023, 0.046, 0.06, -0.605, 0.0),
)


def shepp_logan(shape: Sequence[int] = (256, 256)) -> np.ndarray:
    """The modified Shepp-Logan phantom (Toft's intensities), piecewise constant.

    Each axis spans [-1, 1] (pixel centres), ``y`` pointing up (row 0 at ``y = 1``), so the three small
    ellipses sit at the bottom, as in MATLAB's ``phantom`` and scikit-image's ``shepp_logan_phantom``.

    Parameters
    ----------
    shape
        ``(H, W)``.

    Returns
    -------
    numpy.ndarray
        float32 ``(H, W)`` with values in [0, 1] (background 0, skull 1, brain 0.2).
    """
    shape = _check_shape(shape, (2,), "Shepp-Logan")
    h, w = shape
    x = ((np.arange(w) + 0.5) * (2.0 / w) - 1.0)[None, :]
    y = (1.0 - (np.arange(h) + 0.5) * (2.0 / h))[:, None]
    img = np.zeros((h, w), dtype=np.float64)
    for value, a, b, x0, y0, deg in _SHEPP_LOGAN:
        t = math.radians(deg)
        c, s = math.cos(t), math.sin(t)
        u = (x - x0) * c + (y - y0) * s
        v = -(x - x0) * s + (y - y0) * c
        img += value * ((u / a) ** 2 + (v / b) ** 2 <= 1.0)
    return np.clip(img, 0.0, 1.0).astype(np.float32)
