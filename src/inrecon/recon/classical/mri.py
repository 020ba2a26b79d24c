"""Classical MRI reconstructions: zero-filled, CG-SENSE, L1-wavelet (FISTA) and total variation (PDHG).

Every method is written against the generic :class:`~inrecon.physics.operator.LinearOperator` built by
:func:`~inrecon.physics.factory.build_operator`, so Cartesian SENSE and non-Cartesian NUFFT scans go through
the same code. Coil maps come from ``scan.sens_maps`` or, when absent, from ESPIRiT
(:func:`inrecon.physics.coils.espirit_maps`, Cartesian scans).

Scale: the k-space is divided internally by a robust scale (the 99th percentile of the zero-filled image
magnitude) and the result multiplied back, and every weight is *relative*, so the defaults do not depend on
the units of the data:

- L1-wavelet: ``lam_abs = lam * max|W A^H y|`` (``lam >= 1`` gives the zero image);
- TV: ``lam_abs = lam * max|A^H y|``;
- CG-SENSE Tikhonov: ``lam_abs = lam * ||A||^2``.

Weights may be ``"auto"``: chosen by k-space hold-out (:mod:`inrecon.recon.classical.selection`) among the
config's candidates, then the reconstruction is repeated with all samples at the chosen value.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from inrecon.data.scans import MRIScan
from inrecon.errors import InreconError
from inrecon.physics.factory import build_operator
from inrecon.physics.operator import LinearOperator, Scaled, power_norm
from inrecon.physics.transforms import FiniteDifference
from inrecon.physics.wavelets import Wavelet
from inrecon.recon.classical.selection import select_along_path, select_by_holdout
from inrecon.recon.classical.solvers import (
    conjugate_gradient,
    fista,
    pdhg,
    project_l21_ball,
    prox_l1,
    prox_l2_data_conj,
)
from inrecon.recon.registry import ReconResult, register

__all__ = [
    "CGSenseConfig",
    "L1WaveletConfig",
    "TVConfig",
    "ZeroFilledConfig",
    "cg_sense",
    "coil_maps",
    "l1_wavelet",
    "robust_scale",
    "total_variation",
    "zero_filled",
]


# --- shared pieces -------------------------------------------------------------------------------------------
def coil_maps(scan: MRIScan) -> torch.Tensor:
    """The scan's coil maps ``(C, *image_shape)``: ``scan.sens_maps``, else ESPIRiT on the Cartesian k-space."""
    if scan.sens_maps is not None:
        return scan.sens_maps
    if not scan.is_cartesian:
        raise InreconError(
            "this non-Cartesian scan has no coil sensitivity maps",
            "estimate maps (e.g. ESPIRiT on a gridded calibration region) and set scan.sens_maps",
        )
    try:
        from inrecon.physics.coils import espirit_maps
    except ImportError:
        raise InreconError(
            "the scan has no sens_maps and ESPIRiT (inrecon.physics.coils) is not available",
            "pass coil sensitivity maps in scan.sens_maps",
        ) from None
    maps = espirit_maps(scan.kspace, mask=scan.mask)
    return torch.as_tensor(maps).to(device=scan.kspace.device, dtype=torch.complex64)


def _with_maps(scan: MRIScan) -> MRIScan:
    """The scan with its coil maps attached (estimated once, shared by hold-out and final reconstruction)."""
    if scan.sens_maps is not None:
        return scan
    return dataclasses.replace(scan, sens_maps=coil_maps(scan))


def robust_scale(image: torch.Tensor, q: float = 0.99) -> float:
    """The ``q`` quantile of ``|image|`` (the maximum if that is 0; 1 for an all-zero image)."""
    v = image.detach().abs().reshape(-1).float()
    k = min(v.numel(), max(1, int(math.ceil(q * v.numel()))))
    s = float(torch.kthvalue(v.cpu(), k).values)
    if s <= 0:
        s = float(v.max())
    return s if s > 0 else 1.0


def _normal(op: LinearOperator):
    return op.normal if hasattr(op, "normal") else (lambda x: op.adjoint(op(x)))


@dataclass
class _Problem:
    op: LinearOperator
    y: torch.Tensor  # normalised k-space
    aty: torch.Tensor  # A^H y (normalised)
    scale: float


def _problem(scan: MRIScan) -> _Problem:
    op = build_operator(scan, scan.sens_maps).to(scan.kspace.device)
    aty = op.adjoint(scan.kspace)
    s = robust_scale(aty)
    return _Problem(op, scan.kspace / s, aty / s, s)


