"""Measurement models for fitting: a scan as flat data ``y (M,)`` plus ``predict(image) -> (M,)``.

Every INR method (and the bilevel split) works on these, so a new modality only needs a new problem class.
Data are scaled by their maximum magnitude (METHODS.md section 3); :attr:`Problem.scale` undoes it for the
output image.

Hold-out splits follow :func:`split_units`: the *units* that are split are k-space locations for Cartesian MRI
(all coils of a location go together), trajectory samples for non-Cartesian MRI, and sinogram entries for CT.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from inrecon.data.scans import CTScan, MRIScan, VolumeScan
from inrecon.errors import InreconError
from inrecon.physics.factory import build_operator

__all__ = [
    "CTProblem",
    "MRIProblem",
    "Problem",
    "VolumeProblem",
    "make_problem",
    "resolve_maps",
    "split_units",
]


def split_units(n_units: int, fraction: float, seed: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded pointwise random split of ``n_units`` acquired units into (train, val) index vectors.

    ``fraction`` of the units (rounded) go to validation. The generator is a CPU ``torch.Generator`` seeded with
    ``seed``, so the split is identical on every device and platform.
    """
    if not 0.0 < fraction < 1.0:
        raise InreconError(
            f"hold-out fraction {fraction} is not in (0, 1)", "use e.g. 0.2 for an 80/20 split"
        )
    g = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(n_units, generator=g)
    n_val = max(1, int(round(fraction * n_units)))
    val = perm[:n_val].sort().values
    train = perm[n_val:].sort().values
    return train.to(device), val.to(device)


def resolve_maps(scan: MRIScan, how: str = "auto") -> torch.Tensor:
    """Coil maps for ``scan``: its own ``sens_maps``, else ESPIRiT from the calibration region."""
    if how not in ("auto", "espirit", "scan"):
        raise InreconError(f"maps={how!r} is not understood", "use auto, espirit or scan")
    if scan.sens_maps is not None and how in ("auto", "scan"):
        return scan.sens_maps
    if how == "scan":
        raise InreconError("the scan holds no sens_maps", "use maps=auto to estimate them with ESPIRiT")
    from inrecon.physics.coils import espirit_maps

    if scan.is_cartesian:
        return espirit_maps(scan.kspace, mask=scan.mask)
    from inrecon.physics.coils import espirit_maps_noncartesian

    return espirit_maps_noncartesian(scan)


