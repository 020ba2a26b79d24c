"""Typed containers for one scan: the measurement, what the forward model needs, and an optional reference.

Each container validates itself on construction (shapes, dtypes, NaN/Inf, mask consistency, geometry) and
raises :class:`~inrecon.errors.InreconError` naming the problem and the fix, so nothing long starts on bad
input. ``.to(device)`` moves every tensor. The on-disk layout is documented in the README ("The inrecon HDF5
contract") and implemented in :mod:`inrecon.data.io.hdf5`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from inrecon.checks import require_complex, require_finite, require_ndim, require_real, require_shape
from inrecon.errors import InreconError, ShapeError

__all__ = ["CTGeometry", "CTScan", "MRIScan", "Scan", "VolumeScan", "as_tensor"]


def as_tensor(x: Any, dtype: torch.dtype | None = None) -> torch.Tensor:
    """numpy array / list / tensor -> tensor (no copy when possible), optionally cast."""
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.ascontiguousarray(x))
    return t.to(dtype) if dtype is not None and t.dtype != dtype else t


def _move(obj, device):
    changes = {}
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if isinstance(v, torch.Tensor):
            changes[f.name] = v.to(device)
    return dataclasses.replace(obj, **changes) if changes else obj


def _as_mask(mask: Any, shape: tuple[int, ...], name: str = "mask") -> torch.Tensor:
    m = as_tensor(mask)
    if m.is_complex() or (m.dtype != torch.bool and not bool(torch.all((m == 0) | (m == 1)))):
        raise InreconError(
            f"{name} must hold only 0 and 1 (got dtype {m.dtype} with other values)",
            f"store {name} as uint8 with 1 where a sample was acquired",
        )
    require_shape(m, name, shape, "it must match the k-space grid")
    return m.to(torch.bool)


def _data(x: Any, name: str, complex_: bool) -> torch.Tensor:
    """Measured data as a finite complex64 (MRI) or float32 (CT, volumes) tensor."""
    (require_complex if complex_ else require_real)(x, name)
    t = as_tensor(x, torch.complex64 if complex_ else torch.float32)
    require_finite(t, name)
    return t


def _reference(target: Any, roi: Any, shape: tuple[int, ...], complex_ok: bool) -> tuple[Any, Any]:
    """A scan's reference image (float32, or complex64 where allowed) and ROI, checked against ``shape``."""
    if target is not None:
        t = as_tensor(target)
        if not complex_ok:
            require_real(t, "target")
        target = t.to(torch.complex64) if t.is_complex() else t.to(torch.float32)
        require_shape(target, "target", shape, "the reference must be on the reconstruction grid")
        require_finite(target, "target")
    return target, (None if roi is None else _as_mask(roi, shape, "roi"))


class _Scan:
    """What every scan container can do: say its device (that of ``_DATA``) and move to another."""

    _DATA = ""

    @property
    def device(self) -> torch.device:
        return getattr(self, self._DATA).device

    def to(self, device):
        """A copy with every tensor on ``device``."""
        return _move(self, device)


