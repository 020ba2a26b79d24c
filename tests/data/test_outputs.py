"""Reconstructions as files, checked with the viewers' own libraries (nibabel, pydicom, SimpleITK, PIL).

Values keep their sign, spacing comes from the scan, NIfTI and DICOM agree in physical space, DICOM series
carry calibrated values and shared study identity, folders holding other files are never overwritten, and
atomic writes honour the umask (issue 13 items 1-4, issue 14 DICOM).
"""

from __future__ import annotations

import json
import os
import shutil

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from PIL import Image

from inrecon.cli import main
from inrecon.data.atomic import atomic_path
from inrecon.data.io.dicom import read_dicom_ct, write_dicom_ct
from inrecon.data.io.images import read_image, write_image
from inrecon.data.io.outputs import check_output, output_options
from inrecon.data.scans import CTGeometry, CTScan, MRIScan
from inrecon.errors import InreconError


@pytest.fixture
def rng():
    return np.random.default_rng(5)


@pytest.fixture(scope="module")
def ct96(tmp_path_factory):
    """The brief's scan: body phantom 96 x 96 at 2.5 mm, 30 fan views, 120 detectors of 5 mm."""
    out = tmp_path_factory.mktemp("ct") / "ct96.h5"
    args = ["simulate", "--modality", "ct", "--phantom", "body", "--size", "96", "96", "--pixel-size", "2.5"]
    args += ["--views", "30", "--detectors", "120", "--detector-spacing", "5", "-o", str(out)]
    assert main(args) == 0
    return out


@pytest.fixture(scope="module")
def fbp96(ct96):
    """The FBP image of ct96 as the method returns it (float32, signed)."""
    out = ct96.with_name("fbp.npy")
    assert main(["recon", "--method", "fbp", str(ct96), "-o", str(out), "-q"]) == 0
    img = np.load(out)
    assert img.min() < -0.1  # FBP undershoots: the sign matters
    return img


def _recon(scan_path, out, method="fbp", *extra):
    assert main(["recon", "--method", method, str(scan_path), "-o", str(out), "-q", *extra]) == 0
    return out


def _series_files(folder):
    return sorted(folder.glob("*.dcm"))


def _dicom_values(path) -> np.ndarray:
    """Stored values through the rescale, read with pydicom alone: (S, H, W) sorted by position."""
    files = [path] if path.is_file() else _series_files(path)
    dsets = sorted((pydicom.dcmread(f) for f in files), key=lambda d: float(d.ImagePositionPatient[2]))
    return np.stack([d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept) for d in dsets])


# ---------------------------------------------------------------------------------------------------------
# item 1: values keep their sign
# ---------------------------------------------------------------------------------------------------------
def test_nifti_keeps_the_sign_of_a_real_reconstruction(ct96, fbp96, tmp_path):
    nii = nib.load(str(_recon(ct96, tmp_path / "x.nii.gz")))
    data = np.asarray(nii.dataobj)
    assert data.dtype == np.float32
    np.testing.assert_allclose(data.T, fbp96, rtol=1e-6, atol=1e-7)  # signed, -0.17 stays -0.17
    assert data.min() < -0.1


def test_nifti_keeps_a_complex_image_complex(tmp_path, rng):
    img = (rng.standard_normal((6, 7)) + 1j * rng.standard_normal((6, 7))).astype(np.complex64)
    nii = nib.load(str(write_image(tmp_path / "c.nii", img)))
    data = np.asarray(nii.dataobj)
    assert data.dtype == np.complex64
    np.testing.assert_array_equal(data.T, img)
    np.testing.assert_array_equal(read_image(tmp_path / "c.nii"), img)


def test_png_windows_signed_values_without_folding(tmp_path):
    ramp = np.tile(np.linspace(-1.0, 1.0, 101, dtype=np.float32), (5, 1))
    write_image(tmp_path / "r.png", ramp)
    with Image.open(tmp_path / "r.png") as im:
        grey = np.asarray(im.convert("L"))[2].astype(int)
        window = json.loads(im.text["inrecon"])["window"]
    assert np.all(np.diff(grey) >= 0), "grey levels must increase with the signed value"
    assert grey[0] == 0 and grey[-1] == 255
    assert window == pytest.approx(np.percentile(ramp, [0.5, 99.5]), abs=1e-6)  # the data's percentiles
    write_image(tmp_path / "w.png", ramp, window=(0.0, 0.5))
    with Image.open(tmp_path / "w.png") as im:
        grey = np.asarray(im)[2].astype(int)
    assert np.all(grey[:51] == 0) and np.all(grey[75:] == 255)  # negatives clip to black, never mid-grey


