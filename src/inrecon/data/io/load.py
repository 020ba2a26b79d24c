"""Open any supported scan file as a scan container: :func:`load_scan`, and summarise it: :func:`describe`.

The format is recognised from the file's content (magic bytes, HDF5 keys), the suffix only breaking ties:

==========================  ==================================================================================
format                      becomes
==========================  ==================================================================================
inrecon HDF5                :func:`~inrecon.data.io.hdf5.read_scan` (root holds ``kspace``, ``sinogram`` or
                            ``volume``); an HDF5 file with only a real ``image`` dataset becomes a VolumeScan
fastMRI HDF5                complex ``kspace`` of rank 4 (multi-coil) or 3 (single-coil) with a fastMRI
                            dataset or attribute: :func:`~inrecon.data.io.fastmri.read_fastmri` of one slice
                            (option ``slice``, default the middle one; ``crop=True`` crops to the recon matrix)
ISMRMRD / MRD HDF5          a group with ``xml`` and ``data``: :func:`~inrecon.data.io.ismrmrd.read_ismrmrd`
                            (Cartesian or non-Cartesian, noise scans in provenance; option ``slice``)
Data Exchange HDF5          ``exchange/data`` and ``exchange/theta`` (tomopy, dxchange: raw projections with
                            flat and dark fields): :func:`~inrecon.data.io.dxchange.read_dxchange` of one
                            detector row as a parallel-beam CTScan (options ``slice``, ``bin``, ``center``,
                            ``crop``, ``air``; the rotation axis found from the data unless ``center`` is
                            given, the beam's drift beside the object subtracted unless ``air=False``)
MATLAB ``.mat`` (v5, v7.3)  variables found by name: :func:`~inrecon.data.io.matlab.read_matlab_scan`
                            (option ``image_shape`` for non-Cartesian data)
BART ``.cfl/.hdr``          k-space in BART order (READ, PHS1, PHS2, COIL): coils first, singleton spatial
                            axes dropped, e.g. (1, 180, 230, 8) -> ``kspace`` (8, 180, 230). With
                            ``traj=`` (a BART trajectory file or array, ``(3, readout, spokes)``) the samples
                            are non-Cartesian (:func:`~inrecon.data.io.bart.bart_trajectory`); without one,
                            data that cannot be Cartesian (radial spokes, spiral interleaves:
                            :func:`~inrecon.data.io.bart.noncartesian_reason`) is refused. A BART image (a
                            MAPS axis longer than 1, as ``bart pics`` writes) becomes a VolumeScan of its
                            root-sum-of-squares (:func:`~inrecon.data.io.bart.read_cfl_image`)
``.npy``                    complex ``(C, H, W)`` / ``(C, D, H, W)`` (or one coil ``(H, W)``) -> Cartesian
                            MRIScan; real ``(H, W)`` / ``(D, H, W)`` -> VolumeScan
``.npz``                    keys of the HDF5 contract (``kspace``, ``mask``, ``sinogram``, ``angles``,
                            ``volume``, geometry scalars such as ``geometry``, ``n_detectors``, ...) -> as HDF5;
                            a single array -> as ``.npy`` (an array named ``hu`` counts as Hounsfield units)
NIfTI ``.nii/.nii.gz``      VolumeScan (axes reversed to array order, spacing from the header)
DICOM file or folder        VolumeScan; CT in HU is windowed to [-800, 400] and scaled to [0, 1] unless
                            ``hu_window=None`` (or another window) is given (a CT series with RescaleType
                            US, values not in HU, is kept as stored); spacing and the DICOM identity
                            (``provenance["dicom"]``) are kept, and outputs join the input's study
==========================  ==================================================================================

Every format also takes ``reference=`` (an image file :func:`~inrecon.data.io.images.read_image` reads, e.g.
a BART ``img.cfl``): it becomes the scan's ``target``, so that reconstructions are scored against it.
"""

from __future__ import annotations

import dataclasses
import math
import os
import zipfile
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from inrecon.data.io.bart import bart_trajectory, noncartesian_reason, read_cfl, read_cfl_image
from inrecon.data.io.dicom import read_dicom_ct
from inrecon.data.io.dxchange import is_dxchange, read_dxchange
from inrecon.data.io.fastmri import is_fastmri, read_fastmri
from inrecon.data.io.hdf5 import read_scan
from inrecon.data.io.ismrmrd import ismrmrd_group, read_ismrmrd
from inrecon.data.io.matlab import read_matlab_scan
from inrecon.data.phantoms import HU_WINDOW, hu_to_unit
from inrecon.data.scans import CTGeometry, CTScan, MRIScan, Scan, SeriesScan, VolumeScan
from inrecon.errors import FileFormatError, InreconError, ShapeError

