"""Loaders for the real data in ``$INRECON_DATA`` (default ``../shared/data``), each returning ready scans.

These encode what the data README says about each file (axis orders, references, trajectories) once, for the
tests, the benchmarks and ``inrecon bench``. Every loader raises :class:`~inrecon.errors.InreconError` naming
the missing file and ``INRECON_DATA`` when the data is absent.
"""

from __future__ import annotations

import functools
import logging
import math
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from inrecon.data.paths import data_root, find_data
from inrecon.data.scans import CTGeometry, CTScan, MRIScan
from inrecon.errors import InreconError

__all__ = [
    "BRAIN8CH",
    "BRAIN8CH_SIGPY",
    "DIPY_T1",
    "LUNGDX_A0001",
    "LUNGDX_A0002",
    "LUNGDX_NATIVE",
    "available",
    "brain8ch",
    "dipy_t1",
    "disinr_fan_geometry",
    "lungdx_slices",
    "radial_phantom",
    "scope_parallel",
    "spiral_phantom",
    "tooth",
]

BRAIN8CH = "mri/brain8ch_bart/ksp.cfl"
BRAIN8CH_SIGPY = "mri/sigpy_cartesian_ksp.npy"
DIPY_T1 = "images/dipy_t1_coronal_slice.npy"
LUNGDX_A0001 = "ct/lungdx/lungdx_A0001_5mm_hu.npz"
LUNGDX_A0002 = "ct/lungdx/lungdx_A0002_B40f_8mm_hu.npz"
TOOTH = "ct/tooth.h5"


def _need(relpath: str) -> Path:
    p = find_data(relpath)
    if p is None:
        raise InreconError(
            f"real data {relpath!r} not found under {data_root()}",
            "set INRECON_DATA to the folder holding the shared data (see the README)",
        )
    return p


def available(relpath: str) -> bool:
    """Whether ``relpath`` exists under the data root."""
    return find_data(relpath) is not None


@functools.lru_cache(maxsize=4)
def brain8ch(device: str = "cpu", mask: str = "bart") -> MRIScan:
    """The in-vivo 8-coil brain (BART workshop), 180 x 230, with its reference, under one of two masks.

    ``mask="bart"``: the workshop's Poisson-disc mask (12.7 %, ~22 x 22 fully sampled centre). ``mask="sigpy"``:
    the sigpy tutorial's copy of the same fully sampled data under another Poisson-disc mask (12.4 %, ~26 x 26
    centre; stored transposed with one axis reversed, and in other units, and mapped back here: on the samples
    both masks acquired the two files agree to 1e-6 up to one real factor).

    ``kspace (8, 180, 230)``; ``target`` = root-sum-of-squares of BART's two-map reconstruction of the fully
    sampled data. No coil maps and no ROI: the Bilevel paper scores inside the support of ESPIRiT maps, which
    :func:`inrecon.physics.coils.with_espirit_support` attaches (maps and ROI) in one call.
    """
    from inrecon.data.io.bart import read_cfl

    if mask not in ("bart", "sigpy"):
        raise InreconError(f"brain8ch mask {mask!r} is not known", "use mask='bart' or mask='sigpy'")
    source = BRAIN8CH if mask == "bart" else BRAIN8CH_SIGPY
    if mask == "bart":
        ksp = read_cfl(_need(source))[0].transpose(2, 0, 1)
    else:
        # sigpy's (8, 230, 180) array is the BART grid transposed, with the second BART axis reversed
        ksp = np.load(_need(source)).transpose(0, 2, 1)[:, :, ::-1]
    img = read_cfl(_need(BRAIN8CH.replace("ksp", "img")))[0, :, :, 0, :]
    ref = np.sqrt((np.abs(img) ** 2).sum(-1)).astype(np.float32)
    k = torch.from_numpy(np.ascontiguousarray(ksp, dtype=np.complex64)).to(device)
    return MRIScan(
        kspace=k,
        mask=(k != 0).any(0),
        target=torch.from_numpy(ref).to(device),
        provenance={"source": source, "reference": "RSS of bart pics (fully sampled, 2 maps)"},
    )


def dipy_t1() -> np.ndarray:
    """The real T1-weighted brain slice (256 x 256, magnitude in [0, 1])."""
    return np.load(_need(DIPY_T1)).astype(np.float32)


LUNGDX_NATIVE = 512
"""Side of the lungdx files' slices: :func:`lungdx_slices` at this size is the scanner's own grid."""


def lungdx_slices(which: str = "A0001", indices=None, size: int = 256) -> np.ndarray:
    """Chest CT slices windowed [-800, 400] HU -> [0, 1], ``(S, size, size)`` float32."""
    from inrecon.data.io.ct_import import load_lungdx_slices

    rel = {"A0001": LUNGDX_A0001, "A0002": LUNGDX_A0002}.get(which)
    if rel is None:
        raise InreconError(
            f"unknown lungdx subject {which!r}", "use A0001 (in domain) or A0002 (other scanner)"
        )
    return load_lungdx_slices(_need(rel), indices=indices, size=size)


