"""What a reconstruction of a scan is written with: :func:`check_output` (before reconstructing) and
:func:`output_options` (the :func:`~inrecon.data.io.images.write_image` arguments that a scan implies).

From the scan, an output gets:

- **spacing**: CT ``geometry.pixel_size_mm`` (with a note where ``provenance["length_unit"]`` is not mm: a Data
  Exchange scan whose file records no pixel size); otherwise ``provenance["spacing_mm"]`` (array order; set by the
  DICOM, NIfTI, ``.npz``, fastMRI and ISMRMRD readers), else 1 mm with a note saying so.
  ``provenance["slice_thickness_mm"]`` becomes the thickness of a 2D slice.
- **CT calibration** (how values become Hounsfield units in DICOM, and the PNG window): the ``--hu-window``
  given on the command line (the image is [0, 1] display units of it; the PNG shows exactly that window),
  else ``provenance["hu_window"]``
  (the scan was made from HU windowed to [0, 1]: the body phantom, HU files read with a window), else
  ``provenance["mu_water_per_mm"]`` (or ``mu_water``: values are attenuation per mm,
  ``HU = 1000 (mu - mu_water) / mu_water``); without one the values are stored as they are (DICOM
  ``RescaleType`` US) and a note says they are not HU. A calibrated PNG shows the project's HU window
  [-800, 400]; an uncalibrated one the data's 0.5 / 99.5 percentiles.
- **identity** (DICOM): ``StudyInstanceUID`` and ``FrameOfReferenceUID`` shared by every output of one scan —
  the input's own when it was DICOM, else ``2.25.<UUID5>`` of a SHA-256 of its measured data
  (:func:`scan_uids`) — a fresh ``SeriesInstanceUID`` per write, and ``SeriesDescription`` = the method.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import numpy as np

from inrecon.data.io.dicom import dicom_targets
from inrecon.data.phantoms import HU_WINDOW
from inrecon.data.scans import CTScan, MRIScan, Scan, SeriesScan, VolumeScan
from inrecon.errors import InreconError

__all__ = ["check_output", "ct_calibration", "output_options", "scan_spacing", "scan_uids"]

_NAMESPACE = uuid.UUID("6f1c3a52-8e0b-5d7e-9a41-0c2f1b7d9e35")
_DICOM_SUFFIXES = (".dcm", "")


def _data_arrays(scan: Scan) -> list:
    if isinstance(scan, SeriesScan):
        return [fr.kspace for fr in scan.frames]
    if isinstance(scan, MRIScan):
        return [scan.kspace] + ([] if scan.trajectory is None else [scan.trajectory])
    if isinstance(scan, CTScan):
        return [scan.sinogram, scan.angles]
    return [scan.volume]


def scan_uids(scan: Scan) -> dict[str, str]:
    """``StudyInstanceUID`` and ``FrameOfReferenceUID`` of every output of ``scan`` (deterministic).

    The input's own when it was a DICOM series that had them, else ``2.25.`` + the integer of a UUID5 of the
    SHA-256 of the scan's measured data (k-space and trajectory, sinogram and angles, or volume).
    """
    dicom = scan.provenance.get("dicom") or {}
    if dicom.get("StudyInstanceUID") and dicom.get("FrameOfReferenceUID"):
        return {k: str(dicom[k]) for k in ("StudyInstanceUID", "FrameOfReferenceUID")}
    h = hashlib.sha256(scan.modality.encode())
    for t in _data_arrays(scan):
        a = np.ascontiguousarray(t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t))
        h.update(str((a.shape, a.dtype.str)).encode())
        h.update(a.tobytes())
    digest = h.hexdigest()
    return {
        "StudyInstanceUID": f"2.25.{uuid.uuid5(_NAMESPACE, digest + '/study').int}",
        "FrameOfReferenceUID": f"2.25.{uuid.uuid5(_NAMESPACE, digest + '/frame').int}",
    }


def scan_spacing(scan: Scan) -> tuple[tuple[float, ...], float | None, str | None]:
    """``(spacing_mm in array order, slice thickness or None, note or None)`` of reconstructions of ``scan``.

    A series' images are ``(T, H, W)``: their first (time) axis gets 1.
    """
    thickness = scan.provenance.get("slice_thickness_mm")
    thickness = None if thickness is None else float(thickness)
    if isinstance(scan, CTScan):
        px = float(scan.geometry.pixel_size_mm)
        unit = scan.provenance.get("length_unit", "mm")
        if unit == "mm":
            return (px, px), thickness, None
        note = (
            f"this scan's lengths are in units of a {unit} (its file records no pixel size): the spacing is "
            f"written as {px:g} mm, one unit per mm; give the pitch in mm (--pitch) for true millimetres"
        )
        return (px, px), thickness, note
    ndim = len(scan.image_shape)
    sp = scan.provenance.get("spacing_mm")
    try:
        sp = None if sp is None else tuple(float(v) for v in np.atleast_1d(sp))
    except (TypeError, ValueError):
        sp = None
    lead = (1.0,) if isinstance(scan, SeriesScan) else ()
    if sp is not None and len(sp) == ndim and all(np.isfinite(v) and v > 0 for v in sp):
        return (*lead, *sp), thickness, None
    note = (
        f"the pixel spacing of this {scan.modality} scan is unknown (its file states no field of view): "
        "written as 1 mm"
    )
    return (*lead, *(1.0,) * ndim), thickness, note


def ct_calibration(scan: Scan, hu_window=None) -> tuple[dict | None, str | None]:
    """How reconstructed values of ``scan`` become HU: ``({"hu_window": ...} | {"mu_water_per_mm": ...} |
    None, note)`` (order of precedence in the module docstring)."""
    if hu_window is not None:
        return {"hu_window": tuple(float(v) for v in hu_window)}, None
    prov = scan.provenance
    if prov.get("hu_window") is not None:
        return {"hu_window": tuple(float(v) for v in prov["hu_window"])}, None
    for key in ("mu_water_per_mm", "mu_water"):
        if prov.get(key) is not None:
            return {"mu_water_per_mm": float(prov[key])}, None
    return None, (
        "the scan carries no calibration to Hounsfield units (hu_window or mu_water_per_mm in its "
        "provenance, or --hu-window): values are stored as they are, not in HU (RescaleType US)"
    )


def _png_window(calibration: dict | None, explicit: bool) -> tuple[float, float] | None:
    """The PNG window in image units: the ``--hu-window`` itself (``(0, 1)``), else the project's HU window
    [-800, 400] through the scan's calibration, else ``None`` (the data's percentiles)."""
    if calibration is None:
        return None
    if explicit:
        return (0.0, 1.0)
    if "hu_window" in calibration:
        lo, hi = calibration["hu_window"]
        return ((HU_WINDOW[0] - lo) / (hi - lo), (HU_WINDOW[1] - lo) / (hi - lo))
    mu = calibration["mu_water_per_mm"]
    return (mu * (1 + HU_WINDOW[0] / 1000), mu * (1 + HU_WINDOW[1] / 1000))


def _is_dicom_output(out: Path) -> bool:
    return out.suffix.lower() in _DICOM_SUFFIXES


def check_output(out: str | os.PathLike, scan: Scan | None) -> None:
    """Refuse, before any reconstruction, an output that cannot be written for ``scan``.

    DICOM outputs: a series scan (write ``.h5``, ``.npy`` or NIfTI), a multi-slice image into one ``.dcm``
    file, and a target holding files inrecon did not write or a series of another scan
    (:func:`~inrecon.data.io.dicom.dicom_targets`). ``scan=None`` checks what needs no scan.
    """
    out = Path(out)
    if not _is_dicom_output(out):
        return
    if isinstance(scan, SeriesScan):
        raise InreconError(
            f"a series of {scan.n_frames} frames cannot be written as DICOM ({out})",
            "use .h5, .npy or .nii.gz",
        )
    shape = None if scan is None else tuple(scan.image_shape)
    n_slices = shape[0] if shape is not None and len(shape) == 3 else 1
    study = None if scan is None else scan_uids(scan)["StudyInstanceUID"]
    dicom_targets(out, n_slices, study, overwrite=True)


def output_options(out: str | os.PathLike, scan: Scan, method: str, hu_window=None) -> tuple[dict, list[str]]:
    """Keyword arguments for :func:`~inrecon.data.io.images.write_image` of a reconstruction of ``scan``.

    Parameters
    ----------
    out
        The output path (its suffix picks what applies).
    scan
        The scan reconstructed.
    method
        The method's name (DICOM ``SeriesDescription``).
    hu_window
        ``--hu-window (lo, hi)``: the image is [0, 1] display units of this HU window (CT).

    Returns
    -------
    kwargs
        ``spacing_mm`` and ``slice_thickness_mm`` always; ``window`` for PNG of a calibrated CT scan;
        ``modality``, ``calibration`` and ``dicom`` (identity keywords) for DICOM.
    notes
        One line each for what the output cannot say (unknown spacing, values not in HU).
    """
    out = Path(out)
    spacing, thickness, note = scan_spacing(scan)
    notes = [] if note is None else [note]
    kwargs: dict = {"spacing_mm": spacing, "slice_thickness_mm": thickness}
    source_modality = (scan.provenance.get("dicom") or {}).get("Modality")
    is_ct = isinstance(scan, CTScan) or (isinstance(scan, VolumeScan) and source_modality == "CT")
    calibration, cal_note = ct_calibration(scan, hu_window) if is_ct else (None, None)
    if out.suffix.lower() == ".png":
        kwargs["window"] = _png_window(calibration, hu_window is not None)
    if _is_dicom_output(out):
        volume_mr = isinstance(scan, VolumeScan) and source_modality == "MR"
        kwargs["modality"] = "CT" if is_ct or (isinstance(scan, VolumeScan) and not volume_mr) else "MR"
        kwargs["calibration"] = calibration
        kwargs["dicom"] = {**scan_uids(scan), "SeriesDescription": str(method)}
        if cal_note is not None:
            notes.append(cal_note)
    return kwargs, notes
