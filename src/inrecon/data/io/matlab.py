"""MATLAB ``.mat`` files with k-space: :func:`read_mat` (v5 via SciPy, v7.3 via h5py) and :func:`read_matlab_scan`.

Variables are found by name (the first present in each row, case-sensitive):

=================  ======================================================  ==========================================
what               names                                                   layout (MATLAB order, coils last)
=================  ======================================================  ==========================================
k-space            ``kspace``, ``ksp``, ``k_space``, ``kdata``, ``data``,  Cartesian ``(x, y[, z], coils)`` or one
                   ``raw``                                                 coil ``(x, y)``; non-Cartesian
                                                                           ``(samples..., coils)``
trajectory         ``traj``, ``trajectory``, ``ktraj``, ``k``              complex ``kx + i ky`` of the samples'
                                                                           shape, or real ``(samples..., 2|3)``
density weights    ``dcf``, ``w``, ``weights``, ``density``                the samples' shape
sensitivity maps   ``maps``, ``sens``, ``sens_maps``, ``smaps``, ``csm``   ``(x, y[, z], coils)``
sampling mask      ``mask``                                                ``(x, y[, z])``
image size         ``image_shape``, ``imSize``, ``imsize``, ``N``          ``(nx, ny[, nz])`` or one number
reference          ``target``, ``reference``, ``ref``                      ``(x, y[, z])``
=================  ======================================================  ==========================================

Array axis 0 (MATLAB's first index, x) is image axis 0, so ``kx`` (the real part of a complex trajectory)
runs along image axis 0 and ``ky`` along axis 1 — as BART files are read. A 3D k-space array is taken as 2D
multi-coil ``(x, y, coils)``. Trajectories within [-0.5, 0.5] are in cycles per sample (times 2 pi); larger
ones in cycles per field of view (divided by the image size). Without an image size in the file or the
``image_shape`` option, a cycles-per-sample trajectory gets the Nyquist estimate ``2 ceil(sqrt(K / pi))``
(``provenance["image_shape_estimated"]``), BART-style for cycles per field of view.

MATLAB v7.3 files are HDF5: their variables are read with h5py (axes reversed back to MATLAB order, complex
compounds ``real``/``imag`` joined); v4 files and cell or struct variables are not supported.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from inrecon.data.io.bart import bart_image_size
from inrecon.data.scans import MRIScan
from inrecon.errors import FileFormatError, InreconError, ShapeError

__all__ = ["NAMES", "read_mat", "read_matlab_scan"]

NAMES = {
    "kspace": ("kspace", "ksp", "k_space", "kdata", "data", "raw"),
    "trajectory": ("traj", "trajectory", "ktraj", "k"),
    "dcf": ("dcf", "w", "weights", "density"),
    "sens_maps": ("maps", "sens", "sens_maps", "smaps", "csm"),
    "mask": ("mask",),
    "image_shape": ("image_shape", "imSize", "imsize", "N"),
    "target": ("target", "reference", "ref"),
}


def _h5_variable(ds: h5py.Dataset) -> np.ndarray:
    arr = ds[()]
    if arr.dtype.names and {"real", "imag"} <= set(arr.dtype.names):
        arr = arr["real"] + 1j * arr["imag"]
    return np.asarray(arr).T  # h5py sees MATLAB's column-major arrays with the axes reversed


def read_mat(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The numeric variables of a MATLAB v5 or v7.3 file, in MATLAB axis order."""
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            head = fh.read(128)
    except OSError as exc:
        raise FileFormatError(f"cannot open {str(p)!r} ({exc})", "check the path") from None
    if head.startswith(b"MATLAB 7.3") or h5py.is_hdf5(p):
        with h5py.File(p, "r") as f:
            return {k: _h5_variable(v) for k, v in f.items() if isinstance(v, h5py.Dataset)}
    import scipy.io

    try:
        raw = scipy.io.loadmat(p, squeeze_me=False)
    except (ValueError, TypeError, OSError, NotImplementedError) as exc:
        raise FileFormatError(
            f"cannot read {str(p)!r} as a MATLAB file ({str(exc).splitlines()[0] if str(exc) else exc})",
            "save it with MATLAB's save (-v7 or -v7.3) holding numeric arrays",
        ) from None
    return {
        k: v
        for k, v in raw.items()
        if not k.startswith("__") and isinstance(v, np.ndarray) and v.dtype.kind in "biufc"
    }


def _find(variables: dict, what: str) -> tuple[str, np.ndarray] | tuple[None, None]:
    for name in NAMES[what]:
        if name in variables:
            return name, variables[name]
    return None, None


def _coils_first(arr: np.ndarray) -> np.ndarray:
    """MATLAB ``(x, y[, z], coils)`` (or one coil ``(x, y)``) -> ``(coils, x, y[, z])``."""
    if arr.ndim == 2:
        return arr[None]
    return np.moveaxis(arr, -1, 0)


