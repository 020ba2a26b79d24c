"""Bring CT data from elsewhere into inrecon's conventions: HU windowing, the Lung-PET-CT-Dx slices, and
sinograms made with MATLAB's ``radon``.

MATLAB ``radon`` versus inrecon (measured on ``ct/scope_parallel``, see the tests): for the *same* image array
(row 0 at the top), radon's angle ``theta`` (degrees) is our view angle ``theta`` in radians, the detector
axis is not flipped, and radon's sinogram is ``(detectors, views)``. Two differences remain. (1) radon puts
the rotation centre at pixel ``floor((n + 1) / 2)`` (1-based), half a pixel off the grid centre for even
sizes, which shifts each view by ``0.5 (cos theta - sin theta)`` detector bins for an even square image;
:func:`from_matlab_radon` removes that shift by linear interpolation. (2) radon's interpolation model (four
sub-pixels per pixel, linear binning) differs from our exact line lengths: after the shift the sinograms agree
to about 0.4 %. radon's detector spacing is one pixel, so a sinogram of an image of attenuation per mm is
scaled by ``pixel_size_mm`` to become a line integral.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch

from inrecon.checks import require_finite, require_ndim, require_real
from inrecon.data.phantoms import HU_WINDOW as DEFAULT_WINDOW
from inrecon.data.phantoms import hu_to_unit
from inrecon.data.scans import CTGeometry, CTScan
from inrecon.errors import FileFormatError, InreconError, ShapeError

__all__ = ["from_matlab_radon", "hu_to_unit", "load_lungdx_slices", "matlab_radon_detectors"]


def _area_downsample(x: np.ndarray, size: int) -> np.ndarray:
    """``(S, H, W)`` -> ``(S, size, size)`` by area averaging (block mean when ``size`` divides H, W)."""
    s, h, w = x.shape
    if h % size == 0 and w % size == 0:
        return (
            x.reshape(s, size, h // size, size, w // size)
            .mean(axis=(2, 4), dtype=np.float64)
            .astype(np.float32)
        )
    t = torch.from_numpy(np.ascontiguousarray(x))[:, None]
    return torch.nn.functional.interpolate(t, size=(size, size), mode="area")[:, 0].numpy()


def load_lungdx_slices(
    path: str | os.PathLike,
    indices: int | list[int] | np.ndarray | None = None,
    size: int = 256,
    window: tuple[float, float] = DEFAULT_WINDOW,
) -> np.ndarray:
    """Windowed, downsampled slices of a Lung-PET-CT-Dx ``*_hu.npz`` file.

    Parameters
    ----------
    path
        ``.npz`` with key ``hu``: int16 ``(S, 512, 512)`` Hounsfield units.
    indices
        Slice indices (int or list) or ``None`` for all.
    size
        Output side length; 512 -> 256 averages 2x2 blocks.
    window
        HU window mapped to ``[0, 1]``.

    Returns
    -------
    np.ndarray
        float32 ``(S', size, size)`` in ``[0, 1]``.
    """
    try:
        with np.load(path) as data:
            if "hu" not in data.files:
                raise FileFormatError(
                    f"{path} has no key 'hu' (keys: {', '.join(data.files)})",
                    "pass a Lung-PET-CT-Dx *_hu.npz file holding int16 HU slices under 'hu'",
                )
            hu = data["hu"]
    except (OSError, ValueError) as exc:
        if isinstance(exc, InreconError):
            raise
        raise FileFormatError(f"cannot read {path} as .npz ({exc})", "check the path and the file") from None
    if hu.ndim != 3:
        raise FileFormatError(
            f"{path}: 'hu' has shape {hu.shape}, not (slices, H, W)", "store (S, H, W) slices"
        )
    if indices is not None:
        idx = np.atleast_1d(np.asarray(indices, dtype=np.int64))
        if idx.size == 0 or idx.min() < -hu.shape[0] or idx.max() >= hu.shape[0]:
            raise InreconError(
                f"slice indices {idx.tolist()} out of range for {hu.shape[0]} slices",
                f"use indices in [0, {hu.shape[0] - 1}]",
            )
        hu = hu[idx]
    if int(size) < 1 or int(size) > max(hu.shape[1:]):
        raise InreconError(f"size {size} is not in [1, {max(hu.shape[1:])}]", "downsample, do not upsample")
    return _area_downsample(hu_to_unit(hu, window), int(size))


def matlab_radon_detectors(image_shape: tuple[int, int]) -> int:
    """Number of detector bins MATLAB's ``radon`` returns for ``image_shape`` (367 for 256x256)."""
    h, w = (int(s) for s in image_shape)
    centre = np.array([(h - 1) // 2, (w - 1) // 2], dtype=np.float64)  # floor((n+1)/2) 1-based, 0-based here
    r_last = math.ceil(float(np.sqrt(np.sum((np.array([h, w]) - 1 - centre) ** 2)))) + 1
    return 2 * r_last + 1


def _radon_inputs(
    sinogram: np.ndarray | torch.Tensor,
    angles_deg: np.ndarray | torch.Tensor,
    image_shape: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Validate :func:`from_matlab_radon`'s inputs: the sinogram array, the angles (degrees, float64) and
    ``(H, W)``."""
    s = (
        np.asarray(torch.as_tensor(sinogram).detach().cpu())
        if isinstance(sinogram, torch.Tensor)
        else np.asarray(sinogram)
    )
    require_real(s, "sinogram")
    require_ndim(s, "sinogram", (2,), "(detectors, views) as MATLAB radon returns it")
    require_finite(s, "sinogram")
    theta = np.asarray(torch.as_tensor(angles_deg).cpu(), dtype=np.float64).reshape(-1)
    require_finite(theta, "angles_deg")
    n_det, n_views = s.shape
    if theta.size != n_views:
        hint = " (it looks transposed)" if theta.size == n_det else ""
        raise ShapeError(
            f"the radon sinogram has {n_views} columns (views) but angles_deg has {theta.size} entries{hint}",
            "pass the sinogram as (detectors, views), exactly as radon returns it",
        )
    if len(image_shape) != 2:
        raise ShapeError(f"image_shape {image_shape} is not (H, W)", "give the (H, W) of the image")
    h, w = (int(v) for v in image_shape)
    expected = matlab_radon_detectors((h, w))
    if n_det < expected:
        raise ShapeError(
            f"the radon sinogram has {n_det} detector rows but radon gives {expected} for a {h}x{w} image",
            "check image_shape, or transpose the sinogram to (detectors, views)",
        )
    return s, theta, (h, w)


def _radon_views(s: np.ndarray, rad: np.ndarray, hw: tuple[int, int], recentre: bool) -> np.ndarray:
    """The radon sinogram ``(N_det, V)`` as float64 views ``(V, N_det)``, each shifted onto our rotation
    centre when ``recentre``."""
    h, w = hw
    n_det = s.shape[0]
    data = s.astype(np.float64)
    if recentre:
        # radon's origin (0-based) is pixel floor((n - 1) / 2) and bin floor(N / 2); ours are the grid
        # centres.
        ox = (w - 1) / 2 - (w - 1) // 2
        oy = -((h - 1) / 2 - (h - 1) // 2)
        zero = n_det // 2 - (n_det - 1) / 2
        shift = zero + ox * np.cos(rad) + oy * np.sin(rad)
        grid = np.arange(n_det, dtype=np.float64)
        data = np.stack(
            [np.interp(grid + d, grid, row, left=0.0, right=0.0) for d, row in zip(shift, data.T)]
        )
    else:
        data = data.T
    return data


def _radon_target(
    target: np.ndarray | torch.Tensor | None, hw: tuple[int, int], transpose_image: bool
) -> np.ndarray | None:
    """The reference image as float32 ``(H, W)`` (transposed when ``transpose_image``), or ``None``."""
    if target is None:
        return None
    h, w = hw
    t = np.asarray(torch.as_tensor(target).cpu(), dtype=np.float32)
    if t.shape != (h, w):
        raise ShapeError(
            f"target has shape {t.shape} but image_shape is {(h, w)}", "pass the radon input image"
        )
    return np.ascontiguousarray(t.T if transpose_image else t)


def from_matlab_radon(
    sinogram: np.ndarray | torch.Tensor,
    angles_deg: np.ndarray | torch.Tensor,
    image_shape: tuple[int, int],
    pixel_size_mm: float = 1.0,
    *,
    target: np.ndarray | torch.Tensor | None = None,
    transpose_image: bool = False,
    recentre: bool = True,
) -> CTScan:
    """A parallel-beam :class:`~inrecon.data.scans.CTScan` from a MATLAB ``radon`` sinogram.

    Parameters
    ----------
    sinogram
        ``(N_det, V)`` as ``radon`` returns it (detectors along rows), values in pixel units (sums of pixel
        values along each line).
    angles_deg
        ``(V,)`` radon angles in degrees (e.g. ``linspace(0, 180, V + 1)[:-1]``).
    image_shape
        ``(H, W)`` of the image ``radon`` was applied to (as stored, row 0 at the top).
    pixel_size_mm
        Pixel size; the detector spacing is one pixel, and the sinogram is multiplied by it so that it holds
        line integrals of an image in units per mm.
    target
        Optional reference image ``(H, W)`` (the image ``radon`` saw), stored on the scan (transposed along
        with the geometry when ``transpose_image``).
    transpose_image
        Reconstruct the transposed image instead (angles ``3 pi / 2 - theta``): useful when the stored array
        is the transpose of the upright anatomy, as with ``ct/scope_parallel`` read by nibabel.
    recentre
        Remove radon's half-pixel rotation-centre offset (see the module docstring) by shifting each view.

    Returns
    -------
    CTScan
        ``sinogram`` float32 ``(V, N_det)``, ``angles`` float32 radians, parallel geometry with
        ``detector_spacing_mm = pixel_size_mm``.
    """
    s, theta, (h, w) = _radon_inputs(sinogram, angles_deg, image_shape)
    n_det = s.shape[0]
    rad = np.deg2rad(theta)
    data = _radon_views(s, rad, (h, w), recentre)
    ang = (1.5 * math.pi - rad) if transpose_image else rad
    geometry = CTGeometry(
        "parallel", n_det, float(pixel_size_mm), (w, h) if transpose_image else (h, w), float(pixel_size_mm)
    )
    tgt = _radon_target(target, (h, w), transpose_image)
    return CTScan(
        sinogram=(data * float(pixel_size_mm)).astype(np.float32),
        angles=ang.astype(np.float32),
        geometry=geometry,
        target=tgt,
        provenance={
            "source": "matlab_radon",
            "recentred": bool(recentre),
            "transposed": bool(transpose_image),
            "angles_deg": theta.tolist(),
        },
    )