__all__ = ["SUPPORTED_FORMATS", "add_input_options", "describe", "detect_format", "load_scan", "scan_options"]

SUPPORTED_FORMATS = (
    "inrecon HDF5 (.h5)",
    "fastMRI HDF5 (.h5)",
    "ISMRMRD/MRD HDF5 (.h5, .mrd)",
    "Data Exchange HDF5 (.h5, tomopy)",
    "MATLAB (.mat)",
    "BART .cfl/.hdr",
    "NumPy .npy/.npz",
    "NIfTI (.nii, .nii.gz)",
    "DICOM (file or series folder)",
)

_OPTIONS = {
    "fastmri": {"slice", "crop"},
    "ismrmrd": {"slice"},
    "dxchange": {"slice", "bin", "center", "crop", "air", "pitch_mm"},
    "matlab": {"image_shape"},
    "dicom": {"hu_window", "series_uid"},
    "npz": {"hu_window"},
    "npy": {"hu_window"},
    "nifti": {"hu_window"},
    "hdf5": set(),
    "bart": {"traj"},
}

_AUTO = "auto"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def _unsupported(p: Path, why: str) -> FileFormatError:
    return FileFormatError(
        f"cannot read {str(p)!r}: {why}",
        f"give a file in one of the supported formats: {'; '.join(SUPPORTED_FORMATS)}",
    )


def _bart_base(p: Path) -> Path | None:
    base = p.with_suffix("") if p.suffix in (".cfl", ".hdr") else p
    if base.with_suffix(".cfl").exists() or base.with_suffix(".hdr").exists():
        return base
    return None


def detect_format(path: str | os.PathLike) -> str:
    """The format of ``path``: ``"hdf5"``, ``"fastmri"``, ``"ismrmrd"``, ``"dxchange"``, ``"matlab"``, ``"bart"``, ``"npy"``,
    ``"npz"``, ``"nifti"`` or ``"dicom"``; raises :class:`~inrecon.errors.FileFormatError` for anything else."""
    p = Path(path)
    if p.suffix in (".cfl", ".hdr") or (not p.exists() and _bart_base(p) is not None):
        return "bart"
    if not p.exists():
        raise FileFormatError(f"{str(p)!r} does not exist", "check the path")
    if p.is_dir():
        return "dicom"
    try:
        with open(p, "rb") as fh:
            head = fh.read(2048)
    except OSError as exc:
        raise _unsupported(p, f"it cannot be opened ({exc.__class__.__name__})") from None
    if not head:
        raise _unsupported(p, "the file is empty")
    if head[:6] == b"MATLAB" or p.suffix.lower() == ".mat":
        return "matlab"
    if any(head[o : o + 8] == _HDF5_MAGIC for o in (0, 512, 1024)):
        try:
            with h5py.File(p, "r") as f:
                if is_fastmri(f):
                    return "fastmri"
                if is_dxchange(f):
                    return "dxchange"
                return "ismrmrd" if ismrmrd_group(f) is not None else "hdf5"
        except OSError:
            return "hdf5"  # read_scan reports the corruption
    if head[:6] == b"\x93NUMPY":
        return "npy"
    if head[:4] == b"PK\x03\x04":
        return "npz"
    name = p.name.lower()
    if head[344:348] in (b"n+1\x00", b"ni1\x00") or (head[:2] == b"\x1f\x8b" and name.endswith(".nii.gz")):
        return "nifti"
    if head[128:132] == b"DICM" or name.endswith(".dcm"):
        return "dicom"
    raise _unsupported(p, "its content matches none of the supported formats")


