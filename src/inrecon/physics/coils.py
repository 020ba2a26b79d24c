"""Coil tools: ESPIRiT sensitivity maps, root-sum-of-squares, coil compression, noise prewhitening.

All functions take and return torch tensors and run on the input's device (CPU or CUDA). Coil axis first:
k-space ``(C, *grid)`` with ``grid`` = ``(H, W)`` or ``(D, H, W)``, centred and orthonormal as in
:class:`~inrecon.physics.mri.SenseOp`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from inrecon.checks import require_complex, require_finite, require_ndim
from inrecon.errors import InreconError, ShapeError
from inrecon.physics.fft import fftc, ifftc

__all__ = [
    "MAPS_CHOICES",
    "calibration_width",
    "coil_compress",
    "coil_maps",
    "espirit_maps",
    "espirit_maps_noncartesian",
    "noise_covariance",
    "noise_from_region",
    "normalize_maps",
    "prewhiten",
    "rss",
    "with_espirit_support",
]


MAPS_CHOICES = ("auto", "espirit", "scan")


def coil_maps(scan, how: str = "auto") -> torch.Tensor:
    """The coil sensitivities every method uses for ``scan`` -- the one place that decides them.

    ``how="auto"``: the scan's own ``sens_maps`` when it carries them, else ESPIRiT from the calibration
    region (Cartesian: the fully sampled centre of the mask; non-Cartesian: the gridded centre of k-space,
    :func:`espirit_maps_noncartesian`). ``"espirit"`` always estimates; ``"scan"`` requires the scan's maps.
    Returns complex64 ``(C, *image_shape)`` on the scan's device.
    """
    if how not in MAPS_CHOICES:
        raise InreconError(f"maps={how!r} is not understood", f"use one of {', '.join(MAPS_CHOICES)}")
    if scan.sens_maps is not None and how in ("auto", "scan"):
        if scan.is_cartesian:
            _check_maps_match(scan.kspace, scan.sens_maps)
        return scan.sens_maps
    if how == "scan":
        raise InreconError("the scan holds no sens_maps", "use maps=auto to estimate them with ESPIRiT")
    if scan.is_cartesian:
        maps = espirit_maps(scan.kspace, mask=scan.mask)
    else:
        maps = espirit_maps_noncartesian(scan)
    return torch.as_tensor(maps).to(device=scan.kspace.device, dtype=torch.complex64)


def _explained(coil_images: torch.Tensor, maps: torch.Tensor) -> float:
    """Share of the energy of ``coil_images (C, *grid)`` that ``maps`` explain: at each pixel the coil vector's
    projection onto the maps' vector (1 when the images are ``maps * image`` everywhere)."""
    proj = (maps.conj() * coil_images).sum(0).abs().square() / maps.abs().square().sum(0).clamp_min(1e-30)
    return float(proj.sum() / coil_images.abs().square().sum().clamp_min(1e-30))


def _check_maps_match(kspace: torch.Tensor, maps: torch.Tensor, width: int = 24) -> None:
    """Refuse coil maps that clearly belong to a transposed or flipped k-space (an axis-order or sign mistake).

    The low-resolution coil images (the centre ``width`` of k-space per axis, Hann-windowed) of a consistent
    scan are close to ``maps * image``. When the maps explain less than 90 % of their energy and the maps
    transposed (last two axes, square grids) or flipped along an axis explain at least 10 points more, the
    mismatch is refused naming the likely cause. Single-coil scans cannot be checked.
    """
    if kspace.shape[0] < 2 or tuple(maps.shape) != tuple(kspace.shape):
        return
    dims = tuple(range(1, kspace.ndim))
    window = torch.ones((), device=kspace.device)
    for d in dims:
        n = kspace.shape[d]
        w = min(width, n)
        v = torch.zeros(n, device=kspace.device)
        v[n // 2 - w // 2 : n // 2 - w // 2 + w] = torch.hann_window(
            w + 2, periodic=False, device=kspace.device
        )[1:-1]
        window = window * v.reshape([n if i == d else 1 for i in range(kspace.ndim)])
    low = ifftc(kspace * window, dims)
    given = _explained(low, maps)
    if given >= 0.9:
        return
    options = {f"flipped along axis {d - kspace.ndim}": maps.flip(d) for d in dims}
    if maps.shape[-1] == maps.shape[-2]:
        options["transposed"] = maps.transpose(-1, -2)
    name, best = max(((k, _explained(low, m)) for k, m in options.items()), key=lambda kv: kv[1])
    if best >= given + 0.1:
        raise InreconError(
            f"the coil maps (sens_maps) do not match the k-space: they explain {100 * given:.0f} % of the "
            f"low-resolution coil images, the maps {name} {100 * best:.0f} %; the k-space and mask look "
            f"{name} relative to the maps",
            "store kspace, mask and sens_maps in the same axis order and orientation (or drop sens_maps to "
            "estimate them with ESPIRiT)",
        )


