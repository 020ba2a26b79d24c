"""BART ``.cfl/.hdr`` files: raw complex64 in Fortran (column-major) order plus a text header of dimensions.

BART's axis order is READ, PHS1, PHS2, COIL, MAPS, ... (up to 16 axes). Besides reading and writing arrays
(:func:`read_cfl`, :func:`write_cfl`) this module reads BART images (:func:`read_cfl_image`), converts BART
trajectories (:func:`bart_trajectory`) and tells non-Cartesian samples from Cartesian k-space
(:func:`noncartesian_reason`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from inrecon.data.atomic import atomic_path
from inrecon.errors import FileFormatError, InreconError, ShapeError

__all__ = [
    "bart_image_size",
    "bart_trajectory",
    "noncartesian_reason",
    "read_cfl",
    "read_cfl_image",
    "write_cfl",
]


def _base(path: str | os.PathLike) -> Path:
    p = Path(path)
    return p.with_suffix("") if p.suffix in (".cfl", ".hdr") else p


def read_cfl(path: str | os.PathLike) -> np.ndarray:
    """Read ``path.cfl`` / ``path.hdr`` (with or without the suffix) into a complex64 array in BART order."""
    base = _base(path)
    hdr, cfl = base.with_suffix(".hdr"), base.with_suffix(".cfl")
    for p in (hdr, cfl):
        if not p.exists():
            raise FileFormatError(
                f"BART file {str(p)!r} does not exist", "a BART array needs both .hdr and .cfl"
            )
    lines = [ln.strip() for ln in hdr.read_text(errors="replace").splitlines()]
    try:
        i = lines.index("# Dimensions")
        dims = [int(v) for v in lines[i + 1].split()]
    except (ValueError, IndexError):
        raise FileFormatError(
            f"{hdr}: no '# Dimensions' line followed by integers",
            "the header is corrupt; re-export it with BART",
        ) from None
    n = int(np.prod(dims))
    expected = n * 8
    size = cfl.stat().st_size
    if size != expected:
        raise FileFormatError(
            f"{cfl}: holds {size} bytes but its header {dims} needs {expected} (truncated or wrong header)",
            "re-export the array with BART, or fix the dimensions in the .hdr",
        )
    data = np.fromfile(cfl, dtype=np.complex64, count=n)
    while len(dims) > 1 and dims[-1] == 1:
        dims = dims[:-1]
    return data.reshape(dims, order="F")


def write_cfl(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write ``array`` (any complex or real numeric array, BART axis order) as ``path.cfl`` + ``path.hdr``."""
    base = _base(path)
    a = np.asarray(array).astype(np.complex64)
    dims = list(a.shape) + [1] * max(0, 5 - a.ndim)
    with atomic_path(base.with_suffix(".cfl"), suffix=".cfl") as tmp:
        np.asfortranarray(a).reshape(-1, order="F").tofile(tmp)
    with atomic_path(base.with_suffix(".hdr"), suffix=".hdr") as tmp:
        tmp.write_text("# Dimensions\n" + " ".join(str(d) for d in dims) + "\n")
    return base


def _padded(arr: np.ndarray, n: int) -> np.ndarray:
    """``arr`` with trailing singleton axes up to ``n`` axes (BART drops them)."""
    return arr.reshape(arr.shape + (1,) * max(0, n - arr.ndim))


def read_cfl_image(path: str | os.PathLike) -> np.ndarray:
    """A BART image (a ``pics`` or ``fft -i`` output) as an array in image axis order.

    The COIL (3) and MAPS (4) axes are combined by root-sum-of-squares when either is longer than 1 (float32
    magnitude, e.g. ``img`` of dims (1, 180, 230, 1, 2) -> (180, 230)); otherwise the complex image is kept.
    Spatial axes (READ, PHS1, PHS2) of length 1 are dropped, as :func:`~inrecon.data.io.load.load_scan`
    drops them from BART k-space, so an image and the k-space of one protocol share a grid.
    """
    arr = _padded(read_cfl(path), 5)
    if arr.ndim > 5 and int(np.prod(arr.shape[5:])) > 1:
        raise FileFormatError(
            f"{_base(path)}: BART image {arr.shape} has axes beyond MAPS (TE, TIME, ...) longer than 1",
            "extract one image first (e.g. `bart slice 5 0 in out`)",
        )
    arr = arr.reshape(arr.shape[:5])
    if arr.shape[3] > 1 or arr.shape[4] > 1:
        img = np.sqrt((np.abs(arr) ** 2).sum(axis=(3, 4))).astype(np.float32)
    else:
        img = arr[..., 0, 0]
    spatial = tuple(n for n in img.shape if n > 1)
    if len(spatial) < 2:
        raise FileFormatError(
            f"{_base(path)}: BART array {arr.shape} is not an image (fewer than two spatial axes)",
            "give a 2D or 3D BART image",
        )
    return img.reshape(spatial)