@dataclass
class Problem:
    """Base: ``y`` (M,) scaled data, ``scale`` (data were divided by it), output kind and reference."""

    y: torch.Tensor
    scale: float
    image_shape: tuple[int, ...]
    complex_output: bool
    target: torch.Tensor | None
    roi: torch.Tensor | None
    n_units: int

    def predict(self, image: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def unit_to_samples(self, units: torch.Tensor) -> torch.Tensor:
        """Sample indices (into ``y``) belonging to the given unit indices."""
        return units

    def split(self, fraction: float = 0.2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        tr, va = split_units(self.n_units, fraction, seed)
        return self.unit_to_samples(tr.to(self.y.device)), self.unit_to_samples(va.to(self.y.device))

    def finalize(self, image: torch.Tensor) -> torch.Tensor:
        """Undo the data scaling (and apply modality-specific finishing)."""
        return image * self.scale


class MRIProblem(Problem):
    """Multi-coil MRI with known or estimated coil maps (Cartesian SENSE or NUFFT)."""

    def __init__(self, scan: MRIScan, maps: torch.Tensor):
        self.op = build_operator(scan, maps=maps)
        self.maps = maps
        self.support = (maps.abs() > 0).any(0)
        C = scan.n_coils
        if scan.is_cartesian:
            pos = torch.nonzero(scan.mask.reshape(-1), as_tuple=False).squeeze(1)
            n_grid = scan.mask.numel()
            # sample s = coil c at location pos[u]: flat index c * n_grid + pos[u]; ordered unit-major
            self._pos = pos
            self._n_grid = n_grid
            idx = (torch.arange(C, device=pos.device)[None, :] * n_grid + pos[:, None]).reshape(-1)
            self._idx = idx
            y = scan.kspace.reshape(-1)[idx]
            n_units = pos.numel()
        else:
            K = scan.kspace.shape[1]
            self._idx = None
            y = scan.kspace.transpose(0, 1).reshape(-1)  # unit-major: (K, C)
            n_units = K
        self._C = C
        scale = float(y.abs().max())
        if scale == 0.0:
            raise InreconError("the k-space holds only zeros", "check the input file")
        super().__init__(
            y=y / scale,
            scale=scale,
            image_shape=scan.image_shape,
            complex_output=True,
            target=scan.target,
            roi=scan.roi,
            n_units=n_units,
        )
        self.cartesian = scan.is_cartesian

    def predict(self, image: torch.Tensor) -> torch.Tensor:
        k = self.op(image)
        if self.cartesian:
            return k.reshape(-1)[self._idx]
        return k.transpose(0, 1).reshape(-1)

    def unit_to_samples(self, units: torch.Tensor) -> torch.Tensor:
        return (units[:, None] * self._C + torch.arange(self._C, device=units.device)[None, :]).reshape(-1)

    def finalize(self, image: torch.Tensor) -> torch.Tensor:
        return image * self.support.to(image.dtype) * self.scale


class CTProblem(Problem):
    """2D CT: the predicted sinogram's entries are the samples (all acquired).

    ``precondition="ramp"`` (the default for INR fitting) compares sinograms after the square root of the
    Ram-Lak ramp filter along the detector axis, ``P``: the loss ``||P (A x - y)||^2`` is a weighted least-squares
    fit of the same data whose normal operator ``A^T P^T P A`` is close to the identity (FBP's
    ``A^T R`` inverts ``A``), where plain ``||A x - y||^2`` has the ``1/|w|`` spectrum of ``A^T A`` and recovers
    fine detail hundreds of times more slowly than coarse (measured: `benchmarks/RESULTS.md`).
    ``"none"`` fits the raw sinogram.
    """

    def __init__(self, scan: CTScan, precondition: str = "ramp"):
        if precondition not in ("ramp", "none"):
            raise InreconError(f"CT precondition={precondition!r}", "use 'ramp' or 'none'")
        self.op = build_operator(scan)
        self.precondition = precondition
        self.n_views, self.n_det = scan.sinogram.shape
        self._sqrt_ramp = None
        if precondition == "ramp":
            from inrecon.physics.fbp import ramp_filter

            n_pad = max(64, 1 << (2 * self.n_det - 1).bit_length())
            resp = ramp_filter(n_pad, float(scan.geometry.detector_spacing_mm), device=scan.sinogram.device)
            self._n_pad = n_pad
            self._sqrt_ramp = resp.clamp_min(0).sqrt()
        y = self._filter(scan.sinogram).reshape(-1)
        scale = float(y.abs().max())
        if scale == 0.0:
            raise InreconError("the sinogram holds only zeros", "check the input file")
        super().__init__(
            y=y / scale,
            scale=scale,
            image_shape=scan.image_shape,
            complex_output=False,
            target=scan.target,
            roi=scan.roi,
            n_units=y.numel(),
        )

    def _filter(self, sino: torch.Tensor) -> torch.Tensor:
        """``P sino`` for ``(V, N)`` sinograms (identity without preconditioning)."""
        if self._sqrt_ramp is None:
            return sino
        spec = torch.fft.rfft(sino, n=self._n_pad, dim=-1)
        return torch.fft.irfft(spec * self._sqrt_ramp, n=self._n_pad, dim=-1)[..., : self.n_det]

    def predict(self, image: torch.Tensor) -> torch.Tensor:
        return self._filter(self.op(image).reshape(self.n_views, self.n_det)).reshape(-1)


class VolumeProblem(Problem):
    """Volume (or image) fitting: identity measurement; large volumes are fitted in coordinate batches."""

    def __init__(self, scan: VolumeScan):
        v = scan.volume
        scale = float(v.abs().max()) or 1.0
        super().__init__(
            y=v.reshape(-1) / scale,
            scale=scale,
            image_shape=tuple(v.shape),
            complex_output=False,
            target=scan.target,
            roi=scan.roi,
            n_units=v.numel(),
        )

    def predict(self, image: torch.Tensor) -> torch.Tensor:
        return image.reshape(-1)


def make_problem(scan, maps: str = "auto", ct_precondition: str = "ramp") -> Problem:
    """The measurement model of ``scan`` (MRI maps resolved with :func:`resolve_maps`; CT sinograms compared
    after ``ct_precondition``, see :class:`CTProblem`)."""
    if isinstance(scan, MRIScan):
        return MRIProblem(scan, resolve_maps(scan, maps))
    if isinstance(scan, CTScan):
        return CTProblem(scan, ct_precondition)
    if isinstance(scan, VolumeScan):
        return VolumeProblem(scan)
    raise InreconError(f"cannot fit {type(scan).__name__}", "pass an MRI, CT or volume scan")
