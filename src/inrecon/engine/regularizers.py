"""Image-domain priors any INR fit can add to its data term (through :class:`~inrecon.engine.fit.FitTask`).

Weights are relative (``relative=True``, the default): a weight ``w`` penalises ``w * s * prior(x)`` with
``s = (P / M) max|A^H y|`` for an image of ``P`` pixels fitted to ``M`` samples ``y`` -- the size of the data
term's gradient at the zero image -- so one weight means the same on MRI and CT scans of any intensity, matrix
and sampling (as the classical methods' relative weights do). ``tv="auto"`` chooses the total-variation weight without a reference:
:func:`~inrecon.engine.holdout.fit_with_holdout` runs its hold-out stage once per candidate and keeps the weight
whose held-out loss is lowest (``phase="auto"`` likewise; both: either prior, or none, whichever is lowest).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

from inrecon.config import Fraction, NonNegFloat, PosFloat
from inrecon.errors import InreconError

__all__ = [
    "PriorConfig",
    "make_prior",
    "phase_penalty",
    "prior_scale",
    "total_variation",
    "wavelet_l1",
]


@dataclass
class PriorConfig:
    """Explicit image priors added to the data term."""

    tv: NonNegFloat | Literal["auto"] = 0.0
    """Weight of the isotropic total variation of the rendered image (mean over pixels; complex images use the
    modulus of the complex gradient); 0: none; auto: the candidate with the lowest held-out loss (with
    phase=auto too, see ``combine``)."""
    tv_candidates: tuple[NonNegFloat, ...] = (0.0003, 0.001, 0.003, 0.01, 0.03)
    """Weights tv=auto chooses from (0: no prior is one of the candidates); the search starts at the middle one
    and stops where the held-out loss rises (:func:`~inrecon.engine.holdout.fit_with_holdout`)."""
    wavelet: NonNegFloat = 0.0
    """Weight of the L1 norm of the image's orthonormal db4 wavelet coefficients (mean magnitude); 0: none."""
    phase: NonNegFloat | Literal["auto"] = 0.0
    """Weight of the mean modulus of the image's imaginary part after removing the scan's own smooth phase
    (:func:`~inrecon.physics.mri.smooth_phase` of the whole scan's zero-filled image, as the coil maps are read
    from the whole scan, in a hold-out stage too): MR images
    have slowly varying phase, so what is left in the imaginary part is mostly noise and aliasing. Complex images
    (MRI) only; 0: none; auto: the candidate with the lowest held-out loss (with tv=auto too, searched with the
    TV prior off, against the TV search's candidates)."""
    combine: bool = False
    """With ``tv`` and ``phase`` both auto: search the TV weights with the phase weight the phase search chose
    (the two priors combine, as TV-MRI's solver combines them); False: each term's candidates are searched with
    the other term off and the lowest held-out loss of either search wins (the priors as alternatives). NGP's
    MRI default, and so every INR method's on MRI, is True (:data:`~inrecon.recon.inr.ngp.NGP_MODALITY_DEFAULTS`,
    benchmarks/RESULTS.md, stop 58)."""
    phase_candidates: tuple[NonNegFloat, ...] = (0.0, 0.003)
    """Weights phase=auto chooses from, searched as ``tv_candidates`` are. A real scan's phase is smooth only
    in part, and where it is not (in-vivo phase near vessels, sinuses, fat) a fixed weight pulls the image
    away from it, so with the default candidates the hold-out decides whether the prior applies at all."""
    phase_smooth_below: NonNegFloat = 0.0
    """phase=auto: where the scan's :func:`~inrecon.physics.mri.phase_roughness` (of its zero-filled image
    ``A^H y``, at ``phase_width``) is below this, its phase counts as smooth and the strongest candidate is used
    without a hold-out comparison; above it, the hold-out chooses. 0 (the default): always the hold-out. The
    held-out samples cannot see the prior's gain, which lies in the unacquired k-space; but 3e-4, which
    separates the simulated slices (where the prior gains up to 2 dB and the hold-out chooses it half the time)
    from in-vivo phase, cost 0.65 dB on a real-valued image written by another tool, and a fixed weight 2.2 dB
    on a second one just above it; on both the hold-out rightly chose 0 (benchmarks/RESULTS.md, stop 44)."""
    phase_width: Fraction = 0.0625
    """Width of the Gaussian k-space window that estimates the smooth phase: its standard deviation as a
    fraction of the matrix size along each image axis."""
    relative: bool = True
    """Weights relative to the data term's gradient at the zero image (module docstring); False: absolute."""
    noise_reference: PosFloat | None = None
    """CT, relative weights: multiply them by the scan's estimated relative noise level
    (:func:`~inrecon.physics.measurement.sinogram_noise`) divided by this, so a weight is the one for a scan of
    this noise level and a cleaner scan gets a weaker prior; None: the weights as given."""

    def is_auto(self) -> bool:
        return bool(self.auto_terms())

    def auto_terms(self) -> tuple[Literal["tv", "phase"], ...]:
        """The terms whose weights the hold-out chooses (``phase`` before ``tv``); both ``auto``: each term's
        candidates are searched with the other term off, and the lowest held-out loss of either search wins."""
        return tuple(t for t in ("phase", "tv") if getattr(self, t) == "auto")

    def check(self) -> None:
        for term in self.auto_terms():
            if not getattr(self, f"{term}_candidates"):
                raise InreconError(
                    f"prior.{term}=auto with no candidates", f"list some in prior.{term}_candidates"
                )


