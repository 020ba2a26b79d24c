"""Classical MRI reconstructions: zero-filled, CG-SENSE, L1-wavelet (FISTA), total variation (PDHG) and a
plug-and-play non-local prior (block-matching denoiser in half-quadratic splitting).

Every method works on the scan's :class:`~inrecon.physics.measurement.Measurement` (Cartesian SENSE and
non-Cartesian NUFFT alike, coil maps from :func:`~inrecon.physics.coils.coil_maps`: the scan's own, else
ESPIRiT), with the data divided by a robust image scale (``scale="robust"``: the 99th percentile of
``|A^H y|``) and the result multiplied back. Every weight is *relative*, so the defaults do not depend on the
units of the data:

- L1-wavelet: ``lam_abs = lam * max|W A^H y|`` (``lam >= 1`` gives the zero image);
- TV: ``lam_abs = lam * max|A^H y|``;
- CG-SENSE Tikhonov: ``lam_abs = lam * ||A||^2``;
- plug-and-play: the denoiser's noise level ``lam`` in units of the robust image scale.

Weights may be ``"auto"``: chosen by the hold-out loss (:mod:`inrecon.recon.classical.selection`) among the
config's candidates, then the reconstruction is repeated with all samples at the chosen value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from inrecon.config import Fraction, NonNegFloat, PosFloat, PosInt, config_to_dict
from inrecon.engine.splitting import operator_norm_sq
from inrecon.errors import InreconError, ShapeError
from inrecon.physics.denoisers import denoise_complex
from inrecon.physics.measurement import Measurement, build_measurement
from inrecon.physics.mri import smooth_phase
from inrecon.physics.operator import Diagonal, Scaled
from inrecon.physics.transforms import FiniteDifference
from inrecon.physics.wavelets import Wavelet
from inrecon.recon.classical.selection import (
    Search,
    refine_from_start,
    remember_choices,
    remembered_choices,
    select_along_path,
    weight_by_holdout,
)
from inrecon.recon.classical.solvers import (
    conjugate_gradient,
    fista,
    once_per_object,
    pdhg,
    plug_and_play,
    project_l21_ball,
    prox_l1,
    prox_l2_data_conj,
)
from inrecon.recon.registry import Context, MethodSpec, ReconResult

__all__ = [
    "CG_SENSE",
    "L1_WAVELET",
    "PNP",
    "TV",
    "ZERO_FILLED",
    "CGSenseConfig",
    "L1WaveletConfig",
    "PnPConfig",
    "TVConfig",
    "ZeroFilledConfig",
    "pnp_noise_level",
    "pnp_scale",
]

Weight = NonNegFloat | Literal["auto"]
Maps = Literal["auto", "espirit", "scan"]


def _measure(scan, maps: str) -> Measurement:
    return build_measurement(scan, maps=maps, scale="robust")


def _result(name: str, x: torch.Tensor, meas: Measurement, cfg, info: dict) -> ReconResult:
    info["scale"] = meas.scale
    return ReconResult((x * meas.scale).to(torch.complex64), name, config_to_dict(cfg), info)


# --- zero-filled ------------------------------------------------------------------------------------------------
@dataclass
class ZeroFilledConfig:
    """Zero-filled reconstruction ``A^H y`` (with density weights for non-Cartesian data when given)."""

    coil_combine: Literal["auto", "maps", "rss"] = "auto"
    """auto (SENSE combination when the scan has maps, else root-sum-of-squares), maps (ESPIRiT maps when the
    scan has none) or rss (zero phase)."""


def zero_filled(scan, cfg: ZeroFilledConfig, ctx: Context) -> ReconResult:
    use_maps = cfg.coil_combine == "maps" or (cfg.coil_combine == "auto" and scan.sens_maps is not None)
    meas = build_measurement(scan, coil_images=not use_maps, scale="none")
    y = meas.y
    if scan.dcf is not None and not scan.is_cartesian:
        y = y * scan.dcf.to(y.device)[meas.idx % scan.kspace.shape[1]]  # the trajectory sample of each
    with torch.no_grad():
        img = meas.adjoint(y)
        if not use_maps:
            img = img.abs().square().sum(0).sqrt().to(torch.complex64)
    return ReconResult(img, "zf", config_to_dict(cfg), {"coil_combine": "maps" if use_maps else "rss"})


# --- CG-SENSE ---------------------------------------------------------------------------------------------------
@dataclass
class CGSenseConfig:
    """Conjugate gradients on ``(A^H A + lam ||A||^2 I) x = A^H y``."""

    iters: PosInt | Literal["auto"] = "auto"
    """Iterations, or auto: the count (1..max_iters) whose iterate from the training part best predicts the
    held-out samples (early stopping is the regulariser)."""
    max_iters: PosInt = 50
    """Longest path searched by iters=auto."""
    lam: NonNegFloat = 0.0
    """Relative Tikhonov weight."""
    tol: NonNegFloat = 1e-6
    """Stop when the residual falls below tol times ||A^H y||."""
    maps: Maps = "auto"
    """Coil maps: the scan's own, else ESPIRiT."""
    holdout_fraction: Fraction = 0.2
    """Share of the acquired samples held out to choose iters."""
    seed: int = 0
    """Seed of the hold-out split."""
    power_iters: PosInt = 20
    """Power iterations for ||A|| (Tikhonov weight)."""