def _lipschitz(p: _Problem, iters: int) -> float:
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(p.aty.shape, generator=g, dtype=torch.complex64).to(p.aty.device)
    return power_norm(p.op, x0, iters) ** 2


def _auto_candidates(value, candidates, name: str) -> list[float] | None:
    """``None`` for a fixed value, else the candidate list for ``"auto"``; bad strings raise."""
    if isinstance(value, str):
        if value.lower() != "auto":
            raise InreconError(
                f"{name}={value!r} is neither a number nor 'auto'", f"set {name} to a number or auto"
            )
        cands = sorted(float(c) for c in candidates)
        if not cands or min(cands) <= 0:
            raise InreconError(
                f"{name} candidates {tuple(candidates)} must be positive numbers",
                f"give {name}_candidates as positive values, e.g. 1e-3,3e-3,1e-2",
            )
        return cands
    if not (math.isfinite(float(value)) and float(value) >= 0):
        raise InreconError(f"{name}={value} must be a non-negative number", f"set {name} >= 0 or auto")
    return None


def _select_weight(recon_image, scan, cands, refine: bool, fraction, seed, show_progress):
    """Hold-out over ``cands`` (log grid), optionally refined half a grid step either side of the winner."""
    best, scores = select_by_holdout(recon_image, scan, cands, fraction, seed, show_progress)
    table = dict(zip(cands, scores))
    if refine and len(cands) > 1:
        i = cands.index(best)
        ratio = cands[min(i + 1, len(cands) - 1)] / cands[max(i - 1, 0)]
        half = ratio ** (0.25 if 0 < i < len(cands) - 1 else 0.5)
        extra = [best / half, best * half]
        _, scores2 = select_by_holdout(recon_image, scan, extra, fraction, seed, show_progress)
        table.update(zip(extra, scores2))
        best = min(table, key=table.get)
    return best, {float(k): float(v) for k, v in sorted(table.items())}


def _check_scan(scan) -> None:
    if not isinstance(scan, MRIScan):
        raise InreconError(f"expected an MRIScan, got {type(scan).__name__}", "pass an MRI scan")


# --- zero-filled ------------------------------------------------------------------------------------------------
@dataclass
class ZeroFilledConfig:
    """Zero-filled reconstruction.

    coil_combine: ``"auto"`` (SENSE combination ``A^H y`` when the scan has maps, else root-sum-of-squares),
    ``"maps"`` (``A^H y``, ESPIRiT when the scan has no maps) or ``"rss"``.
    """

    coil_combine: str = "auto"


@register("zf", ZeroFilledConfig, ("mri",), "zero-filled: A^H y with coil maps, or RSS of the coil images")
def zero_filled(scan: MRIScan, cfg: ZeroFilledConfig, *, show_progress=None) -> ReconResult:
    """``A^H y`` (with density weights for non-Cartesian data when given); RSS without maps (zero phase)."""
    _check_scan(scan)
    mode = cfg.coil_combine.lower()
    if mode not in ("auto", "maps", "rss"):
        raise InreconError(f"coil_combine={cfg.coil_combine!r}", "use auto, maps or rss")
    use_maps = mode == "maps" or (mode == "auto" and scan.sens_maps is not None)
    maps = coil_maps(scan) if use_maps else None
    op = build_operator(scan, maps, coil_combine=use_maps).to(scan.kspace.device)
    y = scan.kspace
    if scan.dcf is not None and not scan.is_cartesian:
        y = y * scan.dcf.to(y.device)
    with torch.no_grad():
        img = op.adjoint(y)
        if maps is None:
            img = img.abs().square().sum(0).sqrt().to(torch.complex64)
    return ReconResult(img, "zf", dataclasses.asdict(cfg), {"coil_combine": "maps" if use_maps else "rss"})


# --- CG-SENSE ---------------------------------------------------------------------------------------------------
@dataclass
class CGSenseConfig:
    """CG on ``(A^H A + lam ||A||^2 I) x = A^H y``.

    iters: an iteration count, or ``"auto"`` = the count (1..max_iters) whose iterate from the training part
    best predicts the held-out samples (early stopping is the regulariser). lam: relative Tikhonov weight.
    """

    iters: int | str = "auto"
    max_iters: int = 50
    lam: float = 0.0
    tol: float = 1e-6
    holdout_fraction: float = 0.2
    seed: int = 0
    power_iters: int = 20


