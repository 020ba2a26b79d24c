"""The one measurement model: a scan as flat samples ``y (M,)`` and a linear operator from the image to them.

Every reconstruction -- the classical solvers and every INR method -- sees a scan through a
:class:`Measurement` built by :func:`build_measurement`, composed from operators:

- Cartesian MRI: ``A = Select(acquired locations x coils) @ F @ S`` (:class:`~inrecon.physics.mri.SenseOp`
  with the maps of :func:`~inrecon.physics.coils.coil_maps`); ``coil_images=True`` drops ``S`` (the domain is
  then the coil images ``(C, *image_shape)``, IMJENSE and root-sum-of-squares).
- Non-Cartesian MRI: ``A = Select(reorder) @ NUFFT @ S``.
- CT: ``A = Select(all entries) @ W @ P`` with the projector ``P`` and the data weighting ``W``: the square root
  of the ramp filter along the detector (``ct_weighting="ramp"``, the INR data term: ``||W (P x - y)||^2`` is a
  weighted least-squares fit of the same data whose normal operator is close to the identity, where the raw
  ``||P x - y||^2`` has the ``1/|w|`` spectrum of ``P^T P``), the square root of statistical weights
  proportional to the detected counts (``"counts"``: penalised-weighted-least-squares weighting of Poisson
  data, :func:`count_weights`), both (``"ramp+counts"``), or nothing (``"none"``, classical solvers).
  With ``ct_supersample=k`` the projector acts on a grid ``k`` times finer over the same field of view, and
  :meth:`Measurement.finalize` returns the ``k x k`` block mean on the scan's grid.
- Volume fitting: ``A = Select(all) @ I``.

Samples are ordered location by location (MRI: all coils of one k-space location or trajectory sample together),
view by view (CT) or voxel by voxel. A *unit* is what a hold-out split draws as one piece: a k-space location or a
trajectory sample with all its coils, or a whole readout (MRI, ``mri_units``), a sinogram entry or a whole
view (CT, ``ct_units``), a voxel (volumes). :meth:`Measurement.split` is the one seeded hold-out split of the
library: a random draw of units, or, for CT views with ``ct_split="spread"``, views evenly spread over the angles
(every fifth view for a 20 % share, from a seeded random offset) so that every held-out view lies between two
fitted ones. :meth:`Measurement.subset` restricts the model to some samples (``Select`` composed once more), so
the training and held-out parts of a split are measurements too.

Data are divided by ``scale``: the largest sample magnitude (``scale="max"``, the INR convention of
docs/methods.md section 3), a robust image scale (``"robust"``: the 99th percentile of ``|A^H y|``, the classical
solvers' convention), the same percentile of the best-fitting multiple of ``A^H y`` (``"image"``: ``alpha A^H y``
with ``alpha = ||A^H y||^2 / ||A A^H y||^2``, the first gradient step from zero, so that the image to be fitted
peaks near 1 whatever the FFT or NUFFT normalisation, matrix size, sampling density and coil count), the largest root-sum-of-squares of the zero-filled coil images (``"coil_rss"``, IMJENSE),
or 1 (``"none"``). :meth:`Measurement.finalize` maps an image fitted to the scaled data back to the scan's units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import torch

from inrecon.config import PosInt
from inrecon.data.scans import CTScan, MRIScan, VolumeScan
from inrecon.errors import InreconError, ShapeError
from inrecon.physics.fbp import FILTERS
from inrecon.physics.operator import Identity, LinearOperator, Select

__all__ = [
    "AUTO_SUPERSAMPLE_CPU_PIXELS",
    "CT_SPLITS",
    "CT_UNITS",
    "CT_WEIGHTINGS",
    "MRI_UNITS",
    "SCALES",
    "Measurement",
    "MeasurementConfig",
    "SampleDensity",
    "build_measurement",
    "count_weights",
    "joint_coil_measurement",
    "measure",
    "readout_lines",
    "resolve_ct_supersample",
    "robust_scale",
    "sample_areas",
    "sinogram_noise",
    "supersampled_geometry",
    "trajectory_readouts",
]

CT_WEIGHTINGS = ("ramp", "counts", "ramp+counts", "none")
CT_UNITS = ("entry", "view")
CT_SPLITS = ("random", "spread")
MRI_UNITS = ("location", "readout")
SCALES = ("max", "robust", "image", "coil_rss", "none")


@dataclass
class MeasurementConfig:
    """How a scan's data enter a reconstruction."""

    maps: Literal["auto", "espirit", "scan"] = "auto"
    """MRI coil maps: the scan's own, else ESPIRiT (auto); always ESPIRiT; or the scan's (required)."""
    ct_weighting: Literal["ramp", "counts", "ramp+counts", "none"] = "ramp"
    """CT data term: ramp (sinograms compared after the square root of the ramp filter), counts (weighted by the
    expected detected counts when the scan records its photons per ray, else plain), ramp+counts, none."""
    ct_ramp_filter: Literal["ram-lak", "shepp-logan", "cosine", "hann"] = "ram-lak"
    """CT: the FBP filter whose square root weights the residual where ``ct_weighting`` has the ramp: the
    plain ramp (``ram-lak``), or a ramp apodised towards the detector's Nyquist frequency
    (:func:`~inrecon.physics.fbp.ramp_filter`). A real object's detail below the reconstruction grid puts most
    of its mismatch with any image on the grid at the highest detector frequencies, which the plain ramp
    weights most (benchmarks/RESULTS.md)."""
    ct_supersample: PosInt | Literal["auto"] = 1
    """CT: model the image on a grid this many times finer than the scan's (the same field of view) and
    reconstruct its block mean. A real object has detail below the reconstruction grid, which its sinogram
    carries and no image on that grid explains; on a finer grid the model can explain it, at ``k^2`` times the
    pixels to render and project (benchmarks/RESULTS.md). ``auto``: 2 where the scan is on a GPU (NGP's fits of
    the quality suite's CT cases took 1.5x the time there) or has at most 128 x 128 pixels (on the CPU 3x the
    time per step), 1 for a larger scan on the CPU; :func:`resolve_ct_supersample`."""
    ct_nonnegative: bool = True
    """CT: the reconstruction is projected onto ``x >= 0`` (:meth:`Measurement.finalize`): attenuation is never
    negative, as TV-CT and SART constrain their iterates. The projection onto a convex set holding the true image
    can only bring the image closer to it; NGP's images of the quality suite's CT cases gain 0.01-0.04 dB and
    DisINR's of the quick demo's phantoms 0.09-0.12 dB (benchmarks/RESULTS.md, stop 53). False: the fitted image
    as it is (negative values are noise and streaks)."""
    ct_units: Literal["entry", "view"] = "entry"
    """CT hold-out unit: single sinogram entries, or whole views."""
    ct_split: Literal["random", "spread"] = "random"
    """How held-out CT views are chosen (``ct_units="view"``): a random draw, which holds out neighbouring views
    together (angular gaps two or three times the acquired spacing, which no reconstruction from all the views is
    asked to fill), or evenly spread over the angles from a seeded random offset. TV-CT spreads them (on noisy
    lungdx the random draw chose a 2-3x too weak weight); for NGP's ``prior.tv=auto`` spreading won on the quality
    suite (noisy A0001 60 views 30.33 -> 31.82 dB) but chose too strong a weight on both independent 256^2 files
    (-1.2 / -1.1 dB), so the INR fits keep the random draw (benchmarks/RESULTS.md)."""
    mri_units: Literal["location", "readout"] = "location"
    """MRI hold-out unit: single k-space locations or trajectory samples (with all coils), or whole readouts, so
    that a held-out readout is predicted from other readouts, as the missing ones are. Cartesian: every acquired
    location on one line along a fully sampled axis of the mask (:func:`readout_lines`; a mask without such an
    axis, e.g. a 2D-undersampled slice of a 3D scan whose readout runs through the slice, keeps one unit per
    location). Non-Cartesian: runs of consecutive trajectory samples (:func:`trajectory_readouts`: spokes,
    interleaves)."""
    scale: Literal["max", "image", "model"] = "max"
    """How the data are normalised before fitting: by their largest sample magnitude (``max``), or so that the
    image peaks near 1 (``image``: the 99th percentile of ``alpha A^H y``, module docstring). With ``max`` the
    image's own magnitude depends on the matrix size, the FFT or NUFFT normalisation and the sampling density
    (0.04-0.16 on the quality suite's MRI scans), so a learning rate or weight decay means something different on
    each scan; with ``image`` it means the same. ``model`` (the population methods' adaptation default): as
    the pre-trained model's file records its pre-training did, ``max`` for a file that records none."""


