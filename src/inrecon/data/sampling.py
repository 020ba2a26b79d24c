"""Sampling patterns for MRI: Cartesian masks and non-Cartesian trajectories (pure, seeded functions).

Conventions
-----------
- Masks are bool tensors on the k-space grid of :class:`~inrecon.data.scans.MRIScan` (centred: k = 0 at index
  ``N // 2`` along each axis), True where a sample is acquired.
- The **phase-encode axis of 2D Cartesian masks is the last axis** by default (``axis=-1``): as in fastMRI, a
  mask selects *columns* of the ``(H, W)`` grid and the readout runs along the rows (axis 0). The real brain
  data in ``shared/data`` follow this layout (k-space ``(C, 180, 230)`` with 230 phase encodes).
- Trajectories are float32 ``(K, d)`` in radians per pixel in ``[-pi, pi)``, coordinate order = image axis
  order (``(ky, kx)`` for an ``(H, W)`` image), as :class:`~inrecon.physics.nufft.NufftSenseOp` expects.
- Every random pattern takes a ``seed`` and is reproducible across runs and platforms (numpy PCG64).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from inrecon.errors import InreconError, ShapeError

__all__ = [
    "PATTERNS",
    "acceleration",
    "acs_lines_bilevel",
    "cartesian_1d",
    "make_pattern",
    "poisson_disc",
    "radial_spokes_for_af",
    "radial_trajectory",
    "spiral_trajectory",
]

_GOLDEN_RATIO = (1.0 + math.sqrt(5.0)) / 2.0


# --- checks -------------------------------------------------------------------------------------------------
def _shape(shape: Sequence[int], ndims: Sequence[int] = (2,)) -> tuple[int, ...]:
    try:
        out = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise ShapeError(f"shape {shape!r} is not a sequence of integers", "give e.g. (256, 256)") from None
    if len(out) not in tuple(ndims) or min(out) < 1 or any(o != s for o, s in zip(out, shape)):
        want = " or ".join(f"{d}D" for d in ndims)
        raise ShapeError(
            f"shape {tuple(shape)} is not a {want} grid of positive integers", "give e.g. (256, 256)"
        )
    return out


def _af(af: float, name: str = "af", max_af: float | None = None) -> float:
    try:
        a = float(af)
    except (TypeError, ValueError):
        raise InreconError(
            f"{name} is {af!r}, not a number", f"give {name} as a number > 1, e.g. 4"
        ) from None
    if not (math.isfinite(a) and a > 1.0):
        raise InreconError(
            f"{name} (acceleration) is {af} but must be > 1",
            "use af > 1 (af = 1 is full sampling: use an all-True mask instead)",
        )
    if max_af is not None and a > max_af:
        raise InreconError(f"{name} is {af} but at most {max_af} is supported", f"use {name} <= {max_af}")
    return a


def _int(value, name: str, lo: int) -> int:
    if isinstance(value, bool) or int(value) != value or value < lo:
        raise InreconError(
            f"{name} is {value!r} but must be an integer >= {lo}", f"set {name} to an integer >= {lo}"
        )
    return int(value)


def _centre_slice(n: int, width: int) -> slice:
    start = n // 2 - width // 2
    return slice(start, start + width)


# --- Cartesian ----------------------------------------------------------------------------------------------
def acs_lines_bilevel(ny: int) -> int:
    """Number of ACS lines the Bilevel-INR code uses for ``ny`` phase encodes: ``int(0.04 * ny)``."""
    return int(0.04 * _int(ny, "ny", 1))


def cartesian_1d(
    shape: Sequence[int],
    af: int,
    acs: int = 24,
    axis: int = -1,
    seed: int | None = None,
    offset: int = 0,
) -> torch.Tensor:
    """Uniform 1D Cartesian undersampling: every ``af``-th phase-encode line plus a fully sampled centre.

    Parameters
    ----------
    shape
        k-space grid ``(H, W)`` (or ``(D, H, W)``: the lines then extend over every other axis).
    af
        Line spacing (integer >= 2). The *achieved* acceleration is lower because of the ACS block; see
        :func:`acceleration`.
    acs
        Number of fully sampled central lines (autocalibration signal), centred on index ``n // 2``
        (k = 0); 0 for none. Use :func:`acs_lines_bilevel` for the Bilevel-INR convention ``int(0.04 * ny)``.
    axis
        The phase-encode axis (default: the last axis, the fastMRI column convention).
    seed
        If given, the lattice offset is drawn uniformly from ``0 .. af-1`` with this seed (then ``offset``
        must stay 0).
    offset
        Index of the first sampled line of the regular lattice ``offset, offset + af, ...``.

    Returns
    -------
    torch.Tensor
        bool, shape ``shape``.
    """
    shape = _shape(shape, (2, 3))
    a = _af(af)
    if a != int(a):
        raise InreconError(
            f"cartesian_1d needs an integer line spacing but af is {af}",
            "round af to an integer, or use poisson_disc for fractional accelerations",
        )
    a = int(a)
    if not -len(shape) <= int(axis) < len(shape):
        raise InreconError(
            f"axis {axis} does not exist for a {len(shape)}D grid", "use axis=-1 (columns) or 0 (rows)"
        )
    axis = int(axis) % len(shape)
    n = shape[axis]
    acs = _int(acs, "acs", 0)
    if acs > n:
        raise InreconError(
            f"acs={acs} ACS lines exceed the {n} phase-encode lines of axis {axis}",
            f"use acs <= {n} (24 is typical at 256 lines) or check the axis",
        )
    if a > n:
        raise InreconError(f"af={a} exceeds the {n} phase-encode lines", f"use af <= {n}")
    offset = _int(offset, "offset", 0)
    if seed is not None:
        if offset != 0:
            raise InreconError("both seed and offset were given", "give one: seed draws the offset at random")
        offset = int(np.random.default_rng(seed).integers(a))
    if offset >= a:
        raise InreconError(f"offset={offset} must be smaller than af={a}", f"use offset in 0..{a - 1}")
    lines = np.zeros(n, dtype=bool)
    lines[offset::a] = True
    lines[_centre_slice(n, acs)] = True
    view = [1] * len(shape)
    view[axis] = n
    return torch.from_numpy(np.broadcast_to(lines.reshape(view), shape).copy())


def acceleration(mask: torch.Tensor | np.ndarray) -> float:
    """Achieved acceleration of a Cartesian mask: grid points / sampled points."""
    m = torch.as_tensor(np.asarray(mask)) if not isinstance(mask, torch.Tensor) else mask
    if m.is_complex():
        raise InreconError("mask is complex", "pass the bool sampling mask, not k-space")
    n = int((m != 0).sum())
    if n == 0:
        raise InreconError("the mask samples nothing", "check the mask (all False)")
    return m.numel() / n


# --- Poisson disc -------------------------------------------------------------------------------------------
def _radius_map(shape: tuple[int, int], variable_density: bool) -> np.ndarray:
    """Relative exclusion radius per grid point: 1 at the centre, ``1 + 2 rho`` at elliptical radius rho."""
    ys = (np.arange(shape[0]) - shape[0] // 2) / (shape[0] / 2)
    xs = (np.arange(shape[1]) - shape[1] // 2) / (shape[1] / 2)
    rho = np.sqrt(ys[:, None] ** 2 + xs[None, :] ** 2)
    return 1.0 + 2.0 * rho if variable_density else np.ones(shape)


class _DiscCache:
    def __init__(self):
        self.cache: dict[int, np.ndarray] = {}

    def get(self, r: float) -> tuple[int, np.ndarray]:
        q = int(round(r * 8))  # radii quantised to 1/8 pixel
        if q not in self.cache:
            rr = q / 8
            h = max(int(math.ceil(rr)) - 1, 0)  # largest integer offset with |d| < rr
            d = np.arange(-h, h + 1)
            self.cache[q] = (d[:, None] ** 2 + d[None, :] ** 2) < rr * rr
        disc = self.cache[q]
        return disc.shape[0] // 2, disc


def _dart_throw(order: np.ndarray, radius: np.ndarray, allowed: np.ndarray, discs: _DiscCache) -> np.ndarray:
    """Greedy Poisson-disc thinning: visit grid points in ``order``; accept a point unless an accepted point's
    exclusion disc (its own radius) covers it."""
    h, w = radius.shape
    blocked = ~allowed.reshape(-1).copy()
    blocked_2d = blocked.reshape(h, w)
    out = np.zeros(h * w, dtype=bool)
    rad = radius.reshape(-1)
    for idx in order:
        if blocked[idx]:
            continue
        out[idx] = True
        y, x = divmod(int(idx), w)
        half, disc = discs.get(rad[idx])
        y0, y1 = max(0, y - half), min(h, y + half + 1)
        x0, x1 = max(0, x - half), min(w, x + half + 1)
        blocked_2d[y0:y1, x0:x1] |= disc[y0 - y + half : y1 - y + half, x0 - x + half : x1 - x + half]
    return out.reshape(h, w)


def _poisson_budget(
    shape: tuple[int, int], a: float, calib: Sequence[int] | int, tol: float
) -> tuple[tuple[int, int], float, int]:
    """Check :func:`poisson_disc`'s calibration block and tolerance; return the block ``(ch, cw)``, the
    target number of samples and the number in the block."""
    calib_t = (int(calib), int(calib)) if np.isscalar(calib) else tuple(int(c) for c in calib)
    if len(calib_t) != 2 or min(calib_t) < 0:
        raise InreconError(
            f"calib is {calib!r}", "give the calibration block as (rows, columns), e.g. (24, 24)"
        )
    if calib_t[0] > shape[0] or calib_t[1] > shape[1]:
        raise InreconError(
            f"calibration block {calib_t} is larger than the grid {shape}",
            "use a smaller calib, e.g. (24, 24)",
        )
    n_target = math.prod(shape) / a
    n_calib = calib_t[0] * calib_t[1]
    if n_calib > 0.9 * n_target:
        raise InreconError(
            f"the {calib_t[0]}x{calib_t[1]} calibration block alone holds {n_calib} samples but af={a:g} on "
            f"{shape} allows only {n_target:.0f}",
            "lower af, shrink calib, or use a larger grid",
        )
    if not (0 < tol <= 0.05):
        raise InreconError(f"tol is {tol}", "use a relative tolerance in (0, 0.05], e.g. 0.02")
    return calib_t, n_target, n_calib


def _allowed_region(
    shape: tuple[int, int], crop_corners: bool, calib_mask: np.ndarray, n_target: float, a: float
) -> np.ndarray:
    """Where samples may fall: the inscribed ellipse when ``crop_corners`` (checked to hold enough
    samples), else the whole grid."""
    if not crop_corners:
        return np.ones(shape, dtype=bool)
    ys = (np.arange(shape[0]) - shape[0] // 2) / (shape[0] / 2)
    xs = (np.arange(shape[1]) - shape[1] // 2) / (shape[1] / 2)
    allowed = ys[:, None] ** 2 + xs[None, :] ** 2 <= 1.0
    if (allowed | calib_mask).sum() < 1.02 * n_target:
        raise InreconError(
            f"af={a:g} cannot be reached inside the inscribed ellipse (it holds {allowed.sum()} of the "
            f"{n_target:.0f} samples needed)",
            "use crop_corners=False or a larger af",
        )
    return allowed


def _search_radius(
    order: np.ndarray,
    radius: np.ndarray,
    allowed: np.ndarray,
    calib_mask: np.ndarray,
    n_target: float,
    n_calib: int,
    tol: float,
) -> tuple[float, np.ndarray]:
    """Search the radius scale ``r0`` (secant steps on ``log(count)`` vs ``log(r0)``, then bisection) until
    the sample count is within ``tol`` of ``n_target``; return the best ``(relative error, mask)``."""
    discs = _DiscCache()

    def count(r0: float) -> tuple[int, np.ndarray]:
        m = _dart_throw(order, r0 * radius, allowed, discs) | calib_mask
        return int(m.sum()), m

    # Start from the density of a random close packing (~0.7 / r^2 points per pixel on average).
    mean_scale = float(np.mean(radius[allowed] ** -2))
    r0 = math.sqrt(0.7 * allowed.sum() * mean_scale / max(n_target - n_calib, 1.0))
    best: tuple[float, np.ndarray] | None = None
    lo = hi = None  # r0 bracket: count(lo) > target > count(hi)
    for _ in range(40):
        n, m = count(r0)
        err = n / n_target - 1.0
        if best is None or abs(err) < abs(best[0]):
            best = (err, m)
        if abs(err) <= tol:
            break
        if n > n_target:
            lo = r0 if lo is None else max(lo, r0)
        else:
            hi = r0 if hi is None else min(hi, r0)
        if lo is not None and hi is not None:
            r0 = 0.5 * (lo + hi)
        else:  # count ~ r0**-2: secant step in log space
            r0 *= math.sqrt(max(n - n_calib, 1) / max(n_target - n_calib, 1.0))
    return best


def poisson_disc(
    shape: Sequence[int],
    af: float,
    calib: Sequence[int] | int = (24, 24),
    seed: int = 0,
    variable_density: bool = True,
    crop_corners: bool = True,
    tol: float = 0.02,
) -> torch.Tensor:
    """2D Poisson-disc undersampling mask with a fully sampled calibration rectangle.

    Points are accepted greedily in a seeded random order unless they fall inside the exclusion disc of an
    accepted point. The disc radius is ``r0 * (1 + 2 rho)`` with variable density (``rho``: elliptical radius,
    0 at the centre, 1 at the middle of each edge), else ``r0``, times a per-point random factor in
    ``[0.8, 1.2]``; ``r0`` is searched (secant steps on
    ``log(count)`` vs ``log(r0)``, then bisection) until the achieved acceleration, calibration included, is
    within ``tol`` of ``af`` (a pattern more than 5 % off raises).

    Parameters
    ----------
    shape
        k-space grid ``(H, W)`` (both axes phase encode, e.g. ky-kz of a 3D scan, or a 2D retrospective mask).
    af
        Target acceleration, ``1 < af <= 30``.
    calib
        Calibration block ``(ch, cw)`` (or one int for a square), fully sampled at the centre; ``(0, 0)``
        for none.
    seed
        Seed of the visiting order.
    variable_density
        Denser sampling near the centre (9x at the edge) when True, uniform density when False.
    crop_corners
        Sample only inside the inscribed ellipse (as BART and sigpy do); needs ``af >= 4/pi``.
    tol
        Relative tolerance the radius search aims at.

    Returns
    -------
    torch.Tensor
        bool, shape ``(H, W)``.
    """
    shape = _shape(shape, (2,))
    a = _af(af, max_af=30)
    calib_t, n_target, n_calib = _poisson_budget(shape, a, calib, tol)
    rng = np.random.default_rng(seed)
    order = rng.permutation(math.prod(shape))
    # A +-20 % random jitter of each point's radius makes the count a smooth function of r0 (on a grid, a
    # common radius changes the packing in jumps, e.g. at r = 1, sqrt(2), 2).
    radius = _radius_map(shape, variable_density) * rng.uniform(0.8, 1.2, size=shape)
    calib_mask = np.zeros(shape, dtype=bool)
    calib_mask[_centre_slice(shape[0], calib_t[0]), _centre_slice(shape[1], calib_t[1])] = True
    allowed = _allowed_region(shape, crop_corners, calib_mask, n_target, a)
    err, m = _search_radius(order, radius, allowed, calib_mask, n_target, n_calib, tol)
    if abs(err) > 0.05:
        raise InreconError(
            f"could not reach af={a:g} within 5 % on {shape} (best {math.prod(shape) / m.sum():.2f})",
            "change af, calib or the grid size",
        )
    return torch.from_numpy(m)


# --- non-Cartesian ------------------------------------------------------------------------------------------
def _wrap(k: np.ndarray) -> torch.Tensor:
    """Map radians to [-pi, pi) (k-space is periodic on the NUFFT grid) and return float32."""
    k = np.mod(k + math.pi, 2 * math.pi) - math.pi
    t = torch.from_numpy(k.astype(np.float32))
    return torch.where(t >= math.pi, t - 2 * math.pi, t).clamp_min(-math.pi)


def radial_trajectory(
    n_spokes: int, n_readout: int, golden_angle: bool = False, full_circle: bool = False
) -> torch.Tensor:
    """Radial (projection) trajectory.

    Spoke ``i`` has angle ``theta_i`` from the kx axis; its samples are ``r_j (sin theta_i, cos theta_i)`` in
    ``(ky, kx)`` order with readout positions ``r_j = (j - n_readout / 2) 2 pi / n_readout``,
    ``j = 0 .. n_readout - 1``.

    Parameters
    ----------
    n_spokes, n_readout
        Number of spokes and samples per spoke (``n_readout`` = the image size for no readout oversampling).
    golden_angle
        ``theta_i = i * pi / phi`` (111.25 degrees; ``2 pi / phi`` with ``full_circle``) instead of uniform.
    full_circle
        Uniform angles over ``[0, 2 pi)`` (spokes in both directions, as BART's ``traj -r -D``) instead of
        ``[0, pi)``.

    Returns
    -------
    torch.Tensor
        float32 ``(n_spokes * n_readout, 2)`` radians in ``[-pi, pi)``, spoke-major (spoke ``i`` occupies rows
        ``i * n_readout .. (i + 1) * n_readout - 1``).
    """
    n_spokes = _int(n_spokes, "n_spokes", 1)
    n_readout = _int(n_readout, "n_readout", 2)
    span = 2 * math.pi if full_circle else math.pi
    i = np.arange(n_spokes, dtype=np.float64)
    theta = np.mod(i * span / _GOLDEN_RATIO, span) if golden_angle else i * span / n_spokes
    r = (np.arange(n_readout, dtype=np.float64) - n_readout / 2) * 2 * math.pi / n_readout
    ky = np.sin(theta)[:, None] * r[None, :]
    kx = np.cos(theta)[:, None] * r[None, :]
    return _wrap(np.stack([ky.reshape(-1), kx.reshape(-1)], axis=1))


def radial_spokes_for_af(n: int, af: float) -> int:
    """Spokes for acceleration ``af`` relative to Nyquist radial sampling of an ``n``-pixel image:
    ``round(n * pi / 2 / af)`` (e.g. 40 for n = 256 at af = 10)."""
    n = _int(n, "n", 2)
    a = _af(af)
    return max(1, round(n * math.pi / 2 / a))


def spiral_trajectory(
    image_shape: Sequence[int],
    n_interleaves: int,
    n_samples_per_interleaf: int | None = None,
    density_power: float = 1.5,
    af: float = 1.0,
) -> torch.Tensor:
    """Variable-density Archimedean spiral reaching ``k_max = pi``.

    Interleaf ``m`` is ``k(t) = pi t**p exp(i (2 pi T t + 2 pi m / n_interleaves))``, ``t`` in ``[0, 1]`` on
    ``n_samples_per_interleaf`` uniform steps, with ``p = density_power`` (1 = uniform Archimedean; > 1 samples
    the centre more densely) and ``ky, kx`` the imaginary and real parts. The number of turns
    ``T = p * max(image_shape) / (2 * n_interleaves * af)`` makes the radial gap between neighbouring turns at
    the edge of k-space ``af`` times the Nyquist spacing ``2 pi / N`` (``af = 1``: fully sampled at the edge).

    Parameters
    ----------
    image_shape
        ``(H, W)``; ``N = max(H, W)`` sets the Nyquist spacing.
    n_interleaves
        Number of interleaves (shots), rotated evenly.
    n_samples_per_interleaf
        Samples per interleaf; default: enough that consecutive samples are at most one Cartesian cell apart.
    density_power
        Radial warping exponent ``p`` (>= 1).
    af
        Undersampling factor at the edge of k-space (>= 1).

    Returns
    -------
    torch.Tensor
        float32 ``(n_interleaves * n_samples_per_interleaf, 2)`` radians, ``(ky, kx)``, interleaf-major.
    """
    shape = _shape(image_shape, (2,))
    n_il = _int(n_interleaves, "n_interleaves", 1)
    p = float(density_power)
    if not (math.isfinite(p) and 1.0 <= p <= 4.0):
        raise InreconError(f"density_power is {density_power} but must lie in [1, 4]", "use 1 (uniform) to 2")
    a = float(af)
    if not (math.isfinite(a) and a >= 1.0):
        raise InreconError(f"af is {af} but must be >= 1 for a spiral", "use af = 1 for Nyquist at the edge")
    n = max(shape)
    turns = p * n / (2 * n_il * a)
    if n_samples_per_interleaf is None:
        speed = math.pi * math.hypot(p, 2 * math.pi * turns)  # |dk/dt| at t = 1 (its maximum)
        n_s = int(math.ceil(speed / (2 * math.pi / n))) + 1
    else:
        n_s = _int(n_samples_per_interleaf, "n_samples_per_interleaf", 2)
    t = np.linspace(0.0, 1.0, n_s)
    rot = 2 * math.pi * np.arange(n_il) / n_il
    phase = 2 * math.pi * turns * t[None, :] + rot[:, None]
    rad = math.pi * t**p
    k = rad[None, :] * np.exp(1j * phase)
    return _wrap(np.stack([k.imag.reshape(-1), k.real.reshape(-1)], axis=1))


PATTERNS = ("cartesian", "poisson", "radial", "golden", "spiral", "full")


def make_pattern(
    kind: str,
    shape: Sequence[int],
    af: float = 6.0,
    *,
    acs: int = 24,
    seed: int = 0,
    offset: int = 0,
    spokes: int | None = None,
    oversample: bool = False,
    interleaves: int = 16,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The sampling of one acquisition by name: ``(mask, None)`` for Cartesian patterns, ``(None, trajectory)``
    for non-Cartesian ones. The one place that maps a pattern name to a generator.

    ``cartesian``: :func:`cartesian_1d` (``af`` a whole line spacing, ``acs`` centre lines,
    ``offset`` shifts the lattice); ``poisson``: :func:`poisson_disc` with an ``acs``-square calibration
    region; ``full``: every sample; ``radial`` / ``golden``: :func:`radial_trajectory` with ``spokes``
    (default from ``af``) and 2x readout oversampling when asked; ``spiral``: :func:`spiral_trajectory`.
    """
    if kind not in PATTERNS:
        raise InreconError(f"unknown sampling pattern {kind!r}", f"use one of {', '.join(PATTERNS)}")
    shape = tuple(int(s) for s in shape)
    if kind == "cartesian":
        return cartesian_1d(shape, af, acs=acs, offset=offset), None
    if kind == "poisson":
        return poisson_disc(shape, af, calib=(acs, acs), seed=seed), None
    if kind == "full":
        return torch.ones(shape, dtype=torch.bool), None
    if kind in ("radial", "golden"):
        n = max(shape)
        n_spokes = spokes or radial_spokes_for_af(n, af)
        return None, radial_trajectory(n_spokes, 2 * n if oversample else n, golden_angle=kind == "golden")
    return None, spiral_trajectory(shape, n_interleaves=interleaves)
