"""P-LORAKS (Haldar & Zhuo, MRM 2016): low-rank modelling of local k-space neighbourhoods of all coils at once.

The S-matrix (Haldar, IEEE TMI 2014) of multi-coil k-space ``x_c`` has one pair of columns per neighbourhood
centre ``p`` and one row per (coil, real/imaginary part, offset ``o`` within radius ``R``): with
``a = x(p + o)`` and its conjugate-symmetric partner ``b = x(-p + o)``, the blocks are ``Re(a) - Re(b)``,
``Im(a) + Im(b)``, ``-Im(a) + Im(b)``, ``Re(a) + Re(b)``. Limited image support, smooth phase and smooth coil
sensitivities make it approximately low rank. P-LORAKS with exact data consistency solves

    min_x  || S(x) - L_r(S(x)) ||_F^2   subject to  x = y at the acquired samples,

``L_r`` the best rank-``r`` approximation, by the authors' majorise-minimise scheme: at the current ``x_i`` the
rank-``r`` signal subspace ``U_r`` of ``S(x_i)`` (the top eigenvectors of ``S S^T``) gives the majoriser
``|| (I - U_r U_r^T) S(x) ||^2``, which is minimised over the missing samples (by conjugate gradients;
``inner=1`` with one plain step is the original iterative hard thresholding,
``x <- S^*(L_r(S(x))) / diag(S^* S)``), and the subspace is updated again.

Everything runs through FFTs instead of the explicit (rows x 2 * centres) matrix. For a filter ``u`` (a row
vector of the S-matrix's row space, written as complex coefficients ``w_{c,o}``), ``u^T S(x)`` is
``F(p) - conj(F(-p))`` with ``F`` the correlation of ``x`` with ``w``, so in the image domain (the DFT over ``p``)
it is ``2 i Im(F^)``; hence

- ``S S^T`` needs only the coil cross-correlations ``sum_q x_c(q + d) conj(x_c'(q))`` and convolutions
  ``(x_c * x_c')(d)`` at offset differences and sums ``|d| <= 2R`` (``2 C^2`` FFTs), and
- ``S^* U_r U_r^T S x`` is ``IDFT(P(w) X(w) - Q(w) conj(X(w)))`` with two ``C x C`` matrices per image pixel
  built once per subspace (``P = sum_j conj(W_j) W_j^T``, ``Q = sum_j conj(W_j) conj(W_j)^T``),

so one iteration costs ``4 C`` FFTs. The correlations are taken on k-space zero-padded by ``2R + 1`` (every
neighbourhood that overlaps the grid is a centre, ``diag(S^* S) = 4 K`` everywhere): this is the FFT
formulation of LORAKS 2.0 (Kim & Haldar 2018), which differs from the 2014 matrix only at the edges of k-space.

The rank, by default, is the smallest ``r`` whose leading eigenvalues hold ``energy`` of the trace of
``S S^T`` of the calibration data (the fully sampled centre, neighbourhoods inside it). Without a calibration
region (or ``rank="holdout"``) the rank is chosen among ``rank_candidates`` by the library's hold-out rule: a
seeded 20 % of the acquired samples are removed, reconstructed at each candidate rank, and the candidate that
predicts them best wins.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import torch

from inrecon.config import Fraction, NonNegFloat, PosFloat, PosInt
from inrecon.errors import InreconError
from inrecon.physics.fft import ifftc
from inrecon.physics.measurement import build_measurement
from inrecon.progress import progress
from inrecon.recon.classical.grappa import acs_block, check_cartesian, combine_coils, single_thread
from inrecon.recon.classical.selection import select_along_path
from inrecon.recon.registry import Context, MethodSpec, ReconResult

__all__ = [
    "PLORAKS",
    "PLoraksConfig",
    "calibration_rank",
    "neighbourhood",
    "ploraks_kspace",
    "s_gram",
    "s_matrix",
]


@dataclass
class PLoraksConfig:
    """P-LORAKS with exact data consistency (S-matrix, all coils), solved by majorise-minimise."""

    radius: PosFloat = 3.0
    """Neighbourhood radius R in k-space samples (offsets o with |o| <= R; R=3: 29 offsets)."""
    rank: PosInt | Literal["auto", "holdout"] = "auto"
    """Rank r of the S-matrix, or auto (from the calibration data's eigenvalues; by hold-out over
    rank_candidates when the scan has no calibration region), or holdout (always by hold-out)."""
    energy: Fraction = 0.99
    """rank=auto: the smallest rank whose leading eigenvalues of S S^T of the calibration data (its own
    neighbourhoods) hold this share of the trace."""
    rank_candidates: tuple[PosInt, ...] = (10, 20, 35, 50, 70, 100)
    """Ranks tried by the hold-out rule."""
    iters: PosInt | Literal["auto"] = "auto"
    """Majorise-minimise iterations (subspace updates), or auto: the count (1..max_iters) whose iterate from
    the training part of the hold-out split best predicts the held-out samples (CG-SENSE's rule). With noisy
    data the iterates first improve, then fit the noise (real 8-coil brain: peak after 11-21 iterations)."""
    max_iters: PosInt = 40
    """Longest path searched by iters=auto."""
    inner: PosInt = 1
    """Steps on each majoriser: 1 is the authors' iterative hard thresholding (x <- S^*(L_r(S x)) /
    diag(S^* S) on the missing samples); more runs that many conjugate-gradient steps (LORAKS 2.0)."""
    tol: NonNegFloat = 1e-5
    """Fixed iters: stop when an iteration changes the k-space by less than tol (relative)."""
    holdout_fraction: Fraction = 0.2
    """Share of the acquired locations held out by iters=auto and the rank hold-out."""
    combine: Literal["rss", "maps"] = "rss"
    """Coil combination: root-sum-of-squares (zero phase) or the coil maps (complex)."""
    maps: Literal["auto", "espirit", "scan"] = "auto"
    """Coil maps for combine=maps: the scan's own, else ESPIRiT."""
    seed: int = 0
    """Seeds the hold-out split."""

    def check(self) -> None:
        if self.radius < 1:
            raise InreconError(f"radius={self.radius} is below 1", "use a neighbourhood radius of at least 1")


