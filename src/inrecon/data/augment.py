"""Augmentation in the measurement domain: new scans of a transformed object, made from a scan's own data.

Each transform maps a scan of an object ``f`` to an exact scan of a transformed object ``T f`` -- the same
measured numbers, re-indexed, with the acquisition re-described -- so the physics stays exact and no data are
interpolated (DisINR pre-training, issue 11: more, and more varied, subjects for the shared pair).

- CT (:class:`~inrecon.data.scans.CTGeometry` conventions, detector centred on the axis):
  :func:`rotate_ct` -- the object rotated counter-clockwise by ``delta`` is measured by the same sinogram at view
  angles ``theta + delta``; :func:`mirror_ct` -- the object mirrored top to bottom (``f(x, -y)``) is measured at
  angles ``pi - theta`` with the detector reversed. Parallel and fan beam alike.
- MRI (centred orthonormal FFT, :mod:`inrecon.physics.fft`): :func:`flip_mri` -- the image mirrored about its
  centre pixel along one axis (``f(-r)``, i.e. ``flip`` then ``roll`` by one on even axes) has the k-space
  mirrored the same way (Cartesian: k-space, mask; non-Cartesian: that trajectory coordinate negated);
  :func:`conjugate_mri` -- the complex conjugate image has the conjugated, point-mirrored k-space. Coil maps are
  transformed with the image, so the coil images stay ``maps * image``.

Targets and regions of interest are transformed with the object where that is exact on the pixel grid (CT
rotations by multiples of 90 degrees on a square grid, every mirror) and dropped otherwise. :func:`augment_scans`
expands a list of scans by an :class:`AugmentConfig`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from inrecon.config import PosInt
from inrecon.data.scans import CTScan, MRIScan
from inrecon.errors import InreconError

__all__ = ["AugmentConfig", "augment_scans", "conjugate_mri", "flip_mri", "mirror_ct", "rotate_ct"]


def _wrap_angles(a: torch.Tensor) -> torch.Tensor:
    """Angles (radians) wrapped to ``[0, 2 pi)``."""
    return torch.remainder(a.double(), 2 * math.pi).float()


def _negated_frequencies(k: torch.Tensor) -> torch.Tensor:
    """``-k`` wrapped to ``[-pi, pi)`` (trajectory coordinates)."""
    return _wrap_angles(math.pi - k) - math.pi


def _provenance(scan, what: str) -> dict:
    prov = dict(scan.provenance or {})
    prov["augmentation"] = [*prov.get("augmentation", []), what]
    return prov


def rotate_ct(scan: CTScan, delta: float) -> CTScan:
    """The scan of the object rotated counter-clockwise by ``delta`` radians (about the rotation axis).

    The sinogram is unchanged; the view angles become ``theta + delta`` (wrapped to ``[0, 2 pi)``). The target
    and ROI are rotated when ``delta`` is a multiple of 90 degrees and the grid is square, else dropped.
    """
    quarter = delta / (math.pi / 2)
    k = round(quarter)
    exact = abs(quarter - k) < 1e-9 and scan.geometry.image_shape[0] == scan.geometry.image_shape[1]

    def rot(x):
        return None if x is None or not exact else torch.rot90(x, k % 4, dims=(0, 1))

    return dataclasses.replace(
        scan,
        angles=_wrap_angles(scan.angles + delta),
        target=rot(scan.target),
        roi=rot(scan.roi),
        provenance=_provenance(scan, f"rotate {math.degrees(delta):g} deg"),
    )


def mirror_ct(scan: CTScan) -> CTScan:
    """The scan of the object mirrored top to bottom (image rows reversed: ``f(x, -y)``): views at ``pi - theta``
    with the detector order reversed."""

    def flip(x):
        return None if x is None else x.flip(0)

    return dataclasses.replace(
        scan,
        sinogram=scan.sinogram.flip(1),
        angles=_wrap_angles(math.pi - scan.angles),
        target=flip(scan.target),
        roi=flip(scan.roi),
        provenance=_provenance(scan, "mirror"),
    )


def _centre_flip(x: torch.Tensor | None, dim: int) -> torch.Tensor | None:
    """``x`` mirrored about the centre index of axis ``dim`` (the FFT's origin: ``N // 2``)."""
    if x is None:
        return None
    return x.flip(dim).roll(1 - x.shape[dim] % 2, dims=dim)


def flip_mri(scan: MRIScan, axis: int) -> MRIScan:
    """The scan of the image mirrored about its centre along image axis ``axis`` (0 = first image axis).

    Cartesian: k-space and mask mirrored the same way (exact). Non-Cartesian: that trajectory coordinate negated
    (wrapped to ``[-pi, pi)``), exact for an object inside the field of view: on an even axis the first pixel
    line (position ``-N/2``) has no mirror partner on the grid and is wrapped onto itself. Coil maps, target and
    ROI are mirrored with the image.
    """
    nd = len(scan.image_shape)
    if not 0 <= axis < nd:
        raise InreconError(f"flip axis {axis} for a {nd}D image", f"use an axis in 0..{nd - 1}")
    dim = axis - nd  # from the end: the image axes are the last ones of every array
    changes: dict = {
        "sens_maps": _centre_flip(scan.sens_maps, dim),
        "target": _centre_flip(scan.target, dim),
        "roi": _centre_flip(scan.roi, dim),
        "provenance": _provenance(scan, f"flip axis {axis}"),
    }
    if scan.trajectory is None:
        changes.update(kspace=_centre_flip(scan.kspace, dim), mask=_centre_flip(scan.mask, dim))
    else:
        traj = scan.trajectory.clone()
        traj[:, axis] = _negated_frequencies(traj[:, axis])
        changes["trajectory"] = traj
    return dataclasses.replace(scan, **changes)


def conjugate_mri(scan: MRIScan) -> MRIScan:
    """The scan of the complex-conjugate image (the object's phase reversed): k-space conjugated and mirrored
    through the origin (Cartesian) or the trajectory negated (non-Cartesian); coil maps conjugated."""
    nd = len(scan.image_shape)
    kspace, mask, traj = scan.kspace.conj().resolve_conj(), scan.mask, scan.trajectory
    if traj is None:
        for d in range(-nd, 0):
            kspace, mask = _centre_flip(kspace, d), _centre_flip(mask, d)
    else:
        traj = _negated_frequencies(traj)
    maps = None if scan.sens_maps is None else scan.sens_maps.conj().resolve_conj()
    target = scan.target
    if target is not None and target.is_complex():
        target = target.conj().resolve_conj()
    return dataclasses.replace(
        scan,
        kspace=kspace,
        mask=mask,
        trajectory=traj,
        sens_maps=maps,
        target=target,
        provenance=_provenance(scan, "conjugate"),
    )


@dataclass
class AugmentConfig:
    """Measurement-domain augmentation of pre-training scans (exact physics, no interpolation): every scan is
    also used as these transformed scans, each a subject of its own."""

    rotations: PosInt = 1
    """CT: the object at this many equally spaced rotations (view angles shifted by ``360 / rotations``
    degrees); 1: none."""
    mirror: bool = False
    """CT: also the top-to-bottom mirror of every (rotated) scan. MRI: also the mirror along each image axis."""
    conjugate: bool = False
    """MRI: also the complex-conjugate image of every scan (and of its mirrors)."""


def augment_scans(scans: Sequence, cfg: AugmentConfig, names: Sequence[str] | None = None):
    """``(scans, names)`` expanded by ``cfg``: each scan first, then its transformed versions (named ``"NAME
    rot90"``, ``"NAME mirror"``, ...). Raises before any work for an augmentation the modality lacks."""
    names = list(names) if names else [f"subject{i}" for i in range(len(scans))]
    out, out_names = [], []
    for scan, name in zip(scans, names, strict=True):
        variants = _variants(scan, cfg, name)
        out += [v for v, _ in variants]
        out_names += [n for _, n in variants]
    return out, out_names


def _variants(scan, cfg: AugmentConfig, name: str) -> list[tuple]:
    if isinstance(scan, CTScan):
        if cfg.conjugate:
            raise InreconError(
                "augment.conjugate is for MRI; a CT image is real", "drop augment.conjugate for CT scans"
            )
        rotated = [(scan, name)] + [
            (rotate_ct(scan, 2 * math.pi * k / cfg.rotations), f"{name} rot{360 * k / cfg.rotations:g}")
            for k in range(1, cfg.rotations)
        ]
        mirrored = [(mirror_ct(s), f"{n} mirror") for s, n in rotated] if cfg.mirror else []
        return rotated + mirrored
    if isinstance(scan, MRIScan):
        if cfg.rotations != 1:
            raise InreconError(
                f"augment.rotations={cfg.rotations} is for CT scans (a view-angle shift)",
                "use augment.mirror / augment.conjugate for MRI",
            )
        base = [(scan, name)]
        if cfg.mirror:
            base += [(flip_mri(scan, a), f"{name} flip{a}") for a in range(len(scan.image_shape))]
        if cfg.conjugate:
            base += [(conjugate_mri(s), f"{n} conj") for s, n in list(base)]
        return base
    if cfg.rotations != 1 or cfg.mirror or cfg.conjugate:
        raise InreconError(
            f"measurement-domain augmentation is for CT and MRI scans, not {type(scan).__name__}",
            "drop the augment settings for volume fitting",
        )
    return [(scan, name)]
