"""Classical CT reconstructions: FBP, SART / SIRT and TV-regularised least squares (PDHG).

Each registers itself for the ``ct`` modality and returns a float32 ``(H, W)`` image in the units of the scan
(attenuation per mm). Defaults were chosen on sparse-view fan- and parallel-beam simulations of windowed chest
CT slices and checked on real parallel-beam data; see the config docstrings for how.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Annotated, Literal

import numpy as np
import torch

from inrecon.config import Fraction, InRange, NonNegFloat, PosFloat, PosInt
from inrecon.data.scans import CTScan
from inrecon.errors import ShapeError
from inrecon.physics.ct import CTProjector
from inrecon.physics.denoisers import block_matching_denoise
from inrecon.physics.fbp import fbp
from inrecon.physics.measurement import Measurement, build_measurement
from inrecon.physics.transforms import FiniteDifference
from inrecon.progress import progress
from inrecon.recon.classical.selection import (
    Search,
    refine_from_start,
    remember_choices,
    remembered_choices,
    weight_by_holdout,
)
from inrecon.recon.classical.solvers import (
    group_magnitude,
    once_per_object,
    pdhg,
    plug_and_play,
    project_l21_ball,
    prox_l2_data_conj,
    stacked_norm,
)
from inrecon.recon.registry import Context, MethodSpec, ReconResult

__all__ = [
    "FBPConfig",
    "PnPConfig",
    "SARTConfig",
    "SIRTConfig",
    "TVConfig",
    "fbp_recon",
    "plug_and_play_ct",
    "pnp_noise_level",
    "pnp_scale",
    "sart_recon",
    "tv_recon",
    "tv_weight",
]


# --- FBP ----------------------------------------------------------------------------------------------------
@dataclass
class FBPConfig:
    """Filtered backprojection."""

    filter: Literal["ram-lak", "shepp-logan", "cosine", "hann"] = "ram-lak"
    """Ramp apodisation."""
    cutoff: Annotated[float, InRange(0.0, 1.0, lo_open=True)] = 1.0
    """Frequency cutoff as a fraction of Nyquist."""
    nonnegative: bool = False
    """Clip negative values to zero afterwards."""
    fan: Literal["auto", "rebin", "direct"] = "auto"
    """Fan-beam algorithm: rebin to parallel beam, the direct fan-beam formula, or auto (rebin sparse full
    scans, direct otherwise; inrecon.physics.fbp explains the measured crossover)."""


def fbp_recon(scan: CTScan, cfg: FBPConfig, ctx: Context) -> ReconResult:
    """FBP of ``scan.sinogram`` (the analytic inverse of the projector: it reads the geometry directly)."""
    t0 = time.perf_counter()
    img = fbp(scan.sinogram, scan.geometry, scan.angles, filter=cfg.filter, cutoff=cfg.cutoff, fan=cfg.fan)
    if cfg.nonnegative:
        img = img.clamp_min(0.0)
    return ReconResult(img, "fbp", asdict(cfg), {"seconds": time.perf_counter() - t0})


# --- SART / SIRT --------------------------------------------------------------------------------------------
@dataclass
class SARTConfig:
    """Ordered-subsets SART (Andersen & Kak 1984; subsets as in OS-SART).

    ``x <- x + relaxation * C_s A_s^T R_s (y_s - A_s x)`` for each subset ``s`` of views, with ``R_s`` the
    inverse ray lengths (row sums) and ``C_s`` the inverse column sums of ``A_s``; one iteration is one sweep
    over all views. Subsets interleave the views and are visited in golden-ratio order.
    """

    iterations: PosInt = 10
    """Sweeps over all views. 10 was chosen on real data: on the real 90-view parallel sinogram
    (ct/scope_parallel, model mismatch and noise) the PSNR peaks at 33.2 dB after 5 sweeps and falls slowly
    (33.1 dB at 10, 32.5 dB at 20, 31.6 dB at 40); noise-free simulations keep rising (60-view fan: 25.9 dB at
    10, 26.6 dB at 20, 27.2 dB at 40), so raise it for inverse-crime studies."""
    views_per_subset: PosInt = 1
    """Views in each subset (1: classic SART; all views: SIRT)."""
    relaxation: Annotated[float, InRange(0.0, 2.0, lo_open=True, hi_open=True)] = 1.0
    """Step lambda."""
    nonnegative: bool = True
    """Clip negative attenuation after every subset update."""
    track_residual: bool = False
    """Record ||A x - y|| / ||y|| after every sweep (one extra projection per sweep)."""


@dataclass
class SIRTConfig:
    """SIRT: SART with all views in one subset (simultaneous update)."""

    iterations: PosInt = 200
    """Simultaneous updates. SIRT needs many more than SART at a similar cost each: on the real 90-view parallel
    sinogram 27.7 / 30.8 / 32.2 dB after 100 / 200 / 400 (SART: 33.1 dB after 10 sweeps); on the noise-free
    60-view fan simulation 22.3 / 23.7 / 24.8 dB (SART 25.9 dB). About 6 s at 256x256 on 2 CPU cores."""
    relaxation: Annotated[float, InRange(0.0, 2.0, lo_open=True, hi_open=True)] = 1.0
    """Step lambda."""
    nonnegative: bool = True
    """Clip negative attenuation after every update."""
    track_residual: bool = False
    """Record ||A x - y|| / ||y|| after every update."""


def _subset_order(n_views: int, views_per_subset: int) -> list[np.ndarray]:
    n_sub = max(1, math.ceil(n_views / views_per_subset))
    subsets = [np.arange(k, n_views, n_sub) for k in range(n_sub)]
    # visit subsets far apart in angle one after another (golden-ratio ordering)
    order = np.argsort(np.mod(np.arange(n_sub) * 0.6180339887498949, 1.0), kind="stable")
    return [subsets[i] for i in order]


def _inverse(t: torch.Tensor) -> torch.Tensor:
    return torch.where(t > 1e-12 * float(t.max().clamp_min(1e-30)), 1.0 / t.clamp_min(1e-30), 0.0)


def _sart_loop(
    scan: CTScan,
    iterations: int,
    views_per_subset: int,
    relaxation: float,
    nonnegative: bool,
    track: bool,
    show_progress: bool | None,
    name: str,
) -> ReconResult:
    t0 = time.perf_counter()
    y = scan.sinogram
    dev = y.device
    op = _projector(scan)
    h, w = scan.image_shape
    subsets = _subset_order(scan.n_views, min(views_per_subset, scan.n_views))
    parts = []
    ones_img = torch.ones(h, w, device=dev)
    for idx in subsets:
        sub = op if len(subsets) == 1 else op.select_views(idx)
        idx_t = torch.as_tensor(idx, device=dev)
        r_inv = _inverse(sub(ones_img))
        c_inv = _inverse(sub.adjoint(torch.ones(sub.range_shape, device=dev)))
        parts.append((sub, y[idx_t], r_inv, c_inv))
    x = torch.zeros(h, w, device=dev)
    history = []
    ynorm = float(y.norm()) + 1e-30
    with torch.no_grad():
        for _ in progress(range(iterations), desc=name.upper(), show=show_progress):
            for sub, ys, r_inv, c_inv in parts:
                x = x + relaxation * c_inv * sub.adjoint(r_inv * (ys - sub(x)))
                if nonnegative:
                    x = x.clamp_min(0.0)
            if track:
                history.append(float((op(x) - y).norm()) / ynorm)
    info = {
        "seconds": time.perf_counter() - t0,
        "iterations": iterations,
        "subsets": len(subsets),
        "final_residual": float((op(x) - y).norm()) / ynorm,
    }
    if track:
        info["residual_history"] = history
    return ReconResult(x.to(torch.float32), name, {}, info)


def sart_recon(scan: CTScan, cfg: SARTConfig | SIRTConfig, ctx: Context) -> ReconResult:
    """SART (SIRT: one subset of all views); ``info``: seconds, iterations, subsets, final relative residual (and
    its history if tracked)."""
    per_subset = getattr(cfg, "views_per_subset", scan.n_views)
    name = "sart" if isinstance(cfg, SARTConfig) else "sirt"
    res = _sart_loop(
        scan,
        cfg.iterations,
        per_subset,
        cfg.relaxation,
        cfg.nonnegative,
        cfg.track_residual,
        ctx.show_progress,
        name,
    )
    res.config = asdict(cfg)
    return res


# --- TV -----------------------------------------------------------------------------------------------------
@dataclass
class TVConfig:
    """``min_x 0.5 ||A x - y||^2 + lam TV(x)`` subject to ``x >= 0`` (isotropic TV), by PDHG."""

    lam_rel: NonNegFloat | Literal["auto"] = 0.01
    """lam = lam_rel * d * s, d the mean squared column norm of A (diag(A^T A): carries the views, pixel size
    and detector sampling) and s the image scale (99.5th percentile of the FBP), so the optimum is invariant to
    rescaling the image and, to first order, to the geometry; or auto: the candidate whose reconstruction from
    the views not held out (``holdout_fraction``) best predicts the held-out views. 0.01 is the optimum on real
    data: on the real 90-view parallel sinogram (ct/scope_parallel) 33.5 / 34.4 / 34.4 / 34.1 / 33.4 / 31.9 dB at
    lam_rel 0.003 / 0.01 / 0.02 / 0.03 / 0.05 / 0.1. Noise-free (inverse-crime) simulations prefer less: 60-view
    fan 31.5 / 30.4 / 29.3 / 28.5 dB at 0.003 / 0.01 / 0.02 / 0.03."""
    lam: NonNegFloat | None = None
    """Absolute weight; overrides lam_rel when set."""
    iterations: PosInt = 300
    """PDHG iterations (within 0.02 dB of 1000 at lam_rel 0.01 on the 256x256 fan and real parallel tests)."""
    step_ratio: PosFloat = 100.0
    """tau / sigma of PDHG on the normalised problem (A / ||A||, D / sqrt(8)). PSNR after 300 iterations at
    lam_rel 0.01 (60-view fan chest slice / real 90-view parallel): ratio 1: 24.1 / 32.2 dB, 10: 28.8 / 34.7,
    30: 30.2 / 34.5, 100: 30.4 / 34.4 (converged 30.4 / 34.4), 300: 30.3 / 34.4; 0.1: 19.1 / 20.2."""
    nonnegative: bool = True
    """Constrain x >= 0."""
    track_objective: bool = False
    """Record the objective every 10 iterations."""
    weighting: Literal["none", "counts"] = "counts"
    """Data term: weighted by the expected detected counts when the scan records its photons per ray
    (penalised weighted least squares, PWLS-TV; plain least squares on scans that do not), or plain least
    squares. Counts by default: on lungdx 128^2 fan scans at 1e5 photons with lam_rel=auto (quality suite),
    60 views 31.70 -> 31.98 dB (A0001) and 32.39 -> 32.63 (A0002), 90 views 34.96 -> 34.96 and 34.56 -> 34.52."""
    lam_candidates: tuple[PosFloat, ...] = (0.001, 0.003, 0.01, 0.03, 0.1)
    """Log grid of lam_rel searched by lam_rel=auto."""
    refine: bool = True
    """With lam_rel=auto: refine half a grid step either side of the winner."""
    search: Search = "walk"
    """With lam_rel=auto: walk the grid from its middle candidate downhill (solving at 3-4 of 5 weights; the
    same choice wherever the held-out loss is unimodal over the grid), or solve at every candidate (grid)."""
    supersample: PosInt = 2
    """Reconstruct on a grid this many times finer than the scan's and return its block mean
    (:class:`~inrecon.physics.measurement.MeasurementConfig`'s ``ct_supersample``); lam_rel keeps its meaning
    (the weight is scaled by ``supersample^2``, which keeps the objective of an image copied onto the finer grid,
    whose TV grows ``supersample`` times while ``d`` falls ``supersample^3`` times). 2 since 2026-12-03: a real
    object's detail below the grid is in its sinogram, and on the finer grid the model can explain it. With
    lam_rel=auto on the quality suite's lungdx cases (128^2 projected from the native 512^2 slice): tuning half
    (A0001, 60 / 90 views, noisy / noise-free) +0.70 / +0.27 / +1.11 / +1.27 dB, real SCOPE 35.25 -> 35.17;
    confirmation half (A0002) +0.75 / +1.35 / +1.95 / +1.92; three 256^2 files written by ASTRA and scikit-image
    +0.89 / +0.27 / +1.05 (benchmarks/RESULTS.md). It costs 2.5-3x the time; 1 reconstructs on the scan's grid,
    which is what data projected from that grid itself (the "inverse crime" of a simulation, never a real scan)
    reward: 43.6 dB against 36.5 at 2 on a pixel-aligned ellipse phantom at 60 parallel views."""
    holdout_fraction: Fraction = 0.1
    """Share of the views held out to choose lam_rel. With 20 % drawn at random, noisy sparse-view scans got a
    weight 2-3x weaker than the all-view optimum (on every split: neighbouring views held out together); 10 %
    drawn at random came close, and 10 % or 20 % spread over the angles (``holdout_split``) is at or within one
    grid step of the optimum on every lungdx scan (benchmarks/RESULTS.md, ``benchmarks/ct_weight_choice.py``)."""
    holdout_split: Literal["spread", "random"] = "spread"
    """Which views are held out: evenly spread over the angles from a seeded offset, or a random draw (which
    holds out neighbouring views together); see :class:`~inrecon.physics.measurement.MeasurementConfig`'s
    ``ct_split``."""
    seed: int = 0
    """Seed of the hold-out split."""


def _projector(scan: CTScan) -> CTProjector:
    """The scan's projector, from its measurement model (raw line integrals)."""
    return build_measurement(scan, ct_weighting="none", scale="none").physics


def _diag_mean(meas: Measurement) -> float:
    """Mean over pixels of ``diag(A^T W A)`` for the measurement's rows of the system matrix and its data
    weights ``W`` (``sum_i w_i A_ij^2``; ``w_i = 1`` without weighting)."""
    mat = meas.physics.matrix
    crow = mat.crow_indices()
    n_rows = crow.numel() - 1
    rows = torch.repeat_interleave(torch.arange(n_rows, device=crow.device), crow.diff())
    w = torch.zeros(n_rows, dtype=torch.float64, device=crow.device)
    w[meas.idx] = 1.0
    if meas.base is not meas.physics:  # base = Diagonal(sqrt(w)) @ projector
        w = w * meas.base.a.d.reshape(-1).double() ** 2
    d = torch.zeros(mat.shape[1], dtype=torch.float64, device=crow.device)
    d.index_add_(0, mat.col_indices(), w[rows] * mat.values().double() ** 2)
    return float(d.mean())


def _image_scale(scan: CTScan) -> float:
    """The 99.5th percentile of the (Hann-apodised) FBP: the image's intensity scale."""
    img = fbp(scan.sinogram, scan.geometry, scan.angles, filter="hann")
    s = float(torch.quantile(img.reshape(-1).float().cpu(), 0.995))
    return s if s > 0 else float(img.abs().max()) + 1e-12


def tv_weight(scan: CTScan, lam_rel: float, meas: Measurement | None = None) -> tuple[float, dict]:
    """The absolute TV weight ``lam_rel * mean(diag(A^T A)) * percentile99.5(FBP) * k^2`` and its factors
    (``k``: the measurement's supersampling, :class:`TVConfig`)."""
    meas = build_measurement(scan, ct_weighting="none", scale="none") if meas is None else meas
    d, s = _diag_mean(meas), _image_scale(scan)
    return _absolute_weight(lam_rel, d, s, meas), {"diag_mean": d, "image_scale": s}


def _absolute_weight(lam_rel: float, diag_mean: float, image_scale: float, meas: Measurement) -> float:
    """``lam_rel * diag_mean * image_scale * k^2`` (:func:`tv_weight`)."""
    return lam_rel * diag_mean * image_scale * meas.supersample**2


_MU = 1.0 / math.sqrt(8.0)
"""``1 / sqrt(8)``: scales the 2D finite difference to norm <= 1 (``||D|| <= sqrt(8)``)."""


def _pdhg_norms(meas: Measurement) -> tuple[float, float]:
    """``||A||`` and ``||[A / ||A||; D / sqrt(8)]||`` (times 1.01) of the measurement, by power iteration."""
    x0 = torch.ones(meas.image_shape, device=meas.y.device)
    grad = FiniteDifference(meas.image_shape).to(meas.y.device)
    norm_a = stacked_norm([meas.op], x0, iters=20)
    return norm_a, stacked_norm([(1.0 / norm_a) * meas.op, _MU * grad], x0, iters=20) * 1.01


def _tv_solve(
    meas: Measurement, lam: float, cfg: TVConfig, show, norms=_pdhg_norms
) -> tuple[torch.Tensor, dict]:
    """PDHG for ``0.5 ||A x - y||^2 + lam TV(x)`` (``x >= 0`` when ``cfg.nonnegative``) on ``meas``; ``norms``
    gives :func:`_pdhg_norms` (a weight search passes one that computes them once per training part)."""
    op, y, shape = meas.op, meas.y, meas.image_shape
    dev = y.device
    grad = FiniteDifference(shape).to(dev)
    # Solve the equivalent problem with A / ||A|| and D / sqrt(8) (both blocks of norm <= 1):
    # 0.5 ||A x / a - y / a||^2 + (lam / a^2) TV(x) has the same minimiser, and tau = sigma then makes the
    # iterates invariant to rescaling the geometry (pixel size) as well as the image.
    norm_a, norm_k = norms(meas)
    op_n, grad_n = (1.0 / norm_a) * op, _MU * grad
    tau, sigma = 0.99 * cfg.step_ratio / norm_k, 0.99 / (cfg.step_ratio * norm_k)
    blocks = [
        (op_n, prox_l2_data_conj(y / norm_a)),
        (grad_n, project_l21_ball(lam / norm_a**2 / _MU, axis=-3)),
    ]
    prox_g = (lambda v, t: v.clamp_min(0.0)) if cfg.nonnegative else None

    def objective(x: torch.Tensor) -> float:
        g = grad(x)
        return float(0.5 * (op(x) - y).pow(2).sum() + lam * group_magnitude(g, -3).sum())

    history: list[float] = []

    def cb(k, x):
        if cfg.track_objective and k % 10 == 9:
            history.append(objective(x))

    x0 = torch.zeros(shape, device=dev)
    x = pdhg(
        blocks,
        x0,
        tau,
        sigma,
        prox_g=prox_g,
        iters=cfg.iterations,
        callback=cb,
        show_progress=show,
        desc="TV-PDHG",
    )
    info = {"norm_A": norm_a, "norm_K": norm_k, "tau": tau, "sigma": sigma, "objective": objective(x)}
    info["final_residual"] = float((op(x) - y).norm()) / (float(y.norm()) + 1e-30)
    if cfg.track_objective:
        info["objective_history"] = history
    return x, info


def _measure(scan: CTScan, cfg: TVConfig | PnPConfig) -> Measurement:
    """The scan's measurement as the regularised CT methods fit it: weighted, split by views, supersampled."""
    return build_measurement(
        scan,
        ct_weighting=cfg.weighting,
        ct_units="view",
        ct_split=cfg.holdout_split,
        ct_supersample=cfg.supersample,
        ct_nonnegative=cfg.nonnegative,
        scale="none",
    )


def _tv_at(scan: CTScan, cfg: TVConfig, norms=None) -> Callable[[Measurement, float], torch.Tensor]:
    """``solve(meas, lam_rel) -> x`` on the measurement's (supersampled) grid, no progress bar; what depends on
    the measurement alone (its norms and diagonal) is computed once per measurement, as a weight search solves
    one training part at every candidate (``norms``: a caller's cached :func:`_pdhg_norms`, to share it)."""
    s = _image_scale(scan)
    norms = once_per_object(_pdhg_norms) if norms is None else norms
    diag_mean = once_per_object(_diag_mean)

    def solve(meas: Measurement, lam_rel: float) -> torch.Tensor:
        return _tv_solve(meas, _absolute_weight(lam_rel, diag_mean(meas), s, meas), cfg, False, norms)[0]

    return solve


def tv_recon(scan: CTScan, cfg: TVConfig, ctx: Context) -> ReconResult:
    """TV reconstruction; ``info``: seconds, lam, its factors, step sizes, operator norms, final objective."""
    t0 = time.perf_counter()
    meas = _measure(scan, cfg)
    info: dict = {}
    if cfg.lam is not None:
        lam, factors = float(cfg.lam), {}
    else:
        lam_rel = cfg.lam_rel
        if lam_rel == "auto":
            lam_rel, info["holdout_scores"] = weight_by_holdout(
                _tv_at(scan, cfg), meas, cfg.lam_candidates, cfg, ctx.show_progress
            )
        lam, factors = tv_weight(scan, lam_rel, meas)
        info["lam_rel"] = lam_rel
    x, extra = _tv_solve(meas, lam, cfg, ctx.show_progress)
    info.update(extra, seconds=time.perf_counter() - t0, lam=lam, iterations=cfg.iterations, **factors)
    return ReconResult(meas.finalize(x).to(torch.float32), "tv-ct", asdict(cfg), info)


# --- plug-and-play ------------------------------------------------------------------------------------------
@dataclass
class PnPConfig:
    """Plug-and-play ADMM (:func:`~inrecon.recon.classical.solvers.plug_and_play`) with the block-matching
    denoiser (:mod:`inrecon.physics.denoisers`), started from TV-CT's image, on TV-CT's measurement (counts
    weighting, the supersampled grid). Each iteration solves ``min ||A x - y||_W^2 + mu ||x - (z - u)||^2`` by
    conjugate gradients and denoises ``x + u``, clipped at 0. The noise level is relative to the image scale (the
    99.5th percentile of the FBP) and chosen by the hold-out over views, as TV's weight is; with ``lam=auto``,
    where no noise level predicts the held-out views better than the TV start, the result is TV's image
    (``info["denoiser_used"]``).

    Chosen on the quality suite's tuning half (lungdx A0001, 60 fan views, 128^2, with and without 1e5-photon
    noise; benchmarks/RESULTS.md, stop 63): with ``mu`` 0.15 (the MRI method's) the splitting over-smooths
    within a few iterations; HQS at a small ``mu`` climbs slowly (+1.05 dB over TV after 40 iterations at 0.02);
    ADMM at 0.01 climbs faster and further, and 0.005 at a larger noise level further still (stop 64)."""

    lam: PosFloat | Literal["auto"] = "auto"
    """The denoiser's noise level relative to the image scale, or auto (hold-out over lam_candidates)."""
    lam_candidates: tuple[PosFloat, ...] = (0.016, 0.022, 0.032, 0.045, 0.064, 0.09, 0.128, 0.18, 0.256)
    """Log grid (steps of sqrt 2) searched by lam=auto, its walk starting at the middle (0.064). The smaller
    ``mu`` moves the hold-out's choice up: 0.054-0.09 on lungdx, 0.18-0.256 on the real tooth
    (benchmarks/RESULTS.md, stop 64)."""
    iters: PosInt = 30
    """ADMM iterations (each: one data step and one denoiser call)."""
    holdout_iters: PosInt | None = None
    """ADMM iterations of each hold-out run (on a training part, to rank the noise levels), at most ``iters``;
    None: ``iters``. 15 was measured as a default (stop 65) and not made one: 1.5-1.8x less time and the same
    choices on the tuning half, but the shorter runs favour a larger noise level, and on the ASTRA-written fan-beam
    file the choice moved from 0.054 to 0.076 and lost 0.79 dB (benchmarks/RESULTS.md)."""
    mu: PosFloat = 0.005
    """Coupling weight of the data step, relative to ``||A||^2`` (of the weighted projector). 0.01 until stop 64:
    through the hold-out 0.005 did +0.10 / +0.25 dB on the tuning half (A0001, 60 views, noisy / noise-free),
    +0.12 on average over six scans it was not chosen on (A0002 -0.08 / +0.50, the real tooth -0.02 / -0.05,
    files written by ASTRA / scikit-image +0.24 / +0.14; benchmarks/RESULTS.md)."""
    cg_iters: PosInt = 10
    """Conjugate-gradient iterations of each data step."""
    start_tv: NonNegFloat | Literal["auto"] = "auto"
    """TV-CT's lam_rel for the starting image, or auto (TV's hold-out search over its own candidates)."""
    weighting: Literal["none", "counts"] = "counts"
    """The data term's weights (:class:`TVConfig`)."""
    supersample: PosInt = 2
    """The reconstruction grid's refinement (:class:`TVConfig`); the denoiser runs on that grid."""
    nonnegative: bool = True
    """Clip the denoised image at 0 (and the result, as TV-CT's)."""
    refine: bool = True
    """With lam=auto (and start_tv=auto): refine half a grid step either side of the winner."""
    search: Search = "walk"
    """With lam=auto (and start_tv=auto): walk each grid from its middle downhill, or solve at every candidate."""
    holdout_fraction: Fraction = 0.1
    """Share of the views held out (:class:`TVConfig`)."""
    holdout_split: Literal["spread", "random"] = "spread"
    """Which views are held out (:class:`TVConfig`)."""
    seed: int = 0
    """Seed of the hold-out split."""


def _pnp_search(scan: CTScan, cfg: PnPConfig, show_progress, final: bool):
    """:func:`~inrecon.recon.classical.selection.refine_from_start` for ``pnp-ct`` on ``scan``: ``(x, info, meas,
    scale)`` (``x`` None with ``final=False``; ``scale`` the image scale the noise level is relative to)."""
    h, w = scan.image_shape
    k = cfg.supersample
    if min(h, w) * k < 16:
        raise ShapeError(
            f"pnp's denoiser matches 8 x 8 patches and needs an image of at least 16 x 16, got "
            f"{h} x {w} at supersample {k}",
            "use tv-ct for so small an image",
        )
    meas = _measure(scan, cfg)
    tv_cfg = TVConfig(
        weighting=cfg.weighting,
        supersample=cfg.supersample,
        nonnegative=cfg.nonnegative,
        holdout_fraction=cfg.holdout_fraction,
        holdout_split=cfg.holdout_split,
        seed=cfg.seed,
    )
    scale = _image_scale(scan)
    norms = once_per_object(_pdhg_norms)  # shared with the TV start: ||A|| once per part

    def refine(m: Measurement, x0: torch.Tensor, sigma: float, show) -> torch.Tensor:
        def denoise(v: torch.Tensor) -> torch.Tensor:
            out = block_matching_denoise(v, sigma * scale)
            return out.clamp_min(0.0) if cfg.nonnegative else out

        mu = cfg.mu * norms(m)[0] ** 2
        iters = cfg.iters if m is meas or cfg.holdout_iters is None else min(cfg.holdout_iters, cfg.iters)
        return plug_and_play(
            m.normal(), m.adjoint(m.y), denoise, x0, mu, iters, cfg.cg_iters, show, "PnP-CT", "admm"
        )

    settings = f"pnp-ct {cfg!r}"
    info = None if final else remembered_choices(scan, settings)
    if info is not None:
        return None, info, meas, scale
    x, info = refine_from_start(
        meas, _tv_at(scan, tv_cfg, norms), tv_cfg.lam_candidates, refine, cfg, show_progress, final
    )
    remember_choices(scan, settings, info)
    return x, info, meas, scale


def pnp_noise_level(scan: CTScan, cfg: PnPConfig | None = None, show_progress: bool | None = None):
    """``pnp-ct``'s choices on ``scan`` without its final solve: ``(lam, scale, info)``, ``lam`` the relative
    noise level (None where the hold-out keeps TV's image), ``scale`` what it is relative to (the FBP's 99.5th
    percentile, in the scan's units), ``info`` the hold-out's record. An INR's denoiser prior takes its noise
    level from here (:class:`~inrecon.engine.splitting.SplittingConfig`)."""
    cfg = cfg or PnPConfig()
    _, info, _, scale = _pnp_search(scan, cfg, show_progress, final=False)
    return info["lam"], scale, info


def pnp_scale(scan: CTScan) -> float:
    """What ``pnp-ct``'s noise level is relative to: the FBP's 99.5th percentile, in the scan's units."""
    return _image_scale(scan)


def plug_and_play_ct(scan: CTScan, cfg: PnPConfig, ctx: Context) -> ReconResult:
    """Plug-and-play from TV-CT's image (:class:`PnPConfig`); ``info``: the noise level (``lam``, None where
    TV's image was kept), ``denoiser_used``, the TV start's lam_rel and both hold-outs' losses, seconds."""
    t0 = time.perf_counter()
    x, info, meas, scale = _pnp_search(scan, cfg, ctx.show_progress, final=True)
    info.update(
        iterations=cfg.iters if info["denoiser_used"] else 0,
        image_scale=scale,
        seconds=time.perf_counter() - t0,
    )
    return ReconResult(meas.finalize(x).to(torch.float32), "pnp-ct", asdict(cfg), info)


FBP = MethodSpec(
    "fbp", fbp_recon, FBPConfig, ("ct",), "filtered backprojection (parallel or flat-detector fan beam)"
)
SART = MethodSpec("sart", sart_recon, SARTConfig, ("ct",), "ordered-subsets SART with non-negativity")
SIRT = MethodSpec("sirt", sart_recon, SIRTConfig, ("ct",), "SIRT (simultaneous SART) with non-negativity")
TV_CT = MethodSpec(
    "tv-ct", tv_recon, TVConfig, ("ct",), "TV-regularised least squares with x >= 0 (PDHG)", aliases=("tv",)
)
PNP_CT = MethodSpec(
    "pnp-ct",
    plug_and_play_ct,
    PnPConfig,
    ("ct",),
    "plug-and-play ADMM: a block-matching (BM3D-type) denoiser from TV's image; noise level by hold-out",
    aliases=("pnp",),
)
