"""MRI forward models: multi-coil Cartesian SENSE (2D/3D), and the smooth phase of an MR image.

The measurement model is ``y_c = M F (S_c x)`` with ``F`` the centred orthonormal FFT, ``S_c`` the coil
sensitivities and ``M`` the sampling mask; ``y`` lives on the full Cartesian grid and is zero where not
sampled. Non-Cartesian (NUFFT) operators live in :mod:`inrecon.physics.nufft`.
"""

from __future__ import annotations

import math

import torch

from inrecon.checks import require_maps
from inrecon.errors import ShapeError
from inrecon.physics.fft import checkerboards, fftc, ifftc
from inrecon.physics.operator import LinearOperator

__all__ = ["SenseOp", "phase_roughness", "smooth_phase"]


class SenseOp(LinearOperator):
    """Cartesian multi-coil SENSE operator ``x -> M F (S x)``.

    Parameters
    ----------
    maps
        Coil sensitivities, complex, shape ``(C, *image_shape)`` with ``image_shape`` = ``(H, W)`` or
        ``(D, H, W)``. ``None`` means no coil combination: the domain is then the coil images themselves,
        shape ``(C, *image_shape)``, and ``n_coils`` must be given.
    mask
        Sampling mask, shape ``image_shape`` (bool or 0/1); ``None`` means fully sampled.
    image_shape, n_coils
        Needed only when ``maps`` is ``None``.

    Shapes
    ------
    forward: ``(..., *image_shape)`` complex image -> ``(..., C, *image_shape)`` k-space (zero off the mask).
    adjoint: ``(..., C, *image_shape)`` -> ``(..., *image_shape)``. With ``maps=None`` both sides carry ``C``.
    """

    def __init__(
        self,
        maps: torch.Tensor | None,
        mask: torch.Tensor | None = None,
        image_shape: tuple[int, ...] | None = None,
        n_coils: int | None = None,
    ):
        if maps is not None:
            require_maps(maps)
            image_shape = tuple(maps.shape[1:])
            n_coils = maps.shape[0]
        elif image_shape is None or n_coils is None:
            raise ValueError("SenseOp(maps=None) needs image_shape and n_coils")
        image_shape = tuple(int(s) for s in image_shape)
        if mask is not None and tuple(mask.shape) != image_shape:
            raise ShapeError(
                f"mask has shape {tuple(mask.shape)} but the image grid is {image_shape}",
                "use a mask with the same shape as the k-space grid",
            )
        domain = ((n_coils,) if maps is None else ()) + image_shape
        super().__init__(domain, (n_coils, *image_shape))
        self.image_shape = image_shape
        self.n_coils = int(n_coils)
        self.dims = tuple(range(-len(image_shape), 0))
        self.coil_combine = maps is not None
        device = maps.device if maps is not None else mask.device if mask is not None else None
        cb = checkerboards(image_shape, device)
        self.use_checkerboard = cb is not None
        kmask = torch.ones(image_shape, device=device) if mask is None else mask.to(device, torch.float32)
        self.register_buffer("mask", kmask)
        cplx = maps.dtype if maps is not None else torch.complex64
        if cb is not None:
            c_img, c_k = cb
            # Fold the signs into the arrays we multiply by anyway (see physics.fft).
            self.register_buffer("_kmul", kmask * c_k)
            if maps is not None:
                self.register_buffer("_maps", maps * c_img)
            else:
                self.register_buffer("_maps", c_img.to(cplx))
        else:
            self.register_buffer("_kmul", kmask)
            self.register_buffer(
                "_maps", maps if maps is not None else torch.ones((), dtype=cplx, device=device)
            )

    @property
    def maps(self) -> torch.Tensor | None:
        """The coil sensitivities ``(C, *image_shape)`` as given (``None`` without coil combination)."""
        if not self.coil_combine:
            return None
        if self.use_checkerboard:
            c_img, _ = checkerboards(self.image_shape, self._maps.device)
            return self._maps * c_img
        return self._maps

    def _coil_images(self, x: torch.Tensor) -> torch.Tensor:
        return self._maps * x.unsqueeze(-len(self.image_shape) - 1) if self.coil_combine else self._maps * x

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        xc = self._coil_images(x)
        if self.use_checkerboard:
            return torch.fft.fftn(xc, dim=self.dims, norm="ortho") * self._kmul
        return fftc(xc, self.dims) * self._kmul

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        if self.use_checkerboard:
            xc = torch.fft.ifftn(y * self._kmul, dim=self.dims, norm="ortho")
        else:
            xc = ifftc(y * self._kmul, self.dims)
        xc = self._maps.conj() * xc
        return xc.sum(-len(self.image_shape) - 1) if self.coil_combine else xc

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """``A^H A x`` in one pass (mask applied once, since ``M^2 = M``)."""
        return self._normal(x, self.mask)

    def masked_normal(self, keep: torch.Tensor):
        """``x -> A^H diag(keep) A x`` for a bool ``keep`` over the range ``(C, *image_shape)`` (a subset of
        the samples, e.g. the training part of a hold-out split), in one pass."""
        w = keep.to(torch.float32) * self.mask
        return lambda x: self._normal(x, w)

    def _normal(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        xc = self._coil_images(x)
        if self.use_checkerboard:
            k = torch.fft.fftn(xc, dim=self.dims, norm="ortho") * w
            xc = torch.fft.ifftn(k, dim=self.dims, norm="ortho")
        else:
            xc = ifftc(fftc(xc, self.dims) * w, self.dims)
        xc = self._maps.conj() * xc
        return xc.sum(-len(self.image_shape) - 1) if self.coil_combine else xc


def _gaussian_lowpass(image: torch.Tensor, ndim: int, width: float) -> torch.Tensor:
    """``image`` (complex64) low-passed over its last ``ndim`` axes: its spectrum times a Gaussian of standard
    deviation ``width * n`` samples along each axis of length ``n`` (an image-domain Gaussian blur)."""
    axes = tuple(range(image.ndim - ndim, image.ndim))
    k = torch.fft.fftn(image.detach().to(torch.complex64), dim=axes)
    window = torch.ones((), device=image.device)
    for ax in axes:
        n = image.shape[ax]
        f = torch.fft.fftfreq(n, device=image.device) * n  # signed sample index of each frequency
        g = torch.exp(-0.5 * (f / (width * n)) ** 2)
        window = window * g.reshape([-1 if a == ax else 1 for a in range(image.ndim)])
    return torch.fft.ifftn(k * window, dim=axes)


def smooth_phase(image: torch.Tensor, ndim: int, width: float) -> torch.Tensor:
    """``exp(-i phi)``, ``phi`` the phase of ``image`` low-passed over its last ``ndim`` axes.

    The low pass multiplies the centred spectrum by a Gaussian of standard deviation ``width * n`` samples along
    each axis of length ``n`` (an image-domain Gaussian blur). ``image``: complex, any leading axes (coil images);
    the result has its shape, complex64, unit modulus (1 where the low-passed image is exactly 0).
    """
    low = _gaussian_lowpass(image, ndim, width)
    mag = low.abs()
    return torch.where(mag > 0, low.conj() / mag.clamp_min(torch.finfo(mag.dtype).tiny), torch.ones_like(low))


def phase_roughness(image: torch.Tensor, ndim: int, width: float) -> float:
    """How far ``image``'s phase is from smooth at twice the resolution the smooth phase is estimated at: the
    fraction of the energy of ``image`` low-passed at ``2 * width`` that lies in its imaginary part once
    :func:`smooth_phase` (at ``width``) is removed, on the object (where the low-passed modulus exceeds 10 % of
    its 99th percentile). 0 for a real image; small but not 0 for a smooth phase on a non-uniform object (the
    low-passed phase bends near edges: a square with a 2-radian ramp gives 6e-4); 0.19 for a uniformly random
    phase.

    ``image``: complex, shape ``(*image_shape)`` with ``ndim`` axes, e.g. a zero-filled ``A^H y``. Measured with
    the default ``width`` (0.0625) on zero-filled images: 0.7e-4 to 2e-4 for images with a polynomial or zero
    phase and for real phantom scans, 4.7e-4 for a real-valued brain image (sharp edges, coil maps by ESPIRiT),
    5e-4 to 7e-4 for a real in-vivo brain scan, 1.1e-3 for an in-vivo brain image with its own phase
    (benchmarks/RESULTS.md, stop 44).
    """
    x = _gaussian_lowpass(image, ndim, 2 * width)
    mag = x.abs()
    v = mag.reshape(-1).float().cpu()
    p99 = float(torch.kthvalue(v, max(1, math.ceil(0.99 * v.numel()))).values)
    if p99 <= 0:
        return 0.0
    support = mag > 0.1 * p99
    imag = (x * smooth_phase(image, ndim, width)).imag
    return float(imag[support].square().sum() / mag[support].square().sum())