def noncartesian_reason(kspace: np.ndarray) -> str | None:
    """Why ``kspace`` ``(C, *grid)`` cannot be Cartesian k-space, or ``None`` when it can.

    Every radial spoke (spiral interleave) passes through the centre of k-space and carries about the same
    energy, while Cartesian k-space peaks at its centre line. Samples laid out as (readout, spokes) therefore
    show one axis whose lines have nearly equal energy (max / median below 2.5) next to a peaked one (above
    10); Cartesian data, fully or under-sampled, has no such flat axis.
    """
    energy = (np.abs(kspace) ** 2).sum(0)
    if energy.ndim < 2:
        return None
    ratios = []
    for ax in range(energy.ndim):
        lines = energy.sum(axis=tuple(a for a in range(energy.ndim) if a != ax))
        lines = lines[lines > 0]
        ratios.append(float(lines.max() / np.median(lines)) if lines.size >= 8 else np.nan)
    flat = [ax for ax, r in enumerate(ratios) if r < 2.5]
    if flat and any(r > 10 for r in ratios):
        ax = flat[0]
        return (
            f"its {energy.shape[ax]} lines along grid axis {ax} all carry about the same energy "
            f"(max/median {ratios[ax]:.2f}), as radial spokes or spiral interleaves do, where Cartesian "
            "k-space peaks at its centre line"
        )
    return None


def bart_image_size(max_abs: float) -> int:
    """BART's ``estimate_im_dims`` for one axis: ``2 * floor((2 * max|k| + 1.5) / 2)`` (1 for no extent)."""
    return 1 if max_abs == 0 else 2 * int((2.0 * max_abs + 1.5) / 2.0)


def bart_trajectory(traj: np.ndarray, sample_shape: tuple[int, ...]) -> tuple[np.ndarray, tuple[int, ...]]:
    """A BART trajectory as inrecon's: ``(K, d)`` float32 radians in [-pi, pi) and the image grid.

    Parameters
    ----------
    traj
        BART order ``(3, readout, spokes, ...)``: coordinates (x, y, z) = image axes (READ, PHS1, PHS2) in
        units of samples per FOV (cycles over the field of view), as ``bart traj`` writes them.
    sample_shape
        The data's sample axes (all but COIL, BART order); their non-singleton lengths must equal the
        trajectory's.

    Returns
    -------
    trajectory
        ``2 * pi * k / N`` per coordinate, wrapped into [-pi, pi); 2D when the z coordinate is zero
        everywhere. Samples are ordered as the data's, Fortran (BART) order.
    image_shape
        ``N`` per coordinate as BART estimates it (:func:`bart_image_size`), e.g. 384 for a readout of 384
        samples from -192 to 191.
    """
    t = np.asarray(traj)
    if t.ndim < 2 or t.shape[0] != 3:
        raise ShapeError(
            f"the trajectory has BART dims {t.shape}, not (3, readout, spokes, ...)",
            "give a trajectory made by `bart traj` (coordinates x, y, z on the first axis)",
        )
    real = t.real.astype(np.float64)
    if np.iscomplexobj(t) and np.abs(t.imag).max() > 1e-4 * max(1.0, float(np.abs(real).max())):
        raise FileFormatError("the trajectory has imaginary parts", "give BART's real-valued trajectory")
    have = tuple(n for n in t.shape[1:] if n > 1)
    want = tuple(n for n in sample_shape if n > 1)
    if have != want:
        raise ShapeError(
            f"the trajectory's sample dims {tuple(t.shape[1:])} do not match the data's {tuple(sample_shape)}",
            "give the trajectory these samples were acquired with (same readout and spoke counts)",
        )
    k = real.reshape(3, -1, order="F")
    d = 3 if np.abs(k[2]).max() > 0 else 2
    sizes = tuple(bart_image_size(float(np.abs(k[i]).max())) for i in range(d))
    if min(sizes) < 2:
        raise InreconError(
            f"the trajectory has no extent along coordinate {sizes.index(min(sizes))}",
            "give a 2D or 3D trajectory",
        )
    rad = 2 * np.pi * k[:d].T / np.asarray(sizes, dtype=np.float64)
    rad = np.mod(rad + np.pi, 2 * np.pi) - np.pi
    return rad.astype(np.float32), sizes
