"""Inputs users have: BART radial data and images, fastMRI challenge/single-coil files, ISMRMRD raw data and
MATLAB files (issue 13 items 5-7). ISMRMRD files are written by the ``ismrmrd`` package itself."""

from __future__ import annotations

import json
import math

import h5py
import numpy as np
import pytest
import torch

from inrecon.cli import main
from inrecon.data.io.bart import read_cfl, write_cfl
from inrecon.data.io.fastmri import center_crop, rss
from inrecon.data.io.images import read_image
from inrecon.data.io.load import detect_format, load_scan
from inrecon.data.scans import MRIScan
from inrecon.errors import InreconError, ShapeError
from inrecon.physics.fft import ifftc


@pytest.fixture
def rng():
    return np.random.default_rng(3)


def _cplx(rng, *shape):
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


def _fft2c(x):
    ax = (-2, -1)
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=ax), axes=ax, norm="ortho"), axes=ax)


# ---------------------------------------------------------------------------------------------------------
# item 5: BART radial data, trajectories, images, cfl output
# ---------------------------------------------------------------------------------------------------------
def _radial_traj(readout: int, spokes: int) -> np.ndarray:
    """BART ``traj -x readout -y spokes -D``: (3, readout, spokes), positions j - readout/2 along 2 pi i / N."""
    pos = np.arange(readout) - readout // 2
    ang = 2 * np.pi * np.arange(spokes) / spokes
    t = np.zeros((3, readout, spokes), np.complex64)
    t[0] = pos[:, None] * np.cos(ang)[None]
    t[1] = pos[:, None] * np.sin(ang)[None]
    return t


def _radial_data(traj: np.ndarray, coils: int = 2) -> np.ndarray:
    """Samples of a Gaussian blob (and a coil phase) along ``traj``, BART dims (readout, spokes, 1, coils)."""
    kx, ky = traj[0].real, traj[1].real
    blob = np.exp(-(kx**2 + ky**2) / 200.0) * np.exp(1j * 0.01 * kx)
    return np.stack([blob * (c + 1) for c in range(coils)], axis=-1)[:, :, None, :].astype(np.complex64)


def test_bart_radial_without_trajectory_is_refused(tmp_path):
    base = write_cfl(tmp_path / "rad", _radial_data(_radial_traj(64, 16)))
    with pytest.raises(ShapeError, match=r"cannot be Cartesian.*--traj"):
        load_scan(base)


def test_bart_radial_with_trajectory_is_noncartesian(tmp_path):
    traj = _radial_traj(64, 16)
    data = _radial_data(traj, coils=3)
    write_cfl(tmp_path / "rad", data)
    write_cfl(tmp_path / "traj", traj)
    scan = load_scan(tmp_path / "rad.cfl", traj=str(tmp_path / "traj.cfl"))
    assert isinstance(scan, MRIScan) and not scan.is_cartesian
    assert scan.image_shape == (64, 64) and tuple(scan.kspace.shape) == (3, 64 * 16)
    j, i = 10, 5  # sample j of spoke i is sample j + 64 i (BART's column-major order)
    np.testing.assert_allclose(scan.kspace[:, j + 64 * i].numpy(), data[j, i, 0, :])
    expect = 2 * np.pi * traj[:2, j, i].real / 64
    np.testing.assert_allclose(scan.trajectory[j + 64 * i].numpy(), expect, atol=1e-6)
    assert float(scan.trajectory.min()) >= -math.pi - 1e-6 and float(scan.trajectory.max()) < math.pi
    with pytest.raises(ShapeError, match="do not match"):
        load_scan(tmp_path / "rad.cfl", traj=_radial_traj(64, 15))