def _cg(meas: Measurement, cfg: CGSenseConfig, iters: int, tol: float, callback, show):
    normal = meas.normal()
    if cfg.lam > 0:
        lam, base = cfg.lam * operator_norm_sq(meas, cfg.power_iters), normal

        def normal(x):
            return base(x) + lam * x

    aty = meas.adjoint(meas.y)
    return conjugate_gradient(normal, aty, iters=iters, tol=tol, callback=callback, show_progress=show)


def cg_sense(scan, cfg: CGSenseConfig, ctx: Context) -> ReconResult:
    meas = _measure(scan, cfg.maps)
    info: dict = {"lam": cfg.lam}
    if cfg.iters == "auto":

        def path(train, report):
            _cg(train, cfg, cfg.max_iters, 0.0, lambda k, x: report(k + 1, x), ctx.show_progress)

        iters, scores = select_along_path(path, meas, cfg.holdout_fraction, cfg.seed)
        info["holdout_scores"] = {int(k): v for k, v in scores.items()}
    else:
        iters = int(cfg.iters)
    done = []
    x = _cg(meas, cfg, iters, cfg.tol, lambda k, x: done.append(k), ctx.show_progress)
    info.update(iterations=len(done), iters_chosen=iters)
    return _result("cgsense", x, meas, cfg, info)


# --- L1-wavelet and TV: a weight by hold-out, then one solve ----------------------------------------------------
@dataclass
class _WeightedConfig:
    """Settings every regularised classical MRI method shares."""

    refine: bool = True
    """With lam=auto: refine half a grid step either side of the winner."""
    search: Search = "walk"
    """With lam=auto: walk the grid from its middle candidate downhill (solving at 3-4 of TV's 5 weights, 3-5 of
    L1-wavelet's 7; the same choice wherever the held-out loss is unimodal over the grid), or solve at every
    candidate (grid)."""
    maps: Maps = "auto"
    """Coil maps: the scan's own, else ESPIRiT."""
    holdout_fraction: Fraction = 0.2
    """Share of the acquired samples held out to choose lam."""
    seed: int = 0
    """Seed of the hold-out split."""
    power_iters: PosInt = 20
    """Power iterations for ||A||."""


def _regularised(name: str, meas: Measurement, cfg, ctx: Context, solve) -> ReconResult:
    """Choose ``cfg.lam`` by hold-out on the scan's measurement ``meas`` when it is ``auto``, then
    ``solve(meas, lam, show) -> (x, info)``."""
    info: dict = {}
    if cfg.lam == "auto":
        lam, info["holdout_scores"] = weight_by_holdout(
            lambda train, v: solve(train, v, False)[0], meas, cfg.lam_candidates, cfg, ctx.show_progress
        )
    else:
        lam = float(cfg.lam)
    x, extra = solve(meas, lam, ctx.show_progress)
    info.update(extra, lam=lam, iterations=cfg.iters)
    return _result(name, x, meas, cfg, info)