def _cg(p: _Problem, lam_rel: float, iters: int, tol: float, power_iters: int, callback, show):
    normal = _normal(p.op)
    if lam_rel > 0:
        lam = lam_rel * _lipschitz(p, power_iters)
        base = normal

        def normal(x):
            return base(x) + lam * x

    return conjugate_gradient(normal, p.aty, iters=iters, tol=tol, callback=callback, show_progress=show)


@register("cgsense", CGSenseConfig, ("mri",), "CG-SENSE; iteration count by k-space hold-out")
def cg_sense(scan: MRIScan, cfg: CGSenseConfig, *, show_progress=None) -> ReconResult:
    """CG-SENSE with optional Tikhonov weight and hold-out early stopping (see :class:`CGSenseConfig`)."""
    _check_scan(scan)
    auto = isinstance(cfg.iters, str)
    if auto and cfg.iters.lower() != "auto":
        raise InreconError(f"iters={cfg.iters!r}", "set iters to a positive integer or auto")
    if (not auto and int(cfg.iters) < 1) or cfg.max_iters < 1:
        raise InreconError(f"iters={cfg.iters}, max_iters={cfg.max_iters}", "use positive iteration counts")
    if cfg.lam < 0:
        raise InreconError(f"lam={cfg.lam} is negative", "set lam >= 0")
    scan = _with_maps(scan)
    info: dict = {"lam": cfg.lam}
    if auto:

        def path(scan_train, report):
            p = _problem(scan_train)
            _cg(
                p,
                cfg.lam,
                cfg.max_iters,
                0.0,
                cfg.power_iters,
                lambda k, x: report(k + 1, x * p.scale),
                show_progress,
            )

        iters, scores = select_along_path(path, scan, cfg.holdout_fraction, cfg.seed)
        info["holdout_scores"] = {int(k): v for k, v in scores.items()}
    else:
        iters = int(cfg.iters)
    p = _problem(scan)
    done = []
    x = _cg(p, cfg.lam, iters, cfg.tol, cfg.power_iters, lambda k, x: done.append(k), show_progress)
    info.update(iterations=len(done), iters_chosen=iters, scale=p.scale)
    return ReconResult((x * p.scale).to(torch.complex64), "cgsense", dataclasses.asdict(cfg), info)


# --- L1-wavelet -------------------------------------------------------------------------------------------------
@dataclass
class L1WaveletConfig:
    """FISTA for ``min 0.5 ||A x - y||^2 + lam_abs ||W x||_1``, ``lam_abs = lam * max|W A^H y|``.

    lam: relative weight or ``"auto"`` (hold-out over ``lam_candidates``, refined half a grid step around the
    winner when ``refine``). W: orthonormal periodic Daubechies DWT; for grids that are not multiples of
    ``2**levels`` the image is extended to the padded grid and the extension is optimised too (exact prox).
    """

    lam: float | str = 3e-4
    lam_candidates: tuple[float, ...] = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
    refine: bool = True
    iters: int = 100
    wavelet: str = "db4"
    levels: int | None = None
    holdout_fraction: float = 0.2
    seed: int = 0
    power_iters: int = 20


def _l1wav(p: _Problem, lam_rel: float, cfg: L1WaveletConfig, show) -> tuple[torch.Tensor, dict]:
    img_shape = tuple(p.aty.shape)
    wpad = Wavelet(img_shape, cfg.wavelet, cfg.levels)
    padded = wpad.padded_shape
    w = Wavelet(padded, cfg.wavelet, wpad.levels)  # orthogonal on the padded grid
    crop = (..., *[slice(0, s) for s in img_shape])

    def pad(x):
        out = x.new_zeros((*x.shape[: x.ndim - len(img_shape)], *padded))
        out[crop] = x
        return out

    lip = _lipschitz(p, cfg.power_iters)
    lam = lam_rel * float(w(pad(p.aty)).abs().max())
    normal = _normal(p.op)
    aty_pad = pad(p.aty)

    def grad_f(z):
        return pad(normal(z[crop])) - aty_pad

    def prox_g(v, t):
        return w.adjoint(prox_l1(w(v), t * lam))

    z = fista(grad_f, prox_g, torch.zeros_like(aty_pad), 1.0 / lip, cfg.iters, show_progress=show)
    return z[crop], {"lipschitz": lip, "lam_abs": lam * p.scale, "levels": wpad.levels}