def load_scan(path: str | os.PathLike, **options: Any) -> Scan:
    """Read ``path`` in any supported format (module docstring) as an MRIScan, CTScan or VolumeScan.

    Parameters
    ----------
    path
        File, BART base name, or DICOM folder.
    **options
        ``slice`` (fastMRI, ISMRMRD, Data Exchange: slice or detector row, default the middle one); ``crop``
        (fastMRI: crop to the recon matrix; Data Exchange: the detector window that holds the object);
        ``bin``, ``center`` and ``pitch_mm`` (Data Exchange: detector columns per cell, rotation axis column or
        "auto", the column pitch at the sample in mm, default the file's);
        ``traj`` (BART: trajectory ``.cfl`` path or BART-order array); ``image_shape``
        (MATLAB, non-Cartesian); ``hu_window`` (DICOM, ``.npy``, ``.npz``, NIfTI: ``(lo, hi)`` HU window to
        scale to [0, 1], ``None`` to keep values as stored; the default windows CT DICOM and ``hu`` arrays to
        [-800, 400]); ``series_uid`` (DICOM folders with several series); ``reference`` (any format: an
        image file that becomes the scan's ``target``).

    Returns
    -------
    MRIScan | CTScan | VolumeScan
        With ``provenance["source"]`` and ``provenance["format"]`` set.
    """
    p = Path(path)
    fmt = detect_format(p)
    reference = options.pop("reference", None)
    unknown = set(options) - _OPTIONS[fmt]
    if unknown:
        allowed = ", ".join(sorted(_OPTIONS[fmt] | {"reference"}))
        raise InreconError(
            f"option(s) {', '.join(sorted(unknown))} do not apply to {fmt} files ({p.name})",
            f"options for this format: {allowed}",
        )
    scan = _LOADERS[fmt](p, options)
    scan.provenance.setdefault("source", str(p))
    scan.provenance.setdefault("format", fmt)
    return scan if reference is None else _with_reference(scan, reference)


def add_input_options(parser) -> None:
    """Add the command-line flags of :func:`load_scan`'s reader options (``--traj``, ``--crop``, ``--bin``,
    ``--center``, ``--pitch``, ``--reference``) to an argparse parser; :func:`scan_options` collects them."""
    parser.add_argument(
        "--traj", help="BART trajectory (.cfl/.hdr, BART dims (3, readout, spokes)) of the input"
    )
    parser.add_argument(
        "--crop",
        action="store_true",
        help="fastMRI: crop to the recon matrix as fastMRI does; Data Exchange: keep the detector window "
        "that holds the object",
    )
    parser.add_argument(
        "--bin", type=int, help="Data Exchange: average this many detector columns into one cell [1]"
    )
    parser.add_argument(
        "--center",
        type=float,
        help="Data Exchange: the rotation axis as a detector column (0 = the first column) [found from the data]",
    )
    parser.add_argument(
        "--pitch",
        type=float,
        help="Data Exchange: the detector column pitch at the sample in mm (the effective pixel size), so that "
        "outputs carry millimetres [the file's, else lengths in column pitches]",
    )
    parser.add_argument("--reference", help="reference image file (e.g. BART img.cfl): the scan's target")


def scan_options(args) -> dict:
    """The :func:`load_scan` options given on a command line (``--slice``, ``--traj``, ``--crop``,
    ``--reference``; absent ones left out, so that formats they do not apply to are not bothered)."""
    found = {
        "slice": getattr(args, "slice", None),
        "traj": getattr(args, "traj", None),
        "crop": getattr(args, "crop", False) or None,
        "bin": getattr(args, "bin", None),
        "center": getattr(args, "center", None),
        "pitch_mm": getattr(args, "pitch", None),
        "reference": getattr(args, "reference", None),
    }
    return {k: v for k, v in found.items() if v is not None}


def _with_reference(scan: Scan, reference) -> Scan:
    """``scan`` with the image file ``reference`` as its target (checked against the image grid)."""
    from inrecon.data.io.images import read_image

    if isinstance(scan, SeriesScan):
        raise InreconError("a series takes no reference file", "store per-frame targets in the series file")
    ref = np.asarray(read_image(reference))
    if tuple(ref.shape) != tuple(scan.image_shape):
        raise ShapeError(
            f"reference {reference} has shape {ref.shape} but the scan's image grid is {tuple(scan.image_shape)}",
            "give a reference image on the reconstruction grid",
        )
    if np.iscomplexobj(ref) and not isinstance(scan, MRIScan):
        ref = np.abs(ref)
    scan = dataclasses.replace(scan, target=ref, roi=None)
    scan.provenance["reference"] = str(reference)
    return scan