def disinr_fan_geometry(image_shape=(256, 256)) -> CTGeometry:
    """DisINR's sparse-view geometry: 1 mm pixels, 500 detectors at 2 mm, source/detector 300/300 mm.

    For an ``n x n`` image other than 256 the geometry is scaled by ``n / 256`` (distances and detector count,
    spacing kept at 2 mm) so the relative field of view and magnification stay DisINR's.
    """
    n = int(image_shape[0])
    f = n / 256
    return CTGeometry(
        kind="fan",
        n_detectors=int(math.ceil(500 * f)),
        detector_spacing_mm=2.0,
        image_shape=tuple(image_shape),
        pixel_size_mm=1.0,
        source_to_center_mm=300.0 * f,
        center_to_detector_mm=300.0 * f,
    )


@contextmanager
def _quiet_nibabel():
    """nibabel's header-repair messages (its ``nibabel.global`` logger) held back below ERROR."""
    log = logging.getLogger("nibabel.global")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def scope_parallel(views: int = 90) -> CTScan:
    """The real parallel-beam chest slice (SCOPE): 367 detectors, ``views`` = 90 or 720, with ``gt_img``."""
    import nibabel as nib

    from inrecon.data.io.ct_import import from_matlab_radon

    if views not in (90, 720):
        raise InreconError(f"views={views}", "the shared data has 90 and 720 views")
    name = "90_sino.nii" if views == 90 else "gt_sino.nii"
    # these files' headers carry zero voxel sizes, which nibabel repairs with a stderr line on every load; only
    # their arrays are read here (the geometry comes from the SCOPE description)
    with _quiet_nibabel():
        gt = np.asarray(nib.load(_need("ct/scope_parallel/gt_img.nii")).get_fdata(), dtype=np.float32)
        sino = np.asarray(nib.load(_need(f"ct/scope_parallel/{name}")).get_fdata(), dtype=np.float32)
    if sino.shape[0] != 367:
        sino = sino.T
    angles = np.linspace(0, 180, views + 1)[:-1]
    return from_matlab_radon(sino, angles, gt.shape, target=gt, transpose_image=True)  # upright anatomy


def radial_phantom(spokes: int = 29) -> MRIScan:
    """The real 16-coil radial FLASH phantom (BART), centre 192 readout samples on a 192 x 192 grid.

    Trajectory: full-circle spokes at ``2 pi i / N``, readout ``j - 192`` of the 2x oversampled 384 samples;
    keeping the central 192 samples gives a Nyquist grid of 192 x 192 over the oversampled field of view.
    No reference image exists (only a phantom's expected appearance).
    """
    from inrecon.data.io.bart import read_cfl
    from inrecon.data.sampling import radial_trajectory

    if spokes not in (29, 69):
        raise InreconError(f"spokes={spokes}", "the shared data has 29 and 69 spokes")
    k = read_cfl(_need(f"mri/radial16ch_phantom/kMB1_top_SP{spokes}.cfl"))  # (384, N, 16)
    k = k.reshape(384, spokes, 16)[96:288]  # central 192 readout samples
    kspace = torch.from_numpy(np.ascontiguousarray(k.transpose(2, 1, 0).reshape(16, -1)))
    traj = radial_trajectory(spokes, 192, full_circle=True)
    return MRIScan(
        kspace=kspace,
        trajectory=traj,
        image_shape=(192, 192),
        provenance={"source": f"radial16ch_phantom SP{spokes}", "note": "no reference image"},
    )


def spiral_phantom() -> MRIScan:
    """The real 8-coil spiral phantom (SPIRiT v0.1): 60 interleaves x 1182 samples, with its density weights."""
    from scipy.io import loadmat

    m = loadmat(_need("mri/spiral8ch_phantom/spiral.mat"))
    data, k, w = m["data"], m["k"], m["w"]
    kspace = torch.from_numpy(np.ascontiguousarray(data.reshape(-1, data.shape[-1]).T).astype(np.complex64))
    kk = k.reshape(-1)
    traj = np.stack([kk.imag, kk.real], axis=1) * 2 * math.pi  # (ky, kx) in radians
    traj = np.clip(traj, -math.pi, math.pi - 1e-4).astype(np.float32)
    # k in [-0.5, 0.5] cycles/pixel; neighbouring interleaves are 0.0025 apart, i.e. the sampled field of view
    # is ~400 pixels: 2x oversampled for the ~200-pixel phantom. A 256 x 256 grid holds it without wrap-around.
    shape = (256, 256)
    return MRIScan(
        kspace=kspace,
        trajectory=torch.from_numpy(traj),
        image_shape=shape,
        dcf=torch.from_numpy(w.reshape(-1).astype(np.float32)),
        provenance={"source": "spiral8ch_phantom", "note": "no reference image"},
    )


def tooth(row: int = 1, bin: int = 3) -> CTScan:
    """tomopy's real X-ray micro-CT of a tooth (Data Exchange, 181 parallel views over 180 degrees, 2 detector
    rows of 640 columns): detector ``row`` flat/dark corrected, centred on the rotation axis found from the
    data, ``bin`` columns per cell and cropped to the object (``bin=3``: 118 cells, a 118 x 118 grid)."""
    from inrecon.data.io.dxchange import read_dxchange

    return read_dxchange(_need(TOOTH), slice=row, bin=bin, crop=True)
