"""Tomography projections in the Data Exchange HDF5 layout (APS / tomopy / dxchange) as a parallel-beam CTScan.

A Data Exchange file holds raw detector readings, not line integrals::

    exchange/data        (angles, rows, columns)  projections (counts or detector units)
    exchange/data_white  (n, rows, columns)       flat fields (beam, no sample)   -- required here
    exchange/data_dark   (n, rows, columns)       dark fields (no beam)           -- zero when absent
    exchange/theta       (angles,)                rotation angles in degrees

One detector row (``slice``) becomes one 2D parallel-beam sinogram: flat/dark corrected
(``(data - dark) / (white - dark)`` with the means of the flat and dark frames), ``-log`` of the transmission,
the beam's drift beside the object subtracted per view (``air``), then resampled so that the rotation axis sits at the centre of the detector (linear interpolation; the axis is
rarely on a pixel boundary, see :func:`rotation_axis`), ``bin`` neighbouring columns averaged, and the detector
cut to the symmetric window around the axis (with ``crop``, to the narrowest window that holds the object).
The image grid is ``n x n`` pixels of ``bin`` columns each, where ``n`` is the number of binned detector cells.
Lengths are in millimetres where the column pitch at the sample is known (the ``pitch_mm`` argument, else the
effective pixel size the file records: ``measurement/instrument/detection_system/objective/resolution`` or
``measurement/instrument/detector/actual_pixel_size_x``, in the unit their ``units`` attribute names, microns
where it names none, as tomopy-cli reads them); otherwise in column pitches (``provenance["length_unit"]``),
and an image written from such a scan says so (:func:`~inrecon.data.io.outputs.scan_spacing`).
Angles follow inrecon's convention (:class:`~inrecon.data.scans.CTGeometry`) read as
radians of the file's degrees; a reconstruction may be mirrored relative to another package's convention,
never distorted.

``provenance["photons"]`` is the mean flat-field signal above the dark level (detector units, a relative scale
of the detected counts), so that counts-weighted data terms weight each reading by its transmitted signal.
"""

from __future__ import annotations

import math
import os
import warnings

import h5py
import numpy as np

from inrecon.checks import require_positive
from inrecon.data.scans import CTGeometry, CTScan
from inrecon.errors import FileFormatError, InreconError, ShapeError

__all__ = ["air_level", "is_dxchange", "read_dxchange", "recorded_pitch_mm", "rotation_axis"]

_PITCH_PATHS = (
    "measurement/instrument/detection_system/objective/resolution",
    "measurement/instrument/detector/actual_pixel_size_x",
)
"""Where Data Exchange files record the effective pixel size (the column pitch at the sample), first found wins."""
_UNIT_MM = {"m": 1e3, "mm": 1.0, "um": 1e-3, "µm": 1e-3, "micron": 1e-3, "microns": 1e-3, "nm": 1e-6}
"""Millimetres per unit of the ``units`` attribute (lower case) of a recorded pixel size."""

_CROP_MARGIN = 4
"""Detector columns kept beyond the object's outermost reading with ``crop``."""
_CROP_LEVEL = 0.03
"""With ``crop``, a column belongs to the object where some view's line integral, the median of it and its two
neighbours along the detector (so that a single hot pixel does not count), exceeds this fraction of the
sinogram's largest one."""


def is_dxchange(f: h5py.File) -> bool:
    """Whether an open HDF5 file has the Data Exchange layout (``exchange/data`` and ``exchange/theta``)."""
    g = f.get("exchange")
    return isinstance(g, h5py.Group) and "data" in g and "theta" in g


