"""Non-Cartesian MRI: a multi-coil NUFFT operator and density compensation (built on torchkbnufft).

Conventions (shared with the Cartesian :class:`~inrecon.physics.mri.SenseOp`):

- A trajectory is float32 ``(K, d)`` in radians per pixel, each coordinate in ``[-pi, pi)``, the coordinate
  order equal to the image axis order (``(ky, kx)`` for an ``(H, W)`` image).
- The image centre is pixel ``N // 2`` along each axis and the forward map is
  ``y(k) = prod(N)**-0.5 * sum_n x[n] * exp(-i k . (n - N // 2))``, so on the Cartesian points
  ``k = 2 pi (m - N // 2) / N`` it equals the centred orthonormal FFT ``fftc`` up to the Kaiser-Bessel
  interpolation error (~1e-5 relative with the defaults: 2x oversampling, 6-point kernel).
- Density compensation is *not* part of the operator (the operator is the plain measurement model, so it
  matches the Cartesian one); :func:`density_compensation` returns weights for gridding or preconditioning.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import torch
import torchkbnufft as tkbn

from inrecon.checks import require_finite, require_maps, require_real
from inrecon.errors import InreconError, ShapeError
from inrecon.physics.operator import LinearOperator

__all__ = [
    "NufftGram",
    "NufftSenseOp",
    "check_trajectory",
    "density_compensation",
    "scan_density_compensation",
]

# The precomputed sparse interpolation matrix and its adjoint hold K * kernel_width**d complex non-zeros each;
# above this many we fall back to table interpolation to bound memory (~0.6 GB).
_SPARSE_MAX_NNZ = 20_000_000


def check_trajectory(trajectory, ndim: int | None = None, name: str = "trajectory") -> torch.Tensor:
    """Validate a trajectory and return it as a float32 tensor ``(K, d)``.

    Parameters
    ----------
    trajectory
        Array-like ``(K, d)``, radians per pixel in ``[-pi, pi)`` (a tolerance of 1e-4 is allowed at +pi).
    ndim
        Required number of coordinates ``d`` (the image dimensionality), or ``None`` for 2 or 3.
    """
    t = trajectory if isinstance(trajectory, torch.Tensor) else torch.as_tensor(np.asarray(trajectory))
    require_real(t, name)
    t = t.to(torch.float32)
    dims = (ndim,) if ndim is not None else (2, 3)
    if t.ndim != 2 or t.shape[1] not in dims:
        hint = ""
        if t.ndim == 2 and t.shape[0] in dims and t.shape[1] not in dims:
            hint = " (it looks transposed: torchkbnufft's omega is (d, K), ours is (K, d))"
        raise ShapeError(
            f"{name} has shape {tuple(t.shape)} but must be (K, {' or '.join(map(str, dims))}){hint}",
            f"give {name} one row per k-space sample and one column per image axis (transpose a (d, K) array)",
        )
    if t.shape[0] == 0:
        raise ShapeError(f"{name} has no samples", "give at least one k-space sample")
    require_finite(t, name)
    lo, hi = float(t.min()), float(t.max())
    if lo < -math.pi - 1e-4 or hi > math.pi + 1e-4:
        raise InreconError(
            f"{name} spans [{lo:.4f}, {hi:.4f}] but must lie in [-pi, pi) radians per pixel",
            "scale it: k in cycles/FOV times 2*pi/N, or k in [-0.5, 0.5) (cycles/pixel) times 2*pi",
        )
    return t


def _check_nufft_params(oversampling: float, kernel_width: int) -> None:
    if not (math.isfinite(oversampling) and 1.25 <= oversampling <= 4.0):
        raise InreconError(
            f"oversampling is {oversampling} but must lie in [1.25, 4]",
            "use 2.0 (accurate) or 1.25-1.5 (less memory)",
        )
    if int(kernel_width) != kernel_width or not 2 <= kernel_width <= 12:
        raise InreconError(
            f"kernel_width is {kernel_width} but must be an integer in [2, 12]",
            "use 6 (relative error ~1e-5 at 2x oversampling) or 4 (faster, ~1e-3)",
        )


def _grid_size(image_shape: Sequence[int], oversampling: float) -> tuple[int, ...]:
    return tuple(max(int(math.ceil(oversampling * n)), n + 1) for n in image_shape)


class NufftSenseOp(LinearOperator):
    """Non-Cartesian multi-coil SENSE operator ``x -> F_traj (S x)`` with a Kaiser-Bessel NUFFT.

    Not :attr:`capturable`: torchkbnufft's table path reads grid sizes back from the device on every call, and
    recording the sparse path's cuSPARSE products in a CUDA graph has not been tested.

    Parameters
    ----------
    maps
        Coil sensitivities, complex ``(C, *image_shape)``; ``None`` for no coil combination (the domain is then
        the coil images ``(C, *image_shape)`` and ``n_coils`` is required).
    trajectory
        float32 ``(K, d)`` in radians per pixel, ``[-pi, pi)``, coordinate order = image axis order.
    image_shape
        Image grid ``(H, W)`` or ``(D, H, W)``; optional when ``maps`` is given (then it must agree).
    n_coils
        Number of coils; optional when ``maps`` is given (then it must agree).
    oversampling
        Grid oversampling factor of the NUFFT (>= 1.25).
    kernel_width
        Kaiser-Bessel interpolation width in grid points per dimension.
    interp
        ``"auto"``, ``"sparse"`` or ``"table"`` (the same operator either way, to ~1e-3 relative: the sparse
        matrices hold the exact Kaiser-Bessel weights, the table interpolates them). ``"sparse"`` precomputes
        the interpolation as complex CSR matrices ``S`` and ``S^H`` (built once per device on first use from
        torchkbnufft's, ``K w**d`` non-zeros each) and applies them in one product per direction; ``"table"``
        is torchkbnufft's table interpolation on every call. On the CPU (256x256, 40x512 radial samples, one
        thread; ``benchmarks/RESULTS.md``, stop 48) a forward+adjoint takes 12 / 51 / 120 ms sparse against
        84 / 168 / 334 ms table at 1 / 4 / 8 coils, so ``"auto"`` picks sparse wherever the matrices hold at
        most 2e7 non-zeros.
    toeplitz
        Whether :meth:`normal` uses Toeplitz embedding (two FFTs on the 2x grid, no interpolation) instead of
        ``A^H(A x)``.

    Shapes
    ------
    forward: ``(..., *image_shape)`` complex64 -> ``(..., C, K)`` complex64 (with ``maps=None``:
    ``(..., C, *image_shape)`` -> ``(..., C, K)``). Real input is treated as complex with zero imaginary part.
    adjoint: ``(..., C, K)`` -> ``(..., *image_shape)``.

    Notes
    -----
    ``adjoint_as_backward`` is set: autograd's backward through the forward map is exactly one adjoint NUFFT
    (and vice versa), which is faster than differentiating through the interpolation. Gradients therefore do
    not flow into ``maps`` or ``trajectory`` (both are fixed buffers).
    """

    adjoint_as_backward = True
    capturable = False

    def __init__(
        self,
        maps: torch.Tensor | None,
        trajectory,
        image_shape: Sequence[int] | None = None,
        n_coils: int | None = None,
        oversampling: float = 2.0,
        kernel_width: int = 6,
        interp: str = "auto",
        toeplitz: bool = True,
    ):
        _check_nufft_params(oversampling, kernel_width)
        if interp not in ("auto", "sparse", "table"):
            raise InreconError(f"interp is {interp!r}", 'use "auto", "sparse" or "table"')
        if maps is not None:
            require_maps(maps)
            require_finite(maps, "sens_maps")
            grid = tuple(int(s) for s in maps.shape[1:])
            if image_shape is not None and tuple(int(s) for s in image_shape) != grid:
                raise ShapeError(
                    f"image_shape {tuple(image_shape)} differs from the maps' grid {grid}",
                    "compute the maps on the reconstruction grid or drop image_shape",
                )
            if n_coils is not None and int(n_coils) != maps.shape[0]:
                raise ShapeError(
                    f"n_coils={n_coils} but sens_maps holds {maps.shape[0]} coils",
                    "use maps for every coil of the data (or compress the data to the maps' coils)",
                )
            image_shape, n_coils = grid, int(maps.shape[0])
        elif image_shape is None or n_coils is None:
            raise InreconError(
                "NufftSenseOp(maps=None) needs image_shape and n_coils",
                "pass image_shape=(H, W) and n_coils=C, or give sensitivity maps",
            )
        image_shape = tuple(int(s) for s in image_shape)
        if len(image_shape) not in (2, 3) or min(image_shape) < 2:
            raise ShapeError(f"image_shape {image_shape} is not a 2D or 3D grid", "give (H, W) or (D, H, W)")
        if int(n_coils) < 1:
            raise InreconError(f"n_coils is {n_coils}", "give the number of receive coils (>= 1)")
        traj = check_trajectory(trajectory, len(image_shape))
        n_coils = int(n_coils)
        domain = ((n_coils,) if maps is None else ()) + image_shape
        super().__init__(domain, (n_coils, traj.shape[0]))

        device = maps.device if maps is not None else traj.device
        self.image_shape = image_shape
        self.n_coils = n_coils
        self.n_samples = int(traj.shape[0])
        self.coil_combine = maps is not None
        self.oversampling = float(oversampling)
        self.kernel_width = int(kernel_width)
        self.grid_size = _grid_size(image_shape, oversampling)
        self.scale = 1.0 / math.sqrt(math.prod(image_shape))
        nnz = self.n_samples * self.kernel_width ** len(image_shape)
        self.use_sparse = interp == "sparse" or (interp == "auto" and nnz <= _SPARSE_MAX_NNZ)
        self.toeplitz = bool(toeplitz)
        self.register_buffer("trajectory", traj.to(device))
        self.register_buffer("_omega", traj.t().contiguous().to(device))
        self.register_buffer(
            "_maps", maps.to(torch.complex64) if maps is not None else torch.ones((), dtype=torch.complex64)
        )
        kw = dict(im_size=image_shape, grid_size=self.grid_size, numpoints=self.kernel_width)
        self.nufft = tkbn.KbNufft(**kw).to(device)
        self.nufft_adj = tkbn.KbNufftAdjoint(**kw).to(device)
        # Device-keyed caches (sparse tensors and lazily built kernels are not buffers, so .to() cannot break
        # them; each device builds its own on first use).
        self._spmats: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._toep: dict[str, torch.Tensor] = {}

    # --- helpers ------------------------------------------------------------------------------------------
    @property
    def maps(self) -> torch.Tensor | None:
        """The coil sensitivities ``(C, *image_shape)`` (``None`` without coil combination)."""
        return self._maps if self.coil_combine else None

    def _interp_mats(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The interpolation from the oversampled grid to the samples as complex CSR matrices ``S (K, G)`` and
        ``S^H (G, K)`` (``G`` grid points; built once per device from torchkbnufft's Kaiser-Bessel matrices, whose
        entries already carry the centring phase), or ``None`` on the table path."""
        if not self.use_sparse:
            return None
        key = str(device)
        if key not in self._spmats:
            with warnings.catch_warnings():
                # torch warns that sparse invariant checks are off / CSR is in beta; the matrices are valid
                warnings.simplefilter("ignore", UserWarning)
                re, im = tkbn.calc_tensor_spmatrix(
                    self._omega.cpu(),
                    im_size=self.image_shape,
                    grid_size=self.grid_size,
                    numpoints=self.kernel_width,
                )
                s = torch.sparse_coo_tensor(
                    re._indices(), torch.complex(re._values(), im._values()), re.shape
                )
                s = s.coalesce()
                fwd = s.to_sparse_csr().to(device)
                adj = s.t().conj().coalesce().to_sparse_csr().to(device)
            self._spmats[key] = (fwd, adj)
        return self._spmats[key]

    def _batch(self, t: torch.Tensor, n_trailing: int) -> tuple[torch.Tensor, tuple[int, ...]]:
        lead = tuple(t.shape[: t.ndim - n_trailing])
        return t.to(torch.complex64).reshape(-1, *t.shape[t.ndim - n_trailing :]), lead

    def _coil_images(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
        nd = len(self.image_shape)
        if self.coil_combine:
            xb, lead = self._batch(x, nd)
            return xb.unsqueeze(1) * self._maps, lead
        return self._batch(x, nd + 1)

    def _combine(self, xc: torch.Tensor, lead: tuple[int, ...]) -> torch.Tensor:
        if self.coil_combine:
            xc = (self._maps.conj() * xc).sum(1)
        return xc.reshape(*lead, *xc.shape[1:])

    # --- the operator -------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply ``A`` to ``x`` ``(..., *domain_shape)``; real input (also with ``requires_grad``) is cast first."""
        return super().forward(x if x.is_complex() else x.to(torch.complex64))

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Apply ``A^H`` to ``y`` ``(..., C, K)``."""
        return super().adjoint(y if y.is_complex() else y.to(torch.complex64))

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        xc, lead = self._coil_images(x)  # (B, C, *image_shape)
        mats = self._interp_mats(xc.device)
        if mats is not None:
            grid = _padded_fft(xc.reshape(-1, *self.image_shape) * self.nufft.scaling_coef, self.grid_size)
            y = _grid_to_samples(grid.reshape(grid.shape[0], -1), mats[0])
        else:
            y = self.nufft(xc, self._omega)
        return (y * self.scale).reshape(*lead, self.n_coils, self.n_samples)

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        yb, lead = self._batch(y, 2)  # (B, C, K)
        mats = self._interp_mats(yb.device)
        if mats is not None:
            grid = _grid_to_samples(yb.reshape(-1, self.n_samples), mats[1])
            xc = _cropped_ifft(grid.reshape(-1, *self.grid_size), self.image_shape, "forward")
            xc = (xc * self.nufft.scaling_coef.conj()).reshape(*yb.shape[:2], *self.image_shape)
        else:
            xc = self.nufft_adj(yb, self._omega)
        return self._combine(xc * self.scale, lead)

    def _toeplitz_kernel(self, device: torch.device, keep: torch.Tensor | None = None) -> torch.Tensor:
        """The Toeplitz kernel of all samples, or of the samples where ``keep (K,)`` is True (cached)."""
        key = str(device) if keep is None else f"{device}:{hash(keep.cpu().numpy().tobytes())}"
        if key not in self._toep:
            omega = self._omega.to(device)
            if keep is not None:
                omega = omega[:, keep.to(device)].contiguous()
            with torch.no_grad():
                k = tkbn.calc_toeplitz_kernel(omega, im_size=self.image_shape, numpoints=self.kernel_width)
            # torchkbnufft's kernel K gives F^H F x ~= crop(sum_f K(f) e^{+i..} fft(pad x)(f)) (its inverse FFT
            # unnormalised); torch's ifftn divides by M = K.numel(), so multiply by M, and by our 1/prod(N).
            self._toep[key] = (k * (k.numel() * self.scale**2)).to(torch.complex64)
        return self._toep[key]

    def masked_normal(self, keep: torch.Tensor):
        """``x -> A^H diag(keep) A x`` for a bool ``keep`` over the range ``(C, K)``.

        When every coil keeps the same samples (a hold-out split draws whole trajectory samples) this is the
        Toeplitz embedding of the kept samples; otherwise ``A^H (keep * A x)``.
        """
        k_any = keep.any(0)
        if self.toeplitz and bool((keep == k_any[None]).all()):
            return lambda x: self._toeplitz_normal(x, k_any)
        w = keep.to(torch.float32)
        return lambda x: self.adjoint(w * self(x))

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """``A^H A x`` for ``x`` of shape ``(..., *domain_shape)``.

        With ``toeplitz=True`` this is Toeplitz embedding: coil images are zero-padded to twice the grid, FFT'd,
        multiplied by the point-spread kernel and cropped, which avoids interpolation entirely (the kernel is
        computed once per device by one adjoint NUFFT). It agrees with ``A^H(A x)`` to the NUFFT accuracy.
        Differentiable by autograd.
        """
        self._check(x, self.domain_shape, "input")
        if not self.toeplitz:
            return self.adjoint(self(x))
        return self._toeplitz_normal(x, None)

    def _toeplitz_normal(self, x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        xc, lead = self._coil_images(x)
        kern = self._toeplitz_kernel(xc.device, keep)
        out = _cropped_ifft(_padded_fft(xc, tuple(kern.shape)) * kern, self.image_shape, "backward")
        return self._combine(out, lead)

    @property
    def gram(self) -> LinearOperator:
        """The normal operator ``A^H A`` as a (self-adjoint) operator using :meth:`normal`."""
        return NufftGram(self)


def _padded_fft(x: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
    """The unnormalised FFT of ``x (..., *shape)`` zero-padded (at the end of each axis) to ``grid``, one axis
    at a time from the last, so the first transforms run over the unpadded rows only."""
    for d in range(-1, -len(grid) - 1, -1):
        x = torch.fft.fft(x, n=grid[d], dim=d)
    return x


def _cropped_ifft(z: torch.Tensor, shape: Sequence[int], norm: str) -> torch.Tensor:
    """The inverse FFT of ``z (..., *grid)`` (``norm`` as torch's: "forward" leaves it unnormalised, the adjoint
    of :func:`_padded_fft`) cropped to the first ``shape`` entries of each axis, one axis at a time from the
    first, each cropped before the next is transformed."""
    for d in range(-len(shape), 0):
        z = torch.fft.ifft(z, dim=d, norm=norm).narrow(d, 0, shape[d])
    return z


def _grid_to_samples(z: torch.Tensor, mat: torch.Tensor) -> torch.Tensor:
    """``(B, n)`` -> ``(B, m)`` through a sparse CSR ``mat (m, n)``: the interpolation (``S``) or its adjoint
    (``S^H``) applied to every row of ``z``."""
    return (mat @ z.t().contiguous()).t()


class NufftGram(LinearOperator):
    """``A^H A`` of a :class:`NufftSenseOp` through :meth:`NufftSenseOp.normal` (Toeplitz embedding)."""

    def __init__(self, op: NufftSenseOp):
        super().__init__(op.domain_shape, op.domain_shape)
        self.op = op

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op.normal(x)

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self.op.normal(y)


def _cartesian_density(n: int, grid: int, kernel_width: int) -> float:
    """Pipe-Menon density ``C * 1`` of a fully sampled 1D Cartesian line of ``n`` points (sub-cell average)."""
    interp = tkbn.KbInterp(im_size=(n,), grid_size=(grid,), numpoints=kernel_width)
    interp_adj = tkbn.KbInterpAdjoint(im_size=(n,), grid_size=(grid,), numpoints=kernel_width)
    base = 2 * math.pi * (torch.arange(n, dtype=torch.float32) - n // 2) / n
    vals = []
    for frac in (0.0, 0.25, 0.5, 0.75):
        om = (base + frac * 2 * math.pi / n)[None]
        w = torch.ones(1, 1, n, dtype=torch.complex64)
        vals.append(float(interp(interp_adj(w, om), om).abs().mean()))
    return float(np.mean(vals))


def density_compensation(
    trajectory,
    image_shape: Sequence[int],
    iters: int = 20,
    oversampling: float = 2.0,
    kernel_width: int = 6,
) -> torch.Tensor:
    """Pipe-Menon iterative density compensation, in units of one Cartesian k-space cell.

    Iterates ``w <- w / |C (C^T w)|`` where ``C^T`` grids the samples onto the oversampled NUFFT grid with the
    Kaiser-Bessel kernel and ``C`` interpolates back (Pipe & Menon, MRM 1999). The fixed point makes the gridded
    density constant; the result is then scaled by the density of a fully sampled Cartesian grid under the
    same kernel, so a Cartesian trajectory gets weights 1 and ``A^H(dcf * A x)`` approximates ``x`` with
    :class:`NufftSenseOp` at the image's scale (weights sum to about the k-space area covered, in cells).

    Parameters
    ----------
    trajectory
        float32 ``(K, d)`` radians per pixel in ``[-pi, pi)``, coordinate order = image axis order.
    image_shape
        The reconstruction grid ``(H, W)`` or ``(D, H, W)``.
    iters
        Pipe-Menon iterations (20 is converged to about 1 % for radial and spiral trajectories).
    oversampling, kernel_width
        Gridding kernel parameters (as for :class:`NufftSenseOp`).

    Returns
    -------
    torch.Tensor
        float32 ``(K,)`` non-negative weights on the trajectory's device.
    """
    image_shape = tuple(int(s) for s in image_shape)
    if len(image_shape) not in (2, 3) or min(image_shape) < 2:
        raise ShapeError(f"image_shape {image_shape} is not a 2D or 3D grid", "give (H, W) or (D, H, W)")
    traj = check_trajectory(trajectory, len(image_shape))
    _check_nufft_params(oversampling, kernel_width)
    if int(iters) != iters or iters < 1:
        raise InreconError(f"iters is {iters}", "use a positive integer number of iterations, e.g. 20")
    grid = _grid_size(image_shape, oversampling)
    kw = dict(im_size=image_shape, grid_size=grid, numpoints=int(kernel_width))
    interp = tkbn.KbInterp(**kw).to(traj.device)
    interp_adj = tkbn.KbInterpAdjoint(**kw).to(traj.device)
    omega = traj.t().contiguous()
    w = torch.ones(1, 1, traj.shape[0], dtype=torch.complex64, device=traj.device)
    with torch.no_grad():
        for _ in range(int(iters)):
            dens = interp(interp_adj(w, omega), omega).abs().clamp_min(1e-12)
            w = w / dens
    ref = math.prod(_cartesian_density(n, g, int(kernel_width)) for n, g in zip(image_shape, grid))
    return (w.real.reshape(-1) * ref).to(torch.float32)


def scan_density_compensation(scan) -> torch.Tensor:
    """A non-Cartesian scan's density compensation: its own ``dcf`` when it carries one, else the Pipe-Menon
    weights of its trajectory on its image grid (:func:`density_compensation`); ``(K,)`` as stored."""
    return (
        scan.dcf if scan.dcf is not None else density_compensation(scan.trajectory, tuple(scan.image_shape))
    )
