"""Readers and writers: fastMRI h5, DICOM CT, images (h5/NIfTI/npy/png/DICOM), load_scan and describe."""

from __future__ import annotations

import json

import h5py
import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch

from inrecon.data.io.bart import write_cfl
from inrecon.data.io.dicom import read_dicom_ct, write_dicom_ct
from inrecon.data.io.fastmri import center_crop, center_pad, read_fastmri, rss, write_fastmri_like
from inrecon.data.io.hdf5 import write_scan
from inrecon.data.io.images import read_image, write_image
from inrecon.data.io.load import describe, detect_format, load_scan
from inrecon.data.scans import CTGeometry, CTScan, MRIScan, VolumeScan
from inrecon.errors import FileFormatError, InreconError, ShapeError
from inrecon.physics.fft import ifftc


@pytest.fixture
def rng():
    return np.random.default_rng(11)


def _cplx(rng, *shape):
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


def _fft2c_numpy(x):
    """fastMRI's own definition (numpy, independent of inrecon): ifftshift -> fft2 (ortho) -> fftshift."""
    ax = (-2, -1)
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=ax), axes=ax, norm="ortho"), axes=ax)


def _no_temp_files(folder):
    assert not [p.name for p in folder.rglob(".*")], "a temporary file was left behind"


# ---------------------------------------------------------------------------------------------------------
# fastMRI
# ---------------------------------------------------------------------------------------------------------
HEADER = """<?xml version="1.0"?><ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">
<acquisitionSystemInformation><systemVendor>ACME</systemVendor><systemFieldStrength_T>2.9</systemFieldStrength_T>
</acquisitionSystemInformation><encoding><encodedSpace><matrixSize><x>48</x><y>20</y><z>1</z></matrixSize>
</encodedSpace><reconSpace><matrixSize><x>16</x><y>16</y><z>1</z></matrixSize></reconSpace></encoding>
<sequenceParameters><TR>2500</TR><TE>30.5</TE></sequenceParameters></ismrmrdHeader>"""


def _fastmri_file(tmp_path, rng, crop=(16, 16), mask=None, slices=3, name="fm.h5"):
    coil_images = _cplx(rng, slices, 4, 24, 20)
    kspace = _fft2c_numpy(coil_images)
    ref = np.sqrt((np.abs(coil_images) ** 2).sum(1))
    ref = ref[
        :,
        (24 - crop[0]) // 2 : (24 - crop[0]) // 2 + crop[0],
        (20 - crop[1]) // 2 : (20 - crop[1]) // 2 + crop[1],
    ]
    if mask is not None:
        kspace = kspace * mask
    path = write_fastmri_like(
        tmp_path / name, kspace, mask, ref, attrs={"acquisition": "AXT2", "max": 1.5}, header=HEADER
    )
    return path, kspace, ref


def test_fastmri_convention_and_cropped_target(tmp_path, rng):
    path, kspace, ref = _fastmri_file(tmp_path, rng)
    scan = read_fastmri(path, slice=1)
    assert isinstance(scan, MRIScan) and scan.kspace.shape == (4, 24, 20)
    np.testing.assert_allclose(scan.kspace.numpy(), kspace[1], rtol=1e-6)
    crop = scan.provenance["target_crop_shape"]
    assert crop == [16, 16]
    # centred orthonormal convention: RSS of ifftc(kspace), cropped, equals reconstruction_rss
    recon = rss(ifftc(scan.kspace))
    torch.testing.assert_close(center_crop(recon, crop), torch.from_numpy(ref[1]), rtol=1e-4, atol=1e-5)
    # the target is the rss embedded in the k-space grid; the ROI marks where it is defined
    assert scan.target.shape == (24, 20) and int(scan.roi.sum()) == 16 * 16
    torch.testing.assert_close(center_crop(scan.target, crop), torch.from_numpy(ref[1]))
    assert float(scan.target[~scan.roi].abs().max()) == 0.0
    torch.testing.assert_close(recon[scan.roi], scan.target[scan.roi], rtol=1e-4, atol=1e-5)
    # orthonormal: energy is preserved
    assert float((scan.kspace.abs() ** 2).sum()) == pytest.approx(float((recon**2).sum()), rel=1e-4)


