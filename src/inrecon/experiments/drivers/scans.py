"""The scans of the Bilevel-paper experiments, described by typed specs.

A :class:`ScanSpec` is a :class:`Subject` (what is imaged: the real 8-coil brain, the real T1 slice or a
brain phantom; the sampling pattern and the seeds) acquired with a :class:`Protocol` (grid, coils,
acceleration, calibration, SNR). ``kind="brain8ch"`` is the real 8-coil brain (the caller skips it with a note
when the data is absent); ``image="dipy"`` falls back to a brain phantom when the real slice is absent;
``shape`` resamples the image; a Poisson pattern uses ``poisson_af`` if given, else the achieved acceleration
of the Cartesian mask with the same ``af``/``acs``, and a square calibration block of ``acs``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from inrecon.config import PosFloat, PosInt, config_to_dict
from inrecon.data.scans import MRIScan
from inrecon.physics.coils import coil_maps

__all__ = ["Protocol", "ScanSpec", "Subject", "attach_maps", "build_scan", "scan_name", "scan_spec"]


@dataclass
class Protocol:
    """How a simulated scan is acquired."""

    shape: tuple[PosInt, PosInt] | None = None
    """Resample the image to this grid [H, W] (unset: the image's own grid; phantoms are 256 x 256)."""
    coils: PosInt = 12
    """Simulated receive coils."""
    af: PosInt = 8
    """1D Cartesian line spacing (a Poisson pattern matches its achieved acceleration)."""
    acs: PosInt = 24
    """Fully sampled centre lines (Cartesian) or calibration square (Poisson)."""
    snr_db: float = 30.0
    """SNR of the simulated noise (dB)."""


@dataclass
class Subject:
    """What is scanned, and how the sampling and noise are drawn."""

    name: str = ""
    """Label in tables and file names ("": brain8ch, or IMAGE-PATTERN-afAF)."""
    kind: Literal["sim", "brain8ch"] = "sim"
    """sim (a simulated acquisition) or brain8ch (the real 8-coil brain, as acquired)."""
    image: Literal["phantom", "dipy"] = "phantom"
    """phantom (a brain phantom) or dipy (the real T1 slice; a phantom when absent)."""
    seed: int = 0
    """Phantom seed."""
    contrast: Literal["t1", "t2", "flair"] = "t1"
    """Phantom contrast."""
    pattern: Literal["cartesian", "poisson"] = "cartesian"
    """cartesian (1D, af and acs) or poisson (Poisson disc at the Cartesian mask's achieved acceleration)."""
    poisson_af: PosFloat | None = None
    """Acceleration of a Poisson pattern (unset: the achieved acceleration of the Cartesian mask)."""
    mask_seed: int = 0
    """Seed of a Poisson pattern."""
    noise_seed: int = 0
    """Seed of the simulated noise."""


@dataclass
class ScanSpec(Subject, Protocol):
    """One scan: a subject acquired with a protocol."""


def scan_spec(protocol: Protocol, subject: Subject) -> ScanSpec:
    """The scan of ``subject`` acquired with ``protocol``."""
    return ScanSpec(**config_to_dict(protocol), **config_to_dict(subject))


def scan_name(spec: ScanSpec) -> str:
    """``spec.name``, else ``brain8ch`` or ``IMAGE-PATTERN-afAF``."""
    if spec.name:
        return spec.name
    if spec.kind == "brain8ch":
        return "brain8ch"
    return f"{spec.image}-{spec.pattern}-af{spec.af}"


def _resample(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``img`` resampled to ``shape`` (area averaging when shrinking, bilinear when enlarging)."""
    if tuple(img.shape) == tuple(shape):
        return img.astype(np.float32)
    t = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))[None, None]
    shrink = shape[0] <= img.shape[0] and shape[1] <= img.shape[1]
    mode = "area" if shrink else "bilinear"
    kw = {} if shrink else {"align_corners": False}
    out = torch.nn.functional.interpolate(t, size=tuple(shape), mode=mode, **kw)[0, 0]
    return out.clamp_min(0).numpy()


def _image(spec: ScanSpec) -> tuple[np.ndarray, str]:
    from inrecon.data import shared
    from inrecon.data.phantoms import brain_phantom

    if spec.image == "dipy" and shared.available(shared.DIPY_T1):
        img, note = shared.dipy_t1(), "real T1 slice (dipy)"
    else:
        img = brain_phantom(spec.shape or (256, 256), seed=spec.seed, contrast=spec.contrast)
        note = f"brain phantom seed {spec.seed} ({spec.contrast})"
        note += " (dipy slice absent)" if spec.image == "dipy" else ""
    if spec.shape:
        img = _resample(img, spec.shape)
    return img, note


def _mask(spec: ScanSpec, shape: tuple[int, ...]) -> tuple[torch.Tensor, str]:
    from inrecon.data.sampling import acceleration, make_pattern

    cart, _ = make_pattern("cartesian", shape, spec.af, acs=spec.acs)
    if spec.pattern == "cartesian":
        return cart, f"cartesian_1d af {spec.af} acs {spec.acs}"
    a = float(spec.poisson_af or acceleration(cart))
    mask, _ = make_pattern("poisson", shape, a, acs=spec.acs, seed=spec.mask_seed)
    return mask, f"poisson_disc af {a:.2f} calib {spec.acs}"


def build_scan(spec: ScanSpec) -> tuple[MRIScan, str]:
    """The scan described by ``spec`` (module docstring) and a short note on where its data came from."""
    from inrecon.physics.simulate.mri import simulate_mri

    if spec.kind == "brain8ch":
        from inrecon.data import shared
        from inrecon.physics.coils import with_espirit_support

        scan = with_espirit_support(shared.brain8ch())
        prov = {**(scan.provenance or {}), "anatomy": "brain", "pattern": "poisson_disc (acquired)"}
        return dataclasses.replace(scan, provenance=prov), "real 8-coil brain (in vivo, Poisson disc 12.7 %)"
    img, note = _image(spec)
    shp = tuple(img.shape)
    mask, pat = _mask(spec, shp)
    scan = simulate_mri(img, n_coils=spec.coils, mask=mask, snr_db=spec.snr_db, seed=spec.noise_seed)
    contrast = spec.contrast if spec.image == "phantom" else "t1"
    scan.provenance.update(anatomy="brain", contrast=contrast, pattern=pat)
    note += f", {shp[0]}x{shp[1]}, {scan.n_coils} simulated coils, {pat}, SNR {spec.snr_db} dB"
    return scan, note


def attach_maps(scan: MRIScan, how: str) -> MRIScan:
    """``scan`` with coil maps attached once (ESPIRiT when absent), so that every method uses the same maps."""
    if scan.sens_maps is None:
        return dataclasses.replace(scan, sens_maps=coil_maps(scan, how))
    return scan