@dataclass
class L1WaveletConfig(_WeightedConfig):
    """FISTA for ``min 0.5 ||A x - y||^2 + lam_abs ||W x||_1`` with ``lam_abs = lam * max|W A^H y|`` and W the
    orthonormal periodic Daubechies DWT (grids that are not multiples of 2**levels are extended, the extension
    optimised too: the prox stays exact)."""

    lam: Weight = 3e-4
    """Relative weight, or auto (hold-out over lam_candidates)."""
    lam_candidates: tuple[PosFloat, ...] = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
    """Log grid searched by lam=auto."""
    iters: PosInt = 100
    """FISTA iterations."""
    wavelet: str = "db4"
    """Daubechies wavelet (db1..db10)."""
    levels: PosInt | None = None
    """Decomposition levels (None: as many as the grid allows, at most 4)."""

    def check(self) -> None:
        Wavelet((64, 64), self.wavelet, None)  # the wavelet name is checked before any work


def _l1wav(cfg: L1WaveletConfig):
    lipschitz = once_per_object(operator_norm_sq)  # one training part solved at every candidate weight

    def solve(meas: Measurement, lam_rel: float, show) -> tuple[torch.Tensor, dict]:
        img_shape = meas.image_shape
        wpad = Wavelet(img_shape, cfg.wavelet, cfg.levels)
        padded = wpad.padded_shape
        w = Wavelet(padded, cfg.wavelet, wpad.levels)  # orthogonal on the padded grid
        crop = (..., *[slice(0, s) for s in img_shape])

        def pad(x):
            out = x.new_zeros((*x.shape[: x.ndim - len(img_shape)], *padded))
            out[crop] = x
            return out

        lip = lipschitz(meas, cfg.power_iters)
        aty_pad = pad(meas.adjoint(meas.y))
        lam = lam_rel * float(w(aty_pad).abs().max())
        normal = meas.normal()

        def grad_f(z):
            return pad(normal(z[crop])) - aty_pad

        def prox_g(v, t):
            return w.adjoint(prox_l1(w(v), t * lam))

        z = fista(grad_f, prox_g, torch.zeros_like(aty_pad), 1.0 / lip, cfg.iters, show_progress=show)
        return z[crop], {"lipschitz": lip, "lam_abs": lam * meas.scale, "levels": wpad.levels}

    return solve


def l1_wavelet(scan, cfg: L1WaveletConfig, ctx: Context) -> ReconResult:
    Wavelet(scan.image_shape, cfg.wavelet, cfg.levels)  # wavelet and levels checked before any work
    return _regularised("l1wavelet", _measure(scan, cfg.maps), cfg, ctx, _l1wav(cfg))


@dataclass
class TVConfig(_WeightedConfig):
    """PDHG for ``min 0.5 ||A x - y||^2 + lam_abs TV(x) + phase_abs sum |Im(x e^{-i phi})|``: isotropic complex TV,
    ``lam_abs = lam max|A^H y|``, and the smooth-phase prior the INR methods use (``phi`` from
    :func:`~inrecon.physics.mri.smooth_phase` of the whole scan's zero-filled image, in the hold-out too),
    ``phase_abs = phase max|A^H y|``."""

    lam: Weight = 1e-3
    """Relative weight, or auto (hold-out over lam_candidates)."""
    lam_candidates: tuple[PosFloat, ...] = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
    """Log grid searched by lam=auto."""
    iters: PosInt = 200
    """PDHG iterations."""
    phase: NonNegFloat = 0.0015
    """Relative weight of the smooth-phase prior; 0.0015 is the INR default ``prior.phase=0.003`` in this data
    term's convention (``0.5 ||.||^2`` summed, against the INR's mean squared error); 0: plain TV."""
    phase_width: Fraction = 0.0625
    """Width of the smooth phase's Gaussian k-space window, a fraction of the matrix size (as the INR methods'
    ``prior.phase_width``)."""