def _trajectory(traj: np.ndarray, sample_shape: tuple[int, ...], p: Path) -> np.ndarray:
    """``(K, d)`` trajectory in its own units, samples in MATLAB (Fortran) order."""
    if np.iscomplexobj(traj):
        if traj.shape != sample_shape:
            raise ShapeError(
                f"{p}: the complex trajectory has shape {traj.shape} but the samples {sample_shape}",
                "store kx + i*ky with one entry per sample",
            )
        flat = traj.reshape(-1, order="F")
        return np.stack([flat.real, flat.imag], axis=1)
    if traj.shape[:-1] == sample_shape and traj.shape[-1] in (2, 3):
        return traj.reshape(-1, traj.shape[-1], order="F")
    raise ShapeError(
        f"{p}: the trajectory has shape {traj.shape} for samples of shape {sample_shape}",
        "store it complex (kx + i*ky, the samples' shape) or real with a trailing axis of 2 or 3",
    )


def _image_shape(k: np.ndarray, given, p: Path) -> tuple[tuple[int, ...], bool]:
    """The image grid: ``given``, else an estimate; and whether it was estimated."""
    d = k.shape[1]
    if given is not None:
        shape = tuple(int(v) for v in np.atleast_1d(np.asarray(given).ravel()))
        shape = shape * d if len(shape) == 1 else shape
        if len(shape) != d or min(shape) < 2:
            raise InreconError(f"{p}: image size {shape} for a {d}D trajectory", f"give {d} sizes")
        return shape, False
    if np.abs(k).max() <= 0.5 + 1e-3:
        n = 2 * math.ceil(math.sqrt(k.shape[0] / math.pi))
        return (n,) * d, True
    return tuple(bart_image_size(float(np.abs(k[:, i]).max())) for i in range(d)), True


def _noncartesian(v: dict, ksp: np.ndarray, p: Path, image_shape) -> dict:
    """Keyword arguments of a non-Cartesian :class:`MRIScan` from the variables ``v``."""
    _, traj = _find(v, "trajectory")
    sample_shape = traj.shape if np.iscomplexobj(traj) else traj.shape[:-1]
    if ksp.shape == sample_shape:
        ksp = ksp[..., None]
    if ksp.shape[:-1] != sample_shape:
        raise ShapeError(
            f"{p}: k-space has shape {ksp.shape} but the trajectory's samples {sample_shape}",
            "store k-space as (samples..., coils) matching the trajectory",
        )
    k = _trajectory(traj, sample_shape, p).astype(np.float64)
    shape, estimated = _image_shape(
        k, image_shape if image_shape is not None else _find(v, "image_shape")[1], p
    )
    cycles_per_sample = np.abs(k).max() <= 0.5 + 1e-3
    rad = 2 * np.pi * (k if cycles_per_sample else k / np.asarray(shape, dtype=np.float64))
    rad = np.mod(rad + np.pi, 2 * np.pi) - np.pi
    _, dcf = _find(v, "dcf")
    out = {
        "kspace": ksp.reshape(-1, ksp.shape[-1], order="F").T,
        "trajectory": rad.astype(np.float32),
        "image_shape": shape,
        "dcf": None if dcf is None else np.real(dcf).reshape(-1, order="F"),
    }
    return out | ({"image_shape_estimated": True} if estimated else {})


def read_matlab_scan(path: str | os.PathLike, image_shape: Any = None) -> MRIScan:
    """Read k-space (with trajectory, weights, maps, mask, reference) from a ``.mat`` file by variable name.

    Parameters
    ----------
    path
        MATLAB v5 or v7.3 file (names and layouts: module docstring).
    image_shape
        Image grid for a non-Cartesian trajectory, overriding the file's (and the estimate).

    Returns
    -------
    MRIScan
        Cartesian ``(C, x, y[, z])`` or non-Cartesian ``(C, K)``; ``provenance["variables"]`` names the
        variables used.
    """
    p = Path(path)
    v = read_mat(p)
    name, ksp = _find(v, "kspace")
    if ksp is None or not np.iscomplexobj(ksp):
        raise FileFormatError(
            f"{p}: no complex k-space variable (variables: {', '.join(sorted(v)) or 'none'})",
            f"name the k-space one of {', '.join(NAMES['kspace'])}",
        )
    used = {"kspace": name}
    prov: dict[str, Any] = {"source": str(p), "format": "matlab", "variables": used}
    _, target = _find(v, "target")
    if _find(v, "trajectory")[1] is not None:
        kw = _noncartesian(v, ksp, p, image_shape)
        if kw.pop("image_shape_estimated", False):
            prov["image_shape_estimated"] = True
        used["trajectory"] = _find(v, "trajectory")[0]
        return MRIScan(provenance=prov, target=target, **kw)
    _, maps = _find(v, "sens_maps")
    _, mask = _find(v, "mask")
    return MRIScan(
        kspace=_coils_first(ksp),
        mask=None if mask is None else mask != 0,
        sens_maps=None if maps is None else _coils_first(maps),
        target=target,
        provenance=prov,
    )