def test_png_of_a_ct_reconstruction_is_black_below_the_window(ct96, fbp96, tmp_path):
    _recon(ct96, tmp_path / "x.png")
    with Image.open(tmp_path / "x.png") as im:
        grey = np.asarray(im).astype(int)
        lo, hi = json.loads(im.text["inrecon"])["window"]
    assert grey.shape == fbp96.shape
    assert np.all(grey[fbp96 <= lo] == 0) and np.all(grey[fbp96 >= hi] == 255)
    assert np.all(grey[fbp96 < -0.1] == 0)  # the undershoot is black, not folded to mid-grey


# ---------------------------------------------------------------------------------------------------------
# item 2: spacing from the scan
# ---------------------------------------------------------------------------------------------------------
def test_ct_spacing_reaches_nifti_and_dicom(ct96, tmp_path):
    nii = nib.load(str(_recon(ct96, tmp_path / "x.nii.gz")))
    assert nii.header.get_zooms()[:2] == pytest.approx((2.5, 2.5))
    folder = _recon(ct96, tmp_path / "series")
    ds = pydicom.dcmread(_series_files(folder)[0])
    assert [float(v) for v in ds.PixelSpacing] == [2.5, 2.5]
    assert float(ds.SliceThickness) > 0
    assert [float(v) for v in ds.ImagePositionPatient][:2] == pytest.approx([-47.5 * 2.5, -47.5 * 2.5])


def test_simulate_from_dicom_takes_its_pixel_spacing(tmp_path, rng):
    hu = rng.uniform(-1000, 400, (40, 40)).astype(np.float32)
    write_dicom_ct(tmp_path / "slice.dcm", hu, (0.842, 0.842))
    out = tmp_path / "sim.h5"
    args = ["simulate", "--modality", "ct", "--image", str(tmp_path / "slice.dcm"), "--views", "10"]
    assert main([*args, "--detectors", "80", "-o", str(out)]) == 0
    from inrecon.data.io.hdf5 import read_scan

    assert read_scan(out).geometry.pixel_size_mm == pytest.approx(0.842)
    assert main([*args, "--detectors", "80", "--pixel-size", "1.5", "-o", str(out)]) == 0
    assert read_scan(out).geometry.pixel_size_mm == 1.5  # explicit wins


def test_mri_spacing_from_fov_else_one_mm_and_a_note(tmp_path, rng):
    k = (rng.standard_normal((2, 12, 10)) + 1j * rng.standard_normal((2, 12, 10))).astype(np.complex64)
    scan = MRIScan(kspace=k, provenance={"spacing_mm": [0.5, 0.8]})
    kwargs, notes = output_options(tmp_path / "x.nii", scan, "zf")
    assert kwargs["spacing_mm"] == (0.5, 0.8) and not notes
    kwargs, notes = output_options(tmp_path / "x.nii", MRIScan(kspace=k), "zf")
    assert kwargs["spacing_mm"] == (1.0, 1.0)
    assert any("1 mm" in n for n in notes)


# ---------------------------------------------------------------------------------------------------------
# item 3: one orientation convention, checked in physical space
# ---------------------------------------------------------------------------------------------------------
def test_nifti_and_dicom_agree_in_physical_space(tmp_path, rng):
    sitk = pytest.importorskip("SimpleITK", reason="SimpleITK (test extra) is needed to read both formats")
    vol = rng.uniform(-500, 1500, (4, 9, 11)).astype(np.float32)
    vol[0, 0, 0] = 3000.0  # a marker at row 0, column 0 of the first slice
    spacing = (3.0, 0.7, 0.9)
    write_image(tmp_path / "v.nii.gz", vol, spacing_mm=spacing)
    write_image(tmp_path / "dcm", vol, spacing_mm=spacing, modality="CT", calibration="hu")
    a = sitk.ReadImage(str(tmp_path / "v.nii.gz"))
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(tmp_path / "dcm")))
    b = reader.Execute()
    np.testing.assert_allclose(a.GetSpacing(), (0.9, 0.7, 3.0), rtol=1e-6)
    np.testing.assert_allclose(b.GetSpacing(), (0.9, 0.7, 3.0), rtol=1e-6)
    np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), atol=1e-6)
    np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-3)
    b_on_a = sitk.Resample(b, a, sitk.Transform(), sitk.sitkNearestNeighbor, -9999.0, sitk.sitkFloat32)
    np.testing.assert_allclose(sitk.GetArrayFromImage(b_on_a), vol, atol=0.51)  # voxel by voxel
    np.testing.assert_allclose(sitk.GetArrayFromImage(a), vol)
    # documented convention: column index -> patient left (+x LPS), row index -> posterior (+y LPS),
    # slice index -> superior (+z); row 0, column 0 is the patient's right-anterior corner
    marker = np.array(a.TransformIndexToPhysicalPoint((0, 0, 0)))
    assert marker[0] < 0 and marker[1] < 0
    assert a.GetPixel(0, 0, 0) == 3000.0
    np.testing.assert_allclose(a.TransformIndexToPhysicalPoint((1, 0, 0)) - marker, (0.9, 0, 0), atol=1e-6)
    np.testing.assert_allclose(a.TransformIndexToPhysicalPoint((0, 1, 0)) - marker, (0, 0.7, 0), atol=1e-6)
    assert nib.aff2axcodes(nib.load(str(tmp_path / "v.nii.gz")).affine) == ("L", "P", "S")