def test_cli_info_and_recon_take_traj(tmp_path, capsys):
    traj = _radial_traj(64, 16)
    write_cfl(tmp_path / "rad", _radial_data(traj))
    write_cfl(tmp_path / "traj", traj)
    assert main(["info", str(tmp_path / "rad.cfl"), "--traj", str(tmp_path / "traj.cfl")]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["cartesian"] is False and d["image_shape"] == [64, 64]
    assert (
        main(["recon", "--method", "zf", str(tmp_path / "rad.cfl"), "-o", str(tmp_path / "r.npy"), "-q"]) == 2
    )
    assert "--traj" in capsys.readouterr().err


def test_bart_image_is_a_reference_and_cfl_is_written(tmp_path, rng, capsys):
    img = _cplx(rng, 1, 12, 10, 1, 2)  # a `bart pics` image with two ESPIRiT maps
    write_cfl(tmp_path / "img", img)
    expect = np.sqrt((np.abs(img[0, :, :, 0, :]) ** 2).sum(-1))
    np.testing.assert_allclose(read_image(tmp_path / "img.cfl"), expect, rtol=1e-6)
    coil_img = _cplx(rng, 4, 12, 10)
    ksp = np.transpose(_fft2c(coil_img), (1, 2, 0))[None]  # BART (1, 12, 10, 4)
    write_cfl(tmp_path / "ksp", ksp)
    scan = load_scan(tmp_path / "ksp.cfl", reference=str(tmp_path / "img.cfl"))
    np.testing.assert_allclose(scan.target.numpy(), expect, rtol=1e-6)
    out = tmp_path / "zf.cfl"
    args = ["recon", "--method", "zf", str(tmp_path / "ksp.cfl"), "--reference", str(tmp_path / "img.cfl")]
    assert main([*args, "-o", str(out)]) == 0
    assert "metrics" in json.loads(capsys.readouterr().out)
    back = read_cfl(out)
    assert back.shape == (12, 10) and back.dtype == np.complex64 and (tmp_path / "zf.hdr").exists()
    assert (
        main(["recon", "--method", "zf", str(tmp_path / "ksp.cfl"), "-o", str(tmp_path / "zf.npy"), "-q"])
        == 0
    )
    np.testing.assert_allclose(back, np.load(tmp_path / "zf.npy"))


@pytest.mark.realdata
def test_real_radial_phantom(shared_data, tmp_path, capsys):
    path = shared_data("mri/radial16ch_phantom/kMB1_top_SP29.cfl")
    out = tmp_path / "r.npy"
    assert main(["recon", "--method", "zf", str(path), "-o", str(tmp_path / "r.png"), "-q"]) == 2
    assert "--traj" in capsys.readouterr().err  # was: exit 0 with a 29 x 384 "image"
    write_cfl(tmp_path / "traj", _radial_traj(384, 29))  # the README's trajectory without the delay fix
    assert (
        main(
            ["recon", "--method", "zf", str(path), "--traj", str(tmp_path / "traj.cfl"), "-o", str(out), "-q"]
        )
        == 0
    )
    img = np.abs(np.load(out))
    assert img.shape == (384, 384)  # BART's grid for a readout of 384 samples (2x oversampled)
    centre = img[96:288, 96:288]  # the phantom lies in the centre 192 x 192 (checked by eye: sharp, upright)
    assert (centre**2).sum() > 0.6 * (img**2).sum()  # no density compensation in zf: a halo around it


@pytest.mark.realdata
def test_real_brain_scored_against_the_bart_image(shared_data, tmp_path, capsys):
    ksp, ref = shared_data("mri/brain8ch_bart/ksp.cfl"), shared_data("mri/brain8ch_bart/img.cfl")
    scan = load_scan(ksp, reference=str(ref))
    assert scan.target.shape == (180, 230) and scan.provenance["reference"] == str(ref)
    assert (
        main(["recon", "--method", "zf", str(ksp), "--reference", str(ref), "-o", str(tmp_path / "z.h5")])
        == 0
    )
    assert 20 < json.loads(capsys.readouterr().out)["metrics"]["psnr"] < 30


# ---------------------------------------------------------------------------------------------------------
# item 6: fastMRI challenge / single-coil layouts, crop
# ---------------------------------------------------------------------------------------------------------
HEADER = """<?xml version="1.0"?><ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD"><encoding>
<encodedSpace><matrixSize><x>24</x><y>20</y><z>1</z></matrixSize>
<fieldOfView_mm><x>240</x><y>160</y><z>4.5</z></fieldOfView_mm></encodedSpace>
<reconSpace><matrixSize><x>16</x><y>16</y><z>1</z></matrixSize>
<fieldOfView_mm><x>160</x><y>128</y><z>4.5</z></fieldOfView_mm></reconSpace></encoding></ismrmrdHeader>"""


def test_fastmri_challenge_file_with_only_kspace_and_attributes(tmp_path, rng):
    path = tmp_path / "file1000001.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("kspace", data=_cplx(rng, 2, 3, 12, 10))
        f.attrs["acquisition"] = "CORPD_FBK"
        f.attrs["max"] = 0.0004
        f.attrs["patient_id"] = "abc"
    assert detect_format(path) == "fastmri"
    scan = load_scan(path)
    assert scan.n_coils == 3 and scan.image_shape == (12, 10)
    assert scan.provenance["acquisition"] == "CORPD_FBK" and scan.provenance["slice"] == 1


def test_fastmri_single_coil(tmp_path, rng):
    img = _cplx(rng, 2, 12, 10)
    path = tmp_path / "sc.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("kspace", data=_fft2c(img).astype(np.complex64))
        f.create_dataset("reconstruction_esc", data=np.abs(img).astype(np.float32))
        f.attrs["norm"] = 1.0
    scan = load_scan(path, slice=0)
    assert scan.n_coils == 1 and scan.image_shape == (12, 10)
    assert scan.provenance["coils"] == "single"
    np.testing.assert_allclose(scan.target.numpy(), np.abs(img[0]), rtol=1e-6)


def _fastmri_with_header(tmp_path, rng, mask=None):
    coil_img = _cplx(rng, 1, 4, 24, 20)
    k = _fft2c(coil_img)
    if mask is not None:
        k = k * mask
    ref = center_crop(np.sqrt((np.abs(coil_img) ** 2).sum(1)), (16, 16)).astype(np.float32)
    path = tmp_path / "h.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("kspace", data=k.astype(np.complex64))
        f.create_dataset("ismrmrd_header", data=HEADER.encode())
        f.create_dataset("reconstruction_rss", data=ref)
        if mask is not None:
            f.create_dataset("mask", data=mask)
    return path, coil_img, ref


def test_fastmri_crop_to_the_recon_matrix_and_spacing(tmp_path, rng):
    path, _, ref = _fastmri_with_header(tmp_path, rng)
    full = load_scan(path)
    assert full.provenance["spacing_mm"] == pytest.approx([10.0, 8.0])  # encoded FOV / matrix (H, W)
    assert full.provenance["slice_thickness_mm"] == 4.5
    scan = load_scan(path, crop=True)
    assert scan.image_shape == (16, 16) and scan.roi is None
    torch.testing.assert_close(rss(ifftc(scan.kspace)), torch.from_numpy(ref[0]), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(scan.target.numpy(), ref[0])
    lines = np.zeros(20, bool)
    lines[::3] = True
    lines[8:12] = True
    path, _, ref = _fastmri_with_header(tmp_path, rng, mask=lines)
    under = load_scan(path, crop=True)  # the phase encode is undersampled: only the readout is cropped
    assert under.image_shape == (16, 20) and int(under.roi.sum()) == 256
    assert torch.equal(under.mask[0], torch.from_numpy(lines))


def test_cli_crop_flag(tmp_path, rng, capsys):
    path, _, _ = _fastmri_with_header(tmp_path, rng)
    assert main(["info", str(path), "--crop"]) == 0
    assert json.loads(capsys.readouterr().out)["image_shape"] == [16, 16]


# ---------------------------------------------------------------------------------------------------------
# item 7: ISMRMRD (written by the ismrmrd package) and MATLAB
# ---------------------------------------------------------------------------------------------------------
def _ismrmrd_header(x, y, fov, trajectory="cartesian", center=None):
    xsd = pytest.importorskip("ismrmrd.xsd", reason="the ismrmrd package (test extra) writes the files")
    space = xsd.encodingSpaceType(
        matrixSize=xsd.matrixSizeType(x=x, y=y, z=1),
        fieldOfView_mm=xsd.fieldOfViewMm(x=fov[0], y=fov[1], z=fov[2]),
    )
    limits = xsd.encodingLimitsType(
        kspace_encoding_step_1=xsd.limitType(
            minimum=0, maximum=y - 1, center=y // 2 if center is None else center
        )
    )
    enc = xsd.encodingType(
        encodedSpace=space, reconSpace=space, encodingLimits=limits, trajectory=xsd.trajectoryType(trajectory)
    )
    cond = xsd.experimentalConditionsType(H1resonanceFrequency_Hz=63500000)
    return xsd.ToXML(xsd.ismrmrdHeader(experimentalConditions=cond, encoding=[enc]))


def test_ismrmrd_cartesian_with_noise_acs_and_partial_echo(tmp_path, rng):
    ismrmrd = pytest.importorskip("ismrmrd", reason="the ismrmrd package (test extra) writes the files")
    coils, h, w = 3, 10, 16
    full = _cplx(rng, coils, h, w)
    noise = _cplx(rng, coils, 64)
    dset = ismrmrd.Dataset(str(tmp_path / "raw.h5"), "dataset", create_if_needed=True)
    dset.write_xml_header(_ismrmrd_header(w, h, (240.0, 150.0, 5.0)))
    acq = ismrmrd.Acquisition.from_array(noise)
    acq.set_flag(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
    acq.sample_time_us = 5.0
    dset.append_acquisition(acq)
    nav = ismrmrd.Acquisition.from_array(_cplx(rng, coils, w))
    nav.set_flag(ismrmrd.ACQ_IS_NAVIGATION_DATA)
    dset.append_acquisition(nav)
    rows = [0, 2, 4, 5, 6, 8]
    for y in rows:
        acq = ismrmrd.Acquisition.from_array(np.ascontiguousarray(full[:, y, 4:]))  # partial echo: 12 samples
        acq.center_sample = w // 2 - 4
        acq.idx.kspace_encode_step_1 = y
        if y in (4, 5, 6):
            acq.set_flag(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING)
        dset.append_acquisition(acq)
    dset.close()
    assert detect_format(tmp_path / "raw.h5") == "ismrmrd"
    scan = load_scan(tmp_path / "raw.h5")
    assert scan.is_cartesian and tuple(scan.kspace.shape) == (coils, h, w)
    expect = np.zeros_like(full)
    expect[:, rows, 4:] = full[:, rows, 4:]
    np.testing.assert_allclose(scan.kspace.numpy(), expect)
    prov = scan.provenance
    assert prov["calibration_lines"] == [4, 5, 6] and prov["spacing_mm"] == [15.0, 15.0]
    np.testing.assert_array_equal(prov["noise_samples"], noise)
    assert prov["noise_sample_time_us"] == 5.0
    from inrecon.physics.coils import prewhiten

    whitened, _ = prewhiten(scan.kspace, torch.from_numpy(prov["noise_samples"]))
    assert whitened.shape == scan.kspace.shape
    from inrecon.data.io.load import describe

    json.dumps(describe(scan))  # `inrecon info` works on it


def test_ismrmrd_radial(tmp_path, rng):
    ismrmrd = pytest.importorskip("ismrmrd", reason="the ismrmrd package (test extra) writes the files")
    n, spokes, coils = 32, 8, 2
    dset = ismrmrd.Dataset(str(tmp_path / "rad.h5"), "dataset", create_if_needed=True)
    dset.write_xml_header(_ismrmrd_header(n, n, (200.0, 200.0, 5.0), trajectory="radial"))
    pos = (np.arange(n) - n // 2) / n  # cycles per sample, in [-0.5, 0.5)
    data, trajs = [], []
    for i in range(spokes):
        a = np.pi * i / spokes
        traj = np.stack([pos * np.cos(a), pos * np.sin(a)], axis=1).astype(np.float32)
        d = _cplx(rng, coils, n)
        acq = ismrmrd.Acquisition.from_array(d, trajectory=traj)
        acq.idx.kspace_encode_step_1 = i
        dset.append_acquisition(acq)
        data.append(d)
        trajs.append(traj)
    dset.close()
    scan = load_scan(tmp_path / "rad.h5")
    assert not scan.is_cartesian and scan.image_shape == (n, n)
    np.testing.assert_allclose(scan.kspace.numpy(), np.concatenate(data, axis=1))
    t = np.concatenate(trajs)
    np.testing.assert_allclose(scan.trajectory.numpy(), 2 * np.pi * t[:, ::-1], atol=1e-6)  # (ky, kx)


def test_matlab_cartesian_v5_and_v73(tmp_path, rng):
    import scipy.io

    ksp = _cplx(rng, 12, 10, 4)  # MATLAB (x, y, coils)
    maps = _cplx(rng, 12, 10, 4)
    mask = np.ones((12, 10), np.uint8)
    scipy.io.savemat(tmp_path / "c.mat", {"ksp": ksp, "sens": maps, "mask": mask})
    assert detect_format(tmp_path / "c.mat") == "matlab"
    scan = load_scan(tmp_path / "c.mat")
    assert scan.n_coils == 4 and scan.image_shape == (12, 10)
    np.testing.assert_allclose(scan.kspace[2].numpy(), ksp[:, :, 2])
    np.testing.assert_allclose(scan.sens_maps[1].numpy(), maps[:, :, 1])
    path = (
        tmp_path / "v73.mat"
    )  # MATLAB -v7.3: HDF5 behind a 512-byte header, axes reversed, complex compound
    with h5py.File(path, "w", userblock_size=512) as f:
        comp = np.dtype([("real", "<f4"), ("imag", "<f4")])
        arr = np.empty(ksp.T.shape, comp)
        arr["real"], arr["imag"] = ksp.T.real, ksp.T.imag
        f.create_dataset("kspace", data=arr)
    with open(path, "r+b") as fh:
        fh.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64".ljust(128, b" "))
    assert detect_format(path) == "matlab"
    np.testing.assert_allclose(load_scan(path).kspace[3].numpy(), ksp[:, :, 3])


def test_matlab_spiral_like(tmp_path, rng):
    import scipy.io

    r = np.linspace(0, 0.5, 50)
    k = np.stack([r * np.exp(1j * (8 * np.pi * r + 2 * np.pi * i / 6)) for i in range(6)], axis=1)  # (50, 6)
    data = _cplx(rng, 50, 6, 3)
    w = np.abs(k)
    scipy.io.savemat(tmp_path / "s.mat", {"data": data, "k": k, "w": w})
    scan = load_scan(tmp_path / "s.mat", image_shape=(24, 24))
    assert not scan.is_cartesian and scan.image_shape == (24, 24) and scan.n_coils == 3
    np.testing.assert_allclose(scan.kspace[:, 7 + 50 * 2].numpy(), data[7, 2])
    np.testing.assert_allclose(
        scan.trajectory[7 + 50 * 2].numpy(), 2 * np.pi * np.array([k[7, 2].real, k[7, 2].imag]), atol=1e-6
    )
    np.testing.assert_allclose(scan.dcf[7 + 50 * 2].item(), w[7, 2], rtol=1e-6)
    est = load_scan(tmp_path / "s.mat")
    assert est.provenance["image_shape_estimated"] is True


@pytest.mark.realdata
def test_real_spiral_mat(shared_data):
    scan = load_scan(shared_data("mri/spiral8ch_phantom/spiral.mat"))
    assert not scan.is_cartesian and scan.n_coils == 8 and scan.kspace.shape[1] == 1182 * 60
    assert scan.dcf is not None and scan.provenance["variables"] == {"kspace": "data", "trajectory": "k"}


def test_matlab_without_kspace_is_refused(tmp_path):
    import scipy.io

    scipy.io.savemat(tmp_path / "x.mat", {"foo": np.ones((3, 3))})
    with pytest.raises(InreconError, match="no complex k-space"):
        load_scan(tmp_path / "x.mat")