def test_fastmri_metadata_all_slices_and_negative_index(tmp_path, rng):
    path, _, _ = _fastmri_file(tmp_path, rng, crop=(24, 20))
    scans = read_fastmri(path)
    assert isinstance(scans, list) and [s.provenance["slice"] for s in scans] == [0, 1, 2]
    assert scans[0].roi is None and scans[0].target.shape == (24, 20)  # shapes match: target as is
    prov = scans[2].provenance
    assert prov["acquisition"] == "AXT2" and prov["max"] == 1.5 and prov["n_slices"] == 3
    assert prov["vendor"] == "ACME" and prov["field_strength_T"] == 2.9 and prov["TE_ms"] == 30.5
    assert prov["encoded_matrix"] == [48, 20, 1] and prov["recon_matrix"] == [16, 16, 1]
    last = read_fastmri(path, slice=-1)
    torch.testing.assert_close(last.kspace, scans[2].kspace)
    with pytest.raises(InreconError, match="slice 3 is out of range"):
        read_fastmri(path, slice=3)


@pytest.mark.parametrize("mask_kind", ["lines", "2d"])
def test_fastmri_masks(tmp_path, rng, mask_kind):
    lines = np.zeros(20, bool)
    lines[::4] = True
    lines[8:12] = True
    mask = lines if mask_kind == "lines" else np.broadcast_to(lines, (24, 20)).copy()
    path, _, _ = _fastmri_file(tmp_path, rng, mask=mask, slices=1)
    scan = read_fastmri(path, slice=0)
    assert scan.mask.shape == (24, 20)
    assert torch.equal(scan.mask, torch.from_numpy(np.broadcast_to(lines, (24, 20)).copy()))
    assert scan.acceleration == pytest.approx(20 / lines.sum())


def test_fastmri_bad_files(tmp_path, rng):
    path = tmp_path / "badmask.h5"
    write_fastmri_like(path, _cplx(rng, 1, 2, 8, 6), mask=np.ones(5))
    with pytest.raises(ShapeError, match=r"'mask' has shape \(5,\)"):
        read_fastmri(path)
    path = tmp_path / "nokspace.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("reconstruction_rss", data=np.zeros((1, 4, 4)))
    with pytest.raises(FileFormatError, match="no 'kspace'"):
        read_fastmri(path)
    path = tmp_path / "k2d.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("kspace", data=_cplx(rng, 8, 6))
    with pytest.raises(ShapeError, match="slices, coils, H, W"):
        read_fastmri(path)
    with pytest.raises(FileFormatError, match="is a directory"):
        read_fastmri(tmp_path)
    with pytest.raises(InreconError, match="complex"):
        write_fastmri_like(tmp_path / "real.h5", np.ones((1, 2, 4, 4), np.float32))


def test_center_crop_and_pad():
    x = np.arange(25 * 24).reshape(25, 24)
    c = center_crop(x, (16, 14))
    assert c.shape == (16, 14) and c[8, 7] == x[12, 12]  # centre index N//2 -> n//2
    assert center_crop(x, (15, 15))[0, 0] == x[5, 4]  # start (N - n) // 2, as fastMRI crops
    np.testing.assert_array_equal(center_crop(center_pad(c, (25, 24)), (16, 14)), c)
    t = torch.arange(2 * 6 * 6, dtype=torch.float32).reshape(2, 6, 6)
    assert center_crop(t, (4, 4)).shape == (2, 4, 4) and center_pad(t, (8, 9)).shape == (2, 8, 9)
    with pytest.raises(ShapeError, match="cannot centre-crop"):
        center_crop(x, (30, 4))
    with pytest.raises(ShapeError, match="cannot centre-pad"):
        center_pad(x, (4, 4))


# ---------------------------------------------------------------------------------------------------------
# DICOM
# ---------------------------------------------------------------------------------------------------------
def _hu_volume(rng, shape=(3, 20, 24)):
    return rng.uniform(-1024, 2000, shape).astype(np.float32)