@dataclass
class MRIScan(_Scan):
    """One MRI acquisition, Cartesian or non-Cartesian.

    Attributes
    ----------
    kspace
        complex64. Cartesian: ``(C, H, W)`` or ``(C, D, H, W)``, centred and orthonormal, zero where not
        sampled. Non-Cartesian: ``(C, K)`` samples along ``trajectory``.
    mask
        Cartesian only: bool ``(H, W)`` / ``(D, H, W)``, True where acquired. Derived from non-zero k-space
        when not given.
    trajectory
        Non-Cartesian only: float32 ``(K, 2)`` or ``(K, 3)`` in radians, each coordinate in [-pi, pi);
        coordinate order matches the image axes (``(ky, kx)`` for an ``(H, W)`` image).
    image_shape
        Reconstruction grid ``(H, W)`` or ``(D, H, W)``.
    dcf
        Optional density-compensation weights ``(K,)`` for non-Cartesian data.
    sens_maps
        Optional coil sensitivities, complex64 ``(C, *image_shape)``.
    target
        Optional reference image on the reconstruction grid (magnitude or complex).
    roi
        Optional bool region of interest on the reconstruction grid, used by the metrics.
    provenance
        Free-form metadata (source file, simulation parameters, ...).
    """

    modality = "mri"
    _DATA = "kspace"

    kspace: torch.Tensor
    mask: torch.Tensor | None = None
    trajectory: torch.Tensor | None = None
    image_shape: tuple[int, ...] | None = None
    dcf: torch.Tensor | None = None
    sens_maps: torch.Tensor | None = None
    target: torch.Tensor | None = None
    roi: torch.Tensor | None = None
    provenance: dict = field(default_factory=dict)

    def __post_init__(self):
        self.kspace = _data(self.kspace, "kspace", complex_=True)
        if self.trajectory is None:
            self._validate_cartesian()
        else:
            self._validate_noncartesian()
        shape = self.image_shape
        if self.sens_maps is not None:
            require_complex(self.sens_maps, "sens_maps")
            self.sens_maps = as_tensor(self.sens_maps, torch.complex64)
            require_shape(self.sens_maps, "sens_maps", (self.n_coils, *shape), "(coils, *image_shape)")
            require_finite(self.sens_maps, "sens_maps")
        self.target, self.roi = _reference(self.target, self.roi, shape, complex_ok=True)

    def _validate_cartesian(self) -> None:
        require_ndim(self.kspace, "kspace", (3, 4), "(coils, H, W) or (coils, D, H, W)")
        grid = tuple(self.kspace.shape[1:])
        if self.image_shape is not None and tuple(self.image_shape) != grid:
            raise ShapeError(
                f"image_shape {tuple(self.image_shape)} differs from the Cartesian k-space grid {grid}",
                "drop image_shape or make it equal to kspace.shape[1:]",
            )
        self.image_shape = grid
        if self.mask is None:
            self.mask = (self.kspace != 0).any(0)
        else:
            self.mask = _as_mask(self.mask, grid)
            self._check_mask_matches()
        if int(self.mask.sum()) == 0:
            raise InreconError(
                "the sampling mask is empty (no acquired samples)", "check the mask and k-space"
            )

    def _check_mask_matches(self) -> None:
        nonzero = (self.kspace != 0).any(0)
        outside = int((nonzero & ~self.mask).sum())
        if outside:
            raise InreconError(
                f"mask does not match kspace: {outside} k-space locations outside the mask hold data",
                "use the mask the data was acquired with, or zero k-space where mask == 0",
            )
        n = int(self.mask.sum())
        empty = int((self.mask & ~nonzero).sum())
        if empty > max(1, n // 2):
            raise InreconError(
                f"mask does not match kspace: {empty} of {n} sampled locations hold no data",
                "use the mask the data was acquired with (is it transposed or flipped?)",
            )

    def _validate_noncartesian(self) -> None:
        require_ndim(self.kspace, "kspace", (2,), "(coils, samples) for non-Cartesian data")
        traj = as_tensor(self.trajectory)
        require_real(traj, "trajectory")
        traj = traj.to(torch.float32)
        require_ndim(traj, "trajectory", (2,), "(samples, 2) or (samples, 3)")
        if traj.shape[1] not in (2, 3) or traj.shape[0] != self.kspace.shape[1]:
            raise ShapeError(
                f"trajectory has shape {tuple(traj.shape)} but kspace has {self.kspace.shape[1]} samples",
                f"give trajectory the shape ({self.kspace.shape[1]}, 2) or ({self.kspace.shape[1]}, 3)",
            )
        require_finite(traj, "trajectory")
        lo, hi = float(traj.min()), float(traj.max())
        if lo < -math.pi - 1e-4 or hi >= math.pi + 1e-4:
            raise InreconError(
                f"trajectory spans [{lo:.3f}, {hi:.3f}] but must lie in [-pi, pi) radians",
                "scale it: k in cycles/FOV times 2*pi/N, or k in [-0.5, 0.5) times 2*pi",
            )
        self.trajectory = traj
        if self.image_shape is None:
            raise InreconError(
                "non-Cartesian data needs image_shape", "set the image_shape attribute, e.g. (256, 256)"
            )
        self.image_shape = tuple(int(s) for s in self.image_shape)
        if not self.image_shape or min(self.image_shape) < 1:
            raise ShapeError(
                f"image_shape {self.image_shape} has an empty axis",
                "set image_shape to the reconstruction grid, e.g. (256, 256)",
            )
        if len(self.image_shape) != traj.shape[1]:
            raise ShapeError(
                f"image_shape {self.image_shape} has {len(self.image_shape)} axes but the trajectory is "
                f"{traj.shape[1]}D",
                "give one image axis per trajectory coordinate",
            )
        if self.dcf is not None:
            d = as_tensor(self.dcf)
            require_real(d, "dcf")
            d = d.to(torch.float32).reshape(-1)
            require_shape(d, "dcf", (traj.shape[0],), "one weight per k-space sample")
            require_finite(d, "dcf")
            self.dcf = d

    # --- convenience -------------------------------------------------------------------------------------
    @property
    def is_cartesian(self) -> bool:
        return self.trajectory is None

    @property
    def n_coils(self) -> int:
        return int(self.kspace.shape[0])

    @property
    def ndim(self) -> int:
        """Number of spatial dimensions (2 or 3)."""
        return len(self.image_shape)

    @property
    def acceleration(self) -> float:
        """Nominal acceleration: grid points / acquired samples (Cartesian) or Nyquist radial estimate."""
        n = math.prod(self.image_shape)
        if self.is_cartesian:
            return n / max(1, int(self.mask.sum()))
        return n / max(1, self.kspace.shape[1])


@dataclass(frozen=True)
class CTGeometry:
    """2D CT geometry in ASTRA's ``fanflat`` / ``parallel`` conventions, lengths in mm.

    Image axes: column index -> x (left to right), row index -> y with row 0 at the *top* (largest y); pixel
    ``(r, c)`` sits at ``x = (c - W/2 + 1/2) * pixel_size_mm``, ``y = (H/2 - 1/2 - r) * pixel_size_mm``.
    At view angle ``theta`` the detector axis is ``u = (cos theta, sin theta)`` and detector ``i`` sits at
    ``(i - N/2 + 1/2) * detector_spacing_mm`` along it. Parallel rays travel along ``(sin theta, -cos theta)``;
    the fan source sits at ``source_to_center_mm * (sin theta, -cos theta)`` and the flat detector's centre at
    ``center_to_detector_mm * (-sin theta, cos theta)``.
    """

    kind: str
    n_detectors: int
    detector_spacing_mm: float
    image_shape: tuple[int, int]
    pixel_size_mm: float = 1.0
    source_to_center_mm: float | None = None
    center_to_detector_mm: float | None = None

    def __post_init__(self):
        if self.kind not in ("fan", "parallel"):
            raise InreconError(f"geometry is {self.kind!r}", 'use "fan" or "parallel"')
        if len(self.image_shape) != 2 or min(self.image_shape) < 1:
            raise ShapeError(f"image_shape {self.image_shape} is not a 2D grid", "give (H, W) with H, W >= 1")
        object.__setattr__(self, "image_shape", tuple(int(s) for s in self.image_shape))
        for name in ("detector_spacing_mm", "pixel_size_mm"):
            v = float(getattr(self, name))
            if not (math.isfinite(v) and v > 0):
                raise InreconError(f"{name} is {v} but must be > 0", f"set {name} to the physical size in mm")
        if int(self.n_detectors) < 1:
            raise InreconError(f"n_detectors is {self.n_detectors}", "give the number of detector elements")
        if self.kind == "fan":
            sod, odd = self.source_to_center_mm, self.center_to_detector_mm
            if sod is None or odd is None:
                raise InreconError(
                    "fan-beam geometry needs source_to_center_mm and center_to_detector_mm",
                    "set both distances (mm)",
                )
            if not (sod > 0 and odd >= 0):
                raise InreconError(
                    f"impossible fan geometry: source_to_center_mm={sod}, center_to_detector_mm={odd}",
                    "distances must be positive",
                )
            radius = 0.5 * math.hypot(*self.image_shape) * self.pixel_size_mm
            if sod <= radius:
                raise InreconError(
                    f"impossible fan geometry: the source ({sod} mm from the centre) lies inside the image "
                    f"field of view (radius {radius:.1f} mm)",
                    "increase source_to_center_mm or reduce pixel_size_mm / image_shape",
                )

    @property
    def detector_width_mm(self) -> float:
        return self.n_detectors * self.detector_spacing_mm

    @property
    def magnification(self) -> float:
        if self.kind == "parallel":
            return 1.0
        return (self.source_to_center_mm + self.center_to_detector_mm) / self.source_to_center_mm

    ATTRS = (
        "geometry",
        "n_detectors",
        "detector_spacing_mm",
        "pixel_size_mm",
        "source_to_center_mm",
        "center_to_detector_mm",
    )
    """The geometry's attribute names in the HDF5 contract (besides ``image_shape``)."""

    def to_attrs(self) -> dict:
        """HDF5 attributes of the contract."""
        d = {
            "geometry": self.kind,
            "n_detectors": int(self.n_detectors),
            "detector_spacing_mm": float(self.detector_spacing_mm),
            "pixel_size_mm": float(self.pixel_size_mm),
            "image_shape": np.asarray(self.image_shape, dtype=np.int64),
        }
        if self.kind == "fan":
            d["source_to_center_mm"] = float(self.source_to_center_mm)
            d["center_to_detector_mm"] = float(self.center_to_detector_mm)
        return d


@dataclass
class CTScan(_Scan):
    """One 2D CT acquisition.

    Attributes
    ----------
    sinogram
        float32 ``(V, N)``: line integrals (attenuation per mm times mm) for V views and N detectors.
    angles
        float32 ``(V,)`` view angles in radians (ASTRA convention, see :class:`CTGeometry`).
    geometry
        The :class:`CTGeometry`.
    target
        Optional reference image ``image_shape`` in the same units as the reconstruction.
    """

    modality = "ct"
    _DATA = "sinogram"

    sinogram: torch.Tensor
    angles: torch.Tensor
    geometry: CTGeometry
    target: torch.Tensor | None = None
    roi: torch.Tensor | None = None
    provenance: dict = field(default_factory=dict)

    def __post_init__(self):
        self.sinogram = _data(self.sinogram, "sinogram", complex_=False)
        require_ndim(self.sinogram, "sinogram", (2,), "(views, detectors)")
        a = as_tensor(self.angles)
        require_real(a, "angles")
        a = a.to(torch.float32).reshape(-1)
        require_finite(a, "angles")
        span = float(a.max() - a.min()) if a.numel() else 0.0
        if span > 7.0:  # a full scan spans < 2 pi; degrees span up to 360
            raise InreconError(
                f"angles span {span:.1f} (from {float(a.min()):.4g} to {float(a.max()):.4g}), more than a full "
                "turn of 2 pi: radians expected, these look like degrees",
                "convert the angles to radians (multiply by pi / 180)",
            )
        self.angles = a
        v, n = self.sinogram.shape
        if a.numel() != v:
            raise ShapeError(
                f"sinogram has {v} views (rows) but angles has {a.numel()} entries",
                "give one angle per sinogram row (transpose the sinogram if it is (detectors, views))",
            )
        if n != self.geometry.n_detectors:
            raise ShapeError(
                f"sinogram has {n} detector columns but the geometry says n_detectors={self.geometry.n_detectors}",
                "fix n_detectors or transpose the sinogram to (views, detectors)",
            )
        self.target, self.roi = _reference(self.target, self.roi, self.geometry.image_shape, complex_ok=False)

    @property
    def image_shape(self) -> tuple[int, int]:
        return self.geometry.image_shape

    @property
    def n_views(self) -> int:
        return int(self.angles.numel())


@dataclass
class VolumeScan(_Scan):
    """Volume fitting: the "measurement" is the volume itself (identity forward model).

    Attributes
    ----------
    volume
        float32 ``(D, H, W)`` (or ``(H, W)`` for 2D image fitting).
    """

    modality = "volume"
    _DATA = "volume"

    volume: torch.Tensor
    target: torch.Tensor | None = None
    roi: torch.Tensor | None = None
    provenance: dict = field(default_factory=dict)

    def __post_init__(self):
        self.volume = _data(self.volume, "volume", complex_=False)
        require_ndim(self.volume, "volume", (2, 3), "(D, H, W) or (H, W)")
        target = self.volume if self.target is None else self.target  # the volume is its own reference
        self.target, self.roi = _reference(target, self.roi, tuple(self.volume.shape), complex_ok=False)

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.volume.shape)


