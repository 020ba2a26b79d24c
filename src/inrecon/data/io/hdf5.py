"""The inrecon HDF5 scan contract: :func:`read_scan` and :func:`write_scan`.

Layout (datasets at the file root; attributes on the root group):

MRI, Cartesian
    ``kspace`` complex64 ``(C, H, W)`` or ``(C, D, H, W)``, centred orthonormal, zero where not sampled;
    ``mask`` uint8 ``(H, W)`` or ``(D, H, W)``.
MRI, non-Cartesian
    ``kspace`` complex64 ``(C, K)``; ``trajectory`` float32 ``(K, 2)`` or ``(K, 3)`` in radians in [-pi, pi);
    attribute ``image_shape``; optional ``dcf`` ``(K,)``.
CT
    ``sinogram`` float32 ``(V, N)``; ``angles`` float32 ``(V,)`` radians; attributes ``geometry``
    ("fan"/"parallel"), ``source_to_center_mm``, ``center_to_detector_mm`` (fan), ``detector_spacing_mm``,
    ``n_detectors``, ``pixel_size_mm``, ``image_shape``.
Volume
    ``volume`` float32 ``(D, H, W)``.
MRI real-time series (attribute ``modality = "mri-series"``)
    ``kspace`` complex64 ``(T, C, H, W)``: centred orthonormal Cartesian k-space per frame, zero where not
    sampled; ``mask`` uint8 ``(T, H, W)``; optional ``sens_maps`` ``(C, H, W)`` shared by all frames (estimated
    by the reconstruction when absent), ``target`` ``(T, H, W)``, ``roi`` ``(H, W)`` or ``(T, H, W)``;
    attribute ``n_frames``.
Optional everywhere
    ``sens_maps`` complex64 ``(C, H, W)``, ``target`` (reference on the output grid), ``roi`` uint8,
    attribute ``modality`` ("mri", "ct", "volume"), any other attributes as provenance.

Complex datasets may be stored natively (h5py's compound ``r``/``i``) or as a float array with a trailing axis
of length 2 (real, imag) plus the attribute ``complex_as_last_axis=1`` on the dataset.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from inrecon.data.atomic import atomic_path
from inrecon.data.scans import CTGeometry, CTScan, MRIScan, Scan, SeriesScan, VolumeScan
from inrecon.errors import FileFormatError, InreconError, ShapeError

__all__ = ["read_scan", "write_scan"]

_MODALITY_KEYS = {"kspace": "mri", "sinogram": "ct", "volume": "volume"}


def _open(path: str | os.PathLike) -> h5py.File:
    p = Path(path)
    if not p.exists():
        raise FileFormatError(f"file {str(p)!r} does not exist", "check the path")
    if p.is_dir():
        raise FileFormatError(f"{str(p)!r} is a directory, not an HDF5 file", "give the path of the .h5 file")
    try:
        return h5py.File(p, "r")
    except OSError as exc:
        raise FileFormatError(
            f"cannot read {str(p)!r} as HDF5 ({exc.__class__.__name__}: {str(exc).splitlines()[0]})",
            "the file is truncated or not HDF5; re-export it, or use a reader for its format "
            "(inrecon info lists the supported ones)",
        ) from None


def _read(f: h5py.File, key: str, path: str) -> np.ndarray:
    try:
        ds = f[key]
        if not isinstance(ds, h5py.Dataset):
            raise FileFormatError(f"{path}: {key!r} is a group, not a dataset", f"store {key!r} as a dataset")
        arr = ds[()]
    except KeyError:
        raise FileFormatError(
            f"{path}: dataset {key!r} is missing (found: {', '.join(sorted(f.keys())) or 'nothing'})",
            f"add {key!r} as the README's HDF5 contract describes",
        ) from None
    except OSError as exc:
        raise FileFormatError(
            f"{path}: dataset {key!r} cannot be read ({str(exc).splitlines()[0]})",
            "the file is truncated or corrupt; re-export it",
        ) from None
    if ds.attrs.get("complex_as_last_axis", 0):
        if arr.shape[-1] != 2:
            raise FileFormatError(
                f"{path}: {key!r} is flagged complex_as_last_axis but its last axis has length {arr.shape[-1]}",
                "store real and imaginary parts on a trailing axis of length 2",
            )
        arr = arr[..., 0] + 1j * arr[..., 1]
    return arr


def _attr(f: h5py.File, name: str, path: str, required: bool = True, default: Any = None) -> Any:
    if name in f.attrs:
        v = f.attrs[name]
        if isinstance(v, bytes):
            v = v.decode()
        if isinstance(v, np.ndarray) and v.dtype.kind in "SO":
            v = [x.decode() if isinstance(x, bytes) else x for x in v.tolist()]
        return v
    if required:
        raise FileFormatError(
            f"{path}: attribute {name!r} is missing", f"set the root attribute {name!r} (see the README)"
        )
    return default


def _provenance(f: h5py.File, skip: set[str]) -> dict:
    out = {}
    raw = f.attrs.get("json_attrs", "[]")
    json_keys = set(json.loads(raw.decode() if isinstance(raw, bytes) else raw))
    for k, v in f.attrs.items():
        if k in skip or k == "json_attrs":
            continue
        if isinstance(v, bytes):
            v = v.decode()
        elif isinstance(v, np.ndarray):
            v = v.tolist()
        elif isinstance(v, np.generic):
            v = v.item()
        out[k] = json.loads(v) if k in json_keys else v
    return out


def read_scan(path: str | os.PathLike) -> Scan:
    """Read an inrecon HDF5 scan file into an :class:`MRIScan`, :class:`CTScan` or :class:`VolumeScan`.

    Raises :class:`~inrecon.errors.FileFormatError` for unreadable files or missing keys and
    :class:`~inrecon.errors.InreconError` for shapes, dtypes or values that break the contract.
    """
    path = str(path)
    with _open(path) as f:
        modality = _attr(f, "modality", path, required=False)
        if modality is None:
            found = [m for k, m in _MODALITY_KEYS.items() if k in f]
            if len(found) != 1:
                raise FileFormatError(
                    f"{path}: cannot tell the modality (datasets: {', '.join(sorted(f.keys())) or 'none'})",
                    "store one of 'kspace' (MRI), 'sinogram' (CT) or 'volume', or set the 'modality' attribute",
                )
            modality = found[0]
        opt = {k: _read(f, k, path) for k in ("sens_maps", "target", "roi") if k in f}
        skip = {"modality", "image_shape"}
        if modality == "mri":
            kspace = _read(f, "kspace", path)
            if "trajectory" in f:
                shape = _attr(f, "image_shape", path)
                scan: Scan = MRIScan(
                    kspace=kspace,
                    trajectory=_read(f, "trajectory", path),
                    image_shape=tuple(int(s) for s in np.atleast_1d(shape)),
                    dcf=_read(f, "dcf", path) if "dcf" in f else None,
                    provenance=_provenance(f, skip),
                    **opt,
                )
            else:
                mask = _read(f, "mask", path) if "mask" in f else None
                scan = MRIScan(kspace=kspace, mask=mask, provenance=_provenance(f, skip), **opt)
        elif modality == "ct":
            kind = str(_attr(f, "geometry", path))
            geom_keys = set(CTGeometry.ATTRS)
            shape = _attr(f, "image_shape", path)
            fan = kind == "fan"
            geometry = CTGeometry(
                kind=kind,
                n_detectors=int(_attr(f, "n_detectors", path)),
                detector_spacing_mm=float(_attr(f, "detector_spacing_mm", path)),
                image_shape=tuple(int(s) for s in np.atleast_1d(shape)),
                pixel_size_mm=float(_attr(f, "pixel_size_mm", path)),
                source_to_center_mm=float(_attr(f, "source_to_center_mm", path)) if fan else None,
                center_to_detector_mm=float(_attr(f, "center_to_detector_mm", path)) if fan else None,
            )
            opt.pop("sens_maps", None)
            scan = CTScan(
                sinogram=_read(f, "sinogram", path),
                angles=_read(f, "angles", path),
                geometry=geometry,
                provenance=_provenance(f, skip | geom_keys),
                **opt,
            )
        elif modality == "volume":
            opt.pop("sens_maps", None)
            scan = VolumeScan(volume=_read(f, "volume", path), provenance=_provenance(f, skip), **opt)
        elif modality == "mri-series":
            scan = _read_series(f, path)
        else:
            raise InreconError(f"{path}: unknown modality {modality!r}", 'use "mri", "ct" or "volume"')
    return scan


def _read_series(f: h5py.File, path: str) -> SeriesScan:
    kspace, mask = _read(f, "kspace", path), _read(f, "mask", path)
    maps = _read(f, "sens_maps", path) if "sens_maps" in f else None
    target = _read(f, "target", path) if "target" in f else None
    roi = _read(f, "roi", path) if "roi" in f else None
    prov = _provenance(f, {"modality", "n_frames"})
    if kspace.ndim != 4:
        raise ShapeError(f"{path}: kspace has shape {kspace.shape}", "store kspace as (frames, coils, H, W)")
    T, _, H, W = kspace.shape
    if mask.shape != (T, H, W):
        raise ShapeError(
            f"{path}: mask has shape {mask.shape} but kspace is {kspace.shape}",
            f"store one mask per frame, shape ({T}, {H}, {W})",
        )
    if target is not None and target.shape != (T, H, W):
        raise ShapeError(f"{path}: target has shape {target.shape}", f"store target as ({T}, {H}, {W})")
    if roi is not None and roi.shape not in ((H, W), (T, H, W)):
        raise ShapeError(f"{path}: roi has shape {roi.shape}", f"store roi as ({H}, {W}) or ({T}, {H}, {W})")
    frames = [
        MRIScan(
            kspace=kspace[t],
            mask=mask[t],
            sens_maps=maps,
            target=None if target is None else target[t],
            roi=None if roi is None else (roi if roi.ndim == 2 else roi[t]),
            provenance={**prov, "frame": t, "source": path},
        )
        for t in range(T)
    ]
    return SeriesScan(frames, {**prov, "source": path})


def _write_series(f: h5py.File, scan: SeriesScan, put) -> None:
    frames = scan.frames
    f.attrs["n_frames"] = len(frames)
    put("kspace", np.stack([_np(fr.kspace) for fr in frames]), np.complex64)
    put("mask", np.stack([_np(fr.mask) for fr in frames]), np.uint8)
    if frames[0].sens_maps is not None:
        put("sens_maps", frames[0].sens_maps, np.complex64)
    if scan.target is not None:
        tg = _np(scan.target)
        put("target", tg, np.complex64 if np.iscomplexobj(tg) else np.float32)
    if scan.roi is not None:
        put("roi", scan.roi, np.uint8)


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def _attr_value(v: Any) -> Any:
    if isinstance(v, str | int | float | bool | np.integer | np.floating):
        return v
    if isinstance(v, list | tuple) and all(isinstance(x, int | float) for x in v):
        return np.asarray(v)
    return json.dumps(v, default=str)


def write_scan(path: str | os.PathLike, scan: Scan, compression: str | None = "gzip") -> Path:
    """Write ``scan`` in the inrecon HDF5 layout, atomically. Returns the path."""
    path = Path(path)
    if not isinstance(scan, MRIScan | CTScan | VolumeScan | SeriesScan):
        raise TypeError(f"cannot write {type(scan).__name__}: expected an MRI, CT, volume or series scan")
    with atomic_path(path, suffix=".h5") as tmp, h5py.File(tmp, "w") as f:
        f.attrs["modality"] = scan.modality
        json_keys = []
        for k, v in scan.provenance.items():
            if k in ("modality", "json_attrs"):
                continue
            a = _attr_value(v)
            if isinstance(a, str) and not isinstance(v, str):
                json_keys.append(k)
            f.attrs[k] = a
        if json_keys:
            f.attrs["json_attrs"] = json.dumps(json_keys)

        def put(name, arr, dtype):
            a = _np(arr).astype(dtype, copy=False)
            f.create_dataset(name, data=a, compression=compression if a.size > 4096 else None)

        if isinstance(scan, SeriesScan):
            _write_series(f, scan, put)
            return path
        if isinstance(scan, MRIScan):
            put("kspace", scan.kspace, np.complex64)
            if scan.is_cartesian:
                put("mask", scan.mask, np.uint8)
            else:
                put("trajectory", scan.trajectory, np.float32)
                f.attrs["image_shape"] = np.asarray(scan.image_shape, dtype=np.int64)
                if scan.dcf is not None:
                    put("dcf", scan.dcf, np.float32)
            if scan.sens_maps is not None:
                put("sens_maps", scan.sens_maps, np.complex64)
        elif isinstance(scan, CTScan):
            put("sinogram", scan.sinogram, np.float32)
            put("angles", scan.angles, np.float32)
            for k, v in scan.geometry.to_attrs().items():
                f.attrs[k] = v
        else:
            put("volume", scan.volume, np.float32)
        if scan.target is not None and not (isinstance(scan, VolumeScan) and scan.target is scan.volume):
            t = _np(scan.target)
            put("target", t, np.complex64 if np.iscomplexobj(t) else np.float32)
        if scan.roi is not None:
            put("roi", scan.roi, np.uint8)
    return path
