"""Measurement-domain augmentation: each transformed scan is an exact scan of the transformed object."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from inrecon.data.augment import AugmentConfig, augment_scans, conjugate_mri, flip_mri, mirror_ct, rotate_ct
from inrecon.data.phantoms import body_ct_phantom
from inrecon.data.scans import CTGeometry, CTScan, MRIScan, VolumeScan
from inrecon.errors import InreconError
from inrecon.physics.ct import CTProjector
from inrecon.physics.mri import SenseOp
from inrecon.physics.nufft import NufftSenseOp
from tests.inr_fixtures import ring_maps, tiny_mri

GEOMETRIES = {
    "fan": CTGeometry("fan", 48, 1.5, (32, 32), 1.0, 80.0, 50.0),
    "parallel": CTGeometry("parallel", 48, 1.0, (32, 32), 1.0),
}


def ct_scan(kind: str) -> CTScan:
    """A noise-free scan of an asymmetric phantom (mirror and rotation both change it)."""
    geom = GEOMETRIES[kind]
    img = torch.tensor(body_ct_phantom((32, 32), seed=2), dtype=torch.float32)
    img[4:9, 5:12] += 0.5  # break any symmetry of the phantom
    angles = torch.tensor(np.linspace(0, 2 * math.pi, 16, endpoint=False), dtype=torch.float32) + 0.1
    sino = CTProjector(geom, angles)(img)
    return CTScan(sinogram=sino, angles=angles, geometry=geom, target=img, provenance={"photons": 1e5})


def rel_err(a, b) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("kind", ["fan", "parallel"])
@pytest.mark.parametrize("quarters", [1, 2, 3])
def test_rotated_scan_measures_the_rotated_object(kind, quarters):
    scan = ct_scan(kind)
    rot = rotate_ct(scan, quarters * math.pi / 2)
    assert torch.equal(rot.sinogram, scan.sinogram)  # the data are not touched
    assert torch.equal(rot.target, torch.rot90(scan.target, quarters, dims=(0, 1)))
    assert float(rot.angles.min()) >= 0 and float(rot.angles.max()) < 2 * math.pi
    assert rel_err(CTProjector(rot.geometry, rot.angles)(rot.target), rot.sinogram) < 1e-4
    assert rot.provenance["augmentation"] == [f"rotate {90 * quarters:g} deg"]
    assert scan.provenance.get("augmentation") is None  # the input scan is unchanged


def test_rotation_off_the_pixel_grid_drops_the_target_but_keeps_the_physics():
    scan = ct_scan("fan")
    rot = rotate_ct(scan, 0.3)
    assert rot.target is None and rot.roi is None
    # rotating the object by 0.3 rad = measuring it at angles shifted by 0.3 (no exact pixel image to project)
    shifted = CTProjector(scan.geometry, scan.angles + 0.3)(scan.target)
    assert rel_err(CTProjector(rot.geometry, rot.angles)(scan.target), shifted) < 1e-5


@pytest.mark.parametrize("kind", ["fan", "parallel"])
def test_mirrored_scan_measures_the_mirrored_object(kind):
    scan = ct_scan(kind)
    mir = mirror_ct(scan)
    assert torch.equal(mir.target, scan.target.flip(0))
    assert rel_err(CTProjector(mir.geometry, mir.angles)(mir.target), mir.sinogram) < 1e-4
    # and the mirror changes the data of this asymmetric object: not a no-op
    assert rel_err(CTProjector(mir.geometry, scan.angles)(mir.target), scan.sinogram) > 0.05


@pytest.mark.parametrize("axis", [0, 1])
def test_flipped_cartesian_scan_is_the_scan_of_the_flipped_image(axis):
    scan = tiny_mri(shape=(32, 30), noise=0.0)
    g = torch.Generator().manual_seed(3)  # random values up to the grid's edge: the wrap-around is exact here
    img = torch.complex(torch.randn(32, 30, generator=g), torch.randn(32, 30, generator=g))
    scan = MRIScan(kspace=SenseOp(scan.sens_maps, scan.mask)(img), mask=scan.mask, sens_maps=scan.sens_maps)
    flipped = flip_mri(scan, axis)
    n = img.shape[axis]
    expected = img.flip(axis).roll(1 - n % 2, dims=axis)  # about the centre pixel n // 2
    k = SenseOp(flipped.sens_maps, flipped.mask)(expected)
    assert rel_err(k, flipped.kspace) < 1e-5
    assert torch.equal(flipped.mask, scan.mask.flip(axis).roll(1 - n % 2, dims=axis))


def test_conjugate_cartesian_scan_is_the_scan_of_the_conjugate_image():
    base = tiny_mri(shape=(32, 31), noise=0.0)
    img = base.target.to(torch.complex64) * torch.exp(1j * torch.linspace(-1, 1, 31))
    scan = MRIScan(kspace=SenseOp(base.sens_maps, base.mask)(img), mask=base.mask, sens_maps=base.sens_maps)
    conj = conjugate_mri(scan)
    assert rel_err(SenseOp(conj.sens_maps, conj.mask)(img.conj()), conj.kspace) < 1e-5


def test_non_cartesian_flip_and_conjugate_negate_the_trajectory():
    shape = (24, 24)
    maps = ring_maps(shape, 3)
    g = torch.Generator().manual_seed(0)
    traj = (torch.rand(400, 2, generator=g) * 2 - 1) * math.pi
    img = torch.randn(shape, generator=g) + 1j * torch.randn(shape, generator=g)
    img = img.to(torch.complex64)
    # off the Cartesian grid, position -N/2 of an even axis has no mirror partner: an object inside the field of
    # view (zero on that first line) is mirrored exactly
    img[:, 0] = 0
    scan = MRIScan(
        kspace=NufftSenseOp(maps, traj, shape)(img), trajectory=traj, image_shape=shape, sens_maps=maps
    )
    for aug, expected in [
        (flip_mri(scan, 1), img.flip(1).roll(1, dims=1)),
        (conjugate_mri(scan), img.conj()),
    ]:
        assert aug.trajectory.min() >= -math.pi and aug.trajectory.max() < math.pi
        k = NufftSenseOp(aug.sens_maps, aug.trajectory, shape)(expected)
        assert rel_err(k, aug.kspace) < 2e-3  # the NUFFT's own accuracy


def test_augment_scans_expands_and_names_and_refuses_what_a_modality_lacks():
    ct = ct_scan("fan")
    scans, names = augment_scans([ct], AugmentConfig(rotations=4, mirror=True), ["a"])
    assert names == ["a", "a rot90", "a rot180", "a rot270", "a mirror", "a rot90 mirror", "a rot180 mirror",
                     "a rot270 mirror"]  # fmt: skip
    assert scans[0] is ct and all(s.target is not None for s in scans)
    assert augment_scans([ct], AugmentConfig(), ["a"]) == ([ct], ["a"])
    mri = tiny_mri()
    scans, names = augment_scans([mri], AugmentConfig(mirror=True, conjugate=True), ["m"])
    assert names == ["m", "m flip0", "m flip1", "m conj", "m flip0 conj", "m flip1 conj"]
    with pytest.raises(InreconError, match=r"rotations.*CT"):
        augment_scans([mri], AugmentConfig(rotations=2))
    with pytest.raises(InreconError, match="conjugate is for MRI"):
        augment_scans([ct], AugmentConfig(conjugate=True))
    with pytest.raises(InreconError, match="volume fitting"):
        augment_scans([VolumeScan(volume=torch.zeros(4, 4, 4))], AugmentConfig(mirror=True))