def test_dicom_series_roundtrip_and_validity(tmp_path, rng):
    hu = _hu_volume(rng)
    files = write_dicom_ct(tmp_path / "series", hu, (2.5, 0.7, 0.8), meta={"PatientID": "P42", "note": "x"})
    assert [f.name for f in files] == ["IM0001.dcm", "IM0002.dcm", "IM0003.dcm"]
    back, spacing, meta = read_dicom_ct(tmp_path / "series")
    assert back.shape == hu.shape and back.dtype == np.float32
    assert np.abs(back - hu).max() <= 0.5 + 1e-3
    assert spacing == pytest.approx((2.5, 0.7, 0.8))
    assert meta["PatientID"] == "P42" and meta["Modality"] == "CT" and meta["n_slices"] == 3
    dsets = [pydicom.dcmread(f) for f in files]
    assert all(ds.SOPClassUID == pydicom.uid.CTImageStorage for ds in dsets)
    assert dsets[0].file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert len({ds.SOPInstanceUID for ds in dsets}) == 3 and len({ds.SeriesInstanceUID for ds in dsets}) == 1
    assert json.loads(dsets[0].ImageComments) == {"note": "x"}
    assert dsets[0].RescaleType == "HU" and dsets[0].pixel_array.dtype == np.int16
    # a second write gets fresh UIDs
    other = write_dicom_ct(tmp_path / "again", hu[:1])
    assert pydicom.dcmread(other[0]).SeriesInstanceUID != dsets[0].SeriesInstanceUID
    _no_temp_files(tmp_path)


def test_dicom_sorted_by_position_not_name(tmp_path, rng):
    hu = _hu_volume(rng, (4, 8, 8))
    files = write_dicom_ct(tmp_path / "s", hu)
    for i, f in enumerate(files):  # reverse the name order
        f.rename(f.with_name(f"z{9 - i}.dcm"))
    (tmp_path / "s" / "README.txt").write_text("not dicom")
    back, _, _ = read_dicom_ct(tmp_path / "s")
    assert np.abs(back - hu).max() <= 0.51


def test_dicom_single_file_and_large_range(tmp_path, rng):
    hu = rng.uniform(-50000, 90000, (10, 12)).astype(np.float32)
    write_dicom_ct(tmp_path / "one.dcm", hu, (0.5, 0.5))
    back, spacing, _ = read_dicom_ct(tmp_path / "one.dcm")
    assert back.shape == (1, 10, 12) and spacing[1:] == (0.5, 0.5)
    assert np.abs(back[0] - hu).max() <= 140000 / 65000  # one rescale step


def test_dicom_write_errors(tmp_path, rng):
    hu = _hu_volume(rng)
    with pytest.raises(InreconError, match=r"single \.dcm file"):
        write_dicom_ct(tmp_path / "x.dcm", hu)
    study = {"StudyInstanceUID": "2.25.42"}
    write_dicom_ct(tmp_path / "dir", hu, meta=study)
    with pytest.raises(InreconError, match=r"already holds 3 \.dcm files"):
        write_dicom_ct(tmp_path / "dir", hu, meta=study)
    write_dicom_ct(tmp_path / "dir", hu[:2], meta=study, overwrite=True)  # our series of the same scan
    assert sorted(p.name for p in (tmp_path / "dir").iterdir()) == ["IM0001.dcm", "IM0002.dcm"]
    with pytest.raises(InreconError, match="not a DICOM keyword"):
        write_dicom_ct(tmp_path / "m", hu, meta={"PatientIDD": "typo"})
    with pytest.raises(InreconError, match="must be real"):
        write_dicom_ct(tmp_path / "c", hu.astype(np.complex64))
    bad = hu.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(InreconError, match="NaN or Inf"):
        write_dicom_ct(tmp_path / "n", bad)
    with pytest.raises(InreconError, match="spacing_mm"):
        write_dicom_ct(tmp_path / "sp", hu, (1.0, -1.0))