def rotation_axis(sinogram: np.ndarray, angles: np.ndarray) -> tuple[float, float]:
    """The detector position of the rotation axis of a parallel-beam sinogram, from its centres of mass.

    For an object wholly inside the field of view, the centre of mass of the projection at angle ``theta``
    is ``cx cos(theta) + cy sin(theta) + axis`` (in column units), whatever the object; the three unknowns
    are fitted by least squares over every view, after the level the data show outside the object (a
    flat-field drift, which would pull every centre of mass towards the detector's middle) is removed.
    On tomopy's tooth: 295.50, within half a column of the data's most consistent axis (295.9, the
    least-squares residual's minimum) and of algotom's Vo method (295.0); without removing the level, 296.27.

    Parameters
    ----------
    sinogram
        ``(V, N)`` line integrals, column index 0..N-1.
    angles
        ``(V,)`` view angles in radians, spanning at least 90 degrees.

    Returns
    -------
    (axis, rms)
        The axis as a column coordinate (0 is the first column's centre) and the fit's root-mean-square
        residual in columns (a few tenths for clean data; several columns mean a truncated object or a
        wrong angle list).
    """
    s = np.asarray(sinogram, dtype=np.float64)
    a = np.asarray(angles, dtype=np.float64).reshape(-1)
    if s.ndim != 2 or s.shape[0] != a.size:
        raise ShapeError(f"sinogram {s.shape} and angles {a.shape} do not match", "give (V, N) and (V,)")
    if np.ptp(a) < math.pi / 2:
        raise InreconError(
            f"the angles span {math.degrees(np.ptp(a)):.1f} degrees, too few to locate the rotation axis",
            "give the axis position yourself (center=<column>)",
        )
    # a flat-field drift leaves a small positive level outside the object, which would pull every centre of
    # mass towards the detector's middle: measure it per view where there is no object, and remove it
    level, outside = air_level(s)
    w = np.zeros_like(s)
    w[:, ~outside] = np.clip(s[:, ~outside] - level[:, None], 0.0, None)
    mass = w.sum(axis=1)
    if np.any(mass <= 0):
        raise InreconError(
            "some projections hold no attenuation, so their centre of mass is undefined",
            "check the flat/dark correction, or give the axis position yourself (center=<column>)",
        )
    centroid = (w * np.arange(s.shape[1])).sum(axis=1) / mass
    design = np.stack([np.cos(a), np.sin(a), np.ones_like(a)], axis=1)
    coef, *_ = np.linalg.lstsq(design, centroid, rcond=None)
    rms = float(np.sqrt(np.mean((design @ coef - centroid) ** 2)))
    return float(coef[2]), rms


