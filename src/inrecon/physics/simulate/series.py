"""A simulated real-time MRI series (the Bilevel paper's moving-needle experiment, on a brain phantom).

:func:`series_images` draws the dynamic phantom; :func:`simulate_series` acquires it frame by frame with known
coil maps, a fixed smooth phase and noise, frame 0 fully sampled and later frames undersampled on a shifting
Cartesian lattice (or Poisson disc).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from inrecon.data.scans import SeriesScan
from inrecon.errors import InreconError

__all__ = ["series_images", "simulate_series"]


def _segment_coverage(shape: tuple[int, int], p0, p1, width: float) -> np.ndarray:
    """Anti-aliased coverage (0..1) of a segment ``p0 -> p1`` (pixel coords (row, col)) of ``width`` pixels."""
    r, c = np.meshgrid(np.arange(shape[0]) + 0.0, np.arange(shape[1]) + 0.0, indexing="ij")
    d = np.array(p1, float) - np.array(p0, float)
    L2 = float(d @ d) or 1.0
    s = np.clip(((r - p0[0]) * d[0] + (c - p0[1]) * d[1]) / L2, 0.0, 1.0)
    dist = np.hypot(r - (p0[0] + s * d[0]), c - (p0[1] + s * d[1]))
    return np.clip(width / 2 + 0.5 - dist, 0.0, 1.0)


def _disc_coverage(shape: tuple[int, int], centre, radius: float) -> np.ndarray:
    r, c = np.meshgrid(np.arange(shape[0]) + 0.0, np.arange(shape[1]) + 0.0, indexing="ij")
    return np.clip(radius + 0.5 - np.hypot(r - centre[0], c - centre[1]), 0.0, 1.0)


def series_images(n_frames: int, shape: tuple[int, int], seed: int = 0, motion: str = "needle") -> np.ndarray:
    """The dynamic phantom ``(T, H, W)`` float32 in [0, 1].

    ``"needle"``: a brain phantom with a 2-pixel signal void (a biopsy needle) entering from the upper left and
    advancing by a constant step towards a bright target lesion near the centre. ``"disc"``: a bright disc of
    radius ``H / 12`` moving on a circle through the brain.
    """
    from inrecon.data.phantoms import brain_phantom

    if motion not in ("needle", "disc"):
        raise InreconError(f"motion={motion!r}", "use motion='needle' or 'disc'")
    H, W = shape
    base = brain_phantom(shape, seed=seed).astype(np.float64)
    out = []
    centre = (0.55 * H, 0.52 * W)
    lesion = _disc_coverage(shape, centre, max(1.5, H / 40))
    for t in range(n_frames):
        img = base.copy()
        if motion == "needle":
            img = img * (1 - lesion) + 0.9 * lesion
            entry = np.array((0.12 * H, 0.15 * W))
            tip_end = np.array(centre) - np.array((0.04 * H, 0.04 * W))
            frac = 0.35 + 0.65 * (t / max(1, n_frames - 1))
            tip = entry + frac * (tip_end - entry)
            cov = _segment_coverage(shape, entry, tip, width=max(1.5, H / 48))
            img = img * (1 - cov)
        else:
            ang = 2 * math.pi * t / max(1, n_frames)
            c = (0.5 * H + 0.18 * H * math.sin(ang), 0.5 * W + 0.18 * W * math.cos(ang))
            cov = _disc_coverage(shape, c, H / 12)
            img = img * (1 - cov) + 0.95 * cov
        out.append(img)
    return np.clip(np.stack(out), 0.0, 1.0).astype(np.float32)


def simulate_series(
    n_frames: int = 8,
    shape: tuple[int, int] = (96, 96),
    af: int = 4,
    n_coils: int = 8,
    seed: int = 0,
    motion: str = "needle",
    snr_db: float | None = 30.0,
    acs: int | None = None,
    pattern: str = "cartesian",
    first_af: int = 1,
) -> SeriesScan:
    """A simulated real-time series: :func:`series_images`, known coil maps, a fixed smooth phase, noise.

    Parameters
    ----------
    n_frames, shape
        Number of frames and image grid ``(H, W)``.
    af
        Acceleration of frames 1.. : Cartesian line spacing (the lattice shifts by one line per frame) or the
        Poisson-disc acceleration.
    n_coils, seed, snr_db
        Coils, seed (phantom, maps, phase; frame ``t``'s noise uses ``seed + 101 t``), SNR in dB (see
        :func:`inrecon.physics.simulate.mri.simulate_mri`).
    acs
        Fully sampled centre lines / calibration square (default ``max(4, round(0.08 W))``).
    pattern
        ``"cartesian"`` (1D, along the last axis) or ``"poisson"``.
    first_af
        Acceleration of frame 0 (1: fully sampled, as in the paper).

    Returns
    -------
    SeriesScan
        One scan per frame with ``sens_maps``, ``target`` (magnitude), ``roi`` and provenance.
    """
    from inrecon.data import sampling
    from inrecon.physics.simulate.mri import coil_sensitivities, simulate_mri, smooth_phase_map

    if int(n_frames) < 1:
        raise InreconError(f"n_frames={n_frames}", "simulate at least one frame")
    if pattern not in ("cartesian", "poisson"):
        raise InreconError(f"pattern={pattern!r}", "use pattern='cartesian' or 'poisson'")
    shape = (int(shape[0]), int(shape[1]))
    acs = max(4, round(0.08 * shape[1])) if acs is None else int(acs)
    images = series_images(int(n_frames), shape, seed, motion)
    maps = coil_sensitivities(shape, n_coils, seed=seed)
    phase = torch.polar(torch.ones(shape), smooth_phase_map(shape, seed))
    frames = []
    for t in range(int(n_frames)):
        a = first_af if t == 0 else af
        kind = "full" if a <= 1 else pattern
        mask, _ = sampling.make_pattern(kind, shape, a, acs=acs, seed=seed + t, offset=t % max(1, int(a)))
        x = torch.from_numpy(images[t]).to(torch.complex64) * phase
        scan = simulate_mri(x, maps=maps, mask=mask, snr_db=snr_db, seed=seed + 101 * t, smooth_phase=False)
        scan.provenance.update(frame=t, motion=motion, af=float(a), pattern=pattern, series_seed=seed)
        frames.append(scan)
    prov = {k: v for k, v in frames[0].provenance.items() if k not in ("frame", "af")}
    return SeriesScan(frames, {**prov, "af": float(af)})
