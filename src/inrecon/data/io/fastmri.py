"""fastMRI HDF5 files: :func:`read_fastmri`, :func:`write_fastmri_like`, :func:`center_crop`.

Layout of a fastMRI file (the datasets inrecon uses); a file is recognised by its complex ``kspace`` of rank 4
or 3 together with a fastMRI dataset or attribute (:func:`is_fastmri`), so the challenge/test layout (only
``kspace``, ``mask`` and attributes) is read too:

``kspace``
    complex64 ``(slices, coils, H, W)`` (multi-coil) or ``(slices, H, W)`` (single-coil), centred orthonormal
    2D FFT of the coil images (``H`` is the readout, ``W`` the phase-encode axis), zero where not sampled.
``mask`` (optional; challenge and test files)
    ``(W,)`` phase-encode lines or ``(H, W)``, non-zero where acquired.
``reconstruction_rss`` / ``reconstruction_esc`` (optional; training and validation files)
    float32 ``(slices, h, w)``: the root-sum-of-squares (single-coil files: the emulated single coil) of the
    inverse FFT of the fully sampled k-space, centre-cropped to ``(h, w)`` (often 320 x 320 while the k-space
    grid is e.g. 640 x 368).
``ismrmrd_header`` (optional)
    The ISMRMRD XML header; a few fields (matrix sizes, fields of view, field strength, TR/TE) are copied into
    provenance, and the encoded field of view over the matrix gives the pixel spacing.
attributes
    ``acquisition``, ``max``, ``norm``, ``patient_id``, ``acceleration``, ``num_low_frequency``.

When ``reconstruction_rss`` has the k-space grid's shape it becomes the scan's ``target`` as it is. Otherwise
the target is the rss embedded (zero-padded) at the centre of the k-space grid, the scan's ``roi`` marks the
embedded region, and ``provenance["target_crop_shape"]`` holds ``(h, w)``; metrics restricted to the ROI, or
``center_crop(recon, scan.provenance["target_crop_shape"])`` against ``center_crop(scan.target, ...)``,
compare exactly what fastMRI compares.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np
import torch

from inrecon.checks import ArrayLike, require_complex, require_finite, require_ndim
from inrecon.data.atomic import atomic_path
from inrecon.data.scans import MRIScan
from inrecon.errors import FileFormatError, InreconError, ShapeError

__all__ = [
    "center_crop",
    "center_pad",
    "crop_kspace",
    "is_fastmri",
    "read_fastmri",
    "rss",
    "write_fastmri_like",
]

_ATTRS = ("acquisition", "max", "norm", "patient_id", "acceleration", "num_low_frequency")
_DATASETS = ("reconstruction_rss", "reconstruction_esc", "ismrmrd_header")


def _crop_slices(n_have: Sequence[int], n_want: Sequence[int]) -> tuple[slice, ...]:
    return tuple(slice((a - b) // 2, (a - b) // 2 + b) for a, b in zip(n_have, n_want))


def center_crop(image: ArrayLike, shape: Sequence[int]) -> ArrayLike:
    """Crop the last ``len(shape)`` axes of ``image`` to ``shape`` around the centre (fastMRI's convention).

    The crop of an axis of length ``N`` to ``n`` starts at ``(N - n) // 2`` (fastMRI's ``center_crop``), which
    keeps the FFT centre index ``N // 2`` at ``n // 2`` unless ``N`` is even and ``n`` odd.

    Parameters
    ----------
    image
        numpy array or torch tensor ``(..., H, W)`` (any dtype).
    shape
        ``(h, w)`` (or any number of trailing axes) with ``h <= H`` and ``w <= W``.

    Returns
    -------
    Same type as ``image``, shape ``(..., h, w)`` (a view).
    """
    shape = tuple(int(s) for s in shape)
    have = tuple(image.shape[-len(shape) :]) if shape else ()
    if len(shape) > image.ndim or any(b > a or b < 1 for a, b in zip(have, shape)):
        raise ShapeError(
            f"cannot centre-crop an image of shape {tuple(image.shape)} to {shape}",
            "give a crop shape no larger than the image's trailing axes",
        )
    return image[(Ellipsis, *_crop_slices(have, shape))]


def center_pad(image: ArrayLike, shape: Sequence[int]) -> ArrayLike:
    """Zero-pad the last ``len(shape)`` axes of ``image`` to ``shape``, the inverse of :func:`center_crop`.

    Returns a new numpy array or tensor ``(..., *shape)`` with ``center_crop(center_pad(x, s), x.shape) == x``.
    """
    shape = tuple(int(s) for s in shape)
    have = tuple(image.shape[-len(shape) :])
    if len(shape) > image.ndim or any(b < a for a, b in zip(have, shape)):
        raise ShapeError(
            f"cannot centre-pad an image of shape {tuple(image.shape)} to {shape}",
            "give a target shape no smaller than the image's trailing axes",
        )
    full = (*image.shape[: image.ndim - len(shape)], *shape)
    if isinstance(image, torch.Tensor):
        out = image.new_zeros(full)
    else:
        out = np.zeros(full, dtype=np.asarray(image).dtype)
    out[(Ellipsis, *_crop_slices(shape, have))] = image
    return out


def rss(coil_images: ArrayLike, axis: int = 0) -> ArrayLike:
    """Root-sum-of-squares coil combination of ``coil_images`` along ``axis`` (numpy or torch)."""
    if isinstance(coil_images, torch.Tensor):
        return torch.sqrt((coil_images.abs() ** 2).sum(axis))
    return np.sqrt((np.abs(coil_images) ** 2).sum(axis))


def _ifft2c_np(k: np.ndarray) -> np.ndarray:
    ax = (-2, -1)
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=ax), axes=ax, norm="ortho"), axes=ax)


def is_fastmri(f: h5py.File) -> bool:
    """Whether an open HDF5 file is fastMRI's: complex ``kspace`` of rank 4 (multi-coil) or 3 (single-coil),
    no inrecon ``modality`` attribute, and a fastMRI dataset (``reconstruction_rss``, ``reconstruction_esc``,
    ``ismrmrd_header``) or attribute (``acquisition``, ``max``, ``norm``, ``patient_id``, ...)."""
    ks = f.get("kspace")
    return (
        isinstance(ks, h5py.Dataset)
        and ks.ndim in (3, 4)
        and ks.dtype.kind == "c"
        and "modality" not in f.attrs
        and (any(k in f for k in _DATASETS) or any(a in f.attrs for a in _ATTRS))
    )


def _header_info(raw) -> dict:
    """A few fields of the ISMRMRD XML header (namespace-agnostic); empty when it cannot be parsed."""
    if isinstance(raw, np.ndarray):
        raw = raw.item() if raw.shape == () else raw.tobytes()
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    try:
        root = ET.fromstring(str(raw))
    except ET.ParseError:
        return {}
    for el in root.iter():
        el.tag = el.tag.split("}")[-1]
    info: dict = {}

    def size(path):
        el = root.find(path)
        if el is None:
            return None
        vals = [el.findtext(k) for k in ("x", "y", "z")]
        try:
            out = [float(v) for v in vals if v is not None]
        except ValueError:
            return None
        return [int(v) for v in out] if path.endswith("matrixSize") else out

    for key, path in (
        ("encoded_matrix", "encoding/encodedSpace/matrixSize"),
        ("recon_matrix", "encoding/reconSpace/matrixSize"),
        ("encoded_fov_mm", "encoding/encodedSpace/fieldOfView_mm"),
        ("recon_fov_mm", "encoding/reconSpace/fieldOfView_mm"),
    ):
        v = size(path)
        if v:
            info[key] = v
    for key, path in (
        ("field_strength_T", "acquisitionSystemInformation/systemFieldStrength_T"),
        ("TR_ms", "sequenceParameters/TR"),
        ("TE_ms", "sequenceParameters/TE"),
        ("TI_ms", "sequenceParameters/TI"),
        ("flip_angle_deg", "sequenceParameters/flipAngle_deg"),
    ):
        text = root.findtext(path)
        if text is not None:
            try:
                info[key] = float(text)
            except ValueError:
                pass
    for key, path in (
        ("vendor", "acquisitionSystemInformation/systemVendor"),
        ("model", "acquisitionSystemInformation/systemModel"),
    ):
        text = root.findtext(path)
        if text:
            info[key] = text.strip()
    return info


def _attr_value(v):
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    return v


def _read_mask(f: h5py.File, path: str, grid: tuple[int, int]) -> np.ndarray | None:
    if "mask" not in f:
        return None
    m = np.asarray(f["mask"][()])
    if np.iscomplexobj(m) or not (m.dtype == bool or np.issubdtype(m.dtype, np.number)):
        raise FileFormatError(f"{path}: 'mask' has dtype {m.dtype}", "store the mask as bool or uint8")
    m = m != 0
    h, w = grid
    if m.shape == (w,):
        return np.broadcast_to(m[None, :], (h, w))
    if m.shape == (h, w):
        return m
    raise ShapeError(
        f"{path}: 'mask' has shape {m.shape} but the k-space grid is {grid}",
        f"store the mask as ({w},) phase-encode lines or ({h}, {w})",
    )


def _open_fastmri(p: Path) -> h5py.File:
    """``p`` opened read-only as HDF5, with a clear error when it is missing or not HDF5."""
    if not p.is_file():
        what = "is a directory" if p.is_dir() else "does not exist"
        raise FileFormatError(f"fastMRI file {str(p)!r} {what}", "give the path of a fastMRI .h5 file")
    try:
        return h5py.File(p, "r")
    except OSError as exc:
        raise FileFormatError(
            f"cannot read {str(p)!r} as HDF5 ({str(exc).splitlines()[0]})",
            "the file is truncated or not HDF5; download it again",
        ) from None


def _slice_indices(p: Path, n_slices: int, slice: int | None) -> list[int]:
    """The slice indices :func:`read_fastmri` reads: all, or the one ``slice`` (made non-negative)."""
    if slice is None:
        return list(range(n_slices))
    if not -n_slices <= int(slice) < n_slices:
        raise InreconError(
            f"{p}: slice {slice} is out of range (the file has {n_slices} slices)",
            f"give a slice index in [0, {n_slices - 1}] (or negative from the end)",
        )
    return [int(slice) % n_slices]


def _rss_dataset(f: h5py.File, p: Path, n_slices: int, single_coil: bool) -> h5py.Dataset | None:
    """The checked reference dataset (``reconstruction_esc`` first for single-coil files, else
    ``reconstruction_rss``), or ``None`` when the file has none."""
    names = ("reconstruction_esc", "reconstruction_rss") if single_coil else ("reconstruction_rss",)
    name = next((n for n in names if n in f), None)
    rss_ds = None if name is None else f[name]
    if rss_ds is not None:
        require_ndim(rss_ds, f"{p}: {name}", (3,), "(slices, h, w)")
        if rss_ds.shape[0] != n_slices:
            raise ShapeError(
                f"{p}: {name} has {rss_ds.shape[0]} slices but kspace has {n_slices}",
                "the file is inconsistent; use the original fastMRI file",
            )
    return rss_ds


def _spacing_provenance(prov: dict, grid: tuple[int, int]) -> None:
    """``spacing_mm`` (array order) and ``slice_thickness_mm`` from the header's encoded FOV and matrix.

    fastMRI stores k-space with the readout (encoded x) as ``H`` and the phase encode (encoded y) as ``W``;
    the spacing is only set when the encoded matrix is that grid.
    """
    matrix, fov = prov.get("encoded_matrix"), prov.get("encoded_fov_mm")
    if not matrix or not fov or len(matrix) < 2 or len(fov) < 2 or tuple(matrix[:2]) != tuple(grid):
        return
    if min(fov[:2]) > 0:
        prov["spacing_mm"] = [fov[0] / matrix[0], fov[1] / matrix[1]]
    if len(fov) > 2 and fov[2] > 0:
        prov["slice_thickness_mm"] = float(fov[2])


def _file_provenance(f: h5py.File, p: Path, n_slices: int, grid: tuple[int, int]) -> dict:
    """Provenance shared by every slice: source, file attributes and ISMRMRD header fields."""
    prov = {"source": str(p), "format": "fastmri", "n_slices": int(n_slices)}
    for k in _ATTRS:
        if k in f.attrs:
            prov[k] = _attr_value(f.attrs[k])
    if "ismrmrd_header" in f:
        prov.update(_header_info(f["ismrmrd_header"][()]))
    _spacing_provenance(prov, grid)
    return prov


def _crop_shape(p: Path, prov: dict, rss_ds: h5py.Dataset | None, grid: tuple[int, int]) -> tuple[int, int]:
    """The recon matrix ``(h, w)`` to crop to: the header's reconSpace, else the reference's shape."""
    recon = prov.get("recon_matrix")
    if recon and len(recon) >= 2:
        shape = (int(recon[0]), int(recon[1]))
    elif rss_ds is not None:
        shape = tuple(int(n) for n in rss_ds.shape[1:])
    else:
        raise InreconError(
            f"{p}: crop needs the recon matrix but the file has no ismrmrd_header and no reconstruction_rss",
            "read it without crop",
        )
    return tuple(min(a, b) for a, b in zip(shape, grid))


def _fft1c(x: np.ndarray, axis: int, inverse: bool) -> np.ndarray:
    f = np.fft.ifft if inverse else np.fft.fft
    return np.fft.fftshift(f(np.fft.ifftshift(x, axes=axis), axis=axis, norm="ortho"), axes=axis)


def crop_kspace(kspace: np.ndarray, mask: np.ndarray | None, shape: tuple[int, int]):
    """Crop Cartesian k-space ``(C, H, W)`` to the image grid ``shape`` as fastMRI crops images.

    An axis is cropped in the image domain (inverse FFT along it, :func:`center_crop`, FFT back), which is
    exact only where every line along it was acquired: always the readout ``H`` (removing its oversampling),
    and the phase encode ``W`` when the mask is full. Returns ``(kspace, mask, cropped shape)``.
    """
    h, w = kspace.shape[1:]
    sampled = (kspace != 0).any(0) if mask is None else np.asarray(mask, dtype=bool)
    full_w = bool(sampled.any(0).all())
    new = (shape[0], shape[1] if full_w else w)
    k = kspace
    for ax, n in ((1, new[0]), (2, new[1])):
        if n < k.shape[ax]:
            img = _fft1c(k, ax, inverse=True)
            img = img[(slice(None),) * ax + _crop_slices((k.shape[ax],), (n,))]
            k = _fft1c(img, ax, inverse=False)
    m = None if mask is None else mask[_crop_slices((h, w), new)]
    return k.astype(np.complex64), m, new


def _slice_scan(f: h5py.File, p: Path, i: int, prov: dict, crop: tuple[int, int] | None) -> MRIScan:
    """The :class:`MRIScan` of slice ``i``, its reference embedded in the k-space grid when cropped."""
    ks = f["kspace"]
    single = ks.ndim == 3
    h, w = ks.shape[-2:]
    mask = _read_mask(f, str(p), (h, w))
    rss_ds = _rss_dataset(f, p, ks.shape[0], single)
    try:
        k = ks[i][None] if single else ks[i]
        ref = None if rss_ds is None else np.asarray(rss_ds[i], dtype=np.float32)
    except OSError as exc:
        raise FileFormatError(
            f"{p}: slice {i} cannot be read ({str(exc).splitlines()[0]})",
            "the file is truncated or corrupt; download it again",
        ) from None
    require_complex(k, f"{p}: kspace")
    require_finite(k, f"{p}: kspace slice {i}")
    pr = dict(prov, slice=int(i))
    if crop is not None:
        k, mask, (h, w) = crop_kspace(k, mask, crop)
        pr["cropped_to"] = [h, w]
    target = roi = None
    if ref is not None:
        if ref.shape == (h, w):
            target = ref
        else:
            shape = tuple(min(a, b) for a, b in zip(ref.shape, (h, w)))
            ref = center_crop(ref, shape)
            target = center_pad(ref, (h, w))
            roi = center_pad(np.ones(shape, dtype=bool), (h, w))
            pr["target_crop_shape"] = list(shape)
    return MRIScan(kspace=k, mask=mask, target=target, roi=roi, provenance=pr)


def read_fastmri(
    path: str | os.PathLike, slice: int | None = None, crop: bool = False
) -> MRIScan | list[MRIScan]:
    """Read a fastMRI file (multi-coil or single-coil) into Cartesian :class:`MRIScan` objects, one per slice.

    Parameters
    ----------
    path
        The ``.h5`` file (layout in the module docstring).
    slice
        Slice index (negative counts from the end) to read only that slice; ``None`` reads every slice.
    crop
        Crop to the recon matrix (the header's reconSpace, else the reference's shape) as the fastMRI tools
        do: exactly, in the image domain, along the readout, and along the phase encode when it is fully
        sampled (:func:`crop_kspace`); ``provenance["cropped_to"]`` holds the new grid.

    Returns
    -------
    MRIScan or list of MRIScan
        ``kspace`` complex64 ``(C, H, W)`` (``C = 1`` for single-coil files), ``mask`` bool ``(H, W)`` (from
        ``mask`` or the non-zero k-space), ``target`` float32 ``(H, W)`` from ``reconstruction_rss``
        (single-coil: ``reconstruction_esc``; see the module docstring for cropped targets), provenance
        with the source, slice, file attributes, header fields and, when the header gives the encoded field
        of view, ``spacing_mm`` ``(dH, dW)`` and ``slice_thickness_mm``.
    """
    p = Path(path)
    f = _open_fastmri(p)
    with f:
        ks = f.get("kspace")
        if not isinstance(ks, h5py.Dataset):
            raise FileFormatError(
                f"{p}: no 'kspace' dataset (found: {', '.join(sorted(f.keys())) or 'nothing'})",
                "a fastMRI file needs 'kspace' (slices, coils, H, W)",
            )
        require_ndim(
            ks, f"{p}: kspace", (3, 4), "(slices, coils, H, W) (multi-coil) or (slices, H, W) (single-coil)"
        )
        n_slices, grid = ks.shape[0], tuple(ks.shape[-2:])
        indices = _slice_indices(p, n_slices, slice)
        prov = _file_provenance(f, p, n_slices, grid)
        prov["coils"] = "single" if ks.ndim == 3 else "multi"
        shape = _crop_shape(p, prov, _rss_dataset(f, p, n_slices, ks.ndim == 3), grid) if crop else None
        scans = [_slice_scan(f, p, i, prov, shape) for i in indices]
    return scans[0] if slice is not None else scans


def write_fastmri_like(
    path: str | os.PathLike,
    kspace: ArrayLike,
    mask: ArrayLike | None = None,
    rss_image: ArrayLike | None = None,
    *,
    crop: Sequence[int] | None = None,
    attrs: dict | None = None,
    header: str | None = None,
) -> Path:
    """Write a file in the fastMRI multi-coil layout (atomically), e.g. for tests and examples.

    Parameters
    ----------
    kspace
        complex ``(slices, coils, H, W)`` (a single slice ``(coils, H, W)`` is accepted), centred orthonormal.
    mask
        Optional ``(W,)`` or ``(H, W)`` sampling mask, stored as bool.
    rss_image
        Optional float ``(slices, h, w)`` reference; ``None`` computes it from ``kspace`` as fastMRI does
        (RSS of the inverse centred orthonormal FFT, centre-cropped to ``crop``).
    crop
        Crop shape ``(h, w)`` for the computed reference; default the full grid.
    attrs
        Root attributes (e.g. ``{"acquisition": "CORPD_FBK", "max": 0.0004}``).
    header
        Optional ISMRMRD XML header text (stored as ``ismrmrd_header``).
    """
    k = kspace.detach().cpu().numpy() if isinstance(kspace, torch.Tensor) else np.asarray(kspace)
    require_complex(k, "kspace")
    if k.ndim == 3:
        k = k[None]
    require_ndim(k, "kspace", (4,), "(slices, coils, H, W)")
    if rss_image is None:
        rss_image = rss(_ifft2c_np(k), axis=1)
        if crop is not None:
            rss_image = center_crop(rss_image, crop)
    ref = rss_image.detach().cpu().numpy() if isinstance(rss_image, torch.Tensor) else np.asarray(rss_image)
    if ref.ndim == 2:
        ref = ref[None]
    require_ndim(ref, "rss_image", (3,), "(slices, h, w)")
    if ref.shape[0] != k.shape[0]:
        raise ShapeError(
            f"rss_image has {ref.shape[0]} slices but kspace has {k.shape[0]}", "give one reference per slice"
        )
    path = Path(path)
    with atomic_path(path, suffix=".h5") as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("kspace", data=k.astype(np.complex64))
        f.create_dataset("reconstruction_rss", data=ref.astype(np.float32))
        if mask is not None:
            m = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
            f.create_dataset("mask", data=m != 0)
        if header is not None:
            f.create_dataset("ismrmrd_header", data=header.encode())
        for key, v in (attrs or {}).items():
            f.attrs[key] = v
    return path
