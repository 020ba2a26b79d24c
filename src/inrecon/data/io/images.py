"""Write and read reconstructed images: :func:`write_image` and :func:`read_image`, chosen by file suffix.

=================  =============================================================================================
suffix             what is written
=================  =============================================================================================
``.h5/.hdf5``      dataset ``image`` as given (complex stays complex64, real becomes float32); ``meta`` as root
                   attributes (nested values as JSON text), ``spacing_mm`` as an attribute
``.nii/.nii.gz``   magnitude float32; axes reversed to NIfTI's (x, y, z) order, affine ``diag(dx, dy, dz, 1)``
``.npy``           the array as is (complex or real); ``meta`` is not stored
``.png``           8-bit grey magnitude, windowed to ``window=(lo, hi)`` or to the 0.5 / 99.5 percentiles; a 3D
                   image becomes a montage of up to 16 evenly spaced slices (row-major, near-square grid);
                   ``meta`` as a JSON ``tEXt`` chunk named ``inrecon``
``.dcm``/folder    a CT DICOM series in HU (:func:`~inrecon.data.io.dicom.write_dicom_ct`); with
                   ``hu_window=(lo, hi)`` the image is taken to be in [0, 1] display units and mapped back to HU
                   as ``lo + image * (hi - lo)`` (the inverse of the project's [-800, 400] HU windowing)
=================  =============================================================================================

Every write is atomic (a temporary file renamed into place).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import nibabel as nib
import numpy as np

from inrecon.checks import ArrayLike, require_finite, require_ndim
from inrecon.data.atomic import atomic_path
from inrecon.data.io.dicom import is_dicom, read_dicom_ct, write_dicom_ct
from inrecon.errors import FileFormatError, InreconError

__all__ = ["SUPPORTED_IMAGE_SUFFIXES", "read_image", "window_to_uint8", "write_image"]

SUPPORTED_IMAGE_SUFFIXES = (".h5", ".hdf5", ".nii", ".nii.gz", ".npy", ".png", ".dcm", "<folder> (DICOM)")


def _suffix(p: Path) -> str:
    name = p.name.lower()
    if name.endswith(".nii.gz"):
        return ".nii.gz"
    return p.suffix.lower()


def _as_numpy(image) -> np.ndarray:
    if hasattr(image, "detach"):
        image = image.detach().cpu()
        if hasattr(image, "resolve_conj"):
            image = image.resolve_conj()
        return image.numpy()
    return np.asarray(image)


def _spacing(spacing_mm: Sequence[float] | None, ndim: int) -> tuple[float, ...]:
    if spacing_mm is None:
        return (1.0,) * ndim
    sp = tuple(float(s) for s in spacing_mm)
    if len(sp) != ndim or not all(np.isfinite(s) and s > 0 for s in sp):
        raise InreconError(
            f"spacing_mm {tuple(spacing_mm)} does not give {ndim} positive sizes for a {ndim}D image",
            "give one spacing in mm per image axis, in array order (e.g. (dz, dy, dx))",
        )
    return sp


def window_to_uint8(image: np.ndarray, window: tuple[float, float] | None = None) -> np.ndarray:
    """Magnitude of ``image`` mapped to 0..255: ``window=(lo, hi)`` or the 0.5 / 99.5 percentiles."""
    mag = np.abs(image).astype(np.float64)
    if window is None:
        lo, hi = (float(v) for v in np.percentile(mag, [0.5, 99.5]))
    else:
        lo, hi = (float(v) for v in window)
        if not hi > lo:
            raise InreconError(f"window {window} is empty", "give window=(lo, hi) with hi > lo")
    if hi <= lo:
        hi = lo + 1.0
    return np.rint(np.clip((mag - lo) / (hi - lo), 0.0, 1.0) * 255).astype(np.uint8)


def _montage(vol: np.ndarray, max_slices: int = 16) -> np.ndarray:
    d = vol.shape[0]
    idx = np.unique(np.linspace(0, d - 1, min(d, max_slices)).round().astype(int))
    n = len(idx)
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    h, w = vol.shape[1:]
    out = np.zeros((rows * h, cols * w), dtype=vol.dtype)
    for k, i in enumerate(idx):
        r, c = divmod(k, cols)
        out[r * h : (r + 1) * h, c * w : (c + 1) * w] = vol[i]
    return out


def _h5_attr(v: Any) -> Any:
    if isinstance(v, str | bool | int | float | np.integer | np.floating | np.bool_):
        return v
    if (
        isinstance(v, list | tuple)
        and v
        and all(isinstance(x, int | float) and not isinstance(x, bool) for x in v)
    ):
        return np.asarray(v)
    return json.dumps(v, default=str)


def _write_h5(p: Path, arr: np.ndarray, spacing_mm: Sequence[float] | None, meta: dict | None) -> None:
    """:func:`write_image` for ``.h5``: dataset ``image`` (float32 or complex64) plus attributes."""
    data = arr.astype(np.complex64 if np.iscomplexobj(arr) else np.float32)
    with atomic_path(p, suffix=".h5") as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("image", data=data, compression="gzip" if data.size > 4096 else None)
        if spacing_mm is not None:
            f.attrs["spacing_mm"] = np.asarray(_spacing(spacing_mm, arr.ndim))
        for k, v in (meta or {}).items():
            f.attrs[str(k)] = _h5_attr(v)


def _write_nifti(p: Path, suffix: str, arr: np.ndarray, spacing_mm: Sequence[float] | None) -> None:
    """:func:`write_image` for NIfTI: the float32 magnitude with axes reversed and a diagonal affine."""
    sp = _spacing(spacing_mm, arr.ndim)
    mag = np.abs(arr).astype(np.float32)
    affine = np.diag([*sp[::-1], *([1.0] * (3 - arr.ndim)), 1.0])
    img = nib.Nifti1Image(np.ascontiguousarray(mag.transpose()), affine)
    img.header.set_xyzt_units("mm")
    with atomic_path(p, suffix=suffix) as tmp:
        nib.save(img, str(tmp))


def _write_png(p: Path, arr: np.ndarray, window: tuple[float, float] | None, meta: dict | None) -> None:
    """:func:`write_image` for ``.png``: windowed 8-bit grey (a montage for 3D), ``meta`` as a text chunk."""
    from PIL import Image, PngImagePlugin

    grey = window_to_uint8(arr, window)
    if grey.ndim == 3:
        grey = _montage(grey)
    info = PngImagePlugin.PngInfo()
    if meta:
        info.add_text("inrecon", json.dumps(meta, default=str))
    with atomic_path(p, suffix=".png") as tmp:
        Image.fromarray(grey).save(tmp, format="PNG", pnginfo=info)


def _write_dicom(
    p: Path,
    arr: np.ndarray,
    spacing_mm: Sequence[float] | None,
    hu_window: tuple[float, float] | None,
    meta: dict | None,
) -> None:
    """:func:`write_image` for DICOM: a real image, mapped from ``hu_window`` display units to HU if given."""
    if np.iscomplexobj(arr):
        raise InreconError(
            "a CT DICOM series needs a real image but this one is complex",
            "write the magnitude (np.abs) or the real part",
        )
    hu = arr.astype(np.float64)
    if hu_window is not None:
        lo, hi = (float(v) for v in hu_window)
        if not hi > lo:
            raise InreconError(f"hu_window {hu_window} is empty", "give hu_window=(lo, hi) with hi > lo")
        hu = lo + hu * (hi - lo)
    sp = None if spacing_mm is None else _spacing(spacing_mm, arr.ndim)
    write_dicom_ct(p, hu, sp, meta, overwrite=True)


def write_image(
    path: str | os.PathLike,
    image: ArrayLike,
    *,
    spacing_mm: Sequence[float] | None = None,
    window: tuple[float, float] | None = None,
    hu_window: tuple[float, float] | None = None,
    meta: dict | None = None,
) -> Path:
    """Write a 2D or 3D image in the format given by the suffix of ``path`` (table in the module docstring).

    Parameters
    ----------
    path
        Output file; a path without a suffix is a folder for a DICOM series.
    image
        numpy array or torch tensor ``(H, W)`` or ``(D, H, W)``, real or complex.
    spacing_mm
        Pixel spacing in mm in array order (``(dy, dx)`` or ``(dz, dy, dx)``); NIfTI, HDF5 and DICOM only.
    window
        PNG display window ``(lo, hi)`` on the magnitude; default the 0.5 and 99.5 percentiles.
    hu_window
        DICOM only: the image is in [0, 1] display units of this HU window and is converted to HU.
    meta
        Metadata: HDF5 attributes, a PNG text chunk, DICOM keywords (see
        :func:`~inrecon.data.io.dicom.write_dicom_ct`); ignored for ``.npy`` and NIfTI.

    Returns
    -------
    Path
        ``path``.
    """
    p = Path(path)
    arr = _as_numpy(image)
    require_ndim(arr, "image", (2, 3), "(H, W) or (D, H, W)")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise InreconError(f"image has dtype {arr.dtype}", "give a numeric (real or complex) image")
    require_finite(arr.astype(np.complex64 if np.iscomplexobj(arr) else np.float32), "image")
    suffix = _suffix(p)
    if suffix in (".h5", ".hdf5"):
        _write_h5(p, arr, spacing_mm, meta)
    elif suffix in (".nii", ".nii.gz"):
        _write_nifti(p, suffix, arr, spacing_mm)
    elif suffix == ".npy":
        with atomic_path(p, suffix=".npy") as tmp:
            np.save(tmp, arr)
    elif suffix == ".png":
        _write_png(p, arr, window, meta)
    elif suffix == ".dcm" or suffix == "":
        _write_dicom(p, arr, spacing_mm, hu_window, meta)
    else:
        raise FileFormatError(
            f"cannot write images with the suffix {suffix!r} ({p.name})",
            f"use one of {', '.join(SUPPORTED_IMAGE_SUFFIXES)}",
        )
    return p


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image written by :func:`write_image` (or any file of those formats).

    Returns
    -------
    numpy.ndarray
        ``.h5``: dataset ``image`` as stored. NIfTI: the data with axes reversed to array order (the inverse
        of :func:`write_image`), float32 unless complex. ``.npy``: as stored. ``.png``: grey float32 in
        [0, 1] (colour images are converted to grey). DICOM file or folder: HU float32 ``(S, H, W)``, or
        ``(H, W)`` when the series has one slice.
    """
    p = Path(path)
    if not p.exists():
        raise FileFormatError(f"image file {str(p)!r} does not exist", "check the path")
    suffix = _suffix(p)
    try:
        if p.is_dir() or suffix == ".dcm" or (suffix == "" and is_dicom(p)):
            hu, _, _ = read_dicom_ct(p)
            return hu[0] if hu.shape[0] == 1 else hu
        if suffix in (".h5", ".hdf5"):
            with h5py.File(p, "r") as f:
                if "image" not in f:
                    raise FileFormatError(
                        f"{p}: no dataset 'image' (found: {', '.join(sorted(f.keys())) or 'nothing'})",
                        "write the file with inrecon.data.io.images.write_image, or use load_scan for scan files",
                    )
                return f["image"][()]
        if suffix in (".nii", ".nii.gz"):
            img = nib.load(str(p))
            data = np.asanyarray(img.dataobj)
            data = data if np.iscomplexobj(data) else data.astype(np.float32)
            return np.ascontiguousarray(data.transpose())
        if suffix == ".npy":
            return np.load(p, allow_pickle=False)
        if suffix == ".png":
            from PIL import Image

            with Image.open(p) as im:
                return np.asarray(im.convert("L"), dtype=np.float32) / 255.0
    except InreconError:
        raise
    except (OSError, ValueError, EOFError, KeyError) as exc:
        raise FileFormatError(
            f"cannot read {str(p)!r} ({exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''})",
            "the file is truncated or corrupt; write it again",
        ) from None
    raise FileFormatError(
        f"cannot read images with the suffix {suffix!r} ({p.name})",
        f"use one of {', '.join(SUPPORTED_IMAGE_SUFFIXES)}",
    )