def test_nifti_and_dicom_agree_with_nibabel_and_pydicom(tmp_path, rng):
    img = rng.uniform(0, 1000, (6, 5)).astype(np.float32)
    write_image(tmp_path / "i.nii", img, spacing_mm=(0.5, 0.6))
    write_image(tmp_path / "i.dcm", img, spacing_mm=(0.5, 0.6), modality="CT", calibration="hu")
    nii = nib.load(str(tmp_path / "i.nii"))
    ds = pydicom.dcmread(tmp_path / "i.dcm")
    ipp = np.array([float(v) for v in ds.ImagePositionPatient])
    iop = np.array([float(v) for v in ds.ImageOrientationPatient])
    ps = [float(v) for v in ds.PixelSpacing]  # (row spacing, column spacing)
    for r, c in [(0, 0), (5, 0), (0, 4), (3, 2)]:
        lps_dicom = ipp + c * ps[1] * iop[:3] + r * ps[0] * iop[3:]
        ras = nii.affine @ np.array([c, r, 0, 1.0])
        np.testing.assert_allclose(ras[:3] * [-1, -1, 1], lps_dicom, atol=1e-4)


# ---------------------------------------------------------------------------------------------------------
# item 4: DICOM values, storage class, identity; umask
# ---------------------------------------------------------------------------------------------------------
def test_dicom_without_hu_window_keeps_the_values(ct96, fbp96, tmp_path):
    folder = _recon(ct96, tmp_path / "series")  # body phantom: calibrated by the HU window it was made in
    ds = pydicom.dcmread(_series_files(folder)[0])
    assert ds.SOPClassUID == pydicom.uid.CTImageStorage and ds.RescaleType == "HU"
    hu = _dicom_values(folder)[0]
    assert len(np.unique(ds.pixel_array)) > 100  # not binarised
    np.testing.assert_allclose(hu, -800 + 1200 * fbp96, atol=0.51)


def test_dicom_of_an_uncalibrated_ct_keeps_values_and_says_so(tmp_path, rng):
    geom = CTGeometry("parallel", 20, 1.0, (8, 8), pixel_size_mm=0.5)
    scan = CTScan(sinogram=rng.random((6, 20)).astype(np.float32), angles=np.arange(6) / 6.0, geometry=geom)
    kwargs, notes = output_options(tmp_path / "u.dcm", scan, "fbp")
    img = rng.uniform(-0.05, 0.03, (8, 8)).astype(np.float32)
    write_image(tmp_path / "u.dcm", img, **kwargs)
    ds = pydicom.dcmread(tmp_path / "u.dcm")
    assert ds.RescaleType == "US" and any("not in HU" in n for n in notes)
    np.testing.assert_allclose(_dicom_values(tmp_path / "u.dcm")[0], img, atol=float(ds.RescaleSlope))
    assert float(ds.RescaleSlope) < 1e-5


def test_dicom_uses_mu_water_calibration(tmp_path, rng):
    geom = CTGeometry("parallel", 20, 1.0, (8, 8))
    scan = CTScan(
        sinogram=rng.random((6, 20)).astype(np.float32),
        angles=np.arange(6) / 6.0,
        geometry=geom,
        provenance={"mu_water_per_mm": 0.02},
    )
    kwargs, _ = output_options(tmp_path / "m.dcm", scan, "sart")
    mu = np.full((8, 8), 0.02, np.float32)
    mu[:4] = 0.0  # air
    write_image(tmp_path / "m.dcm", mu, **kwargs)
    np.testing.assert_allclose(_dicom_values(tmp_path / "m.dcm")[0][[0, 7], 0], [-1000.0, 0.0], atol=0.51)