def test_dicom_read_errors(tmp_path, rng):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "a.txt").write_text("hello")
    with pytest.raises(FileFormatError, match="holds no DICOM image files"):
        read_dicom_ct(tmp_path / "empty")
    with pytest.raises(FileFormatError, match="does not exist"):
        read_dicom_ct(tmp_path / "missing")
    (tmp_path / "junk.dcm").write_bytes(b"\0" * 300)
    with pytest.raises(FileFormatError, match="not a readable DICOM"):
        read_dicom_ct(tmp_path / "junk.dcm")
    hu = _hu_volume(rng, (2, 8, 8))
    write_dicom_ct(tmp_path / "two", hu)
    extra = write_dicom_ct(tmp_path / "b", hu[:1])[0]
    extra.rename(tmp_path / "two" / "other.dcm")
    with pytest.raises(InreconError, match="holds 2 DICOM series") as info:
        read_dicom_ct(tmp_path / "two")
    uid = str(pydicom.dcmread(tmp_path / "two" / "other.dcm").SeriesInstanceUID)
    assert uid in str(info.value)
    assert read_dicom_ct(tmp_path / "two", series_uid=uid)[0].shape == (1, 8, 8)
    good = write_dicom_ct(tmp_path / "t.dcm", hu[0])[0]
    data = good.read_bytes()
    good.write_bytes(data[: len(data) - 40])  # truncated pixel data
    with pytest.raises(FileFormatError, match=r"t\.dcm"):
        read_dicom_ct(good)


@pytest.mark.realdata
def test_real_dicom_slice(shared_data):
    path = shared_data("ct/lungdx/A0001_1-01.dcm")
    hu, spacing, meta = read_dicom_ct(path)
    assert hu.shape == (1, 512, 512) and spacing == pytest.approx((5.0, 0.841796875, 0.841796875))
    assert meta["Modality"] == "CT" and meta["RescaleIntercept"] == -1024.0
    assert hu.min() == -1024.0 and np.median(hu[0, :40, :40]) < -900  # air in the corner
    vol = np.load(shared_data("ct/lungdx/lungdx_A0001_5mm_hu.npz"))["hu"]
    assert min(np.abs(v.astype(np.float32) - hu[0]).max() for v in vol) == 0.0  # one slice of that series


# ---------------------------------------------------------------------------------------------------------
# write_image / read_image
# ---------------------------------------------------------------------------------------------------------
def test_image_h5_roundtrip_complex_and_meta(tmp_path, rng):
    img = torch.from_numpy(_cplx(rng, 6, 7))
    meta = {"method": "ngp", "config": {"lr": 0.001, "steps": [1, 2]}, "seconds": 1.5}
    p = write_image(tmp_path / "out.h5", img, spacing_mm=(0.5, 0.6), meta=meta)
    back = read_image(p)
    assert back.dtype == np.complex64
    np.testing.assert_array_equal(back, img.numpy())
    with h5py.File(p) as f:
        assert f.attrs["method"] == "ngp" and json.loads(f.attrs["config"]) == meta["config"]
        np.testing.assert_allclose(f.attrs["spacing_mm"], [0.5, 0.6])
    real = rng.random((3, 4, 5))
    np.testing.assert_allclose(read_image(write_image(tmp_path / "r.hdf5", real)), real.astype(np.float32))
    _no_temp_files(tmp_path)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_image_nifti_roundtrip(tmp_path, rng, suffix):
    img = _cplx(rng, 4, 6, 5)
    p = write_image(tmp_path / f"v{suffix}", img, spacing_mm=(3.0, 2.0, 1.0))
    back = read_image(p)
    assert back.shape == (4, 6, 5) and back.dtype == np.complex64  # complex stays complex
    np.testing.assert_array_equal(back, img)
    nii = nib.load(str(p))
    assert nii.shape == (5, 6, 4)  # NIfTI (x, y, z) order
    np.testing.assert_allclose(np.diag(nii.affine)[:3], [-1.0, -2.0, 3.0])  # L, P, S (docs/conventions.md)
    img2 = rng.random((6, 5)).astype(np.float32)
    np.testing.assert_allclose(read_image(write_image(tmp_path / f"i{suffix}", img2)), img2)


def test_image_npy_roundtrip(tmp_path, rng):
    img = _cplx(rng, 3, 4)
    np.testing.assert_array_equal(read_image(write_image(tmp_path / "a.npy", img)), img)
    t = torch.rand(2, 3, 4)
    np.testing.assert_array_equal(read_image(write_image(tmp_path / "t.npy", t)), t.numpy())


