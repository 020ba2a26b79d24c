"""Simulated multi-coil MRI acquisitions: smooth coil sensitivities, the SENSE / NUFFT forward model, noise.

SNR convention
--------------
``snr_db = 20 log10( rms(y) / noise_std )`` where ``rms(y)`` is the root-mean-square magnitude of the
noiseless *acquired* samples (all coils; only sampled Cartesian locations, or every trajectory sample) and
``noise_std`` is the standard deviation of the complex noise per sample, ``E|n|^2 = noise_std^2`` (real and
imaginary parts each have variance ``noise_std^2 / 2``). Equivalently it is the ratio of mean signal power to
noise power per sample, in dB.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage

from inrecon.checks import require_finite, require_ndim
from inrecon.data.scans import MRIScan
from inrecon.errors import InreconError, ShapeError
from inrecon.physics.coils import normalize_maps

__all__ = ["coil_sensitivities", "simulate_mri", "smooth_phase_map"]


def _grid_coords(image_shape: Sequence[int]) -> list[np.ndarray]:
    """Centred coordinates in units of the half field of view: -1 .. 1 along each axis (0 at index N // 2)."""
    axes = [(np.arange(n) - n // 2) / (n / 2) for n in image_shape]
    return list(np.meshgrid(*axes, indexing="ij"))


def coil_sensitivities(
    image_shape: Sequence[int],
    n_coils: int,
    seed: int | None = None,
    ring_radius: float = 1.5,
    falloff: float = 1.0,
    jitter: float = 0.1,
) -> torch.Tensor:
    """Smooth, realistic receive sensitivities of coil elements on a ring around the field of view.

    Each element is modelled as a current element perpendicular to the image plane (Biot-Savart): at
    in-plane offset ``z - z_c`` (complex, from the coil at ``z_c``) its receive field is
    ``B1- ~ exp(-i arg(z - z_c)) / |r - r_c|**falloff`` times a constant phase; magnitude falls off with
    distance and the phase winds smoothly around the element. Coils sit on a circle of radius
    ``ring_radius`` (units of the half field of view, so > 1 is outside the image) at evenly spaced angles; in
    3D they alternate between two rings at ``z = +-0.5`` (slice axis 0) when there are at least 4 coils.
    The maps are normalised so that ``sum_c |S_c|^2 = 1`` at every pixel.

    Parameters
    ----------
    image_shape
        ``(H, W)`` or ``(D, H, W)``.
    n_coils
        Number of coils (>= 1).
    seed
        ``None``: the regular arrangement with zero constant phases. An int: angles and radii jittered by
        ``jitter`` (relative) and random constant phases, reproducibly.
    ring_radius
        Radius of the coil ring in half-FOV units (> 1).
    falloff
        Exponent of the magnitude falloff with distance (1 for a long wire, ~1.5-2 for small loops).
    jitter
        Relative jitter of angles (fraction of the spacing) and radii when ``seed`` is given.

    Returns
    -------
    torch.Tensor
        complex64 ``(n_coils, *image_shape)`` on the CPU.
    """
    shape = tuple(int(s) for s in image_shape)
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise ShapeError(f"image_shape {tuple(image_shape)} is not 2D or 3D", "give (H, W) or (D, H, W)")
    if isinstance(n_coils, bool) or int(n_coils) != n_coils or n_coils < 1:
        raise InreconError(f"n_coils is {n_coils}", "use a positive integer, e.g. 12")
    n_coils = int(n_coils)
    if not (math.isfinite(ring_radius) and ring_radius > 1.0):
        raise InreconError(
            f"ring_radius is {ring_radius} but must be > 1", "place the coils outside the FOV (1.5)"
        )
    if not (math.isfinite(falloff) and 0 < falloff <= 4):
        raise InreconError(f"falloff is {falloff}", "use an exponent in (0, 4], e.g. 1")
    if not (0 <= jitter < 0.5):
        raise InreconError(f"jitter is {jitter}", "use a fraction in [0, 0.5), e.g. 0.1")
    rng = np.random.default_rng(seed) if seed is not None else None
    coords = _grid_coords(shape)
    y, x = coords[-2], coords[-1]
    zz = coords[0] if len(shape) == 3 else None
    maps = np.empty((n_coils, *shape), dtype=np.complex128)
    for c in range(n_coils):
        ang = 2 * math.pi * c / n_coils
        rad = ring_radius
        phase0 = 0.0
        if rng is not None:
            ang += jitter * (2 * math.pi / n_coils) * rng.uniform(-1, 1)
            rad *= 1 + jitter * rng.uniform(-1, 1)
            phase0 = rng.uniform(0, 2 * math.pi)
        yc, xc = rad * math.sin(ang), rad * math.cos(ang)
        dz = 0.0
        if zz is not None:
            zc = (0.5 if c % 2 else -0.5) if n_coils >= 4 else 0.0
            dz = zz - zc
        dy, dx = y - yc, x - xc
        dist = np.sqrt(dx**2 + dy**2 + dz**2)
        maps[c] = np.exp(-1j * np.arctan2(dy, dx) + 1j * phase0) / dist**falloff
    return normalize_maps(torch.from_numpy(maps.astype(np.complex64)))


def smooth_phase_map(
    image_shape: Sequence[int], seed: int | None = 0, max_rad: float = math.pi
) -> torch.Tensor:
    """A smooth random phase map (float32 radians, ``image_shape``): a constant plus a random linear and
    quadratic polynomial in the centred coordinates, scaled so its range is at most ``2 max_rad``."""
    shape = tuple(int(s) for s in image_shape)
    rng = np.random.default_rng(seed)
    coords = _grid_coords(shape)
    phi = np.full(shape, rng.uniform(-math.pi, math.pi))
    poly = np.zeros(shape)
    for i, ci in enumerate(coords):
        poly += rng.normal() * ci
        for cj in coords[i:]:
            poly += 0.5 * rng.normal() * ci * cj
    span = float(np.abs(poly).max())
    if span > 0:
        poly *= max_rad / span
    return torch.from_numpy((phi + poly).astype(np.float32))


def _support(mag: np.ndarray) -> np.ndarray:
    """Object support: ``|image| > 5 %`` of its 99th percentile, holes filled, grown by 2 pixels."""
    thr = 0.05 * float(np.percentile(mag, 99)) if mag.max() > 0 else 0.0
    roi = ndimage.binary_fill_holes(mag > thr)
    return ndimage.binary_dilation(roi, iterations=2)


def _image_tensor(image) -> torch.Tensor:
    """``image`` as a finite float or complex tensor ``(H, W)`` or ``(D, H, W)`` (its device kept)."""
    img = image if isinstance(image, torch.Tensor) else torch.as_tensor(np.asarray(image))
    require_ndim(img, "image", (2, 3), "(H, W) or (D, H, W)")
    if img.dtype == torch.bool or not (img.is_floating_point() or img.is_complex()):
        img = img.to(torch.float32)
    require_finite(img, "image")
    return img


def _check_acquisition_args(
    mask: torch.Tensor | None,
    trajectory: torch.Tensor | None,
    snr_db: float | None,
    noise_std: float | None,
) -> None:
    """At most one of ``mask`` / ``trajectory`` and of ``snr_db`` / ``noise_std``, the latter valid."""
    if mask is not None and trajectory is not None:
        raise InreconError(
            "both mask and trajectory were given", "give a mask (Cartesian) or a trajectory, not both"
        )
    if snr_db is not None and noise_std is not None:
        raise InreconError(
            "both snr_db and noise_std were given", "give one of them (or neither for no noise)"
        )
    if snr_db is not None and not math.isfinite(float(snr_db)):
        raise InreconError(f"snr_db is {snr_db}", "give a finite SNR in dB, or None for no noise")
    if noise_std is not None and not (math.isfinite(float(noise_std)) and noise_std >= 0):
        raise InreconError(f"noise_std is {noise_std}", "give a non-negative noise standard deviation")


def _simulation_maps(
    maps: torch.Tensor | None, shape: tuple[int, ...], n_coils: int, seed: int, device: torch.device
) -> tuple[torch.Tensor, str]:
    """The coil maps on ``device`` (``maps`` checked, else simulated) and where they came from."""
    if maps is None:
        return coil_sensitivities(shape, n_coils, seed=seed).to(device), "coil_sensitivities"
    maps_t = maps if isinstance(maps, torch.Tensor) else torch.as_tensor(np.asarray(maps))
    require_ndim(maps_t, "maps", (len(shape) + 1,), f"(C, {', '.join(map(str, shape))})")
    if tuple(maps_t.shape[1:]) != shape:
        raise ShapeError(
            f"maps have grid {tuple(maps_t.shape[1:])} but the image is {shape}",
            "use maps on the image grid",
        )
    return maps_t.to(device=device, dtype=torch.complex64), "given"


def _acquisition_operator(
    maps_t: torch.Tensor,
    mask: torch.Tensor | None,
    trajectory: torch.Tensor | None,
    shape: tuple[int, ...],
    device: torch.device,
):
    """The forward operator, the checked trajectory (or ``None``) and the Cartesian mask (or ``None``)."""
    if trajectory is not None:
        from inrecon.physics.nufft import NufftSenseOp, check_trajectory

        traj = check_trajectory(trajectory, len(shape)).to(device)
        return NufftSenseOp(maps_t, traj, shape), traj, None
    from inrecon.physics.mri import SenseOp

    if mask is None:
        m = torch.ones(shape, dtype=torch.bool, device=device)
    else:
        m = mask if isinstance(mask, torch.Tensor) else torch.as_tensor(np.asarray(mask))
        if tuple(m.shape) != shape:
            raise ShapeError(
                f"mask has shape {tuple(m.shape)} but the image is {shape}",
                "use a mask on the image grid",
            )
        m = m.to(device=device, dtype=torch.bool)
    return SenseOp(maps_t, m), None, m


def _noiseless_kspace(
    img: torch.Tensor,
    maps_t: torch.Tensor,
    mask: torch.Tensor | None,
    trajectory: torch.Tensor | None,
    smooth_phase: bool,
    seed: int,
):
    """Noiseless k-space ``A(S * image * exp(i phi))``, the trajectory (or ``None``) and the mask (or
    ``None``)."""
    device = img.device
    shape = tuple(img.shape)
    x = img.to(torch.complex64)
    if smooth_phase:
        x = x * torch.polar(torch.ones(shape), smooth_phase_map(shape, seed)).to(device)
    op, traj, sampled = _acquisition_operator(maps_t, mask, trajectory, shape, device)
    with torch.no_grad():
        y = op(x)
    return y, traj, sampled


def _add_noise(
    y: torch.Tensor,
    sampled: torch.Tensor | None,
    rms: float,
    snr_db: float | None,
    noise_std: float | None,
    seed: int,
) -> tuple[torch.Tensor, float, float | None]:
    """Add complex Gaussian noise (drawn on the CPU, zero off the mask); return the noisy k-space, the noise
    standard deviation and the realised SNR in dB (``None`` without noise)."""
    if snr_db is not None:
        std = rms / 10 ** (float(snr_db) / 20)
    else:
        std = float(noise_std) if noise_std is not None else 0.0
    realised_snr = None
    if std > 0:
        g = torch.Generator().manual_seed(int(seed) + 7919)
        noise = torch.randn((*y.shape, 2), generator=g, dtype=torch.float32) * (std / math.sqrt(2))
        noise = torch.view_as_complex(noise).to(y.device)
        if sampled is not None:
            noise = noise * sampled
        y = y + noise
        acquired_n = noise if sampled is None else noise[:, sampled]
        realised_snr = 20 * math.log10(rms / float(acquired_n.abs().pow(2).mean().sqrt()))
    return y, std, realised_snr


def _package_scan(
    img: torch.Tensor,
    y: torch.Tensor,
    traj: torch.Tensor | None,
    sampled: torch.Tensor | None,
    maps_t: torch.Tensor,
    dcf: bool,
    provenance: dict,
) -> MRIScan:
    """The :class:`MRIScan` with target ``|image|`` and its support as ROI (density compensation on request
    for a trajectory)."""
    shape = tuple(img.shape)
    device = img.device
    mag = img.abs().to(torch.float32)
    roi = torch.from_numpy(_support(mag.cpu().numpy())).to(device)
    if traj is not None:
        from inrecon.physics.nufft import density_compensation

        w = density_compensation(traj, shape) if dcf else None
        return MRIScan(
            kspace=y,
            trajectory=traj,
            image_shape=shape,
            dcf=w,
            sens_maps=maps_t,
            target=mag,
            roi=roi,
            provenance=provenance,
        )
    return MRIScan(kspace=y, mask=sampled, sens_maps=maps_t, target=mag, roi=roi, provenance=provenance)


def simulate_mri(
    image,
    n_coils: int = 12,
    mask: torch.Tensor | None = None,
    trajectory: torch.Tensor | None = None,
    snr_db: float | None = None,
    noise_std: float | None = None,
    smooth_phase: bool = True,
    seed: int = 0,
    maps: torch.Tensor | None = None,
    dcf: bool = False,
) -> MRIScan:
    """Simulate a multi-coil acquisition of ``image``.

    ``y = A(S * image * exp(i phi)) + n`` with ``A`` the Cartesian SENSE operator (mask, or fully sampled
    when neither ``mask`` nor ``trajectory`` is given) or the NUFFT on ``trajectory``; ``phi`` a smooth random
    phase (``smooth_phase``); ``n`` complex Gaussian noise (see the module docstring for the SNR definition).

    Parameters
    ----------
    image
        ``(H, W)`` or ``(D, H, W)``, real or complex (numpy or torch); the device of a tensor is kept.
    n_coils
        Number of simulated coils (ignored when ``maps`` is given).
    mask
        Cartesian sampling mask ``image.shape`` (bool).
    trajectory
        Non-Cartesian trajectory float32 ``(K, d)`` radians (see :mod:`inrecon.data.sampling`).
    snr_db, noise_std
        At most one: the SNR in dB or the absolute complex noise standard deviation. Neither: noiseless.
    smooth_phase
        Multiply the image by a smooth random phase (:func:`smooth_phase_map`) as real MR images have.
    seed
        Seeds the phase, the coil-map jitter and the noise (all drawn on the CPU, so results agree across
        devices).
    maps
        Use these sensitivities ``(C, *image.shape)`` instead of simulating them.
    dcf
        Also compute Pipe-Menon density compensation for a trajectory (attached as ``scan.dcf``).

    Returns
    -------
    MRIScan
        ``kspace`` (complex64 ``(C, *grid)`` Cartesian, zero off the mask, or ``(C, K)``), ``mask`` or
        ``trajectory``, ``sens_maps`` (the true maps), ``target`` = ``|image|`` (float32), ``roi`` = object support
        (``|image|`` above 5 % of its 99th percentile, holes filled, dilated by 2 pixels) and ``provenance``
        (every parameter, JSON-serialisable, including the realised ``noise_std`` and ``snr_db``).
    """
    img = _image_tensor(image)
    shape = tuple(img.shape)
    _check_acquisition_args(mask, trajectory, snr_db, noise_std)
    maps_t, maps_source = _simulation_maps(maps, shape, n_coils, seed, img.device)
    y, traj, sampled = _noiseless_kspace(img, maps_t, mask, trajectory, smooth_phase, seed)
    acquired = y if sampled is None else y[:, sampled]
    rms = float(acquired.abs().pow(2).mean().sqrt())
    y, std, realised_snr = _add_noise(y, sampled, rms, snr_db, noise_std, seed)
    provenance = {
        "simulator": "inrecon.physics.simulate.mri",
        "image_shape": list(shape),
        "n_coils": int(maps_t.shape[0]),
        "maps": maps_source,
        "sampling": "non-cartesian"
        if trajectory is not None
        else ("cartesian" if mask is not None else "full"),
        "n_samples": int(acquired.shape[-1]) if sampled is None else int(sampled.sum()),
        "snr_db_requested": None if snr_db is None else float(snr_db),
        "noise_std": std,
        "snr_db_realised": realised_snr,
        "signal_rms": rms,
        "smooth_phase": bool(smooth_phase),
        "seed": int(seed),
        "snr_definition": "20*log10(rms of noiseless acquired samples / complex noise std)",
    }
    return _package_scan(img, y, traj, sampled, maps_t, dcf, provenance)
