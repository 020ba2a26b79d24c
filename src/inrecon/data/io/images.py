"""Write and read reconstructed images: :func:`write_image` and :func:`read_image`, chosen by file suffix.

=================  =============================================================================================
suffix             what is written
=================  =============================================================================================
``.h5/.hdf5``      dataset ``image`` as given (complex stays complex64, real becomes float32); ``meta`` as root
                   attributes (nested values as JSON text), ``spacing_mm`` as an attribute
``.nii/.nii.gz``   float32 (signed, as computed) or complex64; axes reversed to NIfTI's (x, y, z) order; the
                   affine of :func:`nifti_affine` (spacing and the inrecon orientation, sform/qform "scanner")
``.npy``           the array as is (complex or real); ``meta`` is not stored
``.png``           8-bit grey: real images keep their sign (values at or below ``lo`` black, at or above ``hi``
                   white), complex ones show their magnitude; ``window=(lo, hi)`` in image units or the data's
                   0.5 / 99.5 percentiles. A 3D image becomes a montage of up to 16 evenly spaced slices
                   (row-major, near-square grid). ``meta`` plus ``window`` as a JSON ``tEXt`` chunk ``inrecon``
``.cfl``           a BART ``.cfl/.hdr`` pair, axes in array order (BART READ, PHS1, PHS2), complex64
``.dcm``/folder    a DICOM series (:func:`~inrecon.data.io.dicom.write_dicom_series`): CT in HU when a
                   calibration is given (``hu_window=(lo, hi)``: the image is [0, 1] display units of that
                   window; ``calibration``: see :func:`write_image`), else the values as they are (RescaleType
                   US); MRI (complex images, or ``modality="MR"``) as MR Image Storage of the magnitude
=================  =============================================================================================

Orientation, units and spacing of every format: ``docs/conventions.md``. Every write is atomic (a temporary
file renamed into place).
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
from inrecon.data.io.bart import read_cfl_image, write_cfl
from inrecon.data.io.dicom import is_dicom, lps_origin, read_dicom_ct, write_dicom_series
from inrecon.errors import FileFormatError, InreconError

__all__ = [
    "SUPPORTED_IMAGE_SUFFIXES",
    "display_window",
    "image_pixel_size",
    "nifti_affine",
    "read_image",
    "window_to_uint8",
    "write_image",
]

SUPPORTED_IMAGE_SUFFIXES = (
    ".h5",
    ".hdf5",
    ".nii",
    ".nii.gz",
    ".npy",
    ".png",
    ".cfl",
    ".dcm",
    "<folder> (DICOM)",
)


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


def display_window(image: np.ndarray, window: tuple[float, float] | None = None) -> tuple[float, float]:
    """The display window ``(lo, hi)`` of :func:`window_to_uint8`: ``window``, or the data's percentiles.

    The default is the 0.5 and 99.5 percentiles of the signed values of a real image (of the magnitude of a
    complex one), widened to ``(lo, lo + 1)`` for a constant image.
    """
    if window is not None:
        lo, hi = (float(v) for v in window)
        if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
            raise InreconError(f"window {window} is empty", "give window=(lo, hi) with hi > lo")
        return lo, hi
    vals = np.abs(image) if np.iscomplexobj(image) else np.asarray(image)
    lo, hi = (float(v) for v in np.percentile(vals.astype(np.float64), [0.5, 99.5]))
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def window_to_uint8(image: np.ndarray, window: tuple[float, float] | None = None) -> np.ndarray:
    """``image`` mapped to grey levels 0..255 through :func:`display_window`, clipping outside it.

    A real image keeps its sign: values at or below ``lo`` are black, at or above ``hi`` white, linear in
    between (negative values are never folded onto positive ones). A complex image shows its magnitude.
    """
    lo, hi = display_window(image, window)
    vals = np.abs(image) if np.iscomplexobj(image) else np.asarray(image)
    return np.rint(np.clip((vals.astype(np.float64) - lo) / (hi - lo), 0.0, 1.0) * 255).astype(np.uint8)


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


def nifti_affine(shape: Sequence[int], spacing_mm: Sequence[float], slice_thickness_mm: float = 1.0):
    """The RAS+ affine of an image ``(H, W)`` or ``(S, H, W)`` stored as NIfTI axes ``(W, H, S)``.

    The inrecon convention (:func:`~inrecon.data.io.dicom.lps_origin`): column -> patient left, row ->
    posterior, slice -> superior, centred on the origin; in NIfTI's RAS+ world that is
    ``diag(-dx, -dy, dz)`` (axis codes L, P, S). A 2D image gets ``dz = slice_thickness_mm``.
    """
    sp = tuple(float(v) for v in spacing_mm)
    shape3 = (1, *shape) if len(shape) == 2 else tuple(shape)
    sp3 = (float(slice_thickness_mm), *sp) if len(sp) == 2 else sp
    x0, y0, z0 = lps_origin(shape3, sp3)
    affine = np.diag([-sp3[2], -sp3[1], sp3[0], 1.0])
    affine[:3, 3] = (-x0, -y0, z0)
    return affine


def _write_nifti(
    p: Path, suffix: str, arr: np.ndarray, spacing_mm: Sequence[float] | None, thickness: float | None
) -> None:
    """:func:`write_image` for NIfTI: float32 (signed) or complex64, axes reversed, the oriented affine."""
    sp = _spacing(spacing_mm, arr.ndim)
    data = arr.astype(np.complex64 if np.iscomplexobj(arr) else np.float32)
    affine = nifti_affine(arr.shape, sp, 1.0 if thickness is None else float(thickness))
    img = nib.Nifti1Image(np.ascontiguousarray(data.transpose()), affine)
    img.header.set_xyzt_units("mm")
    img.set_sform(affine, code=1)
    img.set_qform(affine, code=1)
    with atomic_path(p, suffix=suffix) as tmp:
        nib.save(img, str(tmp))


def _write_png(p: Path, arr: np.ndarray, window: tuple[float, float] | None, meta: dict | None) -> None:
    """:func:`write_image` for ``.png``: windowed 8-bit grey (a montage for 3D); meta and window as text."""
    from PIL import Image, PngImagePlugin

    lo, hi = display_window(arr, window)
    grey = window_to_uint8(arr, (lo, hi))
    if grey.ndim == 3:
        grey = _montage(grey)
    info = PngImagePlugin.PngInfo()
    info.add_text("inrecon", json.dumps({**(meta or {}), "window": [lo, hi]}, default=str))
    with atomic_path(p, suffix=".png") as tmp:
        Image.fromarray(grey).save(tmp, format="PNG", pnginfo=info)


def _to_hu(
    arr: np.ndarray, calibration: Any, hu_window: tuple[float, float] | None
) -> tuple[np.ndarray, str]:
    """Real ``arr`` in HU (``"HU"``) when a calibration says how, else as it is (``"US"``)."""
    if hu_window is not None:
        calibration = {"hu_window": hu_window}
    if calibration is None:
        return arr, "US"
    if calibration == "hu":
        return arr, "HU"
    if isinstance(calibration, dict) and "hu_window" in calibration:
        lo, hi = (float(v) for v in calibration["hu_window"])
        if not hi > lo:
            raise InreconError(f"hu_window {(lo, hi)} is empty", "give hu_window=(lo, hi) with hi > lo")
        return lo + arr * (hi - lo), "HU"
    if isinstance(calibration, dict) and "mu_water_per_mm" in calibration:
        mu = float(calibration["mu_water_per_mm"])
        if not mu > 0:
            raise InreconError(f"mu_water_per_mm is {mu}", "give the attenuation of water per mm (> 0)")
        return 1000.0 * (arr - mu) / mu, "HU"
    raise InreconError(
        f"calibration {calibration!r} is not understood",
        'give None, "hu", {"hu_window": (lo, hi)} or {"mu_water_per_mm": mu}',
    )


def _write_dicom(p: Path, arr: np.ndarray, spacing: tuple | None, opts: dict, meta: dict | None) -> None:
    """:func:`write_image` for DICOM: CT (HU when calibrated, else values kept) or MR (magnitude)."""
    modality = opts["modality"] or ("MR" if np.iscomplexobj(arr) else "CT")
    if modality == "MR":
        values, rescale_type = np.abs(arr).astype(np.float64), "US"
    elif np.iscomplexobj(arr):
        raise InreconError(
            "a CT DICOM series needs a real image but this one is complex",
            "write the real part, or an MRI image with modality='MR' (stored as magnitude)",
        )
    else:
        values, rescale_type = _to_hu(arr.astype(np.float64), opts["calibration"], opts["hu_window"])
    merged = {**(meta or {}), **(opts["dicom"] or {})}
    if opts["slice_thickness_mm"] is not None:
        merged["SliceThickness"] = float(opts["slice_thickness_mm"])
    write_dicom_series(
        p, values, spacing, merged, modality=modality, rescale_type=rescale_type, overwrite=True
    )


def write_image(
    path: str | os.PathLike,
    image: ArrayLike,
    *,
    spacing_mm: Sequence[float] | None = None,
    window: tuple[float, float] | None = None,
    hu_window: tuple[float, float] | None = None,
    meta: dict | None = None,
    slice_thickness_mm: float | None = None,
    modality: str | None = None,
    calibration: Any = None,
    dicom: dict | None = None,
) -> Path:
    """Write a 2D or 3D image in the format given by the suffix of ``path`` (table in the module docstring).

    Parameters
    ----------
    path
        Output file; a path without a suffix is a folder for a DICOM series.
    image
        numpy array or torch tensor ``(H, W)`` or ``(D, H, W)``, real or complex.
    spacing_mm
        Pixel spacing in mm in array order (``(dy, dx)`` or ``(dz, dy, dx)``; default 1 mm); NIfTI, HDF5 and
        DICOM. Orientation: ``docs/conventions.md`` (column -> patient left, row -> posterior).
    window
        PNG display window ``(lo, hi)`` in image units; default the 0.5 and 99.5 percentiles.
    hu_window
        DICOM CT: the image is in [0, 1] display units of this HU window and is converted to HU.
    meta
        Metadata: HDF5 attributes, a PNG text chunk, DICOM ``ImageComments`` (lower-case keys) or keywords;
        ignored for ``.npy``, NIfTI and ``.cfl``.
    slice_thickness_mm
        Thickness of a 2D slice (NIfTI's third pixel dimension, DICOM ``SliceThickness``); default 1 mm, or
        ``dz`` for 3D.
    modality
        DICOM: ``"CT"`` or ``"MR"`` (magnitude, MR Image Storage); default MR for complex images, else CT.
    calibration
        DICOM CT: how values become HU: ``None`` (they are stored as they are, ``RescaleType`` US), ``"hu"``
        (they are HU), ``{"hu_window": (lo, hi)}`` or ``{"mu_water_per_mm": mu}`` (``1000 (v - mu) / mu``).
    dicom
        DICOM keywords for every slice (``StudyInstanceUID``, ``FrameOfReferenceUID``, ``SeriesDescription``,
        ...), see :func:`~inrecon.data.io.dicom.write_dicom_series`.

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
        _write_nifti(p, suffix, arr, spacing_mm, slice_thickness_mm)
    elif suffix == ".npy":
        with atomic_path(p, suffix=".npy") as tmp:
            np.save(tmp, arr)
    elif suffix == ".png":
        _write_png(p, arr, window, meta)
    elif suffix == ".cfl":
        write_cfl(p, arr)
    elif suffix == ".dcm" or suffix == "":
        opts = {"modality": modality, "calibration": calibration, "hu_window": hu_window, "dicom": dicom}
        sp = None if spacing_mm is None else _spacing(spacing_mm, arr.ndim)
        _write_dicom(p, arr, sp, {**opts, "slice_thickness_mm": slice_thickness_mm}, meta)
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
        of :func:`write_image`; no reorientation: the affine is not applied), float32 unless complex.
        ``.npy``: as stored. ``.png``: grey float32 in [0, 1] (colour images are converted to grey). BART
        ``.cfl``: :func:`~inrecon.data.io.bart.read_cfl_image` (coils and ESPIRiT maps combined by
        root-sum-of-squares). DICOM file or folder: rescaled values (HU for CT) float32 ``(S, H, W)``, or
        ``(H, W)`` when the series has one slice.
    """
    p = Path(path)
    suffix = _suffix(p)
    if suffix == ".hdr":
        p = p.with_suffix(".cfl")
    if not p.exists():
        raise FileFormatError(f"image file {str(p)!r} does not exist", "check the path")
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
        if suffix in (".cfl", ".hdr"):
            return read_cfl_image(p)
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


def image_spacing(path: str | os.PathLike) -> tuple[float, ...] | None:
    """The pixel spacing in mm, in array order, that an image file states, or ``None`` when it states none.

    DICOM (file or folder): ``(dz, dy, dx)`` as :func:`~inrecon.data.io.dicom.read_dicom_ct` reads it (``dz``
    dropped for a single slice); NIfTI: the pixel dimensions reversed to array order; ``.h5``: the attribute
    ``spacing_mm``. ``.npy``, ``.png`` and ``.cfl`` state none.
    """
    p = Path(path)
    suffix = _suffix(p)
    if p.is_dir() or suffix == ".dcm" or (suffix == "" and is_dicom(p)):
        hu, spacing, _ = read_dicom_ct(p)
        return tuple(spacing[1:]) if hu.shape[0] == 1 else tuple(spacing)
    if suffix in (".nii", ".nii.gz"):
        img = nib.load(str(p))
        n = len([d for d in img.shape if d > 1]) or len(img.shape)
        return tuple(float(z) for z in img.header.get_zooms()[:n][::-1])
    if suffix in (".h5", ".hdf5"):
        with h5py.File(p, "r") as f:
            sp = f.attrs.get("spacing_mm")
        return None if sp is None else tuple(float(v) for v in np.atleast_1d(sp))
    return None


def image_pixel_size(path: str | os.PathLike) -> float | None:
    """The in-plane pixel size in mm of an image file (:func:`image_spacing`), ``None`` when unknown.

    Raises :class:`~inrecon.errors.InreconError` for rectangular pixels (a CT geometry has square ones).
    """
    sp = image_spacing(path)
    if sp is None or len(sp) < 2:
        return None
    dy, dx = sp[-2:]
    if not np.isclose(dy, dx, rtol=1e-4):
        raise InreconError(
            f"{path} has rectangular pixels ({dy} x {dx} mm)",
            "resample it to square pixels, or give the pixel size explicitly (--pixel-size)",
        )
    return float(dx)