# --------------------------------------------------------------------------------------------------------
# per-format loaders
# --------------------------------------------------------------------------------------------------------
def _load_hdf5(p: Path) -> Scan:
    try:
        with h5py.File(p, "r") as f:
            image_only = "image" in f and not any(k in f for k in ("kspace", "sinogram", "volume"))
            image = f["image"][()] if image_only and "modality" not in f.attrs else None
    except OSError:
        image = None  # read_scan gives the precise error
    if image is not None:
        if np.iscomplexobj(image):
            raise InreconError(
                f"{p}: holds a complex 'image' but no scan (kspace, sinogram or volume)",
                "load it with read_image; a VolumeScan needs a real volume",
            )
        return VolumeScan(volume=np.asarray(image, dtype=np.float32), provenance={"source": str(p)})
    return read_scan(p)


def _slice_option(slice_index) -> int | None:
    if slice_index is not None and (
        isinstance(slice_index, bool) or not isinstance(slice_index, int | np.integer)
    ):
        raise InreconError(f"slice={slice_index!r} is not an integer", "give slice=<index>")
    return None if slice_index is None else int(slice_index)


def _load_fastmri(p: Path, slice_index: int | None, crop: bool = False) -> MRIScan:
    slice_index = _slice_option(slice_index)
    if slice_index is None:
        with h5py.File(p, "r") as f:
            slice_index = int(f["kspace"].shape[0]) // 2
    return read_fastmri(p, slice=slice_index, crop=bool(crop))


def _load_bart(p: Path, traj=None) -> MRIScan | VolumeScan:
    base = _bart_base(p) or p
    arr = read_cfl(base)
    dims = tuple(arr.shape)
    prov = {"source": str(base), "format": "bart", "bart_dims": list(dims)}
    if arr.ndim > 4 and dims[4] > 1 and traj is None:  # a MAPS axis: an image, as `bart pics` writes it
        return VolumeScan(volume=np.asarray(read_cfl_image(base), dtype=np.float32), provenance=prov)
    if arr.ndim > 4:
        extra = dims[4:]
        if math.prod(extra) > 1:
            raise ShapeError(
                f"{base}: BART array {dims} has axes beyond COIL (MAPS, TE, ...) of size {extra}",
                "extract one volume first (e.g. `bart slice 4 0 in out`)",
            )
        arr = arr.reshape(dims[:4])
    arr = arr.reshape(arr.shape + (1,) * (4 - arr.ndim))
    if traj is not None:
        return _bart_noncartesian(arr, traj, prov)
    ksp = np.transpose(arr, (3, 0, 1, 2))  # (COIL, READ, PHS1, PHS2)
    spatial = [ax for ax in (1, 2, 3) if ksp.shape[ax] > 1]
    if len(spatial) < 2:
        raise ShapeError(
            f"{base}: BART array {dims} has fewer than two spatial axes larger than 1",
            "give 2D (READ=1 or PHS2=1) or 3D Cartesian k-space, or non-Cartesian data with --traj",
        )
    ksp = ksp.reshape((ksp.shape[0], *(ksp.shape[ax] for ax in spatial)))
    why = noncartesian_reason(ksp)
    if why is not None:
        raise ShapeError(
            f"{base}: BART array {dims} cannot be Cartesian k-space: {why}",
            "pass its trajectory (--traj traj.cfl, or load_scan(path, traj=...)), e.g. made by `bart traj`",
        )
    return MRIScan(kspace=np.ascontiguousarray(ksp), provenance=prov)


def _bart_noncartesian(arr: np.ndarray, traj, prov: dict) -> MRIScan:
    """BART samples ``(READ, PHS1, PHS2, COIL)`` along the trajectory ``traj`` (file or array)."""
    if isinstance(traj, str | os.PathLike):
        prov["trajectory_source"] = str(traj)
        traj = read_cfl(_bart_base(Path(traj)) or Path(traj))
    coords, shape = bart_trajectory(np.asarray(traj), tuple(arr.shape[:3]))
    ksp = np.moveaxis(arr, 3, 0).reshape(arr.shape[3], -1, order="F")
    return MRIScan(kspace=np.ascontiguousarray(ksp), trajectory=coords, image_shape=shape, provenance=prov)