def test_mri_dicom_is_mr_storage_magnitude_and_checked_first(tmp_path, rng, monkeypatch, capsys):
    k = (rng.standard_normal((2, 12, 10)) + 1j * rng.standard_normal((2, 12, 10))).astype(np.complex64)
    from inrecon.data.io.hdf5 import write_scan

    write_scan(tmp_path / "mri.h5", MRIScan(kspace=k))
    _recon(tmp_path / "mri.h5", tmp_path / "z.dcm", "zf")
    ds = pydicom.dcmread(tmp_path / "z.dcm")
    assert ds.SOPClassUID == pydicom.uid.MRImageStorage and ds.Modality == "MR"
    _recon(tmp_path / "mri.h5", tmp_path / "z.npy", "zf")
    mag = np.abs(np.load(tmp_path / "z.npy"))
    np.testing.assert_allclose(_dicom_values(tmp_path / "z.dcm")[0], mag, atol=float(ds.RescaleSlope))
    # a 3D MRI into a single .dcm file is refused before the reconstruction runs
    write_scan(tmp_path / "mri3d.h5", MRIScan(kspace=k.reshape(2, 3, 4, 10)))
    import inrecon.recon.api

    def boom(*a, **k):
        raise AssertionError("the reconstruction ran before the output was checked")

    monkeypatch.setattr(inrecon.recon.api, "run_method", boom)
    capsys.readouterr()
    assert main(["recon", "--method", "zf", str(tmp_path / "mri3d.h5"), "-o", str(tmp_path / "z3.dcm")]) == 2
    assert "single .dcm file" in capsys.readouterr().err


def test_outputs_of_one_scan_share_study_and_frame_of_reference(ct96, tmp_path):
    a = pydicom.dcmread(_series_files(_recon(ct96, tmp_path / "fbp", "fbp"))[0])
    b = pydicom.dcmread(_series_files(_recon(ct96, tmp_path / "sart", "sart", "--set", "iterations=2"))[0])
    again = pydicom.dcmread(_series_files(_recon(ct96, tmp_path / "fbp2", "fbp"))[0])
    assert a.StudyInstanceUID == b.StudyInstanceUID == again.StudyInstanceUID
    assert a.FrameOfReferenceUID == b.FrameOfReferenceUID == again.FrameOfReferenceUID
    assert len({a.SeriesInstanceUID, b.SeriesInstanceUID, again.SeriesInstanceUID}) == 3
    assert a.SeriesDescription == "fbp" and b.SeriesDescription == "sart"
    assert a.StudyInstanceUID.startswith("2.25.") and a.StudyInstanceUID != a.FrameOfReferenceUID


def test_atomic_writes_honour_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "a.bin") as tmp:  # a library that replaces the file it is given
            tmp.unlink()
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600)
            os.close(fd)
        assert oct(os.stat(tmp_path / "a.bin").st_mode & 0o777) == oct(0o644)
        from safetensors.torch import save_file

        with atomic_path(tmp_path / "m.safetensors") as tmp:
            save_file({"w": torch.zeros(2)}, str(tmp))
        assert oct(os.stat(tmp_path / "m.safetensors").st_mode & 0o777) == oct(0o644)
        os.umask(0o077)
        with atomic_path(tmp_path / "b.bin") as tmp:
            tmp.write_bytes(b"x")
        assert oct(os.stat(tmp_path / "b.bin").st_mode & 0o777) == oct(0o600)
    finally:
        os.umask(old)


# ---------------------------------------------------------------------------------------------------------
# issue 14: DICOM folders and duplicates
# ---------------------------------------------------------------------------------------------------------
STUDY = {"StudyInstanceUID": "2.25.1234", "FrameOfReferenceUID": "2.25.5678"}