def air_level(sinogram: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per view, the line integral the data show where the beam misses the object (zero for a stable beam).

    Returns ``(level (V,), outside (N,) bool)``: the median over the columns beyond the object's outermost
    ones (:data:`_CROP_LEVEL`, plus :data:`_CROP_MARGIN` columns) on either side, and those columns; zeros
    where fewer than 8 such columns exist."""
    s = np.asarray(sinogram, dtype=np.float64)
    cols = _object_columns(s)
    outside = np.ones(s.shape[1], bool)
    outside[max(cols.min() - _CROP_MARGIN, 0) : cols.max() + _CROP_MARGIN + 1] = False
    if outside.sum() < 8:
        return np.zeros(s.shape[0]), outside
    return np.median(s[:, outside], axis=1), outside


def _object_columns(sino: np.ndarray) -> np.ndarray:
    """The detector columns where some view sees the object (:data:`_CROP_LEVEL`); all columns if none."""
    smooth = np.median(np.stack([sino[:, :-2], sino[:, 1:-1], sino[:, 2:]]), axis=0)
    cols = 1 + np.nonzero((smooth > _CROP_LEVEL * float(smooth.max())).any(axis=0))[0]
    return cols if cols.size else np.arange(sino.shape[1])


def _resample(p: np.ndarray, axis: float, n: int, bin_: int) -> np.ndarray:
    """``(V, N)`` -> ``(V, n)``: cells of ``bin_`` columns centred on ``axis``, each the mean of ``bin_``
    linearly interpolated samples (the plain column mean when the axis falls on a column boundary)."""
    cols = np.arange(p.shape[1], dtype=np.float64)
    centres = axis + (np.arange(n) - n / 2 + 0.5) * bin_
    offsets = np.arange(bin_) - bin_ / 2 + 0.5
    pos = (centres[:, None] + offsets[None, :]).reshape(-1)
    out = np.empty((p.shape[0], n), dtype=np.float64)
    for v in range(p.shape[0]):
        out[v] = np.interp(pos, cols, p[v]).reshape(n, bin_).mean(axis=1)
    return out


def recorded_pitch_mm(f: h5py.File) -> float | None:
    """The detector column pitch at the sample (mm) an open Data Exchange file records (``_PITCH_PATHS``), or
    ``None`` where it records none, or one that is not a positive number in a known unit (then with a warning
    naming what it found: lengths stay in column pitches unless ``pitch_mm`` / ``--pitch`` gives the pitch)."""
    unusable = []
    for name in _PITCH_PATHS:
        d = f.get(name)
        if not isinstance(d, h5py.Dataset):
            continue
        try:
            value = float(np.asarray(d[()], dtype=np.float64).reshape(-1)[0])
        except (TypeError, ValueError, IndexError):
            unusable.append(f"{name} (not a number)")
            continue
        unit = d.attrs.get("units", "microns")
        unit = (unit.decode() if isinstance(unit, bytes) else str(unit)).strip().lower()
        if unit in _UNIT_MM and math.isfinite(value) and value > 0:
            return value * _UNIT_MM[unit]
        unusable.append(f"{name} = {value:g} {unit!r}")
    if unusable:
        warnings.warn(
            f"{f.filename}: the pixel size it records is unusable ({'; '.join(unusable)}; known units: "
            f"{', '.join(sorted(_UNIT_MM))}), so lengths stay in detector column pitches. Fix: give the pitch "
            "at the sample in mm (--pitch MM, or pitch_mm=)",
            UserWarning,
            stacklevel=2,
        )
    return None


def _frames(g: h5py.Group, name: str, row: int, shape_tail: tuple[int, ...], path: str) -> np.ndarray | None:
    if name not in g:
        return None
    d = g[name]
    if d.ndim != 3 or tuple(d.shape[1:]) != shape_tail:
        raise ShapeError(
            f"{path}: exchange/{name} has shape {d.shape}, but the projections' frames are {shape_tail}",
            f"store {name} as (frames, rows, columns) with the projections' rows and columns",
        )
    return np.asarray(d[:, row, :], dtype=np.float64).mean(axis=0)


def read_dxchange(
    path: str | os.PathLike,
    slice: int | None = None,
    bin: int = 1,
    center: float | str = "auto",
    crop: bool = False,
    air: bool = True,
    pitch_mm: float | None = None,
) -> CTScan:
    """One detector row of a Data Exchange file as a parallel-beam :class:`~inrecon.data.scans.CTScan`.

    Parameters
    ----------
    path
        The ``.h5`` file (module docstring for the layout).
    slice
        Detector row (0-based; default the middle row).
    bin
        Neighbouring detector columns averaged into one cell (and the image pixel's side in columns).
    center
        Rotation axis as a column coordinate (0 = the first column's centre), or ``"auto"``:
        :func:`rotation_axis` on the slice itself.
    crop
        Keep only the detector window that holds the object (plus a few columns), instead of the widest
        window symmetric about the axis: a smaller image grid for the same object.
    air
        Subtract, per view, the line integral the data show beside the object (:func:`air_level`: a drift of
        the beam between the flat fields and the projection, 0.005-0.02 on tomopy's tooth), so that air is
        zero; a constant offset across the detector would otherwise reconstruct as a faint disc with a bright
        rim filling the field of view. Nothing is subtracted where the object leaves fewer than 8 columns free.
    pitch_mm
        The detector column pitch at the sample (the effective pixel size) in mm, overriding what the file
        records; ``None``: the file's (module docstring), else lengths stay in column pitches.

    Returns
    -------
    CTScan
        ``sinogram`` float32 ``(V, n)`` line integrals (``-log`` transmission), ``angles`` in radians, parallel
        geometry with ``n x n`` pixels of side ``bin`` pitches (``bin * pitch`` mm where the pitch is known,
        and attenuation then per mm); ``provenance`` has ``slice``, ``rotation_axis``, ``rotation_axis_rms``
        (auto only), ``bin``, ``photons``, ``length_unit`` ("mm" or "detector column pitch"), ``pitch_mm``
        (where known), ``clipped_readings``, ``air_level`` (the mean level subtracted).
    """
    if isinstance(bin, bool) or not isinstance(bin, int | np.integer) or bin < 1:
        raise InreconError(f"bin={bin!r}", "give bin as a whole number of detector columns >= 1")
    if pitch_mm is not None:
        if isinstance(pitch_mm, bool) or not isinstance(pitch_mm, int | float | np.integer | np.floating):
            raise InreconError(
                f"pitch_mm={pitch_mm!r} is not a number", "give the column pitch at the sample in mm"
            )
        require_positive(pitch_mm, "pitch_mm")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise FileFormatError(f"cannot open {str(path)!r} as HDF5 ({exc})", "check the file") from None
    with f:
        if not is_dxchange(f):
            raise FileFormatError(
                f"{path}: no exchange/data and exchange/theta", "give a Data Exchange file (tomopy, dxchange)"
            )
        g = f["exchange"]
        data = g["data"]
        if data.ndim != 3:
            raise ShapeError(
                f"{path}: exchange/data has shape {data.shape}, not (angles, rows, columns)",
                "store the projections as a 3D array (angles, rows, columns)",
            )
        V, rows, N = (int(s) for s in data.shape)
        row = rows // 2 if slice is None else slice
        if isinstance(row, bool) or not isinstance(row, int | np.integer) or not 0 <= row < rows:
            raise InreconError(
                f"slice={slice!r} for a detector with {rows} rows", f"give 0 <= slice < {rows}"
            )
        theta = np.asarray(g["theta"][()], dtype=np.float64).reshape(-1)
        if theta.size != V:
            raise ShapeError(
                f"{path}: exchange/theta has {theta.size} angles but exchange/data has {V} projections",
                "store one angle (degrees) per projection",
            )
        proj = np.asarray(data[:, row, :], dtype=np.float64)
        white = _frames(g, "data_white", row, (rows, N), str(path))
        dark = _frames(g, "data_dark", row, (rows, N), str(path))
        title = g["title"][()] if "title" in g else None
        pitch = float(pitch_mm) if pitch_mm is not None else recorded_pitch_mm(f)
    if white is None:
        raise FileFormatError(
            f"{path}: no flat fields (exchange/data_white), so the readings cannot become line integrals",
            "add the flat-field frames, or normalise the projections yourself and save an inrecon HDF5 sinogram",
        )
    dark = np.zeros(N) if dark is None else dark
    for name, arr in (("data", proj), ("theta", theta), ("data_white", white), ("data_dark", dark)):
        if not np.all(np.isfinite(arr)):
            raise InreconError(f"{path}: exchange/{name} holds NaN or infinite values", "repair or drop them")
    beam = white - dark
    if np.any(beam <= 0):
        bad = int(np.count_nonzero(beam <= 0))
        raise InreconError(
            f"{path}: the flat field is not above the dark field in {bad} of {N} columns of row {row}",
            "check that data_white and data_dark are not swapped, or choose another row",
        )
    if np.ptp(theta) > 370:
        raise InreconError(
            f"{path}: exchange/theta spans {np.ptp(theta):.1f}, more than a turn of 360 degrees",
            "store the angles in degrees, one turn at most",
        )
    transmission = (proj - dark) / beam
    floor = 1.0 / float(beam.mean())  # one detector unit: nothing reads below it
    clipped = int(np.count_nonzero(transmission < floor))
    sino = -np.log(np.clip(transmission, floor, None))
    angles = np.deg2rad(theta)
    level = air_level(sino)[0] if air else np.zeros(V)
    sino = sino - level[:, None]
    rms = None
    if isinstance(center, str):
        if center != "auto":
            raise InreconError(f"center={center!r}", 'give the axis as a column coordinate or "auto"')
        axis, rms = rotation_axis(sino, angles)
    else:
        axis = float(center)
    if not (math.isfinite(axis) and 0 <= axis <= N - 1):
        raise InreconError(
            f"the rotation axis {axis:.2f} lies outside the detector's columns 0..{N - 1}",
            "give center=<column> inside the detector" if rms is None else "give center=<column> yourself",
        )
    half = min(axis + 0.5, N - 0.5 - axis)  # the widest window with data on both sides of the axis
    if crop:
        cols = _object_columns(sino)
        half = min(half, max(axis - cols.min(), cols.max() - axis) + 0.5 + _CROP_MARGIN)
    n = int(2 * half // bin)
    if n < 2:
        raise InreconError(
            f"bin={bin} leaves {n} detector cell(s) around the axis at column {axis:.2f}",
            "use a smaller bin",
        )
    binned = _resample(sino, axis, n, int(bin))
    cell = float(bin) * (pitch or 1.0)  # a binned detector cell and an image pixel, in mm or in pitches
    geometry = CTGeometry(
        kind="parallel", n_detectors=n, detector_spacing_mm=cell, image_shape=(n, n), pixel_size_mm=cell
    )
    prov = {
        "format": "dxchange",
        "slice": int(row),
        "rotation_axis": axis,
        "bin": int(bin),
        "crop": bool(crop),
        "photons": float(beam.mean()),
        "length_unit": "detector column pitch" if pitch is None else "mm",
        "clipped_readings": clipped,
        "air_level": float(level.mean()),
    }
    if pitch is not None:
        prov["pitch_mm"] = pitch
    if rms is not None:
        prov["rotation_axis_rms"] = rms
    if title is not None:
        prov["title"] = title.decode() if isinstance(title, bytes) else str(title)
    return CTScan(
        sinogram=binned.astype(np.float32),
        angles=angles.astype(np.float32),
        geometry=geometry,
        provenance=prov,
    )