@register("l1wavelet", L1WaveletConfig, ("mri",), "L1-wavelet (db4) sparsity via FISTA; weight by hold-out")
def l1_wavelet(scan: MRIScan, cfg: L1WaveletConfig, *, show_progress=None) -> ReconResult:
    """L1-wavelet reconstruction (see :class:`L1WaveletConfig`)."""
    _check_scan(scan)
    cands = _auto_candidates(cfg.lam, cfg.lam_candidates, "lam")
    if cfg.iters < 1:
        raise InreconError(f"iters={cfg.iters}", "set iters to a positive integer")
    Wavelet(scan.image_shape, cfg.wavelet, cfg.levels)  # validates wavelet and levels before any work
    scan = _with_maps(scan)
    info: dict = {}
    if cands is not None:

        def recon(scan_train, lam):
            p = _problem(scan_train)
            return _l1wav(p, lam, cfg, False)[0] * p.scale

        lam, info["holdout_scores"] = _select_weight(
            recon, scan, cands, cfg.refine, cfg.holdout_fraction, cfg.seed, show_progress
        )
    else:
        lam = float(cfg.lam)
    p = _problem(scan)
    x, extra = _l1wav(p, lam, cfg, show_progress)
    info.update(extra, lam=lam, iterations=cfg.iters, scale=p.scale)
    return ReconResult((x * p.scale).to(torch.complex64), "l1wavelet", dataclasses.asdict(cfg), info)


# --- total variation --------------------------------------------------------------------------------------------
@dataclass
class TVConfig:
    """PDHG for ``min 0.5 ||A x - y||^2 + lam_abs TV(x)``, isotropic complex TV, ``lam_abs = lam max|A^H y|``.

    lam: relative weight or ``"auto"`` (hold-out over ``lam_candidates``, refined when ``refine``).
    """

    lam: float | str = 1e-3
    lam_candidates: tuple[float, ...] = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
    refine: bool = True
    iters: int = 200
    holdout_fraction: float = 0.2
    seed: int = 0
    power_iters: int = 20


def _tv(p: _Problem, lam_rel: float, cfg: TVConfig, show) -> tuple[torch.Tensor, dict]:
    shape = tuple(p.aty.shape)
    norm_a = math.sqrt(_lipschitz(p, cfg.power_iters))
    # balance the blocks: ||c D|| ~ ||A|| (||D||^2 <= 4 ndim), radius divided by c accordingly
    c = norm_a / math.sqrt(4.0 * len(shape))
    grad = Scaled(FiniteDifference(shape), c)
    lam = lam_rel * float(p.aty.abs().max())
    knorm = math.sqrt(norm_a**2 + (c**2) * 4.0 * len(shape)) * 1.01
    blocks = [(p.op, prox_l2_data_conj(p.y)), (grad, project_l21_ball(lam / c, axis=0))]
    x = pdhg(blocks, torch.zeros_like(p.aty), 1.0 / knorm, 1.0 / knorm, iters=cfg.iters, show_progress=show)
    return x, {"lam_abs": lam * p.scale, "operator_norm": norm_a}


@register("tv", TVConfig, ("mri",), "total variation (isotropic, complex) via PDHG; weight by hold-out")
def total_variation(scan: MRIScan, cfg: TVConfig, *, show_progress=None) -> ReconResult:
    """TV-regularised reconstruction (see :class:`TVConfig`)."""
    _check_scan(scan)
    cands = _auto_candidates(cfg.lam, cfg.lam_candidates, "lam")
    if cfg.iters < 1:
        raise InreconError(f"iters={cfg.iters}", "set iters to a positive integer")
    scan = _with_maps(scan)
    info: dict = {}
    if cands is not None:

        def recon(scan_train, lam):
            p = _problem(scan_train)
            return _tv(p, lam, cfg, False)[0] * p.scale

        lam, info["holdout_scores"] = _select_weight(
            recon, scan, cands, cfg.refine, cfg.holdout_fraction, cfg.seed, show_progress
        )
    else:
        lam = float(cfg.lam)
    p = _problem(scan)
    x, extra = _tv(p, lam, cfg, show_progress)
    info.update(extra, lam=lam, iterations=cfg.iters, scale=p.scale)
    return ReconResult((x * p.scale).to(torch.complex64), "tv", dataclasses.asdict(cfg), info)