def _tv(cfg: TVConfig, scan_meas: Measurement):
    # the smooth phase is read off the whole scan, as the INR methods' phase prior reads it (and as the coil
    # maps are): a hold-out's training part would give it a fifth of the centre missing at random
    rotation = None
    if cfg.phase > 0:
        with torch.no_grad():
            aty_scan = scan_meas.adjoint(scan_meas.y)
        rotation = smooth_phase(aty_scan, len(scan_meas.image_shape), cfg.phase_width)

    lipschitz = once_per_object(operator_norm_sq)  # one training part solved at every candidate weight

    def solve(meas: Measurement, lam_rel: float, show) -> tuple[torch.Tensor, dict]:
        shape = meas.image_shape
        norm_a = math.sqrt(lipschitz(meas, cfg.power_iters))
        # balance the blocks: ||c D|| ~ ||A|| (||D||^2 <= 4 ndim), radius divided by c accordingly
        c = norm_a / math.sqrt(4.0 * len(shape))
        grad = Scaled(FiniteDifference(shape), c)
        aty = meas.adjoint(meas.y)
        lam = lam_rel * float(aty.abs().max())
        blocks = [(meas.op, prox_l2_data_conj(meas.y)), (grad, project_l21_ball(lam / c, axis=0))]
        k_sq = norm_a**2 + (c**2) * 4.0 * len(shape)
        if cfg.phase > 0:
            # |Im(e^{-i phi} x)| through a unitary block scaled to ||A||; its conjugate's prox zeroes the real part
            # and clips the imaginary part to the weight
            bound = cfg.phase * float(aty.abs().max()) / norm_a
            rotate = Scaled(Diagonal(rotation), norm_a)
            blocks.append(
                (rotate, lambda p, _s: torch.complex(torch.zeros_like(p.real), p.imag.clamp(-bound, bound)))
            )
            k_sq += norm_a**2
        knorm = math.sqrt(k_sq) * 1.01
        x = pdhg(blocks, torch.zeros_like(aty), 1.0 / knorm, 1.0 / knorm, iters=cfg.iters, show_progress=show)
        return x, {"lam_abs": lam * meas.scale, "operator_norm": norm_a}

    return solve


def total_variation(scan, cfg: TVConfig, ctx: Context) -> ReconResult:
    meas = _measure(scan, cfg.maps)
    return _regularised("tv", meas, cfg, ctx, _tv(cfg, meas))


# --- plug-and-play: a non-local prior -------------------------------------------------------------------------
@dataclass
class PnPConfig(_WeightedConfig):
    """Plug-and-play half-quadratic splitting (:func:`~inrecon.recon.classical.solvers.plug_and_play`) with the
    block-matching denoiser (:mod:`inrecon.physics.denoisers`), started from TV-MRI's image.

    A complex image is denoised as the real and imaginary parts of ``x e^{-i phi}``, ``phi`` the phase of the
    current image low-passed as the phase prior's (``phase_width``); 2D images only. The noise level is the
    method's weight, relative to the robust image scale (the 99th percentile of ``|A^H y|``), chosen by the
    hold-out rule like every classical weight; TV's weight for the start likewise (``start_tv=auto``, TV's own
    search). With ``lam=auto``, where no noise level predicts the held-out samples better than the TV start
    does, the result is TV's image (``info["denoiser_used"]`` False): the denoiser only replaces TV where the
    data say it should (it does not on streaky radial images, whose aliasing is structured, not noise)."""

    lam: Weight = "auto"
    """The denoiser's noise level relative to the robust image scale, or auto (hold-out over lam_candidates)."""
    lam_candidates: tuple[PosFloat, ...] = (0.00625, 0.0088, 0.0125, 0.0177, 0.025, 0.035, 0.05)
    """Log grid (steps of sqrt 2) searched by lam=auto."""
    iters: PosInt = 8
    """Splitting iterations (each: one data step and two denoiser calls)."""
    mu: PosFloat = 0.15
    """Coupling weight of the data step, relative to ``||A||^2``."""
    cg_iters: PosInt = 10
    """Conjugate-gradient iterations of each data step."""
    start_tv: Weight = "auto"
    """TV-MRI's relative weight for the starting image (its smooth-phase prior included), or auto (TV's hold-out
    search over its own candidates)."""
    phase_width: Fraction = 0.0625
    """Width of the Gaussian k-space window of the phase removed before denoising, a fraction of the matrix."""

    def check(self) -> None:
        if self.lam != "auto" and not float(self.lam) > 0:
            raise InreconError(
                f"pnp's lam is the denoiser's noise level and must be > 0, got {self.lam}",
                "pass a positive noise level (e.g. 0.025) or lam=auto",
            )


