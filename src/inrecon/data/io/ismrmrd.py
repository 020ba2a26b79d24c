"""ISMRMRD / MRD raw data (HDF5): :func:`read_ismrmrd`, read with h5py alone (the ``ismrmrd`` package is not needed).

An ISMRMRD file holds a group (``/dataset`` by default) with ``xml`` (the ISMRMRD header) and ``data`` (one
record per acquisition: a fixed header, the trajectory and the samples). What inrecon takes from it:

- **header** (first ``encoding``): encoded and recon matrix and field of view, encoding limits
  (``kspace_encoding_step_1/2`` centres), trajectory type, parallel-imaging calibration mode, system fields.
- **noise scans** (flag ``ACQ_IS_NOISE_MEASUREMENT``): not part of the image; their samples, ``(coils, S)``
  complex64, go to ``provenance["noise_samples"]`` (and their dwell time to ``noise_sample_time_us``), so that
  the reconstruction layer can prewhiten (``inrecon.physics.coils.prewhiten(kspace, noise)``).
- **skipped**: navigator, phase-correction, feedback, dummy-scan, surface-coil-correction and
  phase-stabilisation acquisitions.
- **Cartesian** (no trajectory): each readout is placed on the encoded grid, ``(C, y, x)`` for 2D and
  ``(C, z, y, x)`` for 3D (rows = phase encode ``kspace_encode_step_1``, columns = readout), at row
  ``step_1 - limits.center + H // 2`` and column ``j - center_sample + W // 2``; ``discard_pre/post`` samples are
  dropped, ``ACQ_IS_REVERSE`` readouts flipped, repeated averages averaged. Calibration (ACS) lines
  (``ACQ_IS_PARALLEL_CALIBRATION``, ``..._AND_IMAGING``) are measured k-space and are kept; their rows are
  listed in ``provenance["calibration_lines"]``.
- **non-Cartesian** (acquisitions carry a trajectory): samples concatenated to ``(C, K)``; the trajectory
  columns ``(kx, ky[, kz])`` reordered to the image axes ``(ky, kx)`` / ``(kz, ky, kx)`` and converted to
  radians: trajectories within [-0.5, 0.5] are taken as cycles per sample (the Gadgetron convention), larger
  ones as cycles per field of view (divided by the encoded matrix). A third trajectory dimension of a 2D
  encoding (``z = 1``) is the density-compensation weight (Gadgetron's spiral convention) and becomes ``dcf``.
- **spacing**: encoded field of view / matrix -> ``provenance["spacing_mm"]`` (array order) and, for 2D,
  ``slice_thickness_mm``.

Multi-slice 2D files are read one slice at a time (``slice``, default the middle one); when a file holds
several contrasts, phases, repetitions or sets, the first of each is read and the counts are recorded.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import h5py
import numpy as np

from inrecon.data.scans import MRIScan
from inrecon.errors import FileFormatError, InreconError

__all__ = ["ismrmrd_group", "read_ismrmrd"]


def _flag(bit: int) -> int:
    return 1 << (bit - 1)


_NOISE = _flag(19)
_CALIBRATION = _flag(20) | _flag(21)
_REVERSE = _flag(22)
_SKIP = sum(_flag(b) for b in (23, 24, 26, 27, 28, 29, 30, 31))
_SELECT = ("contrast", "phase", "repetition", "set")


def ismrmrd_group(f: h5py.File) -> str | None:
    """The name of the ISMRMRD dataset group in an open HDF5 file (``"dataset"`` usually), or ``None``."""
    names = ["dataset", *sorted(k for k in f.keys() if k != "dataset")]
    for name in names:
        g = f.get(name)
        if isinstance(g, h5py.Group) and isinstance(g.get("data"), h5py.Dataset) and "xml" in g:
            fields = g["data"].dtype.names or ()
            if {"head", "data"} <= set(fields):
                return name
    return None


def _xml_text(raw) -> str:
    if isinstance(raw, np.ndarray):
        raw = raw.reshape(-1)[0] if raw.size else b""
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def _xyz(el, path: str, cast=float) -> list | None:
    node = el.find(path)
    if node is None:
        return None
    try:
        return [cast(float(node.findtext(k))) for k in ("x", "y", "z")]
    except (TypeError, ValueError):
        return None


def _limit_center(enc, name: str) -> int | None:
    text = enc.findtext(f"encodingLimits/{name}/center")
    try:
        return None if text is None else int(text)
    except ValueError:
        return None


def _header(raw, p: Path) -> dict:
    """The fields of the first ``encoding`` (and a few others) of the ISMRMRD XML header."""
    try:
        root = ET.fromstring(_xml_text(raw))
    except ET.ParseError as exc:
        raise FileFormatError(
            f"{p}: the ISMRMRD XML header cannot be parsed ({exc})", "export it again"
        ) from None
    for el in root.iter():
        el.tag = el.tag.split("}")[-1]
    enc = root.find("encoding")
    if enc is None:
        raise FileFormatError(f"{p}: the ISMRMRD header has no <encoding>", "export it again")
    hdr = {
        "encoded_matrix": _xyz(enc, "encodedSpace/matrixSize", int),
        "encoded_fov_mm": _xyz(enc, "encodedSpace/fieldOfView_mm"),
        "recon_matrix": _xyz(enc, "reconSpace/matrixSize", int),
        "recon_fov_mm": _xyz(enc, "reconSpace/fieldOfView_mm"),
        "trajectory_type": (enc.findtext("trajectory") or "cartesian").strip(),
        "center_step_1": _limit_center(enc, "kspace_encoding_step_1"),
        "center_step_2": _limit_center(enc, "kspace_encoding_step_2"),
        "calibration_mode": (enc.findtext("parallelImaging/calibrationMode") or "").strip() or None,
        "vendor": (root.findtext("acquisitionSystemInformation/systemVendor") or "").strip() or None,
        "field_strength_T": root.findtext("acquisitionSystemInformation/systemFieldStrength_T"),
    }
    if hdr["encoded_matrix"] is None:
        raise FileFormatError(f"{p}: the ISMRMRD header has no encodedSpace/matrixSize", "export it again")
    if hdr["field_strength_T"] is not None:
        hdr["field_strength_T"] = float(hdr["field_strength_T"])
    return {k: v for k, v in hdr.items() if v is not None}


def _records(f: h5py.File, group: str, p: Path) -> np.ndarray:
    try:
        return f[group]["data"][()]
    except (OSError, KeyError) as exc:
        raise FileFormatError(
            f"{p}: the ISMRMRD acquisitions cannot be read ({str(exc).splitlines()[0]})",
            "the file is truncated or corrupt; export it again",
        ) from None


def _samples(rec) -> tuple[np.ndarray, np.ndarray | None]:
    """``(coils, samples)`` complex64 and ``(samples, dims)`` trajectory (or ``None``), discards removed."""
    head = rec["head"]
    n, c, tdim = (
        int(head["number_of_samples"]),
        int(head["active_channels"]),
        int(head["trajectory_dimensions"]),
    )
    data = np.asarray(rec["data"], dtype=np.float32).view(np.complex64).reshape(c, n)
    traj = np.asarray(rec["traj"], dtype=np.float32).reshape(n, tdim) if tdim else None
    lo, hi = int(head["discard_pre"]), n - int(head["discard_post"])
    return data[:, lo:hi], (None if traj is None else traj[lo:hi])


def _select(records: np.ndarray, slice_index: int | None, p: Path) -> tuple[np.ndarray, dict]:
    """The imaging records of one slice (and the first contrast/phase/repetition/set), and what was chosen."""
    idx = records["head"]["idx"]
    slices = np.unique(idx["slice"])
    if slice_index is None:
        chosen = int(slices[len(slices) // 2])
    elif int(slice_index) in slices:
        chosen = int(slice_index)
    else:
        raise InreconError(
            f"{p}: slice {slice_index} is not in the file (slices: {slices.tolist()})",
            f"give a slice index among {slices.tolist()}",
        )
    keep = idx["slice"] == chosen
    info: dict = {"slice": chosen, "n_slices": int(len(slices))}
    for name in _SELECT:
        values = np.unique(idx[name][keep])
        if len(values) > 1:
            info[f"n_{name}s"] = int(len(values))
        keep &= idx[name] == values[0]
    return records[keep], info


def _place_cartesian(records: np.ndarray, hdr: dict, p: Path) -> tuple[np.ndarray, list[int]]:
    """Readouts on the encoded grid ``(C, [z,] y, x)``, averages averaged; the calibration rows."""
    w, h, d = hdr["encoded_matrix"]
    c1, c2 = hdr.get("center_step_1"), hdr.get("center_step_2")
    off1 = 0 if c1 is None else h // 2 - c1
    off2 = 0 if c2 is None else d // 2 - c2
    coils = int(records[0]["head"]["active_channels"])
    ksp = np.zeros((coils, d, h, w), np.complex64)
    count = np.zeros((d, h, w), np.int32)
    calib = set()
    for rec in records:
        head = rec["head"]
        data, _ = _samples(rec)
        if int(head["flags"]) & _REVERSE:
            data = data[:, ::-1]
        y = int(head["idx"]["kspace_encode_step_1"]) + off1
        z = int(head["idx"]["kspace_encode_step_2"]) + off2
        x0 = w // 2 - (int(head["center_sample"]) - int(head["discard_pre"]))
        x1 = x0 + data.shape[1]
        if not (0 <= y < h and 0 <= z < d and 0 <= x0 and x1 <= w) or data.shape[0] != coils:
            raise FileFormatError(
                f"{p}: an acquisition (step_1 {y - off1}, step_2 {z - off2}, {data.shape[1]} samples, "
                f"{data.shape[0]} coils) does not fit the encoded matrix {hdr['encoded_matrix']}",
                "check the header's encodedSpace and encodingLimits",
            )
        ksp[:, z, y, x0:x1] += data
        count[z, y, x0:x1] += 1
        if int(head["flags"]) & _CALIBRATION:
            calib.add(y)
    ksp /= np.maximum(count, 1)
    return (ksp[:, 0] if d == 1 else ksp), sorted(calib)


def _noncartesian(records: np.ndarray, hdr: dict, p: Path) -> dict:
    """``kspace (C, K)``, ``trajectory (K, d)`` radians in image axis order, ``image_shape`` and ``dcf``."""
    w, h, d = hdr["encoded_matrix"]
    pairs = [_samples(rec) for rec in records]
    if any(t is None for _, t in pairs):
        raise FileFormatError(
            f"{p}: a non-Cartesian ({hdr.get('trajectory_type')}) acquisition carries no trajectory",
            "export the trajectory with the data (trajectory_dimensions > 0)",
        )
    data = np.concatenate([s for s, _ in pairs], axis=1)
    traj = np.concatenate([t for _, t in pairs], axis=0).astype(np.float64)
    ndim = 3 if d > 1 else 2
    dcf = traj[:, 2] if ndim == 2 and traj.shape[1] == 3 else None
    if traj.shape[1] < ndim:
        raise FileFormatError(
            f"{p}: the trajectory has {traj.shape[1]} dimensions for a {ndim}D encoding", "export it again"
        )
    k = traj[:, :ndim][:, ::-1]  # (kx, ky[, kz]) -> image axis order (ky, kx) / (kz, ky, kx)
    shape = (h, w) if ndim == 2 else (d, h, w)
    if np.abs(k).max() <= 0.5 + 1e-3:
        rad = 2 * np.pi * k  # cycles per sample
    else:
        rad = 2 * np.pi * k / np.asarray(shape, dtype=np.float64)  # cycles per field of view
    rad = np.mod(rad + np.pi, 2 * np.pi) - np.pi
    return {"kspace": data, "trajectory": rad.astype(np.float32), "image_shape": shape, "dcf": dcf}


def _provenance(p: Path, hdr: dict, info: dict, noise: list[np.ndarray], noise_dt: list[float]) -> dict:
    prov = {"source": str(p), "format": "ismrmrd", **hdr, **info}
    w, h, d = hdr["encoded_matrix"]
    fov = hdr.get("encoded_fov_mm")
    if fov and min(fov) > 0:
        if d > 1:
            prov["spacing_mm"] = [fov[2] / d, fov[1] / h, fov[0] / w]
        else:
            prov["spacing_mm"] = [fov[1] / h, fov[0] / w]
            prov["slice_thickness_mm"] = float(fov[2])
    if noise:
        prov["noise_samples"] = np.concatenate(noise, axis=1).astype(np.complex64)
        prov["noise_sample_time_us"] = float(noise_dt[0])
    return prov


def read_ismrmrd(path: str | os.PathLike, slice: int | None = None) -> MRIScan:
    """Read one slice of an ISMRMRD HDF5 file as an :class:`MRIScan` (what is read: module docstring).

    Parameters
    ----------
    path
        The ``.h5`` / ``.mrd`` file.
    slice
        ``idx.slice`` value to read (default the middle one of those present).

    Returns
    -------
    MRIScan
        Cartesian ``kspace (C, H, W)`` / ``(C, D, H, W)`` on the encoded grid, or non-Cartesian
        ``(C, K)`` with ``trajectory``; provenance with the header fields, ``spacing_mm``,
        ``calibration_lines`` and ``noise_samples`` ``(C, S)`` when the file has noise scans.
    """
    p = Path(path)
    try:
        f = h5py.File(p, "r")
    except OSError as exc:
        raise FileFormatError(f"cannot read {str(p)!r} as HDF5 ({exc})", "give an ISMRMRD .h5 file") from None
    with f:
        group = ismrmrd_group(f)
        if group is None:
            raise FileFormatError(f"{p}: no ISMRMRD dataset group (xml + data)", "give an ISMRMRD .h5 file")
        hdr = _header(f[group]["xml"][()], p)
        records = _records(f, group, p)
    flags = records["head"]["flags"].astype(np.uint64)
    is_noise = (flags & np.uint64(_NOISE)) != 0
    noise = [_samples(r)[0] for r in records[is_noise]]
    noise_dt = [float(r["head"]["sample_time_us"]) for r in records[is_noise]]
    imaging = records[~is_noise & ((flags & np.uint64(_SKIP)) == 0)]
    if len(imaging) == 0:
        raise FileFormatError(f"{p}: holds no imaging acquisitions", "give a file with k-space data")
    chosen, info = _select(imaging, slice, p)
    prov = _provenance(p, hdr, info, noise, noise_dt)
    prov["sample_time_us"] = float(chosen[0]["head"]["sample_time_us"])
    cartesian = (
        hdr.get("trajectory_type", "cartesian") == "cartesian"
        and not chosen["head"]["trajectory_dimensions"].any()
    )
    if cartesian:
        ksp, calib = _place_cartesian(chosen, hdr, p)
        prov["calibration_lines"] = calib
        return MRIScan(kspace=ksp, provenance=prov)
    return MRIScan(provenance=prov, **_noncartesian(chosen, hdr, p))
