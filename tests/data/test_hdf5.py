"""The inrecon HDF5 contract (data/hdf5.py) and BART cfl files (data/bart.py): round trips and bad input."""

from __future__ import annotations

import math
import typing

import h5py
import numpy as np
import pytest
import torch

from inrecon.data.io.bart import read_cfl, write_cfl
from inrecon.data.io.hdf5 import read_scan, write_scan
from inrecon.data.scans import CTGeometry, CTScan, MRIScan, VolumeScan
from inrecon.errors import FileFormatError, InreconError, ShapeError


def _cplx(rng, *shape):
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def _cartesian(rng, shape=(12, 10), coils=3):
    mask = rng.random(shape) < 0.4
    mask[shape[0] // 2] = True
    k = _cplx(rng, coils, *shape) * mask
    return k, mask


def _fan():
    return CTGeometry("fan", 40, 2.0, (16, 16), 1.0, 300.0, 300.0)


def _write_raw(path, datasets: dict, attrs: dict | None = None):
    with h5py.File(path, "w") as f:
        for k, v in datasets.items():
            f.create_dataset(k, data=v)
        for k, v in (attrs or {}).items():
            f.attrs[k] = v
    return path


def _ct_attrs(geom: CTGeometry) -> dict:
    return {"modality": "ct", **geom.to_attrs()}


# ---------------------------------------------------------------------------------------------------------
# round trips
# ---------------------------------------------------------------------------------------------------------
def test_roundtrip_cartesian_2d_with_everything(tmp_path, rng):
    k, mask = _cartesian(rng)
    maps = _cplx(rng, 3, 12, 10)
    target = rng.random((12, 10)).astype(np.float32)
    roi = rng.random((12, 10)) < 0.5
    prov = {"source": "sim", "seed": 3, "snr_db": 30.5, "flag": True, "af": [4, 24]}
    scan = MRIScan(kspace=k, mask=mask, sens_maps=maps, target=target, roi=roi, provenance=prov)
    path = write_scan(tmp_path / "mri.h5", scan)
    back = read_scan(path)
    assert isinstance(back, MRIScan) and back.is_cartesian
    torch.testing.assert_close(back.kspace, torch.from_numpy(k))
    assert torch.equal(back.mask, torch.from_numpy(mask))
    torch.testing.assert_close(back.sens_maps, torch.from_numpy(maps))
    torch.testing.assert_close(back.target, torch.from_numpy(target))
    assert torch.equal(back.roi, torch.from_numpy(roi))
    assert back.provenance["source"] == "sim" and back.provenance["seed"] == 3
    assert back.provenance["snr_db"] == pytest.approx(30.5) and back.provenance["flag"] is True
    assert back.provenance["af"] == [4, 24]


def test_roundtrip_cartesian_3d_complex_target(tmp_path, rng):
    k, mask = _cartesian(rng, (4, 6, 8), coils=2)
    target = _cplx(rng, 4, 6, 8)
    back = read_scan(write_scan(tmp_path / "mri3d.h5", MRIScan(kspace=k, mask=mask, target=target)))
    assert back.ndim == 3 and back.image_shape == (4, 6, 8)
    torch.testing.assert_close(back.kspace, torch.from_numpy(k))
    assert back.target.is_complex()
    torch.testing.assert_close(back.target, torch.from_numpy(target))


def test_roundtrip_noncartesian_with_dcf(tmp_path, rng):
    traj = rng.uniform(-math.pi, math.pi, (50, 2)).astype(np.float32)
    dcf = rng.random(50).astype(np.float32)
    scan = MRIScan(kspace=_cplx(rng, 4, 50), trajectory=traj, image_shape=(16, 16), dcf=dcf)
    back = read_scan(write_scan(tmp_path / "radial.h5", scan))
    assert not back.is_cartesian and back.image_shape == (16, 16)
    torch.testing.assert_close(back.trajectory, torch.from_numpy(traj))
    torch.testing.assert_close(back.dcf, torch.from_numpy(dcf))
    torch.testing.assert_close(back.kspace, scan.kspace)


@pytest.mark.parametrize("kind", ["fan", "parallel"])
def test_roundtrip_ct(tmp_path, rng, kind):
    geom = _fan() if kind == "fan" else CTGeometry("parallel", 30, 1.0, (16, 16), 1.0)
    sino = rng.random((12, geom.n_detectors)).astype(np.float32)
    angles = np.linspace(0, 2 * np.pi, 12, endpoint=False).astype(np.float32)
    target = rng.random((16, 16)).astype(np.float32)
    scan = CTScan(sinogram=sino, angles=angles, geometry=geom, target=target, provenance={"photons": 1e5})
    back = read_scan(write_scan(tmp_path / f"{kind}.h5", scan))
    assert isinstance(back, CTScan) and back.geometry == geom
    torch.testing.assert_close(back.sinogram, torch.from_numpy(sino))
    torch.testing.assert_close(back.angles, torch.from_numpy(angles))
    torch.testing.assert_close(back.target, torch.from_numpy(target))
    assert back.provenance["photons"] == pytest.approx(1e5)
    assert "geometry" not in back.provenance


def test_roundtrip_volume_with_and_without_target(tmp_path, rng):
    vol = rng.random((5, 8, 9)).astype(np.float32)
    back = read_scan(write_scan(tmp_path / "v.h5", VolumeScan(volume=vol)))
    assert isinstance(back, VolumeScan)
    torch.testing.assert_close(back.volume, torch.from_numpy(vol))
    with h5py.File(tmp_path / "v.h5") as f:
        assert "target" not in f  # the target is the volume itself, not stored twice
    tgt = vol + 1
    back = read_scan(write_scan(tmp_path / "v2.h5", VolumeScan(volume=vol, target=tgt)))
    torch.testing.assert_close(back.target, torch.from_numpy(tgt))


def test_complex_as_last_axis_and_no_modality_attribute(tmp_path, rng):
    k, mask = _cartesian(rng)
    path = tmp_path / "split.h5"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("kspace", data=np.stack([k.real, k.imag], -1))
        ds.attrs["complex_as_last_axis"] = 1
        f.create_dataset("mask", data=mask.astype(np.uint8))
    back = read_scan(path)
    torch.testing.assert_close(back.kspace, torch.from_numpy(k))


def test_write_is_atomic_and_keeps_the_old_file_on_failure(tmp_path, rng):
    path = write_scan(tmp_path / "v.h5", VolumeScan(volume=rng.random((4, 4)).astype(np.float32)))
    before = path.read_bytes()

    class NotAScan:  # fails half-way through the write, after attributes were written
        modality = "volume"
        provenance: typing.ClassVar[dict] = {"note": "x"}

    with pytest.raises(TypeError):
        write_scan(path, NotAScan())
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.h5"]  # no temporary file left behind


# ---------------------------------------------------------------------------------------------------------
# bad input: each raises the documented error type with a message naming the problem
# ---------------------------------------------------------------------------------------------------------
def _raises(exc_type, path, *words):
    with pytest.raises(exc_type) as info:
        read_scan(path)
    msg = str(info.value)
    assert "Fix:" in msg, msg
    for w in words:
        assert w.lower() in msg.lower(), (w, msg)
    return msg


def test_missing_dataset_is_named(tmp_path):
    p = _write_raw(tmp_path / "a.h5", {"mask": np.ones((4, 4), np.uint8)}, {"modality": "mri"})
    _raises(FileFormatError, p, "'kspace'", "missing", "mask")


def test_missing_ct_dataset_and_attribute(tmp_path, rng):
    geom = _fan()
    sino = rng.random((6, 40)).astype(np.float32)
    p = _write_raw(tmp_path / "noangles.h5", {"sinogram": sino}, _ct_attrs(geom))
    _raises(FileFormatError, p, "'angles'", "missing")
    attrs = _ct_attrs(geom)
    del attrs["n_detectors"]
    p = _write_raw(tmp_path / "nodet.h5", {"sinogram": sino, "angles": np.zeros(6, np.float32)}, attrs)
    _raises(FileFormatError, p, "'n_detectors'", "missing")


def test_unknown_or_ambiguous_modality(tmp_path):
    p = _write_raw(tmp_path / "empty.h5", {"other": np.zeros(3)})
    _raises(FileFormatError, p, "modality", "other")
    p = _write_raw(
        tmp_path / "both.h5", {"kspace": np.ones((1, 2, 2), np.complex64), "volume": np.ones((2, 2))}
    )
    _raises(FileFormatError, p, "modality")
    p = _write_raw(tmp_path / "pet.h5", {"volume": np.ones((2, 2))}, {"modality": "pet"})
    _raises(InreconError, p, "'pet'")


def test_group_instead_of_dataset(tmp_path):
    p = tmp_path / "group.h5"
    with h5py.File(p, "w") as f:
        f.create_group("volume")
    _raises(FileFormatError, p, "'volume'", "group")


def test_real_kspace_is_rejected(tmp_path, rng):
    p = _write_raw(tmp_path / "real.h5", {"kspace": rng.random((2, 4, 4)).astype(np.float32)})
    _raises(InreconError, p, "kspace", "real", "complex")


def test_complex_sinogram_is_rejected(tmp_path, rng):
    geom = _fan()
    p = _write_raw(
        tmp_path / "csino.h5",
        {"sinogram": _cplx(rng, 6, 40), "angles": np.zeros(6, np.float32)},
        _ct_attrs(geom),
    )
    _raises(InreconError, p, "sinogram", "real")


def test_complex_last_axis_flag_with_wrong_length(tmp_path, rng):
    p = tmp_path / "bad_split.h5"
    with h5py.File(p, "w") as f:
        ds = f.create_dataset("kspace", data=rng.random((2, 4, 3)).astype(np.float32))
        ds.attrs["complex_as_last_axis"] = 1
    _raises(FileFormatError, p, "complex_as_last_axis", "length 3")


@pytest.mark.parametrize(
    "shape",
    [(4, 4), (1, 2, 3, 4, 5)],
    ids=["2d", "5d"],
)
def test_wrong_kspace_shape(tmp_path, rng, shape):
    p = _write_raw(tmp_path / "shape.h5", {"kspace": _cplx(rng, *shape)})
    _raises(ShapeError, p, "kspace", str(tuple(shape)))


def test_wrong_volume_and_sens_map_shapes(tmp_path, rng):
    p = _write_raw(tmp_path / "vol4d.h5", {"volume": rng.random((2, 2, 2, 2))})
    _raises(ShapeError, p, "volume", "(2, 2, 2, 2)")
    k, mask = _cartesian(rng)
    p = _write_raw(
        tmp_path / "maps.h5", {"kspace": k, "mask": mask.astype(np.uint8), "sens_maps": _cplx(rng, 3, 5, 5)}
    )
    _raises(ShapeError, p, "sens_maps", "(3, 5, 5)")
    p = _write_raw(tmp_path / "target.h5", {"kspace": k, "target": rng.random((5, 5))})
    _raises(ShapeError, p, "target", "(5, 5)")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_inf_are_rejected(tmp_path, rng, bad):
    k, _ = _cartesian(rng)
    k[0, 6, 5] = bad
    p = _write_raw(tmp_path / "k.h5", {"kspace": k})
    _raises(InreconError, p, "kspace", "NaN or Inf")
    sino = rng.random((6, 40)).astype(np.float32)
    sino[2, 3] = bad
    p = _write_raw(
        tmp_path / "s.h5", {"sinogram": sino, "angles": np.zeros(6, np.float32)}, _ct_attrs(_fan())
    )
    _raises(InreconError, p, "sinogram", "NaN or Inf")
    vol = rng.random((4, 4))
    vol[1, 1] = bad
    p = _write_raw(tmp_path / "v.h5", {"volume": vol})
    _raises(InreconError, p, "volume", "NaN or Inf")


def test_mask_not_matching_kspace(tmp_path, rng):
    k, mask = _cartesian(rng)
    p = _write_raw(tmp_path / "shape.h5", {"kspace": k, "mask": mask.T.astype(np.uint8)})
    _raises(ShapeError, p, "mask", "(10, 12)")
    outside = mask.copy()
    outside[mask] = False  # data lies where the mask says nothing was acquired
    outside[0, 0] = True
    p = _write_raw(tmp_path / "outside.h5", {"kspace": k, "mask": outside.astype(np.uint8)})
    _raises(InreconError, p, "mask does not match kspace", "outside the mask")
    p = _write_raw(tmp_path / "values.h5", {"kspace": k, "mask": mask.astype(np.float32) * 2})
    _raises(InreconError, p, "mask", "0 and 1")
    p = _write_raw(tmp_path / "empty.h5", {"kspace": np.zeros((2, 4, 4), np.complex64)})
    _raises(InreconError, p, "mask is empty")


def test_trajectory_outside_pi(tmp_path, rng):
    traj = rng.uniform(-4.0, 4.0, (30, 2)).astype(np.float32)
    p = _write_raw(
        tmp_path / "traj.h5", {"kspace": _cplx(rng, 2, 30), "trajectory": traj}, {"image_shape": [8, 8]}
    )
    _raises(InreconError, p, "trajectory", "[-pi, pi)")


def test_trajectory_shape_and_missing_image_shape(tmp_path, rng):
    traj = rng.uniform(-1, 1, (30, 4)).astype(np.float32)
    p = _write_raw(
        tmp_path / "t4.h5", {"kspace": _cplx(rng, 2, 30), "trajectory": traj}, {"image_shape": [8, 8]}
    )
    _raises(ShapeError, p, "trajectory", "(30, 4)")
    traj = rng.uniform(-1, 1, (30, 2)).astype(np.float32)
    p = _write_raw(tmp_path / "noshape.h5", {"kspace": _cplx(rng, 2, 30), "trajectory": traj})
    _raises(FileFormatError, p, "image_shape", "missing")


def test_sinogram_not_matching_angles_or_detectors(tmp_path, rng):
    geom = _fan()
    sino = rng.random((6, 40)).astype(np.float32)
    p = _write_raw(
        tmp_path / "angles.h5", {"sinogram": sino, "angles": np.zeros(7, np.float32)}, _ct_attrs(geom)
    )
    _raises(ShapeError, p, "6 views", "7 entries")
    p = _write_raw(
        tmp_path / "det.h5", {"sinogram": sino[:, :30], "angles": np.zeros(6, np.float32)}, _ct_attrs(geom)
    )
    _raises(ShapeError, p, "30 detector", "n_detectors=40")


@pytest.mark.parametrize(
    ("sod", "odd", "words"),
    [
        (10.0, 300.0, ("impossible fan geometry", "inside the image")),
        (-5.0, 300.0, ("impossible fan geometry",)),
    ],
)
def test_impossible_fan_geometry(tmp_path, rng, sod, odd, words):
    attrs = _ct_attrs(_fan())
    attrs["source_to_center_mm"], attrs["center_to_detector_mm"] = sod, odd
    p = _write_raw(tmp_path / "fan.h5", {"sinogram": rng.random((6, 40)), "angles": np.zeros(6)}, attrs)
    _raises(InreconError, p, *words)


def test_unknown_geometry_kind(tmp_path, rng):
    attrs = _ct_attrs(_fan())
    attrs["geometry"] = "cone"
    p = _write_raw(tmp_path / "cone.h5", {"sinogram": rng.random((6, 40)), "angles": np.zeros(6)}, attrs)
    _raises(InreconError, p, "'cone'")


def test_truncated_and_corrupt_files(tmp_path, rng):
    k = _cplx(rng, 4, 64, 64)
    good = write_scan(tmp_path / "good.h5", MRIScan(kspace=k)).read_bytes()
    trunc = tmp_path / "trunc.h5"
    trunc.write_bytes(good[: len(good) // 2])
    _raises(FileFormatError, trunc, "truncated")
    corrupt = tmp_path / "corrupt.h5"
    data = bytearray(good)
    mid = len(data) // 2
    data[mid : mid + 2000] = b"\xff" * 2000  # inside the compressed k-space chunks
    corrupt.write_bytes(bytes(data))
    _raises(FileFormatError, corrupt, "'kspace'", "corrupt")
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"not an hdf5 file" * 64)
    _raises(FileFormatError, garbage, "cannot read", "HDF5")


def test_directory_and_missing_file(tmp_path):
    folder = tmp_path / "scan.h5"
    folder.mkdir()
    _raises(FileFormatError, folder, "directory")
    _raises(FileFormatError, tmp_path / "nope.h5", "does not exist")


# ---------------------------------------------------------------------------------------------------------
# BART cfl
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(1, 18, 23, 4), (8, 5, 3), (7,), (3, 4, 1, 2, 2)])
def test_cfl_roundtrip(tmp_path, rng, shape):
    a = _cplx(rng, *shape)
    base = write_cfl(tmp_path / "arr", a)
    header = base.with_suffix(".hdr").read_text().splitlines()
    assert header[0] == "# Dimensions" and [int(v) for v in header[1].split()][: len(shape)] == list(shape)
    for name in (base, base.with_suffix(".cfl"), base.with_suffix(".hdr")):
        b = read_cfl(name)
        np.testing.assert_array_equal(b, a)
        assert b.dtype == np.complex64


