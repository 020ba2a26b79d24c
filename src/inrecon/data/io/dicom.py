"""DICOM images: :func:`read_dicom_ct` (one file or a series folder), :func:`write_dicom_series` (CT or MR).

Reading sorts a series by the slice position along the slice normal (``ImagePositionPatient`` projected on
the cross product of the two ``ImageOrientationPatient`` directions), else by ``InstanceNumber``, else by
file name, refuses two images at one position, and converts stored values with ``RescaleSlope`` and
``RescaleIntercept`` (Hounsfield units for CT). Writing produces a valid CT or MR Image Storage series
(explicit VR little endian, signed 16-bit pixels with a rescale slope/intercept chosen to keep the values,
axial slices in the patient (LPS) frame of :func:`lps_origin`, placeholder patient identifiers), only into a
new or empty folder or over our own earlier series of the same scan (:func:`dicom_targets`).
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    generate_uid,
)
from pydicom.valuerep import format_number_as_ds

from inrecon.checks import ArrayLike, require_finite, require_ndim, require_real
from inrecon.data.atomic import atomic_path
from inrecon.errors import FileFormatError, InreconError, ShapeError

__all__ = [
    "MANUFACTURER",
    "dicom_targets",
    "is_dicom",
    "lps_origin",
    "read_dicom_ct",
    "write_dicom_ct",
    "write_dicom_series",
]

_PYDICOM3 = int(pydicom.__version__.split(".")[0]) >= 3

#: Keywords copied from the first slice into the ``meta`` dict returned by :func:`read_dicom_ct`.
_META_KEYS = (
    "Modality",
    "PatientID",
    "PatientName",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "FrameOfReferenceUID",
    "StudyDescription",
    "SeriesDescription",
    "Manufacturer",
    "ManufacturerModelName",
    "KVP",
    "ConvolutionKernel",
    "SliceThickness",
    "RescaleIntercept",
    "RescaleSlope",
    "RescaleType",
    "WindowCenter",
    "WindowWidth",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PatientPosition",
)

#: Attributes the writer sets itself; ``meta`` cannot override them.
_PROTECTED = {
    "SOPClassUID",
    "SOPInstanceUID",
    "SeriesInstanceUID",
    "Modality",
    "Rows",
    "Columns",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "RescaleIntercept",
    "RescaleSlope",
    "RescaleType",
    "PixelSpacing",
    "PixelData",
    "InstanceNumber",
    "SliceLocation",
    "SliceThickness",
    "SpacingBetweenSlices",
    "ImageOrientationPatient",
    "Manufacturer",
}


def is_dicom(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a file with the DICOM preamble (``DICM`` at byte 128)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def _json_value(v: Any) -> Any:
    """pydicom values (MultiValue, DSfloat, IS, PersonName, UID) -> plain JSON types."""
    if isinstance(v, str | bytes) and not isinstance(v, pydicom.uid.UID):
        return v.decode("latin-1") if isinstance(v, bytes) else str(v)
    if isinstance(v, pydicom.multival.MultiValue | list | tuple):
        return [_json_value(x) for x in v]
    if isinstance(v, pydicom.valuerep.PersonName | pydicom.uid.UID):
        return str(v)
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float):
        return float(v)
    return str(v)


def _files_of(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def _read_header(p: Path) -> pydicom.Dataset | None:
    try:
        return pydicom.dcmread(p, stop_before_pixels=True)
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError):
        return None


def _sort_key(ds: pydicom.Dataset):
    pos = getattr(ds, "ImagePositionPatient", None)
    ori = getattr(ds, "ImageOrientationPatient", None)
    if pos is not None and ori is not None and len(pos) == 3 and len(ori) == 6:
        normal = np.cross(np.asarray(ori[:3], float), np.asarray(ori[3:], float))
        return float(np.dot(np.asarray(pos, float), normal))
    return None


def _select_series(headers: list[tuple[Path, pydicom.Dataset]], folder: Path, series_uid: str | None):
    groups: dict[str, list] = {}
    for p, ds in headers:
        groups.setdefault(str(getattr(ds, "SeriesInstanceUID", "")), []).append((p, ds))
    if series_uid is not None:
        if series_uid not in groups:
            raise InreconError(
                f"{folder}: no series with SeriesInstanceUID {series_uid}",
                f"use one of {sorted(groups)}",
            )
        return groups[series_uid]
    if len(groups) > 1:
        listing = "; ".join(
            f"{uid} ({getattr(items[0][1], 'SeriesDescription', '')!s}, {len(items)} files)"
            for uid, items in groups.items()
        )
        raise InreconError(
            f"{folder} holds {len(groups)} DICOM series: {listing}",
            "pass series_uid=... or a folder with one series",
        )
    return next(iter(groups.values()))


def _pixels(p: Path) -> tuple[np.ndarray, pydicom.Dataset]:
    try:
        ds = pydicom.dcmread(p)
        arr = ds.pixel_array
    except (InvalidDicomError, EOFError, OSError) as exc:
        raise FileFormatError(
            f"{p}: cannot read the DICOM file ({exc.__class__.__name__}: {exc})",
            "the file is truncated or corrupt; export the series again",
        ) from None
    except (AttributeError, ValueError, RuntimeError, NotImplementedError) as exc:
        raise FileFormatError(
            f"{p}: cannot decode the pixel data ({str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__})",
            "decompress the series (e.g. `gdcmconv --raw`) or install pylibjpeg / gdcm for pydicom",
        ) from None
    return arr, ds


def _series_headers(p: Path, series_uid: str | None) -> list[tuple[Path, pydicom.Dataset]]:
    """``(file, header)`` of the image files :func:`read_dicom_ct` reads at ``p`` (one series), unsorted."""
    if not p.exists():
        raise FileFormatError(f"DICOM path {str(p)!r} does not exist", "check the path")
    if p.is_dir():
        headers = [(f, ds) for f in _files_of(p) if (ds := _read_header(f)) is not None]
        headers = [(f, ds) for f, ds in headers if "Rows" in ds]
        if not headers:
            raise FileFormatError(
                f"folder {str(p)!r} holds no DICOM image files", "give a folder with one DICOM series"
            )
        return _select_series(headers, p, series_uid)
    ds = _read_header(p)
    if ds is None or "Rows" not in ds:
        raise FileFormatError(
            f"{str(p)!r} is not a readable DICOM image (no header or no pixel data description)",
            "give a DICOM image file or a folder of them",
        )
    return [(p, ds)]


def _refuse_duplicates(files: list[Path], keys: list[float]) -> None:
    """Raise when two images of a series sit at the same position (``keys`` sorted, mm along the normal)."""
    for a, b, ka, kb in zip(files, files[1:], keys, keys[1:]):
        if abs(kb - ka) < 1e-3:
            raise InreconError(
                f"{a.name} and {b.name} ({a.parent}) are two images at the same position ({ka:.3f} mm along "
                "the slice normal): copies of one slice, or images of different acquisitions in one series",
                "remove the duplicate files (a series holds one image per position), or read one file",
            )


def _sorted_headers(headers: list[tuple[Path, pydicom.Dataset]]) -> list[tuple[Path, pydicom.Dataset]]:
    """Headers sorted by position along the slice normal, else ``InstanceNumber``, else kept in order."""
    keys = [_sort_key(ds) for _, ds in headers]
    if all(k is not None for k in keys):
        order = np.argsort(keys, kind="stable")
        _refuse_duplicates([headers[i][0] for i in order], [keys[i] for i in order])
    elif all("InstanceNumber" in ds and ds.InstanceNumber is not None for _, ds in headers):
        order = np.argsort([int(ds.InstanceNumber) for _, ds in headers], kind="stable")
    else:
        order = np.arange(len(headers))
    return [headers[i] for i in order]


def _load_slices(headers: list[tuple[Path, pydicom.Dataset]]) -> tuple[np.ndarray, pydicom.Dataset]:
    """The rescaled float32 ``(S, H, W)`` pixels of the files in ``headers`` and the first full dataset."""
    slices = []
    first = None
    for f, _ in headers:
        arr, ds = _pixels(f)
        if first is None:
            first = ds
        slope = float(getattr(ds, "RescaleSlope", 1) or 1)
        intercept = float(getattr(ds, "RescaleIntercept", 0) or 0)
        arr = arr.astype(np.float32) * np.float32(slope) + np.float32(intercept)
        if arr.ndim == 2:
            arr = arr[None]
        if arr.ndim != 3:
            raise ShapeError(
                f"{f}: pixel data has shape {arr.shape}", "give grey-scale images (one sample per pixel)"
            )
        if slices and arr.shape[1:] != slices[0].shape[1:]:
            raise ShapeError(
                f"{f}: image size {arr.shape[1:]} differs from the series' {slices[0].shape[1:]}",
                "give a folder with one series of equally sized slices",
            )
        slices.append(arr)
    return np.concatenate(slices, axis=0), first


def _spacing_of(
    headers: list[tuple[Path, pydicom.Dataset]], first: pydicom.Dataset
) -> tuple[float, float, float]:
    """``(dz, dy, dx)`` in mm of a sorted series (see :func:`read_dicom_ct`)."""
    ps = getattr(first, "PixelSpacing", None)
    dy, dx = (float(ps[0]), float(ps[1])) if ps is not None and len(ps) == 2 else (1.0, 1.0)
    dz = None
    sorted_keys = [_sort_key(ds) for _, ds in headers]
    if len(headers) > 1 and all(k is not None for k in sorted_keys):
        steps = np.abs(np.diff(sorted_keys))
        steps = steps[steps > 1e-6]
        if steps.size:
            dz = float(np.median(steps))
    for attr in ("SpacingBetweenSlices", "SliceThickness"):
        if dz is None and getattr(first, attr, None) not in (None, ""):
            dz = abs(float(getattr(first, attr)))
    dz = dz or 1.0
    return dz, dy, dx


def read_dicom_ct(
    path_or_dir: str | os.PathLike, series_uid: str | None = None
) -> tuple[np.ndarray, tuple[float, float, float], dict]:
    """Read one DICOM file or a folder holding one series.

    Parameters
    ----------
    path_or_dir
        A ``.dcm`` file (single or multi-frame) or a folder of slices; files in the folder that are not
        DICOM are ignored.
    series_uid
        Which series to read when the folder holds several (otherwise an error lists them).

    Returns
    -------
    hu
        float32 ``(S, H, W)``: stored values times ``RescaleSlope`` plus ``RescaleIntercept`` (Hounsfield
        units for CT), slices sorted from the lowest to the highest position along the slice normal.
    spacing_mm
        ``(dz, dy, dx)`` in mm: ``dz`` from the slice positions (median step), else ``SpacingBetweenSlices``,
        ``SliceThickness`` or 1; ``(dy, dx)`` from ``PixelSpacing`` (row spacing, column spacing), else 1.
    meta
        JSON-serialisable dict: DICOM keywords of the first slice (``Modality``, ``PatientID``,
        ``SeriesInstanceUID``, ``KVP``, ``ConvolutionKernel``, ``WindowCenter``, ...) plus ``n_slices`` and
        ``source``.
    """
    p = Path(path_or_dir)
    headers = _sorted_headers(_series_headers(p, series_uid))
    hu, first = _load_slices(headers)
    spacing = _spacing_of(headers, first)
    meta = {
        k: _json_value(first[k].value) for k in _META_KEYS if k in first and first[k].value not in (None, "")
    }
    meta["n_slices"] = int(hu.shape[0])
    meta["source"] = str(p)
    return hu, spacing, meta


# --------------------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------------------
#: ``Manufacturer`` of every file :func:`write_dicom_series` writes: how it recognises its own files.
MANUFACTURER = "inrecon"

#: Files a series folder may hold besides our own slices: the command line's sidecar.
_SIDECARS = ("recon.json",)

_STORAGE = {"CT": CTImageStorage, "MR": MRImageStorage}


def _ds(x: float) -> str:
    return format_number_as_ds(float(x))


def _rescale(values: np.ndarray, rescale_type: str) -> tuple[float, float]:
    """``(slope, intercept)`` (exact as DS strings) so that ``round((v - intercept) / slope)`` fits int16.

    Hounsfield units get 1 HU steps with intercept -1024 (or 0) when they fit; anything else spans the data's
    range with 65000 steps, so that small values (attenuation per mm, MR magnitudes) keep their precision.
    """
    lo, hi = float(values.min()), float(values.max())
    if rescale_type == "HU":
        if lo >= -1024 - 32768 and hi <= 32767 - 1024:
            return 1.0, -1024.0
        if lo >= -32768 and hi <= 32767:
            return 1.0, 0.0
    span = max(hi - lo, 1e-6 * max(abs(lo), abs(hi)), 1e-12)
    slope = float(_ds(span / 65000.0))
    while (hi - lo) / 2 / slope > 32767:  # DS rounding made the step a little too small
        slope = float(_ds(slope * 1.0001))
    return slope, float(_ds((hi + lo) / 2))


def _apply_meta(ds: pydicom.Dataset, meta: dict) -> None:
    notes = {}
    for key, value in meta.items():
        if key in _PROTECTED or key in ("n_slices", "source"):
            continue
        if tag_for_keyword(key) is None:
            if key[:1].isupper():
                raise InreconError(
                    f"meta key {key!r} is not a DICOM keyword",
                    "spell DICOM attributes as pydicom keywords (e.g. 'SeriesDescription'); "
                    "lower-case keys are stored as JSON in ImageComments",
                )
            notes[key] = value
            continue
        try:
            setattr(ds, key, value)
        except (ValueError, TypeError, OverflowError) as exc:
            raise InreconError(
                f"meta value for {key!r} is invalid ({exc})", f"give {key} a valid value"
            ) from None
    if notes:
        ds.ImageComments = json.dumps(notes, default=str)[:10240]


def _volume(values: ArrayLike) -> np.ndarray:
    """``values`` checked and converted to float64 ``(S, H, W)``."""
    arr = values.detach().cpu().numpy() if hasattr(values, "detach") else np.asarray(values)
    require_real(arr, "hu")
    require_ndim(arr, "hu", (2, 3), "(H, W) or (S, H, W) in Hounsfield units")
    require_finite(arr, "hu")
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[None]
    return arr


def _write_spacing(spacing_mm: Sequence[float] | None) -> tuple[float, float, float]:
    """``(dz, dy, dx)`` from ``spacing_mm`` given as ``None``, ``(dy, dx)`` or ``(dz, dy, dx)``."""
    if spacing_mm is None:
        return (1.0, 1.0, 1.0)
    spacing = tuple(float(s) for s in spacing_mm)
    if len(spacing) == 2:
        spacing = (1.0, *spacing)
    if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
        raise InreconError(
            f"spacing_mm {tuple(spacing_mm)} is not (dy, dx) or (dz, dy, dx) positive millimetres",
            "give e.g. spacing_mm=(1.0, 0.8, 0.8)",
        )
    return spacing


def lps_origin(shape: Sequence[int], spacing_mm: Sequence[float]) -> tuple[float, float, float]:
    """Patient (LPS, mm) position of voxel ``(0, 0, 0)`` of a ``(S, H, W)`` volume centred on the origin.

    The convention of every inrecon image file: column index -> +x (patient left), row index -> +y
    (posterior), slice index -> +z (superior), so ``(s, r, c)`` sits at
    ``((c - (W-1)/2) dx, (r - (H-1)/2) dy, (s - (S-1)/2) dz)``; ``spacing_mm`` is ``(dz, dy, dx)``.
    """
    s, h, w = (int(n) for n in shape)
    dz, dy, dx = (float(v) for v in spacing_mm)
    return (-(w - 1) / 2 * dx, -(h - 1) / 2 * dy, -(s - 1) / 2 * dz)


def _is_ours(f: Path) -> pydicom.Dataset | None:
    """The header of ``f`` when it is a slice :func:`write_dicom_series` wrote, else ``None``."""
    if f.suffix.lower() != ".dcm":
        return None
    ds = _read_header(f)
    if ds is None or str(getattr(ds, "Manufacturer", "")) != MANUFACTURER:
        return None
    return ds


def _check_replaceable(owner: Path, ours: dict[Path, pydicom.Dataset], study_uid: str | None) -> None:
    """Refuse unless ``ours`` (our files at ``owner``) are one series of the study ``study_uid``."""
    series = {str(getattr(ds, "SeriesInstanceUID", "")) for ds in ours.values()}
    studies = {str(getattr(ds, "StudyInstanceUID", "")) for ds in ours.values()}
    if len(series) > 1:
        raise InreconError(
            f"{owner} holds {len(series)} DICOM series", "choose an empty or new folder for the new series"
        )
    if study_uid is None or studies != {str(study_uid)}:
        raise InreconError(
            f"{owner} holds an inrecon series of another scan (StudyInstanceUID {', '.join(sorted(studies))})",
            "choose an empty or new folder; a series is only replaced by one of the same scan",
        )


def dicom_targets(
    path: str | os.PathLike, n_slices: int, study_uid: str | None = None, *, overwrite: bool = False
) -> tuple[list[Path], list[Path]]:
    """Where :func:`write_dicom_series` writes ``n_slices`` slices, checked before anything is written.

    A series goes into a new or empty folder (``IM0001.dcm``, ``IM0002.dcm``, ...), or, with ``overwrite``,
    replaces whole an earlier inrecon series of the same study (``study_uid``) that is all the folder holds
    (besides the command line's ``recon.json``); a ``.dcm`` path takes one slice. Any other file in the way
    (written by another tool, or an inrecon series of another scan) is refused, and never touched.

    Returns
    -------
    targets
        The files to write, in slice order.
    stale
        Our earlier files that the new series does not overwrite (to delete after writing).
    """
    p = Path(path)
    if p.suffix.lower() == ".dcm":
        if n_slices != 1:
            raise InreconError(
                f"{p} is a single .dcm file but the image has {n_slices} slices",
                "write a series to a folder (a path without the .dcm suffix)",
            )
        if p.is_dir():
            raise InreconError(f"{p} is a folder", "give a file name, or the folder without the .dcm suffix")
        existing = [p] if p.exists() else []
        targets = [p]
    else:
        if p.exists() and not p.is_dir():
            raise InreconError(f"{p} exists and is not a folder", "give a folder path for a DICOM series")
        entries = sorted(e for e in p.iterdir() if not e.name.startswith(".")) if p.is_dir() else []
        existing = [e for e in entries if e.name not in _SIDECARS or not e.is_file()]
        targets = [p / f"IM{i + 1:04d}.dcm" for i in range(n_slices)]
    ours = {f: ds for f in existing if f.is_file() and (ds := _is_ours(f)) is not None}
    foreign = [f.name for f in existing if f not in ours]
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise InreconError(
            f"{p} holds files inrecon did not write ({shown})",
            "choose an empty or new folder (or file name); inrecon never overwrites or deletes other files",
        )
    if ours and not overwrite:
        raise InreconError(
            f"{'file' if p.suffix else 'folder'} {p} already holds {len(ours)} .dcm files",
            "choose an empty folder or pass overwrite=True",
        )
    if ours:
        _check_replaceable(p, ours, study_uid)
    return targets, [f for f in ours if f not in targets]


@dataclass(frozen=True)
class _Series:
    """What every slice of a series written by :func:`write_dicom_series` shares."""

    modality: str
    study_uid: str
    series_uid: str
    frame_uid: str
    date: str
    time: str
    origin: list[float]
    spacing: tuple[float, float, float]
    thickness: float
    shape: tuple[int, int]
    slope: float
    intercept: float
    rescale_type: str
    value_range: tuple[float, float]


def _new_dataset(target: Path, modality: str) -> FileDataset:
    """An empty CT or MR Image Storage dataset with file meta and a fresh SOP instance UID."""
    file_meta = FileMetaDataset()
    sop_uid = generate_uid()
    file_meta.MediaStorageSOPClassUID = _STORAGE[modality]
    file_meta.MediaStorageSOPInstanceUID = sop_uid
    file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = FileDataset(str(target), {}, file_meta=file_meta, preamble=b"\0" * 128)
    ds.SOPClassUID = _STORAGE[modality]
    ds.SOPInstanceUID = sop_uid
    return ds


def _modality_attributes(ds: FileDataset, series: _Series) -> None:
    """The type 2 attributes of the CT Image or MR Image module (empty where unknown)."""
    if series.modality == "CT":
        ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
        ds.KVP = ""
        return
    ds.ImageType = ["DERIVED", "SECONDARY", "M"]
    ds.ScanningSequence = "RM"
    ds.SequenceVariant = "NONE"
    ds.ScanOptions = ""
    ds.MRAcquisitionType = "2D"
    ds.RepetitionTime = ds.EchoTime = ds.EchoTrainLength = ""


def _slice_dataset(target: Path, s: int, series: _Series) -> FileDataset:
    """The dataset of slice ``s`` (0-based) without ``meta`` overrides and pixel data."""
    dz, dy, dx = series.spacing
    origin = series.origin
    lo, hi = series.value_range
    ds = _new_dataset(target, series.modality)
    ds.StudyInstanceUID = series.study_uid
    ds.SeriesInstanceUID = series.series_uid
    ds.FrameOfReferenceUID = series.frame_uid
    ds.Modality = series.modality
    _modality_attributes(ds, series)
    ds.PatientName = "Anonymous"
    ds.PatientID = "INRECON"
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = series.date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = series.time
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"
    ds.AccessionNumber = ""
    ds.SeriesNumber = 1
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = s + 1
    ds.Manufacturer = MANUFACTURER
    ds.PositionReferenceIndicator = ""
    ds.PatientPosition = "HFS"
    ds.ImagePositionPatient = [_ds(origin[0]), _ds(origin[1]), _ds(origin[2] + s * dz)]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.SliceLocation = _ds(origin[2] + s * dz)
    ds.SliceThickness = _ds(series.thickness)
    ds.SpacingBetweenSlices = _ds(dz)
    ds.PixelSpacing = [_ds(dy), _ds(dx)]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = series.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 1
    ds.RescaleIntercept = _ds(series.intercept)
    ds.RescaleSlope = _ds(series.slope)
    ds.RescaleType = series.rescale_type
    ds.WindowCenter = _ds((lo + hi) / 2)
    ds.WindowWidth = _ds(max(hi - lo, 1.0 if series.rescale_type == "HU" else 1e-6))
    return ds


def _save_dataset(ds: FileDataset, target: Path) -> None:
    """Write ``ds`` to ``target`` atomically as explicit VR little endian."""
    with atomic_path(target, suffix=".dcm") as tmp:
        if _PYDICOM3:
            pydicom.dcmwrite(tmp, ds, enforce_file_format=True)
        else:  # pragma: no cover - pydicom 2.x
            ds.is_little_endian, ds.is_implicit_VR = True, False
            ds.save_as(tmp, write_like_original=False)


def _series_of(arr: np.ndarray, spacing: tuple, meta: dict, modality: str, rescale_type: str) -> _Series:
    """The shared description of a series of ``arr`` (pops the identity keys from ``meta``)."""
    n, h, w = arr.shape
    slope, intercept = _rescale(arr, rescale_type)
    now = datetime.datetime.now()
    origin = meta.pop("ImagePositionPatient", None)
    thickness = meta.pop("SliceThickness", None)
    return _Series(
        modality=modality,
        study_uid=str(meta.pop("StudyInstanceUID", None) or generate_uid()),
        series_uid=generate_uid(),
        frame_uid=str(meta.pop("FrameOfReferenceUID", None) or generate_uid()),
        date=now.strftime("%Y%m%d"),
        time=now.strftime("%H%M%S"),
        origin=[float(v) for v in (lps_origin((n, h, w), spacing) if origin is None else origin)],
        spacing=spacing,
        thickness=float(spacing[0] if thickness is None else thickness),
        shape=(h, w),
        slope=slope,
        intercept=intercept,
        rescale_type=rescale_type,
        value_range=(float(arr.min()), float(arr.max())),
    )


def write_dicom_series(
    path: str | os.PathLike,
    values: ArrayLike,
    spacing_mm: Sequence[float] | None = None,
    meta: dict | None = None,
    *,
    modality: str = "CT",
    rescale_type: str = "HU",
    overwrite: bool = False,
) -> list[Path]:
    """Write a real image as a CT or MR Image Storage series (one file per slice, each atomically).

    Parameters
    ----------
    path
        ``.dcm`` file (a single slice) or a folder (``IM0001.dcm``, ``IM0002.dcm``, ... in slice order); what
        may already be there is decided by :func:`dicom_targets`.
    values
        Real array or tensor ``(H, W)`` or ``(S, H, W)``, stored as int16 with the ``RescaleSlope`` and
        ``RescaleIntercept`` that keep them (see :func:`_rescale`).
    spacing_mm
        ``(dy, dx)`` or ``(dz, dy, dx)`` in mm (default 1 mm); ``PixelSpacing`` is ``(dy, dx)``. Orientation
        and position follow :func:`lps_origin`: ``ImageOrientationPatient`` ``(1, 0, 0, 0, 1, 0)`` and slice
        ``s`` at ``ImagePositionPatient = origin + s * dz * (0, 0, 1)``.
    meta
        Overrides by DICOM keyword (``StudyInstanceUID``, ``FrameOfReferenceUID``, ``SeriesDescription``,
        ``PatientID``, ``SliceThickness``, ``ImagePositionPatient`` of the first slice, ...); the series and
        instance UIDs are always fresh (``StudyInstanceUID`` and ``FrameOfReferenceUID`` too unless given)
        and pixel-describing attributes cannot be overridden. Lower-case keys are stored as JSON in
        ``ImageComments``.
    modality
        ``"CT"`` (CT Image Storage) or ``"MR"`` (MR Image Storage).
    rescale_type
        ``RescaleType``: ``"HU"`` (values are Hounsfield units; CT only) or ``"US"`` (unspecified units).
    overwrite
        Allow replacing an earlier inrecon series of the same study (see :func:`dicom_targets`).

    Returns
    -------
    list of Path
        The files written, in slice order.
    """
    if (
        modality not in _STORAGE
        or rescale_type not in ("HU", "US")
        or (modality, rescale_type) == ("MR", "HU")
    ):
        raise InreconError(
            f"cannot write a {modality} series with RescaleType {rescale_type}",
            'use modality "CT" (RescaleType "HU" or "US") or "MR" ("US")',
        )
    arr = _volume(values)
    meta = dict(meta or {})
    targets, stale = dicom_targets(path, arr.shape[0], meta.get("StudyInstanceUID"), overwrite=overwrite)
    series = _series_of(arr, _write_spacing(spacing_mm), meta, modality, rescale_type)
    stored = np.clip(np.rint((arr - series.intercept) / series.slope), -32768, 32767).astype("<i2")
    for s, target in enumerate(targets):
        ds = _slice_dataset(target, s, series)
        _apply_meta(ds, meta)
        ds.PixelData = stored[s].tobytes()
        _save_dataset(ds, target)
    for f in stale:  # our earlier, longer series of the same scan
        f.unlink()
    return targets


def write_dicom_ct(
    path: str | os.PathLike,
    hu: ArrayLike,
    spacing_mm: Sequence[float] | None = None,
    meta: dict | None = None,
    *,
    overwrite: bool = False,
) -> list[Path]:
    """Write Hounsfield units ``hu`` ``(H, W)`` or ``(S, H, W)`` as a CT Image Storage series.

    :func:`write_dicom_series` with ``modality="CT"`` and ``rescale_type="HU"``: int16 with
    ``RescaleIntercept`` -1024 and ``RescaleSlope`` 1 when the values fit (0.5 HU rounding), else a slope that
    spans the range.
    """
    return write_dicom_series(
        path, hu, spacing_mm, meta, modality="CT", rescale_type="HU", overwrite=overwrite
    )