def test_image_png_window_and_montage(tmp_path, rng):
    img = rng.random((20, 30)).astype(np.float32)
    back = read_image(write_image(tmp_path / "a.png", img, window=(0.0, 1.0), meta={"method": "x"}))
    assert back.shape == (20, 30) and np.abs(back - img).max() <= 0.5 / 255 + 1e-6
    from PIL import Image

    with Image.open(tmp_path / "a.png") as im:
        assert im.mode == "L" and json.loads(im.text["inrecon"]) == {"method": "x", "window": [0.0, 1.0]}
    auto = read_image(write_image(tmp_path / "auto.png", 5 * img - 2))  # percentiles -> full range
    assert auto.min() == 0.0 and auto.max() == 1.0
    vol = rng.random((5, 8, 10))
    mont = read_image(write_image(tmp_path / "m.png", vol, window=(0, 1)))
    assert mont.shape == (2 * 8, 3 * 10)  # 5 slices in a 2 x 3 grid
    np.testing.assert_allclose(mont[8:16, 10:20], vol[4], atol=0.5 / 255 + 1e-6)
    assert mont[8:, 20:].max() == 0.0  # the unused tile stays empty


def test_image_dicom_with_hu_window(tmp_path, rng):
    unit = rng.random((2, 12, 12)).astype(np.float32)
    write_image(tmp_path / "ct", unit, hu_window=(-800, 400), spacing_mm=(5.0, 0.8, 0.8))
    hu = read_image(tmp_path / "ct")
    assert hu.shape == (2, 12, 12)
    np.testing.assert_allclose(hu, -800 + unit * 1200, atol=0.51)
    one = read_image(write_image(tmp_path / "one.dcm", torch.from_numpy(unit[0] * 100)))
    assert one.shape == (12, 12) and np.abs(one - unit[0] * 100).max() <= 0.51


def test_image_bad_input(tmp_path, rng):
    img = rng.random((4, 4))
    with pytest.raises(FileFormatError, match=r"suffix '\.tif'"):
        write_image(tmp_path / "a.tif", img)
    with pytest.raises(ShapeError, match="image has shape"):
        write_image(tmp_path / "a.npy", rng.random((2, 2, 2, 2)))
    bad = img.copy()
    bad[1, 1] = np.inf
    with pytest.raises(InreconError, match="NaN or Inf"):
        write_image(tmp_path / "a.png", bad)
    with pytest.raises(InreconError, match="complex"):
        write_image(tmp_path / "c.dcm", _cplx(rng, 4, 4), modality="CT")
    with pytest.raises(InreconError, match="spacing_mm"):
        write_image(tmp_path / "a.nii", img, spacing_mm=(1.0,))
    with pytest.raises(InreconError, match="window"):
        write_image(tmp_path / "a.png", img, window=(1, 1))
    with pytest.raises(FileFormatError, match="does not exist"):
        read_image(tmp_path / "missing.png")
    with h5py.File(tmp_path / "noimg.h5", "w") as f:
        f.create_dataset("other", data=img)
    with pytest.raises(FileFormatError, match="no dataset 'image'"):
        read_image(tmp_path / "noimg.h5")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    with pytest.raises(FileFormatError, match=r"bad\.png"):
        read_image(tmp_path / "bad.png")
    assert not (tmp_path / "a.tif").exists() and not (tmp_path / "a.png").exists()


# ---------------------------------------------------------------------------------------------------------
# load_scan and describe
# ---------------------------------------------------------------------------------------------------------
def _json_ok(scan):
    d = describe(scan)
    json.dumps(d)
    return d


def test_load_inrecon_hdf5_and_fastmri(tmp_path, rng):
    vol = VolumeScan(volume=rng.random((4, 5)).astype(np.float32))
    s = load_scan(write_scan(tmp_path / "v.h5", vol))
    assert isinstance(s, VolumeScan) and s.provenance["format"] == "hdf5"
    path, kspace, _ = _fastmri_file(tmp_path, rng, slices=5)
    assert detect_format(path) == "fastmri"
    mid = load_scan(path)
    assert mid.provenance["slice"] == 2 and mid.provenance["format"] == "fastmri"
    np.testing.assert_allclose(mid.kspace.numpy(), kspace[2], rtol=1e-6)
    assert load_scan(path, slice=4).provenance["slice"] == 4
    with pytest.raises(InreconError, match="slice"):
        load_scan(path, slice="a")
    with pytest.raises(InreconError, match="hu_window do not apply to fastmri"):
        load_scan(path, hu_window=(0, 1))
    d = _json_ok(mid)
    assert d["coils"] == 4 and d["target"]["shape"] == [24, 20] and d["roi"]["shape"] == [24, 20]
    img = load_scan(write_image(tmp_path / "img.h5", rng.random((6, 6))))
    assert isinstance(img, VolumeScan) and img.volume.shape == (6, 6)