def test_cfl_is_fortran_order(tmp_path, rng):
    a = _cplx(rng, 3, 4)
    base = write_cfl(tmp_path / "f", a)
    raw = np.fromfile(base.with_suffix(".cfl"), dtype=np.complex64)
    np.testing.assert_array_equal(raw, a.reshape(-1, order="F"))


def test_cfl_real_input_and_trailing_singletons(tmp_path, rng):
    a = rng.random((4, 5, 1, 1)).astype(np.float32)
    b = read_cfl(write_cfl(tmp_path / "r", a))
    assert b.shape == (4, 5) and b.dtype == np.complex64
    np.testing.assert_allclose(b.real, a[:, :, 0, 0])
    assert not b.imag.any()


def test_cfl_missing_parts(tmp_path, rng):
    base = write_cfl(tmp_path / "x", _cplx(rng, 2, 2))
    base.with_suffix(".cfl").unlink()
    with pytest.raises(FileFormatError, match=r"x\.cfl.*does not exist"):
        read_cfl(base)
    base = write_cfl(tmp_path / "y", _cplx(rng, 2, 2))
    base.with_suffix(".hdr").unlink()
    with pytest.raises(FileFormatError, match=r"y\.hdr.*does not exist"):
        read_cfl(base)


def test_cfl_truncated_and_corrupt_header(tmp_path, rng):
    base = write_cfl(tmp_path / "t", _cplx(rng, 4, 4))
    cfl = base.with_suffix(".cfl")
    cfl.write_bytes(cfl.read_bytes()[:-8])
    with pytest.raises(FileFormatError, match="truncated or wrong header") as info:
        read_cfl(base)
    assert "120 bytes" in str(info.value) and "128" in str(info.value)
    base = write_cfl(tmp_path / "h", _cplx(rng, 4, 4))
    base.with_suffix(".hdr").write_text("# Dims\nfour four\n")
    with pytest.raises(FileFormatError, match="Dimensions"):
        read_cfl(base)
    base.with_suffix(".hdr").write_text("# Dimensions\n4 x 1\n")
    with pytest.raises(FileFormatError, match="Dimensions"):
        read_cfl(base)


# ---------------------------------------------------------------------------------------------------------
# regressions
# ---------------------------------------------------------------------------------------------------------
def test_nested_provenance_roundtrip(tmp_path, rng):
    prov = {"config": {"lr": 1e-3, "steps": 10}, "tags": ["a", "b"]}
    scan = VolumeScan(volume=rng.random((4, 4)).astype(np.float32), provenance=prov)
    back = read_scan(write_scan(tmp_path / "p.h5", scan))
    assert back.provenance["config"] == prov["config"] and back.provenance["tags"] == prov["tags"]


def test_volume_target_with_nan_is_rejected(tmp_path, rng):
    vol = rng.random((4, 4)).astype(np.float32)
    tgt = vol.copy()
    tgt[0, 0] = np.nan
    p = _write_raw(tmp_path / "t.h5", {"volume": vol, "target": tgt})
    _raises(InreconError, p, "target", "NaN or Inf")