def robust_scale(image: torch.Tensor, q: float = 0.99) -> float:
    """The ``q`` quantile of ``|image|`` (the maximum if that is 0; 1 for an all-zero image)."""
    v = image.detach().abs().reshape(-1).float()
    k = min(v.numel(), max(1, int(math.ceil(q * v.numel()))))
    s = float(torch.kthvalue(v.cpu(), k).values)
    if s <= 0:
        s = float(v.max())
    return s if s > 0 else 1.0


@dataclass
class Measurement:
    """A scan's samples and their forward model.

    Attributes
    ----------
    base
        The forward model before sample selection (physics and data weighting), e.g. ``W @ P`` for CT.
    idx
        ``(M,)`` long: which entries of ``base``'s flattened range are the samples, in unit order.
    y
        ``(M,)`` the measured samples (weighted like ``base``), divided by ``scale``.
    scale
        Data scale (module docstring).
    sample_unit
        ``(M,)`` long: the hold-out unit of each sample; ``n_units`` units in all.
    image_shape, complex_image
        The grid the image is modelled on (the operator's domain) and whether images are complex (MRI) or real
        (CT, volumes).
    target, roi
        The scan's reference and region of interest (or ``None``).
    support
        Bool image of the coil-map support (MRI with maps), zero outside in :meth:`finalize`; else ``None``.
    physics
        The bare forward model (SENSE / NUFFT / projector / identity), e.g. for ordered subsets.
    noise
        CT: the sinogram's estimated noise level relative to its magnitude (:func:`sinogram_noise`); else
        ``None``.
    peak
        The largest magnitude of the scaled samples of the whole scan (1 with ``scale="max"``): what a
        self-weighted loss's ``delta`` is relative to, so that it means the same under every scale.
    pointwise
        Sample ``i`` is pixel ``i`` of the image (volumes): fits may evaluate coordinate batches directly.
    unit_order
        ``(n_units,)`` long on the CPU: the units in acquisition order along a circle (CT views by angle), along
        which :meth:`split` spreads the held-out units evenly; ``None``: :meth:`split` draws them at random.
    supersample
        CT: ``image_shape`` is this many times finer than the scan's grid (the same field of view); the
        reconstruction is the block mean of the modelled image (:meth:`finalize`, :attr:`output_shape`).
    density_of_scan, density_rows
        What :attr:`density` is computed from: the scan's :class:`SampleDensity` and which of its samples this
        measurement's are (``None``: all; :meth:`subset` restricts it).
    density
        MRI: ``(M,)`` float, the share of k-space each sample stands for (:func:`sample_areas`: the Voronoi cell of
        its grid location for a Cartesian mask, the Pipe-Menon weight of a trajectory sample), mean 1 over the
        scan's samples; what a held-out loss weighted by ``stop.val_weight="density"`` multiplies each residual
        by, so that it estimates the image's error rather than the error where samples lie densely. ``None``
        for CT (the ramp in its data weighting already is the density of its polar samples) and volumes.
    nonnegative
        The image is a non-negative quantity (CT attenuation with ``ct_nonnegative``): :meth:`finalize` projects it
        onto ``x >= 0``.
    image_maps
        MRI coil-image measurements (:func:`joint_coil_measurement`): the maps ``(C, *image_shape)`` that
        combine ``A^H y`` into one image (:meth:`image_adjoint`: the priors' scale and smooth phase, a joint
        coil model's starting point); ``None``: the domain is the image, or the coil images stand alone.
    """

    base: LinearOperator
    idx: torch.Tensor
    y: torch.Tensor
    scale: float
    sample_unit: torch.Tensor
    n_units: int
    image_shape: tuple[int, ...]
    complex_image: bool
    target: torch.Tensor | None
    roi: torch.Tensor | None
    support: torch.Tensor | None
    physics: LinearOperator
    pointwise: bool = False
    noise: float | None = None
    peak: float = 1.0
    unit_order: torch.Tensor | None = None
    supersample: int = 1
    image_maps: torch.Tensor | None = None
    nonnegative: bool = False
    density_of_scan: SampleDensity | None = None
    density_rows: torch.Tensor | None = None

    @property
    def density(self) -> torch.Tensor | None:
        """MRI: ``(M,)`` the k-space area each sample stands for (the attribute's description above), computed from
        the scan on first use (a trajectory's Pipe-Menon weights take a pass of gridding) and kept; ``None`` for CT
        and volumes."""
        if self.density_of_scan is None:
            return None
        full = self.density_of_scan()
        return full if self.density_rows is None else full[self.density_rows]

    @property
    def output_shape(self) -> tuple[int, ...]:
        """The scan's grid: the shape of :meth:`finalize`'s image."""
        return tuple(n // self.supersample for n in self.image_shape)

    @property
    def n_samples(self) -> int:
        return int(self.y.numel())

    @property
    def op(self) -> LinearOperator:
        """``Select(idx) @ base``: image ``domain_shape`` -> samples ``(M,)``."""
        return Select(self.idx, self.base.range_shape) @ self.base

    @property
    def domain_shape(self) -> tuple[int, ...]:
        return tuple(self.base.domain_shape)

    def predict(self, image: torch.Tensor) -> torch.Tensor:
        """The samples ``(M,)`` an image (``domain_shape``) predicts (differentiable)."""
        if tuple(image.shape) != self.domain_shape:
            raise ShapeError(
                f"the image has shape {tuple(image.shape)} but the scan's forward model expects {self.domain_shape}",
                "reconstruct on the scan's grid (with the scan's own coil maps, or coil images without maps)",
            )
        return self.base(image).reshape(-1).index_select(0, self.idx)

    def adjoint(self, samples: torch.Tensor) -> torch.Tensor:
        """``A^H`` of samples ``(M,)``."""
        return self.op.adjoint(samples)

    def image_adjoint(self, samples: torch.Tensor) -> torch.Tensor:
        """``A^H`` of samples ``(M,)`` as one image ``image_shape``: coil images are combined with
        :attr:`image_maps` (``sum_c conj(S_c) x_c``) where the domain is the coil images."""
        x = self.adjoint(samples)
        return x if self.image_maps is None else (self.image_maps.conj() * x).sum(0)

    def normal(self):
        """``x -> A^H A x``: through the physics' own fast normal operator when it has one (SENSE in one pass,
        NUFFT by Toeplitz embedding, restricted to the selected samples), else ``A^H (A x)``."""
        fn = getattr(self.base, "masked_normal", None)
        if fn is not None:
            keep = torch.zeros(math.prod(self.base.range_shape), dtype=torch.bool, device=self.idx.device)
            keep[self.idx] = True
            return fn(keep.reshape(self.base.range_shape))
        op = self.op
        return lambda x: op.adjoint(op(x))

    def split(self, fraction: float = 0.2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Seeded split of the units into ``(train, val)`` sample indices (sorted).

        ``round(fraction * n_units)`` units (at least one) are held out: a random draw, or, with ``unit_order``,
        the units at positions ``floor(offset + k n_units / n_val)`` of that order (``k = 0 .. n_val - 1``) for a
        random ``offset`` in ``[0, n_units / n_val)``, so no two held-out units are neighbours while the share
        is below one half (the seed then only moves the offset: 60 views at 20 % have five distinct splits).
        The draw uses a CPU generator seeded with ``seed``, so the split is the same on every device.
        """
        if not 0.0 < float(fraction) < 1.0:
            raise InreconError(
                f"hold-out fraction {fraction} is not in (0, 1)", "use e.g. 0.2 for an 80/20 split"
            )
        if self.n_units < 2:
            raise InreconError(f"cannot split {self.n_units} acquired unit(s)", "acquire at least 2 samples")
        g = torch.Generator().manual_seed(int(seed))
        n_val = min(self.n_units - 1, max(1, int(round(float(fraction) * self.n_units))))
        if self.unit_order is None:
            held_units = torch.randperm(self.n_units, generator=g)[:n_val]
        else:
            step = self.n_units / n_val
            offset = float(torch.rand((), generator=g)) * step
            pos = torch.floor(offset + step * torch.arange(n_val, dtype=torch.float64)).long()
            held_units = self.unit_order[pos.clamp_max(self.n_units - 1)]
        is_val = torch.zeros(self.n_units, dtype=torch.bool)
        is_val[held_units] = True
        held = is_val.to(self.sample_unit.device)[self.sample_unit]
        return (~held).nonzero().reshape(-1), held.nonzero().reshape(-1)

    def subset(self, samples: torch.Tensor) -> Measurement:
        """The measurement of ``samples`` (indices into ``y``) only: the same operator, fewer samples."""
        samples = samples.to(self.idx.device)
        return replace(
            self,
            idx=self.idx[samples],
            y=self.y[samples],
            sample_unit=self.sample_unit[samples],
            density_rows=samples if self.density_rows is None else self.density_rows[samples],
            pointwise=False,
        )

    def finalize(self, image: torch.Tensor) -> torch.Tensor:
        """An image fitted to the scaled data, in the scan's units on the scan's grid (zero outside the coil
        support; the ``supersample x supersample`` block mean of a supersampled image; with :attr:`nonnegative`,
        negative values set to 0)."""
        if self.supersample > 1:
            k = self.supersample
            image = image.reshape(*self.output_shape[:-2], self.output_shape[-2], k, self.output_shape[-1], k)
            image = image.mean(dim=(-3, -1))
        if self.support is not None:
            image = image * self.support.to(image.dtype)
        if self.nonnegative:
            image = image.clamp_min(0.0)
        return image * self.scale


def _unit_major(n_units: int, n_per_unit: int, stride_unit: int, stride_inner: int, device) -> torch.Tensor:
    """Flat indices ``u * stride_unit + c * stride_inner`` ordered unit-major: ``(n_units * n_per_unit,)``."""
    u = torch.arange(n_units, device=device)[:, None] * stride_unit
    c = torch.arange(n_per_unit, device=device)[None, :] * stride_inner
    return (u + c).reshape(-1)


def readout_lines(mask: torch.Tensor) -> torch.Tensor | None:
    """The readout line of every location of a Cartesian ``mask`` (flat, C order) as ``(mask.numel(),)`` line
    ids, taking the last axis along which the mask is fully sampled or empty on every line as the readout;
    ``None`` when no axis is (e.g. a 2D Poisson-disc mask)."""
    m = mask.bool()
    for axis in reversed(range(m.ndim)):
        if bool((m.all(axis) | ~m.any(axis)).all()):
            rest = [n for a, n in enumerate(m.shape) if a != axis]
            ids = torch.arange(math.prod(rest), device=m.device).reshape(rest).unsqueeze(axis)
            return ids.expand(m.shape).reshape(-1)
    return None


def trajectory_readouts(trajectory: torch.Tensor) -> torch.Tensor | None:
    """The readout of every sample of a non-Cartesian ``trajectory (K, D)`` as ``(K,)`` ids: a new readout starts
    wherever the step to the next sample is more than 3x the median step (the jump from one spoke or interleave
    to the next). ``None`` when that finds fewer than 2 readouts or fewer than 16 samples per readout on average
    (samples not ordered along readouts)."""
    step = (trajectory[1:] - trajectory[:-1]).norm(dim=1)
    if step.numel() == 0:
        return None
    jump = step > 3 * step.median()
    n = int(jump.sum()) + 1
    if n < 2 or trajectory.shape[0] < 16 * n:
        return None
    return torch.cat([jump.new_zeros(1, dtype=torch.int64), jump.long().cumsum(0)])


def sample_areas(scan: MRIScan) -> torch.Tensor:
    """The share of k-space each acquired location of ``scan`` stands for, in grid cells: ``(n_locations,)``
    float32 in the order :func:`build_measurement` gives the locations (Cartesian: the mask's acquired cells in
    C order; non-Cartesian: the trajectory's samples).

    Cartesian: the cell count of each acquired location's Voronoi region on the grid (every grid cell counted
    for its nearest acquired location, ties to one), so a fully sampled region gives 1 per location, a line
    among every sixth gives about 6 per location, and the unacquired corners count for the acquired locations
    nearest to them. Non-Cartesian: the Pipe-Menon weights of the trajectory (``scan.dcf`` when the scan has
    them, else :func:`~inrecon.physics.nufft.density_compensation`). By Parseval, the image's squared error is
    the k-space error summed over every cell; the acquired samples weighted by these areas estimate that sum
    where the samples alone would weigh densely sampled regions (the calibration centre) by their density.
    """
    if scan.is_cartesian:
        import numpy as np
        from scipy import ndimage

        acquired = scan.mask.detach().bool().cpu().numpy()
        if acquired.all():
            return torch.ones(int(acquired.sum()), dtype=torch.float32, device=scan.kspace.device)
        nearest = ndimage.distance_transform_edt(~acquired, return_indices=True)[1]
        owner = np.ravel_multi_index(tuple(nearest), acquired.shape).reshape(-1)
        area = np.bincount(owner, minlength=acquired.size)[acquired.reshape(-1)]
        return torch.as_tensor(area, dtype=torch.float32, device=scan.kspace.device)
    from inrecon.physics.nufft import scan_density_compensation

    return scan_density_compensation(scan).detach().reshape(-1).to(torch.float32).to(scan.kspace.device)


class SampleDensity:
    """The :func:`sample_areas` of an MRI scan as one weight per sample of its measurement (every coil of a
    location alike; mean 1), computed on the first call and kept."""

    def __init__(self, scan: MRIScan):
        self.scan, self.value = scan, None

    def __call__(self) -> torch.Tensor:
        if self.value is None:
            area = sample_areas(self.scan)
            self.value = (area / area.mean().clamp_min(1e-12)).repeat_interleave(self.scan.n_coils)
            self.scan = None  # the scan is not held once the weights are known
        return self.value


def _mri(scan: MRIScan, maps: str, coil_images: bool, units: str = "location"):
    from inrecon.physics.coils import coil_maps

    s = None if coil_images else maps if isinstance(maps, torch.Tensor) else coil_maps(scan, maps)
    C = scan.n_coils
    if scan.is_cartesian:
        from inrecon.physics.mri import SenseOp

        op = (
            SenseOp(None, scan.mask, image_shape=scan.image_shape, n_coils=C)
            if s is None
            else SenseOp(s, scan.mask)
        )
        pos = scan.mask.reshape(-1).nonzero().reshape(-1)
        n_grid = scan.mask.numel()
        # sample (u, c) = coil c at acquired location pos[u]: flat index c * n_grid + pos[u]
        idx = (pos[:, None] + torch.arange(C, device=pos.device)[None, :] * n_grid).reshape(-1)
        data = scan.kspace.reshape(-1)[idx]
        loc_unit = torch.arange(pos.numel(), device=pos.device)
        lines = readout_lines(scan.mask) if units == "readout" else None
        if lines is not None:
            loc_unit = torch.unique(lines[pos], return_inverse=True)[1]
        n_units = int(loc_unit.max()) + 1 if loc_unit.numel() else 0
        unit = loc_unit.repeat_interleave(C)
    else:
        from inrecon.physics.nufft import NufftSenseOp

        op = NufftSenseOp(s, scan.trajectory, scan.image_shape, n_coils=C)
        K = scan.kspace.shape[1]
        idx = _unit_major(K, C, 1, K, scan.kspace.device)  # (C, K) range read as (K, C)
        data = scan.kspace.reshape(-1)[idx]
        readouts = trajectory_readouts(scan.trajectory) if units == "readout" else None
        if readouts is None:
            readouts = torch.arange(K)
        n_units = int(readouts.max()) + 1
        unit = readouts.to(idx.device).repeat_interleave(C)
    support = None if s is None else (s.abs() > 0).any(0)
    return op, op, idx, data, unit, n_units, support, SampleDensity(scan)


def sinogram_noise(sinogram: torch.Tensor) -> float:
    """The noise level of a sinogram ``(V, N)`` relative to its magnitude, estimated from the data alone.

    The standard deviation of white noise from the median absolute deviation of second differences along the
    detector (``1.4826 MAD / sqrt(6)``; smooth projections contribute little, their edges are outliers the
    median ignores), divided by the 99th percentile of ``|sinogram|``. lungdx slices at 128^2 and 60 fan views:
    about 0.005 at 1e5 photons per ray, 0.013 at 1e4, and 0.0008-0.0015 for noise-free sinograms (the floor
    left by anatomy); the real SCOPE sinogram 0.0014.
    """
    y = sinogram.detach().double()
    if y.ndim != 2 or y.shape[1] < 3:
        return 0.0
    d = (y[:, :-2] - 2 * y[:, 1:-1] + y[:, 2:]).reshape(-1)
    sigma = 1.4826 * float((d - d.median()).abs().median()) / math.sqrt(6.0)
    return sigma / robust_scale(y)


def count_weights(scan: CTScan) -> torch.Tensor | None:
    """Statistical weights of a CT sinogram ``(V, N)``, proportional to the expected detected counts
    ``I0 exp(-mu y)`` (the inverse variance of a log-transformed Poisson reading), normalised to mean 1; ``None``
    when the scan does not say how many photons per ray it was measured with (``provenance["photons"]``, with
    ``mu_per_unit`` converting the sinogram's units to line integrals)."""
    photons = (scan.provenance or {}).get("photons")
    if not photons:
        return None
    mu = float(scan.provenance.get("mu_per_unit", 1.0))
    w = torch.exp(-mu * scan.sinogram.double()).float()
    return w / w.mean()


def supersampled_geometry(geometry, k: int):
    """``geometry`` on a grid ``k`` times finer over the same field of view (pixels ``k`` times smaller)."""
    if k == 1:
        return geometry
    H, W = geometry.image_shape
    return replace(geometry, image_shape=(H * k, W * k), pixel_size_mm=geometry.pixel_size_mm / k)


def _ct(scan: CTScan, weighting: str, units: str, ramp_filter_name: str = "ram-lak", supersample: int = 1):
    from inrecon.physics.ct import CTProjector
    from inrecon.physics.operator import Diagonal

    if weighting not in CT_WEIGHTINGS:
        raise InreconError(f"CT weighting {weighting!r}", f"use one of {', '.join(CT_WEIGHTINGS)}")
    if units not in CT_UNITS:
        raise InreconError(f"CT hold-out unit {units!r}", f"use one of {', '.join(CT_UNITS)}")
    device = scan.sinogram.device
    proj = CTProjector(supersampled_geometry(scan.geometry, supersample), scan.angles).to(device)
    V, N = scan.sinogram.shape
    weights: list[LinearOperator] = []  # applied in order to the sinogram (model and data alike)
    if weighting in ("counts", "ramp+counts"):
        w = count_weights(scan)
        if w is not None:
            weights.append(Diagonal(w.sqrt().to(device)))
    if weighting in ("ramp", "ramp+counts"):
        from inrecon.physics.fbp import DetectorFilter, padded_length, ramp_filter

        resp = ramp_filter(
            padded_length(N), float(scan.geometry.detector_spacing_mm), ramp_filter_name, device=device
        )
        weights.append(DetectorFilter(resp.clamp_min(0).sqrt(), V, N).to(device))
    base: LinearOperator = proj
    sino = scan.sinogram
    for w in weights:
        base, sino = w @ base, w(sino)
    idx = torch.arange(V * N, device=device)
    unit = idx if units == "entry" else idx // N
    return base, proj, idx, sino.reshape(-1), unit, (V * N if units == "entry" else V), None


AUTO_SUPERSAMPLE_CPU_PIXELS = 128 * 128
"""``ct_supersample="auto"`` models a CT scan on the CPU on the 2x finer grid up to this many pixels of the scan's
grid (the finer grid then has at most 256 x 256 pixels: 2.9x the time per step of the scan's grid, 48 -> 141 ms
on one core at 128^2; a 256^2 scan would take ~1 h per fit there)."""


def resolve_ct_supersample(value: int | str, scan) -> int:
    """``MeasurementConfig.ct_supersample`` for ``scan``: a number as given; ``"auto"`` 2 for a CT scan on a
    CUDA device or with at most :data:`AUTO_SUPERSAMPLE_CPU_PIXELS` pixels, else 1 (MRI and volumes: 1)."""
    if value != "auto":
        return value
    if not isinstance(scan, CTScan):
        return 1
    small = math.prod(scan.geometry.image_shape) <= AUTO_SUPERSAMPLE_CPU_PIXELS
    return 2 if scan.sinogram.device.type == "cuda" or small else 1


def joint_coil_measurement(scan, cfg: MeasurementConfig) -> Measurement:
    """MRI: the coil-image measurement (``coil_images=True``: the model supplies every coil's image) of the
    same samples as :func:`measure` with ``cfg``, in its units (``cfg.scale`` of the measurement with maps),
    with its coil-map support and the maps themselves (:attr:`Measurement.image_maps`), for a model that
    estimates the coil sensitivities with the image (NGP's ``coils="joint"``) starting from those maps."""
    if not isinstance(scan, MRIScan):
        raise InreconError(
            f"jointly estimated coils need an MRI scan, not a {type(scan).__name__}", "use coils=fixed"
        )
    from inrecon.physics.coils import coil_maps

    maps = coil_maps(scan, cfg.maps)
    sense = measure(scan, cfg, maps=maps)
    coil = measure(scan, cfg, coil_images=True, scale="none")
    return replace(
        coil,
        y=coil.y / sense.scale,
        scale=sense.scale,
        peak=sense.peak,
        support=sense.support,
        image_maps=maps,
    )


def measure(scan, cfg: MeasurementConfig, **kw) -> Measurement:
    """:func:`build_measurement` with the settings of ``cfg`` (``kw`` adds ``coil_images`` or overrides
    ``scale``)."""
    if kw.get("scale", cfg.scale) == "model":
        raise InreconError(
            "data.scale='model' means 'as the pre-trained model was', and only a population method has one",
            "use data.scale=max or data.scale=image; disinr, strainer and meta resolve 'model' themselves",
        )
    return build_measurement(
        scan,
        maps=kw.pop("maps", cfg.maps),
        ct_weighting=cfg.ct_weighting,
        ct_ramp_filter=cfg.ct_ramp_filter,
        ct_supersample=resolve_ct_supersample(cfg.ct_supersample, scan),
        ct_units=cfg.ct_units,
        ct_split=cfg.ct_split,
        ct_nonnegative=cfg.ct_nonnegative,
        mri_units=cfg.mri_units,
        scale=kw.pop("scale", cfg.scale),
        **kw,
    )


def build_measurement(
    scan,
    *,
    maps: str | torch.Tensor = "auto",
    coil_images: bool = False,
    ct_weighting: Literal["ramp", "counts", "ramp+counts", "none"] = "ramp",
    ct_ramp_filter: Literal["ram-lak", "shepp-logan", "cosine", "hann"] = "ram-lak",
    ct_supersample: int = 1,
    ct_units: Literal["entry", "view"] = "entry",
    ct_split: Literal["random", "spread"] = "random",
    ct_nonnegative: bool = True,
    mri_units: Literal["location", "readout"] = "location",
    scale: Literal["max", "robust", "image", "coil_rss", "none"] = "max",
) -> Measurement:
    """The :class:`Measurement` of ``scan`` (module docstring), on the scan's device.

    Parameters
    ----------
    scan
        :class:`~inrecon.data.scans.MRIScan`, :class:`~inrecon.data.scans.CTScan` or
        :class:`~inrecon.data.scans.VolumeScan`.
    maps
        MRI coil maps, see :func:`~inrecon.physics.coils.coil_maps`, or the maps ``(C, *image_shape)``
        themselves.
    coil_images
        MRI: model the coil images (no maps; domain ``(C, *image_shape)``).
    ct_weighting, ct_ramp_filter, ct_supersample, ct_units, ct_split, ct_nonnegative
        CT data weighting, the filter of its ramp, how much finer than the scan's grid the image is modelled,
        hold-out unit, how held-out views are chosen and whether the final image is projected onto ``x >= 0``
        (module docstring, :class:`MeasurementConfig`).
    mri_units
        MRI hold-out unit (:class:`MeasurementConfig`).
    scale
        Data scale (module docstring).
    """
    if scale not in SCALES:
        raise InreconError(f"data scale {scale!r}", f"use one of {', '.join(SCALES)}")
    if ct_split not in CT_SPLITS:
        raise InreconError(f"CT hold-out split {ct_split!r}", f"use one of {', '.join(CT_SPLITS)}")
    if ct_ramp_filter not in FILTERS:
        raise InreconError(f"CT ramp filter {ct_ramp_filter!r}", f"use one of {', '.join(FILTERS)}")
    if isinstance(ct_supersample, bool) or not isinstance(ct_supersample, int) or ct_supersample < 1:
        raise InreconError(
            f"CT supersampling {ct_supersample!r}", "give a whole number >= 1 (1: model the scan's own grid)"
        )
    pointwise, noise, order, density = False, None, None, None
    if isinstance(scan, MRIScan):
        if mri_units not in MRI_UNITS:
            raise InreconError(f"MRI hold-out unit {mri_units!r}", f"use one of {', '.join(MRI_UNITS)}")
        base, physics, idx, data, unit, n_units, support, density = _mri(scan, maps, coil_images, mri_units)
        complex_image = True
    elif isinstance(scan, CTScan):
        base, physics, idx, data, unit, n_units, support = _ct(
            scan, ct_weighting, ct_units, ct_ramp_filter, ct_supersample
        )
        complex_image, noise = False, sinogram_noise(scan.sinogram)
        if ct_units == "view" and ct_split == "spread":
            order = torch.argsort(
                torch.remainder(scan.angles.detach().cpu().double(), 2 * math.pi), stable=True
            )
    elif isinstance(scan, VolumeScan):
        base = physics = Identity(tuple(scan.volume.shape))
        data = scan.volume.reshape(-1)
        idx = unit = torch.arange(data.numel(), device=data.device)
        n_units, support, complex_image, pointwise = data.numel(), None, False, True
    else:
        raise InreconError(
            f"no measurement model for a {type(scan).__name__}", "pass an MRI, CT or volume scan"
        )
    meas = Measurement(
        base=base,
        idx=idx,
        y=data,
        scale=1.0,
        sample_unit=unit,
        n_units=int(n_units),
        image_shape=tuple(base.domain_shape) if isinstance(scan, CTScan) else tuple(scan.image_shape),
        complex_image=complex_image,
        target=scan.target,
        roi=scan.roi,
        support=support,
        physics=physics,
        pointwise=pointwise,
        noise=noise,
        unit_order=order,
        supersample=ct_supersample if isinstance(scan, CTScan) else 1,
        nonnegative=bool(ct_nonnegative) and isinstance(scan, CTScan),
        density_of_scan=density,
    )
    s = _scale(meas, scale)
    if s == 0.0:
        raise InreconError("the measured data hold only zeros", "check the input file")
    meas.y = data / s
    meas.scale = s
    if scale != "max":
        meas.peak = float(meas.y.abs().max())
    return meas


def _scale(meas: Measurement, how: str) -> float:
    if how == "none":
        return 1.0
    if how == "max":
        return float(meas.y.abs().max()) if meas.y.numel() else 0.0
    with torch.no_grad():
        aty = meas.adjoint(meas.y)
    if how == "robust":
        return robust_scale(aty)
    if how == "image":
        with torch.no_grad():
            fit = float(meas.op(aty).abs().square().sum())
        alpha = float(aty.abs().square().sum()) / fit if fit > 0 else 1.0
        return alpha * robust_scale(aty)
    # coil_rss: the largest root-sum-of-squares of the zero-filled coil images
    return float(aty.abs().square().sum(0).sqrt().max())