def _load_npy(p: Path) -> np.ndarray:
    try:
        with open(p, "rb") as fh:
            return np.load(fh, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise FileFormatError(
            f"cannot read {str(p)!r} as .npy ({str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__})",
            "the file is truncated, corrupt or holds Python objects; save a plain numeric array with np.save",
        ) from None


def _window(arr: np.ndarray, hu_window) -> np.ndarray:
    lo, hi = (float(v) for v in hu_window)
    if not hi > lo:
        raise InreconError(f"hu_window {tuple(hu_window)} is empty", "give hu_window=(lo, hi) with hi > lo")
    return hu_to_unit(arr, (lo, hi)).astype(np.float32)


def _from_array(arr: np.ndarray, p: Path, hu_window, fmt: str) -> Scan:
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise FileFormatError(f"{p}: array has dtype {arr.dtype}", "store a numeric array")
    prov: dict[str, Any] = {"source": str(p), "format": fmt}
    if np.iscomplexobj(arr):
        if arr.ndim == 2:
            arr = arr[None]
        if arr.ndim not in (3, 4):
            raise ShapeError(
                f"{p}: complex array has shape {arr.shape}",
                "store Cartesian k-space as (coils, H, W) or (coils, D, H, W)",
            )
        return MRIScan(kspace=arr, provenance=prov)
    if arr.ndim not in (2, 3):
        raise ShapeError(f"{p}: real array has shape {arr.shape}", "store a volume as (H, W) or (D, H, W)")
    vol = arr.astype(np.float32)
    if hu_window not in (None, _AUTO):
        vol = _window(arr, hu_window)
        prov["hu_window"] = [float(v) for v in hu_window]
    return VolumeScan(volume=vol, provenance=prov)


def _scalar(d: dict, key: str, p: Path, required: bool = True):
    if key not in d:
        if required:
            raise FileFormatError(f"{p}: key {key!r} is missing", f"add {key!r} as in the HDF5 contract")
        return None
    v = np.asarray(d[key])
    return v.item() if v.ndim == 0 else v.tolist()


def _load_npz(p: Path, hu_window) -> Scan:
    try:
        with open(p, "rb") as fh, np.load(fh, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise FileFormatError(
            f"cannot read {str(p)!r} as .npz ({str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__})",
            "the file is truncated, corrupt or holds Python objects; save it again with np.savez",
        ) from None
    if any(k in d for k in ("kspace", "sinogram", "volume")):
        return _scan_from_arrays(d, p)
    big = {k: v for k, v in d.items() if np.asarray(v).size > 16}
    if len(big) == 1:
        key, arr = next(iter(big.items()))
        if hu_window == _AUTO and key.lower() == "hu":
            hu_window = HU_WINDOW
        scan = _from_array(arr, p, hu_window, "npz")
        scan.provenance["key"] = key
        for k in d:
            if k != key:
                scan.provenance[k] = _scalar(d, k, p)
        spacing = _spacing_from(scan.provenance, arr.ndim)
        if spacing is not None:
            scan.provenance["spacing_mm"] = spacing
        return scan
    raise FileFormatError(
        f"{p}: holds arrays {sorted(d)} but none of 'kspace', 'sinogram' or 'volume'",
        "name the arrays as the HDF5 contract does, or save a single array (plus scalars)",
    )


def _spacing_from(prov: dict, ndim: int) -> list[float] | None:
    """``spacing_mm`` in array order from ``spacing_mm`` or ``pixel_spacing_mm`` (+ ``slice_spacing_mm``)."""
    try:
        if "spacing_mm" in prov:
            sp = [float(v) for v in np.atleast_1d(prov["spacing_mm"])]
        elif "pixel_spacing_mm" in prov:
            sp = [float(v) for v in np.atleast_1d(prov["pixel_spacing_mm"])]
            if ndim == 3 and "slice_spacing_mm" in prov:
                sp = [float(prov["slice_spacing_mm"]), *sp]
        else:
            return None
    except (TypeError, ValueError):
        return None
    return sp if len(sp) == ndim else None


def _scan_from_arrays(d: dict, p: Path) -> Scan:
    """The HDF5 contract applied to a mapping of arrays (an ``.npz``); scalars play the attributes."""
    modality = _scalar(d, "modality", p, required=False)
    if modality is None:
        found = [m for k, m in (("kspace", "mri"), ("sinogram", "ct"), ("volume", "volume")) if k in d]
        if len(found) != 1:
            raise FileFormatError(
                f"{p}: cannot tell the modality (keys: {sorted(d)})",
                "store exactly one of 'kspace', 'sinogram' or 'volume', or a 'modality' scalar",
            )
        modality = found[0]
    used = {"modality", "kspace", "mask", "trajectory", "dcf", "image_shape", "sens_maps", "target", "roi"}
    geom_keys = {"sinogram", "angles", "volume", *CTGeometry.ATTRS}
    prov = {k: _scalar(d, k, p) for k in d if k not in used | geom_keys and np.asarray(d[k]).size <= 16}
    prov["source"] = str(p)
    opt = {k: d[k] for k in ("target", "roi") if k in d}
    if modality == "mri":
        if "sens_maps" in d:
            opt["sens_maps"] = d["sens_maps"]
        if "kspace" not in d:
            raise FileFormatError(f"{p}: key 'kspace' is missing", "add 'kspace' as in the HDF5 contract")
        if "trajectory" in d:
            shape = _scalar(d, "image_shape", p)
            return MRIScan(
                kspace=d["kspace"],
                trajectory=d["trajectory"],
                image_shape=tuple(int(s) for s in np.atleast_1d(shape)),
                dcf=d.get("dcf"),
                provenance=prov,
                **opt,
            )
        return MRIScan(kspace=d["kspace"], mask=d.get("mask"), provenance=prov, **opt)
    if modality == "ct":
        kind = str(_scalar(d, "geometry", p))
        fan = kind == "fan"
        geometry = CTGeometry(
            kind=kind,
            n_detectors=int(_scalar(d, "n_detectors", p)),
            detector_spacing_mm=float(_scalar(d, "detector_spacing_mm", p)),
            image_shape=tuple(int(s) for s in np.atleast_1d(_scalar(d, "image_shape", p))),
            pixel_size_mm=float(_scalar(d, "pixel_size_mm", p, required=False) or 1.0),
            source_to_center_mm=float(_scalar(d, "source_to_center_mm", p)) if fan else None,
            center_to_detector_mm=float(_scalar(d, "center_to_detector_mm", p)) if fan else None,
        )
        for k in ("sinogram", "angles"):
            if k not in d:
                raise FileFormatError(f"{p}: key {k!r} is missing", f"add {k!r} as in the HDF5 contract")
        return CTScan(sinogram=d["sinogram"], angles=d["angles"], geometry=geometry, provenance=prov, **opt)
    if modality == "volume":
        if "volume" not in d:
            raise FileFormatError(f"{p}: key 'volume' is missing", "add 'volume' as in the HDF5 contract")
        return VolumeScan(volume=d["volume"], provenance=prov, **opt)
    raise InreconError(f"{p}: unknown modality {modality!r}", 'use "mri", "ct" or "volume"')


def _load_nifti(p: Path, hu_window) -> VolumeScan:
    import nibabel as nib

    from inrecon.data.io.images import read_image

    arr = read_image(p)
    while arr.ndim > 3 and arr.shape[0] == 1:
        arr = arr[0]
    if np.iscomplexobj(arr):
        raise InreconError(f"{p}: NIfTI data is complex", "store the magnitude for volume fitting")
    scan = _from_array(arr, p, hu_window, "nifti")
    zooms = nib.load(str(p)).header.get_zooms()[: arr.ndim]
    scan.provenance["spacing_mm"] = [float(z) for z in zooms[::-1]]
    return scan


def _load_dicom(p: Path, hu_window, series_uid) -> VolumeScan:
    hu, spacing, meta = read_dicom_ct(p, series_uid=series_uid)
    is_ct = meta.get("Modality") == "CT" and meta.get("RescaleType", "HU") == "HU"  # "US": not HU
    if hu_window == _AUTO:
        hu_window = HU_WINDOW if is_ct else None
    vol = hu[0] if hu.shape[0] == 1 else hu
    prov: dict[str, Any] = {
        "source": str(p),
        "format": "dicom",
        "spacing_mm": list(spacing[-vol.ndim :]),
        "dicom": {k: v for k, v in meta.items() if k not in ("source",)},
    }
    if hu_window is not None:
        vol = _window(vol, hu_window)
        prov["hu_window"] = [float(v) for v in hu_window]
    return VolumeScan(volume=vol, provenance=prov)


_LOADERS = {
    "hdf5": lambda p, o: _load_hdf5(p),
    "fastmri": lambda p, o: _load_fastmri(p, o.get("slice"), o.get("crop", False)),
    "ismrmrd": lambda p, o: read_ismrmrd(p, slice=_slice_option(o.get("slice"))),
    "dxchange": lambda p, o: read_dxchange(
        p,
        slice=_slice_option(o.get("slice")),
        bin=o.get("bin", 1),
        center=o.get("center", "auto"),
        crop=bool(o.get("crop", False)),
        air=bool(o.get("air", True)),
        pitch_mm=o.get("pitch_mm"),
    ),
    "matlab": lambda p, o: read_matlab_scan(p, image_shape=o.get("image_shape")),
    "bart": lambda p, o: _load_bart(p, o.get("traj")),
    "npy": lambda p, o: _from_array(_load_npy(p), p, o.get("hu_window"), "npy"),
    "npz": lambda p, o: _load_npz(p, o.get("hu_window", _AUTO)),
    "nifti": lambda p, o: _load_nifti(p, o.get("hu_window")),
    "dicom": lambda p, o: _load_dicom(p, o.get("hu_window", _AUTO), o.get("series_uid")),
}


# --------------------------------------------------------------------------------------------------------
# describe
# --------------------------------------------------------------------------------------------------------
def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, torch.Tensor):
        v = v.detach().cpu().numpy()
    if isinstance(v, np.ndarray):
        small = v.size <= 64 and not np.iscomplexobj(v)
        return v.tolist() if small else f"array{tuple(v.shape)} {v.dtype}"
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if v is None or isinstance(v, str | int | float | bool):
        return v
    return str(v)


def _tensor_info(t: torch.Tensor | None) -> dict | None:
    if t is None:
        return None
    return {"shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", "")}