@pytest.mark.parametrize(
    ("bart_shape", "kspace_shape"),
    [
        ((1, 18, 23, 4), (4, 18, 23)),
        ((18, 23, 1, 4), (4, 18, 23)),
        ((6, 5, 4, 2), (2, 6, 5, 4)),
        ((9, 7), (1, 9, 7)),
    ],
)
def test_load_bart(tmp_path, rng, bart_shape, kspace_shape):
    a = _cplx(rng, *bart_shape)
    base = write_cfl(tmp_path / "ksp", a)
    for name in (base, base.with_suffix(".cfl"), base.with_suffix(".hdr")):
        scan = load_scan(name)
        assert isinstance(scan, MRIScan) and tuple(scan.kspace.shape) == kspace_shape
    # coils first: element (read, p1, p2, coil) -> kspace[coil, ...]
    flat = a.reshape(*a.shape, *([1] * (4 - a.ndim)))
    np.testing.assert_array_equal(scan.kspace.numpy(), np.transpose(flat, (3, 0, 1, 2)).reshape(kspace_shape))
    assert scan.provenance["bart_dims"] == list(a.shape)


def test_load_bart_with_maps_is_an_image_and_extra_axes_are_rejected(tmp_path, rng):
    img = _cplx(rng, 1, 8, 8, 1, 2)
    scan = load_scan(write_cfl(tmp_path / "img", img))  # a MAPS axis: a `bart pics` image
    assert isinstance(scan, VolumeScan)
    np.testing.assert_allclose(
        scan.volume.numpy(), np.sqrt((np.abs(img[0, :, :, 0]) ** 2).sum(-1)), rtol=1e-6
    )
    base = write_cfl(tmp_path / "te", _cplx(rng, 1, 8, 8, 2, 1, 3))
    with pytest.raises(ShapeError, match="beyond COIL"):
        load_scan(base)


def test_load_npy_variants(tmp_path, rng):
    k = _cplx(rng, 3, 8, 9)
    np.save(tmp_path / "k.npy", k)
    s = load_scan(tmp_path / "k.npy")
    assert isinstance(s, MRIScan) and s.n_coils == 3 and s.provenance["format"] == "npy"
    np.save(tmp_path / "k1.npy", k[0])
    assert load_scan(tmp_path / "k1.npy").kspace.shape == (1, 8, 9)
    np.save(tmp_path / "v.npy", rng.random((3, 8, 9)))
    v = load_scan(tmp_path / "v.npy")
    assert isinstance(v, VolumeScan) and v.volume.dtype == torch.float32
    np.save(tmp_path / "hu.npy", np.array([[-800.0, 400.0], [-200.0, 1000.0]]))
    w = load_scan(tmp_path / "hu.npy", hu_window=(-800, 400))
    np.testing.assert_allclose(w.volume.numpy(), [[0, 1], [0.5, 1]])
    np.save(tmp_path / "4d.npy", rng.random((2, 2, 2, 2)))
    with pytest.raises(ShapeError, match=r"\(2, 2, 2, 2\)"):
        load_scan(tmp_path / "4d.npy")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(FileFormatError, match=r"obj\.npy"):
        load_scan(tmp_path / "obj.npy")