# --- the S-matrix: explicit (small, for calibration and tests) and through FFTs ----------------------------------
def neighbourhood(radius: float) -> np.ndarray:
    """Offsets ``(K, 2)`` int64 with ``|o| <= radius`` (row-major over the square ``[-R, R]^2``)."""
    r = int(math.floor(radius))
    g = np.stack(np.meshgrid(np.arange(-r, r + 1), np.arange(-r, r + 1), indexing="ij"), -1).reshape(-1, 2)
    return g[(g**2).sum(1) <= radius**2 + 1e-9].astype(np.int64)


def s_matrix(kspace: torch.Tensor, radius: float, centres: np.ndarray | None = None) -> torch.Tensor:
    """The explicit real S-matrix ``(2 K C, 2 n)`` of ``kspace`` ``(C, H, W)`` (Haldar 2014): rows (real /
    imaginary block, coil, offset), columns (left / right block, centre). ``centres`` ``(n, 2)`` are grid
    indices whose neighbourhood and mirrored neighbourhood (about the centre index ``H // 2, W // 2``) lie in
    the grid; default: all such centres."""
    h, w = kspace.shape[1:]
    offs = neighbourhood(radius)
    mid = np.array([h // 2, w // 2])
    if centres is None:
        grid = np.stack(np.meshgrid(np.arange(h), np.arange(w), indexing="ij"), -1).reshape(-1, 2)
        pos, neg = grid[:, None] + offs, 2 * mid - grid[:, None] + offs
        ok = ((pos >= 0) & (pos < [h, w])).all((1, 2)) & ((neg >= 0) & (neg < [h, w])).all((1, 2))
        centres = grid[ok]
    if len(centres) == 0:
        return kspace.real.new_zeros(4 * kspace.shape[0] * len(offs) // 2, 0)
    pos = centres[:, None] + offs  # (n, K, 2)
    neg = 2 * mid - centres[:, None] + offs
    a = kspace[:, pos[..., 0], pos[..., 1]].permute(1, 0, 2).reshape(len(centres), -1)  # (n, C K)
    b = kspace[:, neg[..., 0], neg[..., 1]].permute(1, 0, 2).reshape(len(centres), -1)
    top = torch.cat([a.real - b.real, a.imag + b.imag], 0)
    bottom = torch.cat([-a.imag + b.imag, a.real + b.real], 0)
    return torch.cat([top, bottom], 1).T


def _pad(kspace: torch.Tensor, radius: float) -> tuple[torch.Tensor, int]:
    """Zero-pad ``(C, H, W)`` by ``2 floor(R) + 1`` per side (the centre index moves to ``L // 2``)."""
    p = 2 * int(math.floor(radius)) + 1
    return torch.nn.functional.pad(kspace, (p, p, p, p)), p


def _dft(x: torch.Tensor) -> torch.Tensor:
    """Orthonormal DFT over the last two axes with the centre index ``L // 2`` at the origin."""
    return torch.fft.fft2(torch.fft.ifftshift(x, dim=(-2, -1)), norm="ortho")


def _idft(x: torch.Tensor) -> torch.Tensor:
    return torch.fft.fftshift(torch.fft.ifft2(x, norm="ortho"), dim=(-2, -1))


def _phases(n: int, radius: int, sign: float, dtype, device=None) -> torch.Tensor:
    """``exp(sign 2 pi i d m / n)`` ``(2 radius + 1, n)`` for ``d = -radius..radius``: a DFT pruned to small
    offsets (cheaper than full FFTs when only ``|d| <= 2R`` matters)."""
    d = torch.arange(-radius, radius + 1, dtype=torch.float64, device=device)[:, None]
    m = torch.arange(n, dtype=torch.float64, device=device)[None]
    return torch.exp(sign * 2j * math.pi * d * m / n).to(dtype)


def s_gram(kspace: torch.Tensor, radius: float) -> torch.Tensor:
    """``S S^T`` ``(2 K C, 2 K C)`` float64 of the zero-padded ``kspace`` ``(C, H, W)`` through FFTs (module
    docstring); rows ordered like :func:`s_matrix` (block, coil, offset)."""
    xp, _ = _pad(kspace.to(torch.complex128), radius)
    c, h, w = xp.shape
    offs = neighbourhood(radius)
    k, r2 = len(offs), 2 * int(math.floor(radius))
    xh = torch.fft.fft2(torch.fft.ifftshift(xp, dim=(-2, -1)))  # unnormalised: exact correlation sums
    e1 = _phases(h, r2, 1.0, xh.dtype, xh.device) / h  # inverse DFT at |d| <= 2R
    e2 = _phases(w, r2, 1.0, xh.dtype, xh.device) / w

    def small(z):  # (C, C, H, W) spectra -> (C, C, 4R+1, 4R+1) correlation values at offsets -2R..2R
        return e1 @ z @ e2.T

    corr = small(xh[:, None] * xh[None].conj())  # sum_q x_c(q + d) conj(x_c'(q))
    conv = small(xh[:, None] * xh[None])  # (x_c * x_c')(d)
    diff = offs[:, None] - offs[None] + r2  # (K, K, 2): o_k - o_l, as indices into -2R..2R
    summ = offs[:, None] + offs[None] + r2
    a0 = corr[:, :, diff[..., 0], diff[..., 1]].permute(0, 2, 1, 3).reshape(c * k, c * k)
    b0 = conv[:, :, summ[..., 0], summ[..., 1]].permute(0, 2, 1, 3).reshape(c * k, c * k)
    s_aa = a0 - b0 - b0.mH + a0.conj()
    s_bb = a0 + b0 + b0.mH + a0.conj()
    s_ab = -1j * (a0 + b0 - b0.mH - a0.conj())
    return torch.cat([torch.cat([s_aa, s_ab], 1), torch.cat([s_ab.mH, s_bb], 1)], 0).real


def calibration_rank(
    kspace: torch.Tensor, mask: torch.Tensor, radius: float, energy: float
) -> tuple[int, dict]:
    """The smallest rank whose leading eigenvalues of ``S S^T`` of the calibration block (its own
    neighbourhoods) hold ``energy`` of the trace; ``(rank, info)``."""
    block = acs_block(mask)
    calib = kspace[(slice(None), *block)].to(torch.complex128)
    s = s_matrix(calib, radius)
    if s.shape[1] == 0:
        raise InreconError(
            f"the calibration block {list(calib.shape[1:])} is too small for radius {radius}",
            "use a smaller radius, give rank explicitly, or rank=holdout",
        )
    ev = torch.linalg.eigvalsh(s @ s.T).flip(0).clamp_min(0)
    frac = torch.cumsum(ev, 0) / ev.sum().clamp_min(1e-300)
    rank = (
        int(torch.searchsorted(frac, torch.tensor(energy, dtype=frac.dtype, device=frac.device)).item()) + 1
    )
    return min(rank, s.shape[0] - 1), {
        "calibration": list(calib.shape[1:]),
        "calibration_windows": s.shape[1] // 2,
    }


# --- majorise-minimise -------------------------------------------------------------------------------------------
class _Projector:
    """``T(x) = S^* U_r U_r^T S x`` of padded k-space ``x`` ``(C, L1, L2)`` for the signal subspace of ``gram``
    (``2 IDFT(P X - Q conj(X))``, module docstring)."""

    def __init__(self, gram: torch.Tensor, rank: int, radius: float, shape: tuple[int, ...]):
        c, h, w = shape
        offs = torch.as_tensor(neighbourhood(radius), device=gram.device)
        k = len(offs)
        _, vec = torch.linalg.eigh(gram)
        u = vec[:, -rank:].T  # (r, 2 C K): rows of the signal subspace
        coef = (u[:, : c * k] + 1j * u[:, c * k :]).reshape(rank, c, k)  # complex filter per coil and offset
        # P(w)_cd = sum_kl Mp[c,k,d,l] e^{i w (o_l - o_k)},  Q(w)_cd = sum_kl Mq[c,k,d,l] e^{-i w (o_k + o_l)}
        mp = torch.einsum("jck,jdl->cdkl", coef.conj(), coef)
        mq = torch.einsum("jck,jdl->cdkl", coef.conj(), coef.conj())
        r2 = 2 * int(math.floor(radius))
        diff = (offs[None, :] - offs[:, None] + r2).reshape(-1, 2)  # [k, l] = o_l - o_k, as indices
        summ = (offs[:, None] + offs[None, :] + r2).reshape(-1, 2)
        n = 2 * r2 + 1
        kp = torch.zeros(c * c, n * n, dtype=torch.complex128, device=gram.device).index_add_(
            1, diff[:, 0] * n + diff[:, 1], mp.reshape(c * c, -1)
        )
        kq = torch.zeros(c * c, n * n, dtype=torch.complex128, device=gram.device).index_add_(
            1, summ[:, 0] * n + summ[:, 1], mq.reshape(c * c, -1)
        )
        # P(w) = sum_delta kp(delta) e^{i w delta}, Q(w) = sum_sigma kq(sigma) e^{-i w sigma}: pruned DFTs
        e1p, e2p = _phases(h, r2, 1.0, kp.dtype, gram.device), _phases(w, r2, 1.0, kp.dtype, gram.device)
        self.p = (e1p.T @ kp.reshape(c, c, n, n) @ e2p).to(torch.complex64)
        self.q = (e1p.conj().T @ kq.reshape(c, c, n, n) @ e2p.conj()).to(torch.complex64)
        self.scale = 4 * k  # diag(S^* S) on the padded grid

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        xh = _dft(x)
        y = torch.einsum("cdxy,dxy->cxy", self.p, xh) - torch.einsum("cdxy,dxy->cxy", self.q, xh.conj())
        return 2 * _idft(y)


def _minimise(proj: _Projector, x: torch.Tensor, free: torch.Tensor, iters: int) -> torch.Tensor:
    """Minimise the majoriser ``||(I - U U^T) S x||^2`` over the missing entries ``free`` (padded bool
    ``(L1, L2)``) from ``x``: one hard-thresholding step (``iters=1``) or ``iters`` CG steps in the real inner
    product (the normal operator ``S^* S - S^* U U^T S = 4K - T`` is real-linear and positive semidefinite)."""
    if iters == 1:  # x <- S^* L_r(S x) / diag(S^* S) on the missing samples
        return torch.where(free, proj(x) / proj.scale, x)

    def apply(v):
        return (proj.scale * v - proj(v)) * free

    def dot(a, b):
        return float(torch.sum(a.real * b.real + a.imag * b.imag))

    r = -apply(x)
    p = r.clone()
    rr = dot(r, r)
    for _ in range(iters):
        if rr <= 1e-30:
            break
        ap = apply(p)
        alpha = rr / max(dot(p, ap), 1e-30)
        x = x + alpha * p
        r = r - alpha * ap
        rr_new = dot(r, r)
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


def ploraks_kspace(
    kspace: torch.Tensor,
    mask: torch.Tensor,
    rank: int,
    cfg: PLoraksConfig,
    iters: int,
    show_progress: bool | None = None,
    callback=None,
) -> tuple[torch.Tensor, dict]:
    """Complete ``kspace`` ``(C, H, W)`` (zero where ``mask`` ``(H, W)`` is False) at ``rank`` by ``iters``
    majorise-minimise iterations (fewer when one changes the k-space by less than ``cfg.tol``; never with a
    ``callback(iteration, kspace)``, which sees every iterate). Returns the complex64 k-space (acquired
    samples unchanged) and ``info`` (iterations, last relative change)."""
    scale = float(kspace.abs().max()) or 1.0
    x, pad = _pad((kspace / scale).to(torch.complex64), cfg.radius)
    free = torch.zeros(x.shape[1:], dtype=torch.bool, device=x.device)
    free[pad:-pad, pad:-pad] = ~mask.to(torch.bool)
    change, done = math.inf, 0
    with single_thread():
        for it in progress(range(iters), desc="P-LORAKS", show=show_progress):
            gram = s_gram(x[:, pad:-pad, pad:-pad], cfg.radius)
            proj = _Projector(gram.cpu(), rank, cfg.radius, tuple(x.shape))
            proj.p, proj.q = proj.p.to(x.device), proj.q.to(x.device)
            new = _minimise(proj, x, free, cfg.inner)
            change = float((new - x).norm() / x.norm().clamp_min(1e-30))
            x, done = new, done + 1
            if callback is not None:
                callback(it + 1, (x[:, pad:-pad, pad:-pad] * scale).to(kspace.dtype))
            elif change < cfg.tol:
                break
    out = (x[:, pad:-pad, pad:-pad] * scale).to(kspace.dtype)
    return torch.where(mask.to(torch.bool), kspace, out), {"iterations": done, "last_change": change}


def _choose(scan, ranks: list[int], cfg: PLoraksConfig, show) -> tuple[tuple[int, int], dict]:
    """``(rank, iterations)`` by the hold-out rule along each candidate rank's path
    (:func:`~inrecon.recon.classical.selection.select_along_path`), and the held-out losses."""
    meas = build_measurement(scan, coil_images=True, scale="none")
    n_grid = scan.mask.numel()
    want = None if cfg.iters == "auto" else int(cfg.iters)
    steps = cfg.max_iters if want is None else want

    def path(train, report):
        k = torch.zeros(scan.kspace.numel(), dtype=scan.kspace.dtype, device=scan.kspace.device)
        k[train.idx] = train.y
        mask = torch.zeros(n_grid, dtype=torch.bool, device=k.device)
        mask[train.idx % n_grid] = True
        for r in progress(ranks, desc="P-LORAKS hold-out", show=show):

            def seen(it, kspace, r=r):
                if want is None or it == want:
                    report((r, it), ifftc(kspace, (1, 2)))

            ploraks_kspace(
                k.reshape(scan.kspace.shape), mask.reshape(scan.mask.shape), r, cfg, steps, None, seen
            )

    best, scores = select_along_path(path, meas, cfg.holdout_fraction, cfg.seed)
    return best, {"holdout_scores": {f"{r}/{i}": v for (r, i), v in scores.items()}}


def ploraks(scan, cfg: PLoraksConfig, ctx: Context) -> ReconResult:
    """P-LORAKS reconstruction of a 2D Cartesian ``scan`` (module docstring); ``info``: seconds, rank and
    iterations and how they were chosen, hold-out scores."""
    check_cartesian(scan, "ploraks")
    if scan.kspace.ndim != 3:
        raise InreconError("ploraks reconstructs 2D k-space (C, H, W)", "reconstruct 3D data slice by slice")
    t0 = time.perf_counter()
    info: dict = {}
    if cfg.rank == "auto":
        try:
            rank, info = calibration_rank(scan.kspace, scan.mask, cfg.radius, cfg.energy)
            ranks, info["rank_source"] = [rank], f"calibration energy {cfg.energy}"
        except InreconError:
            ranks = sorted(int(r) for r in cfg.rank_candidates)
    elif cfg.rank == "holdout":
        ranks = sorted(int(r) for r in cfg.rank_candidates)
    else:
        ranks = [int(cfg.rank)]
    info.setdefault("rank_source", "hold-out" if len(ranks) > 1 else "given")
    if len(ranks) > 1 or cfg.iters == "auto":
        (rank, iters), extra = _choose(scan, ranks, cfg, ctx.show_progress)
        info.update(extra)
    else:
        rank, iters = ranks[0], int(cfg.iters)
    k, extra = ploraks_kspace(scan.kspace, scan.mask, rank, cfg, iters, ctx.show_progress)
    info.update(extra, rank=int(rank), iters_chosen=int(iters))
    img = combine_coils(ifftc(k, (1, 2)), cfg.combine, scan, cfg.maps)
    info["seconds"] = time.perf_counter() - t0
    return ReconResult(img, "ploraks", asdict(cfg), info)


PLORAKS = MethodSpec(
    "ploraks",
    ploraks,
    PLoraksConfig,
    ("mri",),
    "P-LORAKS: low-rank S-matrix of all coils' k-space neighbourhoods (majorise-minimise, FFT-based)",
)