def describe(scan: Scan) -> dict:
    """A JSON-serialisable summary of a scan (for ``inrecon info``).

    Keys: ``modality``, ``image_shape``, ``provenance`` and per modality: MRI ``cartesian``, ``coils``,
    ``kspace`` (shape, dtype), ``mask``/``trajectory``, ``acceleration``, ``sampled_fraction``,
    ``sens_maps``; CT ``sinogram``, ``views``, ``angles_deg`` (first, last), ``geometry``; volume ``volume``,
    ``range``; everywhere ``target`` and ``roi`` (shape, dtype or ``None``).
    """
    out: dict[str, Any] = {"modality": scan.modality, "image_shape": list(scan.image_shape)}
    if isinstance(scan, MRIScan):
        out["cartesian"] = scan.is_cartesian
        out["coils"] = scan.n_coils
        out["kspace"] = _tensor_info(scan.kspace)
        if scan.is_cartesian:
            out["mask"] = _tensor_info(scan.mask)
            out["sampled_fraction"] = round(float(scan.mask.float().mean()), 6)
        else:
            out["trajectory"] = _tensor_info(scan.trajectory)
            out["dcf"] = _tensor_info(scan.dcf)
        out["acceleration"] = round(float(scan.acceleration), 4)
        out["sens_maps"] = _tensor_info(scan.sens_maps)
    elif isinstance(scan, CTScan):
        out["sinogram"] = _tensor_info(scan.sinogram)
        out["views"] = scan.n_views
        a = torch.rad2deg(scan.angles.detach().cpu().double())
        out["angles_deg"] = [round(float(a[0]), 4), round(float(a[-1]), 4)]
        geom = scan.geometry.to_attrs()
        geom["magnification"] = scan.geometry.magnification
        out["geometry"] = _jsonable(geom)
    elif isinstance(scan, VolumeScan):
        out["volume"] = _tensor_info(scan.volume)
        v = scan.volume
        out["range"] = [float(v.min()), float(v.max())]
    elif isinstance(scan, SeriesScan):
        f0 = scan.frames[0]
        out.update(frames=scan.n_frames, coils=f0.n_coils, sens_maps=_tensor_info(f0.sens_maps))
        out["acceleration"] = [round(float(fr.acceleration), 4) for fr in scan.frames]
    else:
        raise InreconError(f"cannot describe {type(scan).__name__}", "pass an MRIScan, CTScan or VolumeScan")
    target = scan.target
    if isinstance(scan, VolumeScan) and target is scan.volume:
        out["target"] = "the volume itself"
    else:
        out["target"] = _tensor_info(target)
    out["roi"] = _tensor_info(scan.roi)
    out["provenance"] = _jsonable(scan.provenance)
    return out