def test_load_npz_contract(tmp_path, rng):
    k = _cplx(rng, 2, 8, 8)
    mask = np.ones((8, 8), np.uint8)
    np.savez(tmp_path / "mri.npz", kspace=k, mask=mask, snr_db=30.0)
    s = load_scan(tmp_path / "mri.npz")
    assert isinstance(s, MRIScan) and s.provenance["snr_db"] == 30.0
    geom = CTGeometry("fan", 20, 2.0, (8, 8), 1.0, 300.0, 300.0)
    sino = rng.random((5, 20)).astype(np.float32)
    np.savez(tmp_path / "ct.npz", sinogram=sino, angles=np.linspace(0, 6, 5), **geom.to_attrs())
    c = load_scan(tmp_path / "ct.npz")
    assert isinstance(c, CTScan) and c.geometry == geom
    d = _json_ok(c)
    assert d["views"] == 5 and d["geometry"]["geometry"] == "fan"
    np.savez(tmp_path / "ct_bad.npz", sinogram=sino, angles=np.zeros(4), **geom.to_attrs())
    with pytest.raises(ShapeError, match="5 views"):
        load_scan(tmp_path / "ct_bad.npz")
    attrs = geom.to_attrs()
    del attrs["n_detectors"]
    np.savez(tmp_path / "ct_nodet.npz", sinogram=sino, angles=np.zeros(5), **attrs)
    with pytest.raises(FileFormatError, match="'n_detectors' is missing"):
        load_scan(tmp_path / "ct_nodet.npz")
    hu = rng.uniform(-1000, 1000, (3, 8, 8)).astype(np.int16)
    np.savez(tmp_path / "hu.npz", hu=hu, pixel_spacing_mm=np.array([0.7, 0.7]), slice_spacing_mm=5.0)
    v = load_scan(tmp_path / "hu.npz")
    assert v.provenance["hu_window"] == [-800.0, 400.0] and v.provenance["spacing_mm"] == [5.0, 0.7, 0.7]
    np.testing.assert_allclose(v.volume.numpy(), np.clip((hu + 800) / 1200, 0, 1), atol=1e-6)
    raw = load_scan(tmp_path / "hu.npz", hu_window=None)
    np.testing.assert_array_equal(raw.volume.numpy(), hu.astype(np.float32))
    np.savez(tmp_path / "two.npz", a=rng.random((5, 5)), b=rng.random((5, 5)))
    with pytest.raises(FileFormatError, match="none of 'kspace'"):
        load_scan(tmp_path / "two.npz")


def test_load_nifti_and_dicom(tmp_path, rng):
    write_image(tmp_path / "v.nii.gz", rng.random((3, 6, 5)), spacing_mm=(4.0, 1.0, 0.5))
    v = load_scan(tmp_path / "v.nii.gz")
    assert isinstance(v, VolumeScan) and v.volume.shape == (3, 6, 5)
    assert v.provenance["spacing_mm"] == [4.0, 1.0, 0.5]
    hu = rng.uniform(-1000, 1000, (2, 8, 8)).astype(np.float32)
    write_dicom_ct(tmp_path / "ct", hu, (5.0, 0.7, 0.7))
    s = load_scan(tmp_path / "ct")
    assert s.volume.shape == (2, 8, 8) and s.provenance["hu_window"] == [-800.0, 400.0]
    np.testing.assert_allclose(s.volume.numpy(), np.clip((hu + 800) / 1200, 0, 1), atol=0.5 / 1200 + 1e-6)
    raw = load_scan(tmp_path / "ct", hu_window=None)
    assert np.abs(raw.volume.numpy() - hu).max() <= 0.51
    assert raw.provenance["dicom"]["Modality"] == "CT" and raw.provenance["spacing_mm"] == [5.0, 0.7, 0.7]
    _json_ok(raw)


def test_load_unknown_and_broken(tmp_path):
    (tmp_path / "notes.txt").write_text("just text")
    with pytest.raises(FileFormatError, match="supported formats") as info:
        load_scan(tmp_path / "notes.txt")
    assert "BART" in str(info.value) and "DICOM" in str(info.value)
    (tmp_path / "empty.h5").write_bytes(b"")
    with pytest.raises(FileFormatError, match="empty"):
        load_scan(tmp_path / "empty.h5")
    with pytest.raises(FileFormatError, match="does not exist"):
        load_scan(tmp_path / "nothing.h5")
    (tmp_path / "trunc.npz").write_bytes(b"PK\x03\x04" + b"\0" * 10)
    with pytest.raises(FileFormatError, match=r"trunc\.npz"):
        load_scan(tmp_path / "trunc.npz")
    (tmp_path / "folder").mkdir()
    with pytest.raises(FileFormatError, match="no DICOM"):
        load_scan(tmp_path / "folder")