def _pnp_search(scan, cfg: PnPConfig, show_progress, final: bool):
    """:func:`~inrecon.recon.classical.selection.refine_from_start` for ``pnp`` on ``scan``: ``(x, info, meas,
    lipschitz)`` (``x`` None with ``final=False``)."""
    if len(scan.image_shape) != 2:
        raise ShapeError(
            f"pnp denoises 2D images, the scan's image is {tuple(scan.image_shape)}",
            "reconstruct a 3D scan slice by slice (--slice), or use tv / l1wavelet",
        )
    if min(scan.image_shape) < 16:
        raise ShapeError(
            f"pnp's denoiser matches 8 x 8 patches and needs an image of at least 16 x 16, "
            f"got {tuple(scan.image_shape)}",
            "use tv or l1wavelet for so small an image",
        )
    meas = _measure(scan, cfg.maps)
    tv_cfg = TVConfig(maps=cfg.maps, power_iters=cfg.power_iters)
    tv = _tv(tv_cfg, meas)
    lipschitz = once_per_object(operator_norm_sq)

    def refine(m: Measurement, x0: torch.Tensor, sigma: float, show) -> torch.Tensor:
        mu = cfg.mu * lipschitz(m, cfg.power_iters)
        denoise = lambda v: denoise_complex(v, sigma, cfg.phase_width)  # noqa: E731
        return plug_and_play(
            m.normal(), m.adjoint(m.y), denoise, x0, mu, cfg.iters, cfg.cg_iters, show_progress=show
        )

    settings = f"pnp {cfg!r}"
    info = None if final else remembered_choices(scan, settings)
    if info is not None:
        return None, info, meas, lipschitz
    x, info = refine_from_start(
        meas, lambda m, w: tv(m, w, False)[0], tv_cfg.lam_candidates, refine, cfg, show_progress, final
    )
    remember_choices(scan, settings, info)
    return x, info, meas, lipschitz


def pnp_noise_level(scan, cfg: PnPConfig | None = None, show_progress: bool | None = None):
    """``pnp``'s choices on ``scan`` without its final solve: ``(lam, scale, info)``, ``lam`` the relative noise
    level (None where the hold-out keeps TV's image), ``scale`` what it is relative to (the robust image scale,
    in the scan's units), ``info`` the hold-out's record. An INR's denoiser prior takes its noise level from here
    (:class:`~inrecon.engine.splitting.SplittingConfig`)."""
    cfg = cfg or PnPConfig()
    _, info, meas, _ = _pnp_search(scan, cfg, show_progress, final=False)
    return info["lam"], float(meas.scale), info


def pnp_scale(scan, cfg: PnPConfig | None = None) -> float:
    """What ``pnp``'s noise level is relative to: the robust image scale (the 99th percentile of ``|A^H y|``,
    with ``cfg.maps``), in the scan's units."""
    return float(_measure(scan, (cfg or PnPConfig()).maps).scale)


def plug_and_play_mri(scan, cfg: PnPConfig, ctx: Context) -> ReconResult:
    x, info, meas, lipschitz = _pnp_search(scan, cfg, ctx.show_progress, final=True)
    if info["denoiser_used"]:
        mu = cfg.mu * lipschitz(meas, cfg.power_iters)
        info.update(mu_abs=mu, sigma_abs=info["lam"] * meas.scale, iterations=cfg.iters)
    else:
        info["iterations"] = 0
    return _result("pnp", x, meas, cfg, info)


ZERO_FILLED = MethodSpec(
    "zf",
    zero_filled,
    ZeroFilledConfig,
    ("mri",),
    "zero-filled: A^H y with coil maps, or RSS of the coil images",
)
CG_SENSE = MethodSpec("cgsense", cg_sense, CGSenseConfig, ("mri",), "CG-SENSE; iteration count by hold-out")
L1_WAVELET = MethodSpec(
    "l1wavelet",
    l1_wavelet,
    L1WaveletConfig,
    ("mri",),
    "L1-wavelet (db4) sparsity via FISTA; weight by hold-out",
)
TV = MethodSpec("tv", total_variation, TVConfig, ("mri",), "total variation (isotropic, complex) via PDHG")
PNP = MethodSpec(
    "pnp",
    plug_and_play_mri,
    PnPConfig,
    ("mri",),
    "plug-and-play: a block-matching (BM3D-type) denoiser in half-quadratic splitting; noise level by hold-out",
)