def with_espirit_support(scan):
    """``scan`` with ESPIRiT maps (estimated here) and ``roi`` = their support: the Bilevel paper's convention
    for scoring real multi-coil data inside the coil-map support."""
    import dataclasses

    maps = coil_maps(scan, "espirit")
    return dataclasses.replace(scan, sens_maps=maps, roi=(maps.abs() > 0).any(0))


def _tensor(x, name: str) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))


def rss(x: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Root-sum-of-squares ``sqrt(sum_c |x_c|^2)`` over ``dim`` (real output, same dtype precision)."""
    x = _tensor(x, "x")
    return torch.sqrt((x.abs() ** 2).sum(dim))


def normalize_maps(maps: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Scale sensitivities so that ``sum_c |S_c|^2 = 1`` at every pixel of the support.

    Pixels whose root-sum-of-squares is below ``eps`` times its maximum are outside the support and set to 0.

    Parameters
    ----------
    maps
        complex ``(C, *grid)``.

    Returns
    -------
    torch.Tensor
        complex ``(C, *grid)``, same dtype.
    """
    maps = _tensor(maps, "maps")
    require_complex(maps, "maps")
    require_ndim(maps, "maps", (3, 4), "(C, H, W) or (C, D, H, W)")
    norm = rss(maps, 0)
    support = norm > eps * norm.max().clamp_min(1e-30)
    return torch.where(
        support, maps / norm.clamp_min(1e-30), torch.zeros((), dtype=maps.dtype, device=maps.device)
    )


# --- ESPIRiT ------------------------------------------------------------------------------------------------
def _centre_block(grid: Sequence[int], width: Sequence[int]) -> tuple[slice, ...]:
    return tuple(slice(n // 2 - w // 2, n // 2 - w // 2 + w) for n, w in zip(grid, width))


def calibration_width(mask: torch.Tensor) -> int:
    """Side of the largest fully sampled centred square (cube in 3D) of a sampling ``mask`` ``(*grid)``.

    The block of side ``w`` spans indices ``n // 2 - w // 2 .. n // 2 - w // 2 + w - 1`` along each axis
    (blocks of growing ``w`` are nested), so the result is the first ``w`` whose block has a hole, minus one.
    """
    m = _tensor(mask, "mask").to(torch.bool)
    grid = tuple(m.shape)
    w = 0
    while w < min(grid) and bool(m[_centre_block(grid, (w + 1,) * len(grid))].all()):
        w += 1
    return w


def _calibration_matrix(calib: torch.Tensor, k: int) -> torch.Tensor:
    """All ``k**d`` patches of ``calib`` ``(C, *w)`` as rows: ``(n_patches, C * k**d)``, column order (c, u)."""
    c = calib.shape[0]
    nd = calib.ndim - 1
    p = calib
    for ax in range(1, nd + 1):
        p = p.unfold(ax, k, 1)  # (C, n1, .., nd, k, .., k) after all axes
    # p: (C, n_1, ..., n_d, k_1, ..., k_d) -> (n_1 ... n_d, C, k_1 ... k_d)
    perm = (*range(1, nd + 1), 0, *range(nd + 1, 2 * nd + 1))
    p = p.permute(perm)
    return p.reshape(-1, c * k**nd)


# Per-pixel C x C matrices are built and decomposed in slabs along the first image axis holding at most this
# many complex entries (~256 MB of complex64), so 3D volumes with many coils fit in memory.
_SLAB_ENTRIES = 2**25


def _espirit_slabs(kernels: torch.Tensor, grid: tuple[int, ...]):
    """Yield ``(rows, M)``: per-pixel ``M(x) = sum_j g_j(x) g_j(x)^H / k**d`` for slabs of the first axis.

    ``g_j[c](x) = sum_u K_j[c, u] e^{+2 pi i u.x/N}`` (``x`` centred at ``N // 2``) is never formed:
    ``g_j[c] conj(g_j[d])`` is the inverse DFT of the cross-correlation
    ``R[c, d](s) = sum_j sum_{u - u' = s} K_j[c, u] conj(K_j[d, u'])``, supported on ``|s| < k``. ``R`` is
    transformed to image space with FFTs along axes 1.. and an explicit ``2k - 1``-tap DFT along axis 0, one
    slab of rows at a time. ``M`` is complex64 ``(rows, *grid[1:], C, C)`` with ``[..., c, d] = M[c, d]``.
    """
    n_coils = kernels.shape[1]
    k = kernels.shape[-1]
    nd = len(grid)
    if any(n < 2 * k - 1 for n in grid):
        raise InreconError(f"the grid {grid} is too small for kernel_width={k}", "use a smaller kernel_width")
    dims = tuple(range(-nd, 0))
    taps = 2 * k - 1
    kf = torch.fft.fftn(kernels.to(torch.complex128), s=(taps,) * nd, dim=dims)  # (j, C, *L)
    rf = torch.einsum("jc...,jd...->cd...", kf, kf.conj())
    r = torch.fft.fftshift(torch.fft.ifftn(rf, dim=dims), dim=dims)  # (C, C, *L), s = 0 at index k - 1
    rest = grid[1:]
    # Axes 1..: embed the taps centred on N // 2 and take the centred inverse FFT (times sqrt(N): plain sum).
    part = torch.zeros((n_coils, n_coils, taps, *rest), dtype=torch.complex64, device=kernels.device)
    part[(slice(None),) * 3 + tuple(slice(n // 2 - (k - 1), n // 2 + k) for n in rest)] = r.to(part.dtype)
    rest_dims = tuple(range(-(nd - 1), 0))
    part = ifftc(part, rest_dims) * (math.sqrt(math.prod(rest)) / k**nd)
    part = part.movedim(2, 0).movedim(1, -1).movedim(1, -1)  # (L, *rest, C, C)
    s0 = torch.arange(-(k - 1), k, device=kernels.device, dtype=torch.float64)
    per_row = max(1, math.prod(rest) * n_coils * n_coils)
    chunk = max(1, _SLAB_ENTRIES // per_row)
    for r0 in range(0, grid[0], chunk):
        x0 = (
            torch.arange(r0, min(grid[0], r0 + chunk), device=kernels.device, dtype=torch.float64)
            - grid[0] // 2
        )
        phase = torch.exp(2j * math.pi * x0[:, None] * s0[None, :] / grid[0]).to(torch.complex64)  # (rows, L)
        yield slice(r0, r0 + len(x0)), torch.tensordot(phase, part, dims=([1], [0]))


def _dominant_eigenpairs(mat: torch.Tensor, iters: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Largest eigenvalue (real) and its unit eigenvector for Hermitian ``mat`` ``(P, C, C)``."""
    if iters is None:
        lam, vec = torch.linalg.eigh(mat)
        return lam[:, -1], vec[:, :, -1]
    vec = torch.ones((*mat.shape[:-1], 1), dtype=mat.dtype, device=mat.device)
    for _ in range(int(iters)):
        vec = mat @ vec
        vec = vec / torch.linalg.vector_norm(vec, dim=1, keepdim=True).clamp_min(1e-30)
    lam = (vec.mH @ mat @ vec).real.reshape(-1)
    return lam, vec[..., 0]


def _espirit_kernel_width(
    kernel_width: int, threshold: float, crop: float, ref_coil: int, iters: int | None, n_coils: int
) -> int:
    """Check :func:`espirit_maps`' scalar parameters; return the kernel width as an int."""
    k = int(kernel_width)
    if k != kernel_width or k < 2:
        raise InreconError(f"kernel_width is {kernel_width}", "use an integer >= 2 (6 is standard)")
    if not (0 < threshold < 1):
        raise InreconError(
            f"threshold is {threshold} but must lie in (0, 1)", "use 0.02 (BART and sigpy default)"
        )
    if not (0 <= crop < 1):
        raise InreconError(f"crop is {crop} but must lie in [0, 1)", "use 0.95 (or 0 to keep every pixel)")
    if not (0 <= int(ref_coil) < n_coils):
        raise InreconError(f"ref_coil is {ref_coil} but there are {n_coils} coils", f"use 0 .. {n_coils - 1}")
    if iters is not None and (int(iters) != iters or iters < 1):
        raise InreconError(
            f"iters is {iters}", "use None (exact eigh) or a positive number of power iterations"
        )
    return k


def _acquired_mask(kspace: torch.Tensor, mask: torch.Tensor | None, grid: tuple[int, ...]) -> torch.Tensor:
    """The bool mask of acquired samples: ``mask`` checked against ``grid``, else where any coil is non-zero."""
    if mask is None:
        return (kspace != 0).any(0)
    m = _tensor(mask, "mask").to(kspace.device)
    if tuple(m.shape) != grid:
        raise ShapeError(
            f"mask has shape {tuple(m.shape)} but the k-space grid is {grid}", "pass the (*grid) mask"
        )
    return m.to(torch.bool)


def _espirit_calibration(
    kspace: torch.Tensor, m: torch.Tensor, calib_width: int | Sequence[int] | None, k: int
) -> torch.Tensor:
    """The fully sampled centred calibration block ``(C, *width)`` of ``kspace`` (see :func:`espirit_maps`)."""
    grid = tuple(kspace.shape[1:])
    nd = len(grid)
    if calib_width is None:
        w = calibration_width(m)
        if w == min(grid):  # fully sampled: a larger block only costs time
            w = 24
        width = (min(w, *grid),) * nd
    else:
        width = (int(calib_width),) * nd if np.isscalar(calib_width) else tuple(int(c) for c in calib_width)
        if len(width) != nd:
            raise ShapeError(
                f"calib_width {calib_width} does not have {nd} entries", f"give an int or {nd} ints"
            )
    if min(width) < k + 1 or any(wi > n for wi, n in zip(width, grid)):
        raise InreconError(
            f"calibration block {width} is unusable with kernel_width={k} on the grid {grid} (it must be at "
            f"least {k + 1} and at most the grid along each axis); the fully sampled centre is "
            f"{calibration_width(m)} wide",
            "acquire a fully sampled centre (ACS, e.g. 24 lines/square) or pass calib_width explicitly",
        )
    calib = kspace[(slice(None), *_centre_block(grid, width))]
    holes = int((~m[_centre_block(grid, width)]).sum())
    if holes:
        raise InreconError(
            f"the {width} calibration block has {holes} unsampled points",
            f"use calib_width <= {calibration_width(m)} (the fully sampled centre) or leave it None",
        )
    return calib


def _espirit_kernels(calib: torch.Tensor, k: int, threshold: float) -> torch.Tensor:
    """Signal-subspace k-space kernels ``(n_k, C, k, ..., k)``: right singular vectors of the calibration
    matrix (double precision) with singular value above ``threshold * s_max``."""
    n_coils, nd = calib.shape[0], calib.ndim - 1
    a = _calibration_matrix(calib, k).to(torch.complex128)
    _, s, vh = torch.linalg.svd(a, full_matrices=False)
    keep = s > threshold * s[0]
    evecs = vh.mH
    # Patches (rows of the calibration matrix, un-conjugated) lie in the span of conj(v_j).
    v = evecs[:, keep].conj()  # (C * k**d, n_k)
    n_k = v.shape[1]
    return v.T.reshape(n_k, n_coils, *(k,) * nd)


def _espirit_eigenmaps(
    kernels: torch.Tensor, grid: tuple[int, ...], iters: int | None, ref_coil: int, crop: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel dominant eigenvectors (phase relative to ``ref_coil``, zero where the eigenvalue is at most
    ``crop``) and eigenvalues of the ESPIRiT matrices of ``kernels``, slab by slab."""
    n_coils = kernels.shape[1]
    maps = torch.zeros((n_coils, *grid), dtype=torch.complex64, device=kernels.device)
    lam = torch.zeros(grid, dtype=torch.float32, device=kernels.device)
    for rows, mat in _espirit_slabs(kernels, grid):
        shape = mat.shape[:-2]
        val, vec = _dominant_eigenpairs(mat.reshape(-1, n_coils, n_coils), iters)
        ref = vec[:, int(ref_coil)]
        phase = torch.where(ref.abs() > 0, ref.conj() / ref.abs().clamp_min(1e-30), torch.ones_like(ref))
        vec = vec * phase[:, None]
        val = val.reshape(shape).to(torch.float32)
        lam[rows] = val
        maps[:, rows] = vec.T.reshape(n_coils, *shape) * (val > crop)
    return maps, lam


def espirit_maps(
    kspace: torch.Tensor,
    mask: torch.Tensor | None = None,
    calib_width: int | Sequence[int] | None = None,
    kernel_width: int = 6,
    threshold: float = 0.02,
    crop: float = 0.95,
    iters: int | None = None,
    ref_coil: int = 0,
    return_eigenvalues: bool = False,
):
    """ESPIRiT coil sensitivities (Uecker et al., MRM 2014) from the fully sampled k-space centre.

    1. The calibration block (the ACS region) gives a calibration matrix whose rows are all
       ``kernel_width**d`` patches of all coils.
    2. Its right singular vectors with singular value above ``threshold * s_max`` span the signal subspace;
       they are k-space kernels ``(n_k, C, k, ..., k)``.
    3. Each kernel is zero-padded to the grid and inverse-FFT'd to ``g_j(x)`` (C-vectors per pixel); the
       per-pixel matrix ``M(x) = sum_j g_j(x) g_j(x)^H / k**d`` has eigenvalue ~1 where coil images are
       consistent with the kernels, and its eigenvector there is the sensitivity vector.
    4. The dominant eigenvector per pixel (batched ``eigh``, or ``iters`` power iterations) is the map, its
       phase made relative to ``ref_coil``; pixels whose eigenvalue is below ``crop`` are set to 0.

    ``M`` is formed from the kernels' cross-correlations (one FFT per coil pair, not per kernel) and
    decomposed in slabs of at most ~256 MB, so memory stays bounded for 3D volumes. On the real 8-coil brain
    (180x230, 20x20 calibration) the maps equal sigpy's ``EspiritCalib`` with the same calibration block to
    1.6e-5 and take ~0.2 s on one CPU thread (sigpy: ~1.2-2.6 s).

    Parameters
    ----------
    kspace
        complex ``(C, H, W)`` or ``(C, D, H, W)``, centred, zero where not sampled.
    mask
        bool ``(*grid)`` of acquired samples; default: where any coil is non-zero.
    calib_width
        Side of the calibration block (int, or one per axis). ``None``: the largest fully sampled centred
        square / cube (:func:`calibration_width`); 24 when the data are fully sampled.
    kernel_width
        Kernel side ``k`` (6 as BART and sigpy).
    threshold
        Relative singular-value threshold of the signal subspace.
    crop
        Eigenvalue threshold in ``[0, 1)``: maps are zero where the dominant eigenvalue is below it.
    iters
        ``None``: exact batched Hermitian eigendecomposition of the ``C x C`` matrices; an int: that many power
        iterations instead (cheaper for many coils on a GPU).
    ref_coil
        Coil whose phase is set to zero (maps are defined up to a per-pixel phase).
    return_eigenvalues
        Also return the dominant eigenvalue map ``(*grid)`` (float32).

    Returns
    -------
    torch.Tensor or (torch.Tensor, torch.Tensor)
        complex64 maps ``(C, *grid)`` with ``sum_c |S_c|^2 = 1`` where not cropped; optionally the eigenvalues.
    """
    kspace = _tensor(kspace, "kspace")
    require_complex(kspace, "kspace")
    require_ndim(kspace, "kspace", (3, 4), "(C, H, W) or (C, D, H, W)")
    require_finite(kspace, "kspace")
    kspace = kspace.to(torch.complex64)
    n_coils, grid = kspace.shape[0], tuple(kspace.shape[1:])
    k = _espirit_kernel_width(kernel_width, threshold, crop, ref_coil, iters, n_coils)
    m = _acquired_mask(kspace, mask, grid)
    calib = _espirit_calibration(kspace, m, calib_width, k)
    kernels = _espirit_kernels(calib, k, threshold)
    maps, lam = _espirit_eigenmaps(kernels, grid, iters, ref_coil, crop)
    return (maps, lam) if return_eigenvalues else maps


def espirit_maps_noncartesian(
    scan,
    calib_width: int | None = None,
    kernel_width: int = 6,
    threshold: float = 0.02,
    crop: float = 0.95,
    max_calib_width: int = 24,
    **kwargs,
):
    """ESPIRiT maps from non-Cartesian data: grid the densely sampled k-space centre, then :func:`espirit_maps`.

    The coil images of a density-compensated gridding reconstruction ``A^H(dcf * y)`` (``A`` the NUFFT without
    coil combination) are transformed back to a Cartesian k-space grid whose central block serves as the
    calibration region. Automatic width: the samples' density-compensation weights are in units of one
    Cartesian cell, so the disc where every weight is <= 1.5 is (nearly) Nyquist-sampled; the calibration
    square is the one inscribed in that disc, clipped to ``[kernel_width + 4, max_calib_width]`` (radial with
    40 spokes gives 18).

    Parameters
    ----------
    scan
        A non-Cartesian :class:`~inrecon.data.scans.MRIScan` (``kspace`` ``(C, K)``, ``trajectory``,
        ``image_shape``; ``dcf`` used when present, else computed).
    calib_width
        Side of the calibration square; ``None`` for the automatic choice above.
    kernel_width, threshold, crop, kwargs
        As for :func:`espirit_maps`.

    Returns
    -------
    torch.Tensor
        complex64 maps ``(C, *image_shape)`` (plus eigenvalues with ``return_eigenvalues=True``).
    """
    from inrecon.physics.nufft import NufftSenseOp, scan_density_compensation

    if getattr(scan, "trajectory", None) is None:
        raise InreconError(
            "espirit_maps_noncartesian needs a non-Cartesian scan (with a trajectory)",
            "call espirit_maps(scan.kspace, mask=scan.mask) for Cartesian data",
        )
    shape = tuple(scan.image_shape)
    traj = scan.trajectory
    dcf = scan_density_compensation(scan)
    dcf = dcf.to(scan.kspace.device)
    if calib_width is None:
        radius_cells = traj.norm(dim=1) * max(shape) / (2 * math.pi)
        sparse = radius_cells[dcf > 1.5]
        r = float(sparse.min()) if sparse.numel() else float(radius_cells.max())
        calib_width = int(min(max(math.floor(math.sqrt(2) * r), int(kernel_width) + 4), max_calib_width))
    calib_width = int(calib_width)
    if calib_width > min(shape):
        raise InreconError(
            f"calib_width={calib_width} exceeds the image grid {shape}", f"use calib_width <= {min(shape)}"
        )
    op = NufftSenseOp(None, traj, shape, n_coils=scan.n_coils).to(scan.kspace.device)
    with torch.no_grad():
        coil_images = op.adjoint(scan.kspace * dcf)
        kcart = fftc(coil_images, tuple(range(-len(shape), 0)))
    block = (slice(None), *_centre_block(shape, (calib_width,) * len(shape)))
    calib = torch.zeros_like(kcart)
    calib[block] = kcart[block]
    mask = torch.zeros(shape, dtype=torch.bool, device=kcart.device)
    mask[block[1:]] = True
    return espirit_maps(
        calib,
        mask=mask,
        calib_width=calib_width,
        kernel_width=kernel_width,
        threshold=threshold,
        crop=crop,
        **kwargs,
    )


# --- coil compression ---------------------------------------------------------------------------------------
def coil_compress(kspace: torch.Tensor, n_virtual: int) -> tuple[torch.Tensor, torch.Tensor]:
    """SVD (PCA) coil compression to ``n_virtual`` virtual coils.

    The compression matrix holds the ``n_virtual`` leading eigenvectors of the coil covariance
    ``X X^H`` (``X``: k-space ``(C, n_points)``; unsampled zeros do not contribute).

    Parameters
    ----------
    kspace
        complex ``(C, *rest)`` (Cartesian grid or non-Cartesian samples).
    n_virtual
        Number of virtual coils, ``1 <= n_virtual <= C``.

    Returns
    -------
    compressed
        complex ``(n_virtual, *rest)`` = ``matrix @ kspace`` over the coil axis, virtual coils by decreasing
        energy.
    matrix
        complex ``(n_virtual, C)`` with orthonormal rows. Apply it to sensitivity maps the same way
        (``einsum('vc,c...->v...', matrix, maps)``).
    """
    kspace = _tensor(kspace, "kspace")
    require_complex(kspace, "kspace")
    if kspace.ndim < 2:
        raise ShapeError(f"kspace has shape {tuple(kspace.shape)}", "give (C, ...) with the coil axis first")
    c = kspace.shape[0]
    if isinstance(n_virtual, bool) or int(n_virtual) != n_virtual or not 1 <= n_virtual <= c:
        raise InreconError(
            f"n_virtual is {n_virtual} but must be an integer in 1..{c}", f"use 1 <= n_virtual <= {c}"
        )
    x = kspace.reshape(c, -1).to(torch.complex128)
    cov = x @ x.mH
    _, evecs = torch.linalg.eigh(cov)
    u = evecs[:, -int(n_virtual) :].flip(-1)  # (C, n_virtual), decreasing energy
    matrix = u.mH.to(kspace.dtype if kspace.dtype == torch.complex128 else torch.complex64)
    compressed = torch.einsum("vc,c...->v...", matrix, kspace.to(matrix.dtype))
    return compressed, matrix


# --- noise ----------------------------------------------------------------------------------------------------
def noise_covariance(noise: torch.Tensor) -> torch.Tensor:
    """Coil noise covariance ``Psi = N N^H / S`` from noise-only samples ``(C, S)`` (the mean is not removed:
    thermal noise is zero-mean). Returns complex ``(C, C)`` Hermitian (complex128 for stable factorisation)."""
    noise = _tensor(noise, "noise")
    require_complex(noise, "noise")
    require_ndim(noise, "noise", (2,), "(coils, samples)")
    require_finite(noise, "noise")
    c, s = noise.shape
    if s < c:
        raise InreconError(
            f"noise has {s} samples for {c} coils: the covariance would be singular",
            f"give at least {c} (better > {10 * c}) noise samples per coil",
        )
    x = noise.to(torch.complex128)
    return x @ x.mH / s


def noise_from_region(kspace: torch.Tensor, region: torch.Tensor, domain: str = "image") -> torch.Tensor:
    """Noise-only samples ``(C, S)`` from a region without signal.

    Parameters
    ----------
    kspace
        complex ``(C, *grid)``, centred Cartesian k-space.
    region
        bool ``(*grid)``: the noise-only region.
    domain
        ``"image"``: the region is background (air) in the coil images ``ifftc(kspace)``; as the FFT is
        orthonormal, white k-space noise keeps its covariance there for fully sampled data (zero-filled
        undersampled data are rescaled by ``1/sqrt(sampled fraction)``, but aliased signal may leak in, so
        prefer fully sampled data or a noise scan). ``"kspace"``: the region indexes k-space directly (e.g. a
        separately acquired noise line stored in the array).

    Returns
    -------
    torch.Tensor
        complex ``(C, S)`` with ``S = region.sum()``.
    """
    kspace = _tensor(kspace, "kspace")
    require_complex(kspace, "kspace")
    require_ndim(kspace, "kspace", (3, 4), "(C, H, W) or (C, D, H, W)")
    grid = tuple(kspace.shape[1:])
    r = _tensor(region, "region").to(kspace.device)
    if tuple(r.shape) != grid:
        raise ShapeError(
            f"region has shape {tuple(r.shape)} but the grid is {grid}", "pass a (*grid) bool mask"
        )
    r = r.to(torch.bool)
    if int(r.sum()) < kspace.shape[0]:
        raise InreconError(
            f"the noise region holds {int(r.sum())} points for {kspace.shape[0]} coils",
            "choose a larger background region (hundreds of pixels)",
        )
    if domain == "kspace":
        return kspace[:, r]
    if domain != "image":
        raise InreconError(f"domain is {domain!r}", 'use "image" or "kspace"')
    sampled = (kspace != 0).any(0)
    frac = float(sampled.float().mean())
    img = ifftc(kspace, tuple(range(-len(grid), 0)))
    return img[:, r] / math.sqrt(max(frac, 1e-12))


def prewhiten(kspace: torch.Tensor, noise_or_cov: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Decorrelate coil noise: ``whitened = W @ kspace`` over the coil axis with ``W = L^-1``, ``Psi = L L^H``.

    Parameters
    ----------
    kspace
        complex ``(C, *rest)``.
    noise_or_cov
        Either noise samples ``(C, S)`` or a noise covariance ``(C, C)``; a square Hermitian array is taken as a
        covariance (noise samples are never exactly Hermitian).

    Returns
    -------
    whitened
        ``(C, *rest)`` complex64 (complex128 input stays complex128): its noise covariance is the identity.
        Estimate sensitivity maps from the whitened data.
    W
        ``(C, C)`` whitening matrix, lower triangular.
    """
    kspace = _tensor(kspace, "kspace")
    require_complex(kspace, "kspace")
    c = kspace.shape[0]
    nc = _tensor(noise_or_cov, "noise_or_cov").to(kspace.device)
    require_complex(nc, "noise_or_cov")
    require_ndim(nc, "noise_or_cov", (2,), "(coils, samples) noise or a (coils, coils) covariance")
    if nc.shape[0] != c:
        raise ShapeError(
            f"noise_or_cov has {nc.shape[0]} coils but kspace has {c}", "use noise from the same coils"
        )
    nc128 = nc.to(torch.complex128)
    is_cov = nc.shape == (c, c) and torch.allclose(
        nc128, nc128.mH, rtol=1e-5, atol=1e-8 * float(nc128.abs().max())
    )
    cov = nc128 if is_cov else noise_covariance(nc)
    try:
        chol = torch.linalg.cholesky(cov)
    except RuntimeError:  # torch raises torch.linalg.LinAlgError (a RuntimeError) when not positive definite
        raise InreconError(
            "the noise covariance is not positive definite (a dead or duplicated coil channel?)",
            "drop the offending channel(s) or give more noise samples",
        ) from None
    eye = torch.eye(c, dtype=cov.dtype, device=cov.device)
    w = torch.linalg.solve_triangular(chol, eye, upper=False)
    out_dtype = torch.complex128 if kspace.dtype == torch.complex128 else torch.complex64
    w = w.to(out_dtype)
    whitened = torch.einsum("vc,c...->v...", w, kspace.to(out_dtype))
    return whitened, w