def test_dicom_folder_with_other_files_is_refused_untouched(tmp_path, rng):
    hu = rng.uniform(-1000, 1000, (2, 8, 8)).astype(np.float32)
    folder = tmp_path / "theirs"
    folder.mkdir()
    foreign = write_dicom_ct(tmp_path / "other.dcm", hu[0])[0]
    ds = pydicom.dcmread(foreign)
    ds.Manufacturer = "ACME"
    ds.save_as(folder / "IM0001.dcm")
    (folder / "IM0002.dcm").write_bytes(b"not ours")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    for kw in ({}, {"overwrite": True}):
        with pytest.raises(InreconError, match="holds files inrecon did not write"):
            write_dicom_ct(folder, np.concatenate([hu, hu]), meta=STUDY, **kw)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    with pytest.raises(InreconError, match="did not write"):
        check_output(folder, None)


def test_dicom_folder_with_our_series_of_another_scan_is_refused(tmp_path, rng):
    hu = rng.uniform(-1000, 1000, (2, 8, 8)).astype(np.float32)
    write_dicom_ct(tmp_path / "s", hu, meta=STUDY)
    with pytest.raises(InreconError, match="another scan"):
        write_dicom_ct(tmp_path / "s", hu, meta={"StudyInstanceUID": "2.25.999"}, overwrite=True)
    assert len(_series_files(tmp_path / "s")) == 2


def test_dicom_folder_with_our_series_of_the_same_scan_is_replaced_whole(tmp_path, rng):
    hu = rng.uniform(-1000, 1000, (3, 8, 8)).astype(np.float32)
    write_dicom_ct(tmp_path / "s", hu, meta=STUDY)
    (tmp_path / "s" / "recon.json").write_text("{}")  # the CLI's sidecar
    write_dicom_ct(tmp_path / "s", hu[:2] + 5, meta=STUDY, overwrite=True)
    assert [p.name for p in _series_files(tmp_path / "s")] == ["IM0001.dcm", "IM0002.dcm"]
    back, _, _ = read_dicom_ct(tmp_path / "s")
    np.testing.assert_allclose(back, hu[:2] + 5, atol=0.51)


def test_dicom_recon_into_a_foreign_folder_fails_before_the_reconstruction(
    ct96, tmp_path, monkeypatch, capsys
):
    folder = tmp_path / "pacs"
    folder.mkdir()
    (folder / "IM0001.dcm").write_bytes(b"someone else's")
    import inrecon.recon.api

    def boom(*a, **k):
        raise AssertionError("the reconstruction ran before the output was checked")

    monkeypatch.setattr(inrecon.recon.api, "run_method", boom)
    assert main(["recon", "--method", "fbp", str(ct96), "-o", str(folder), "-q"]) == 2
    assert "did not write" in capsys.readouterr().err
    assert (folder / "IM0001.dcm").read_bytes() == b"someone else's"


def test_duplicate_dicom_slices_are_refused(tmp_path, rng):
    f = write_dicom_ct(tmp_path / "one.dcm", rng.uniform(-1000, 1000, (8, 8)).astype(np.float32))[0]
    (tmp_path / "dup").mkdir()
    shutil.copy(f, tmp_path / "dup" / "a.dcm")
    shutil.copy(f, tmp_path / "dup" / "b.dcm")
    with pytest.raises(InreconError, match="same position"):
        read_dicom_ct(tmp_path / "dup")


def test_dicom_input_round_trip_keeps_hu_spacing_and_study(tmp_path, rng):
    from inrecon.data.io.load import load_scan

    hu = rng.uniform(-1000, 1000, (2, 8, 8)).astype(np.float32)
    write_dicom_ct(tmp_path / "in", hu, (5.0, 0.7, 0.7), meta=STUDY)
    scan = load_scan(tmp_path / "in")  # windowed to [0, 1] for fitting, the window kept in provenance
    kwargs, notes = output_options(tmp_path / "out", scan, "ngp")
    write_image(tmp_path / "out", scan.volume, **kwargs)
    assert not notes
    np.testing.assert_allclose(_dicom_values(tmp_path / "out"), np.clip(hu, -800, 400), atol=0.6)
    ds = pydicom.dcmread(_series_files(tmp_path / "out")[0])
    assert (
        ds.StudyInstanceUID == STUDY["StudyInstanceUID"]
        and ds.FrameOfReferenceUID == STUDY["FrameOfReferenceUID"]
    )
    assert [float(v) for v in ds.PixelSpacing] == [0.7, 0.7] and float(ds.SliceThickness) == 5.0
    write_image(tmp_path / "us.dcm", np.full((4, 4), 0.02, np.float32), modality="CT")  # not HU
    np.testing.assert_allclose(load_scan(tmp_path / "us.dcm").volume.numpy(), 0.02, rtol=1e-4)