@dataclass
class SeriesScan:
    """A real-time MRI series: 2D Cartesian frames of one grid and one coil array (residual learning).

    Attributes
    ----------
    frames
        One :class:`MRIScan` per frame; frame 0 is usually fully sampled.
    provenance
        Free-form metadata.
    """

    frames: list[MRIScan]
    provenance: dict = field(default_factory=dict)

    modality = "mri-series"

    def __post_init__(self):
        if not self.frames:
            raise InreconError("the series has no frames", "give at least one frame")
        f0 = self.frames[0]
        for t, fr in enumerate(self.frames):
            if not isinstance(fr, MRIScan) or not fr.is_cartesian:
                raise InreconError(
                    f"frame {t} is not a Cartesian MRI scan", "series hold Cartesian MRI frames"
                )
            if fr.image_shape != f0.image_shape or fr.n_coils != f0.n_coils or fr.ndim != 2:
                raise ShapeError(
                    f"frame {t} has grid {fr.image_shape} and {fr.n_coils} coils, frame 0 {f0.image_shape} and "
                    f"{f0.n_coils}",
                    "give 2D frames of one grid and one coil array",
                )

    @property
    def n_frames(self) -> int:
        return len(self.frames)

    @property
    def image_shape(self) -> tuple[int, ...]:
        return self.frames[0].image_shape

    @property
    def target(self) -> torch.Tensor | None:
        """The frames' references stacked ``(T, H, W)`` (``None`` unless every frame has one)."""
        if any(fr.target is None for fr in self.frames):
            return None
        return torch.stack([fr.target for fr in self.frames])

    @property
    def roi(self) -> torch.Tensor | None:
        if any(fr.roi is None for fr in self.frames):
            return None
        return torch.stack([fr.roi for fr in self.frames])

    @property
    def device(self) -> torch.device:
        return self.frames[0].kspace.device

    def to(self, device) -> SeriesScan:
        return SeriesScan([fr.to(device) for fr in self.frames], dict(self.provenance))


Scan = MRIScan | CTScan | VolumeScan | SeriesScan