def test_describe_mri_noncartesian_and_volume(rng):
    traj = rng.uniform(-3, 3, (40, 2)).astype(np.float32)
    s = MRIScan(
        kspace=_cplx(rng, 2, 40), trajectory=traj, image_shape=(8, 8), provenance={"a": np.float32(1)}
    )
    d = _json_ok(s)
    assert d["cartesian"] is False and d["trajectory"]["shape"] == [40, 2] and d["acceleration"] == 1.6
    assert d["provenance"]["a"] == 1.0
    k = _cplx(rng, 3, 8, 8)
    k[:, ::2] = 0
    d = _json_ok(MRIScan(kspace=k))
    assert d["sampled_fraction"] == 0.5 and d["acceleration"] == 2.0 and d["kspace"]["dtype"] == "complex64"
    v = _json_ok(VolumeScan(volume=np.ones((2, 3, 4), np.float32)))
    assert v["range"] == [1.0, 1.0] and v["target"] == "the volume itself"


@pytest.mark.realdata
def test_load_real_files(shared_data):
    s = load_scan(shared_data("mri/brain8ch_bart/ksp.cfl"))
    assert tuple(s.kspace.shape) == (8, 180, 230)
    assert 0.12 < _json_ok(s)["sampled_fraction"] < 0.13
    n = load_scan(shared_data("mri/sigpy_cartesian_ksp.npy"))
    assert tuple(n.kspace.shape) == (8, 230, 180)
    c = load_scan(shared_data("ct/lungdx/A0001_1-01.dcm"))
    assert c.volume.shape == (512, 512) and 0.0 <= float(c.volume.min()) and float(c.volume.max()) <= 1.0
    v = load_scan(shared_data("ct/lungdx/lungdx_A0002_B40f_8mm_hu.npz"))
    assert v.volume.shape == (30, 512, 512) and v.provenance["spacing_mm"] == pytest.approx(
        [8.0, 0.6465, 0.6465], rel=1e-3
    )
    sino = load_scan(shared_data("ct/scope_parallel/90_sino.nii"))
    assert sino.volume.shape == (90, 367)  # NIfTI (detectors, views) -> (views, detectors)


@pytest.mark.realdata
def test_brain8ch_sigpy_mask_is_the_same_data_on_the_bart_grid(shared_data):
    """The sigpy tutorial's k-space, mapped back by the loader, agrees with BART's wherever both masks sampled
    (a transposed or reversed mapping would not), so BART's fully sampled reference scores it too."""
    from inrecon.data import shared

    shared_data(shared.BRAIN8CH)
    shared_data(shared.BRAIN8CH_SIGPY)
    a, b = shared.brain8ch(), shared.brain8ch(mask="sigpy")
    assert tuple(b.kspace.shape) == (8, 180, 230) and torch.equal(a.target, b.target)
    both = a.mask & b.mask
    assert 1000 < int(both.sum()) < int(b.mask.sum()) and not torch.equal(a.mask, b.mask)
    ka, kb = a.kspace[:, both].to(torch.complex128), b.kspace[:, both].to(torch.complex128)
    c = (ka.conj() * kb).sum() / ka.abs().square().sum()  # the files' units differ by one real factor
    assert abs(float(c.imag)) < 1e-6 * abs(float(c.real))
    assert float((c * ka - kb).abs().norm() / kb.abs().norm()) < 1e-5
    assert 0.12 < float(b.mask.float().mean()) < 0.13
    with pytest.raises(InreconError, match="mask"):
        shared.brain8ch(mask="fastmri")


def test_scope_sinogram_loads_without_nibabel_header_noise(shared_data, caplog):
    """The SCOPE files' zero voxel sizes are repaired by nibabel on load; the library reads only their arrays
    and keeps the repair message off the user's terminal (and nibabel's logger level as it was)."""
    import logging

    from inrecon.data import shared

    shared_data("ct/scope_parallel/90_sino.nii")
    before = logging.getLogger("nibabel.global").level
    with caplog.at_level(logging.DEBUG):
        scan = shared.scope_parallel(90)
    assert tuple(scan.target.shape) == (256, 256)
    assert not [r for r in caplog.records if r.name.startswith("nibabel")]
    assert logging.getLogger("nibabel.global").level == before