def prior_scale(image_pixels: int, n_samples: int, aty: torch.Tensor) -> float:
    """``(P / M) max|A^H y|``: what a relative prior weight is multiplied by (module docstring)."""
    return float(image_pixels) / float(n_samples) * float(aty.detach().abs().max())


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """Isotropic total variation of a 2D or 3D image (real or complex), averaged over pixels.

    Forward differences along every image axis, cropped to the common interior, ``sqrt(sum |d|^2 + 1e-12)``.
    """
    nd = image.ndim
    diffs = []
    for ax in range(nd):
        d = torch.diff(image, dim=ax)
        crop = tuple(slice(None) if a == ax else slice(0, image.shape[a] - 1) for a in range(nd))
        diffs.append(d[crop].abs().square())
    return (sum(diffs) + 1e-12).sqrt().mean()


def wavelet_l1(shape: tuple[int, ...]) -> Callable[[torch.Tensor], torch.Tensor]:
    """``image -> mean |W x|`` for the orthonormal db4 transform ``W`` of images of ``shape`` (magnitude of
    complex coefficients; the image is zero-padded to a multiple of ``2**levels``)."""
    from inrecon.physics.wavelets import Wavelet

    w = Wavelet(tuple(shape), "db4")

    def penalty(image: torch.Tensor) -> torch.Tensor:
        c = w.to(image.device)(image)
        # the modulus of complex coefficients, smoothed at 0 so that its gradient stays finite
        mag = (c.real.square() + c.imag.square() + 1e-12).sqrt() if c.is_complex() else c.abs()
        return mag.mean()

    return penalty


def phase_penalty(reference: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """``image -> mean |Im(image * reference)|`` for a unit-modulus ``reference``
    (:func:`~inrecon.physics.mri.smooth_phase`)."""

    def penalty(image: torch.Tensor) -> torch.Tensor:
        return (image.reshape(reference.shape) * reference.to(image.device)).imag.abs().mean()

    return penalty


def make_prior(
    cfg: PriorConfig,
    shape: tuple[int, ...] | None = None,
    scale: float = 1.0,
    phase_reference: torch.Tensor | None = None,
) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """``image -> penalty`` for ``cfg``, or ``None`` when every weight is 0.

    An image ``shape`` is needed for the wavelet term and a ``phase_reference`` (unit modulus, from
    :func:`~inrecon.physics.mri.smooth_phase`) for the phase term; ``scale`` multiplies relative weights.
    An ``"auto"`` weight must have been resolved first."""
    if cfg.is_auto():
        raise ValueError(f"resolve prior.{cfg.auto_terms()[0]}='auto' to a weight before building the prior")
    if cfg.phase > 0 and phase_reference is None:
        raise ValueError("prior.phase needs the scan's smooth phase (smooth_phase of its zero-filled image)")
    s = float(scale) if cfg.relative else 1.0
    terms = []
    if cfg.tv > 0:
        w_tv = float(cfg.tv) * s
        terms.append(lambda image: w_tv * total_variation(image))
    if cfg.wavelet > 0:
        w_wav, l1 = float(cfg.wavelet) * s, wavelet_l1(tuple(shape))
        terms.append(lambda image: w_wav * l1(image))
    if cfg.phase > 0:
        w_ph, ph = float(cfg.phase) * s, phase_penalty(phase_reference)
        terms.append(lambda image: w_ph * ph(image))
    if not terms:
        return None
    return lambda image: sum(t(image) for t in terms)
