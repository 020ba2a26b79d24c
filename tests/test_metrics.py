"""Metrics against scikit-image (float64), conventions (magnitude, ROI, scaling), input checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inrecon.errors import InreconError, ShapeError
from inrecon.metrics import evaluate, nrmse, psnr, ssim

skm = pytest.importorskip("skimage.metrics")

TOL = 1e-5


def _pair(shape, seed=0):
    rng = np.random.default_rng(seed)
    ref = rng.random(shape)
    # smooth structure so SSIM is far from both 0 and 1
    ref = ref + np.cumsum(np.ones(shape), axis=-1) / shape[-1]
    rec = ref + 0.1 * rng.standard_normal(shape)
    return rec, ref


@pytest.mark.parametrize("shape", [(40, 33), (12, 17, 15)])
def test_psnr_nrmse_match_skimage(shape):
    rec, ref = _pair(shape)
    dr = ref.max() - ref.min()
    assert abs(psnr(rec, ref) - skm.peak_signal_noise_ratio(ref, rec, data_range=dr)) < TOL
    assert abs(nrmse(rec, ref) - skm.normalized_root_mse(ref, rec)) < TOL
    assert abs(psnr(rec, ref, data_range=2.5) - skm.peak_signal_noise_ratio(ref, rec, data_range=2.5)) < TOL


@pytest.mark.parametrize("shape", [(40, 33), (12, 17, 15)])
@pytest.mark.parametrize("gaussian", [False, True])
def test_ssim_matches_skimage(shape, gaussian):
    rec, ref = _pair(shape, seed=1)
    dr = float(ref.max() - ref.min())
    kw = {"gaussian_weights": True, "use_sample_covariance": False} if gaussian else {}
    want = skm.structural_similarity(ref, rec, data_range=dr, **kw)
    got = ssim(rec, ref, gaussian=gaussian)
    assert 0.2 < want < 0.99  # a non-trivial value
    assert abs(got - want) < TOL


def test_ssim_other_window_matches_skimage():
    rec, ref = _pair((30, 31), seed=2)
    want = skm.structural_similarity(ref, rec, data_range=1.7, win_size=5)
    assert abs(ssim(rec, ref, data_range=1.7, win_size=5) - want) < TOL


def test_roi_conventions_match_skimage_maps():
    rec, ref = _pair((48, 40), seed=3)
    roi = np.zeros(ref.shape, bool)
    roi[5:30, 8:35] = True
    dr = float(ref[roi].max() - ref[roi].min())
    _, smap = skm.structural_similarity(ref, rec, data_range=dr, full=True)
    assert abs(ssim(rec, ref, roi=roi) - smap[roi].mean()) < TOL
    assert abs(psnr(rec, ref, roi=roi) - skm.peak_signal_noise_ratio(ref[roi], rec[roi], data_range=dr)) < TOL
    assert abs(nrmse(rec, ref, roi=roi) - skm.normalized_root_mse(ref[roi], rec[roi])) < TOL


def test_complex_magnitude_and_scaling():
    rec, ref = _pair((32, 32), seed=4)
    rng = np.random.default_rng(0)
    phase = np.exp(1j * rng.uniform(-np.pi, np.pi, ref.shape))
    # a complex reconstruction with random phase and a wrong global scale
    crec = 7.3 * rec * phase
    base = evaluate(rec, ref)
    scaled = evaluate(crec, ref, scale=True)
    # the LS factor is not exactly 1/7.3 (it also absorbs the noise), so scores differ a little but agree
    assert abs(scaled["psnr"] - base["psnr"]) < 0.1
    assert abs(scaled["ssim"] - base["ssim"]) < 0.01
    assert abs(scaled["nrmse"] - base["nrmse"]) < 0.01
    # unscaled, the magnitude is 7.3x too large: far worse
    assert evaluate(crec, ref)["psnr"] < base["psnr"] - 10
    # scaling is the least-squares optimum: any other factor is worse
    s = float((np.abs(crec) * ref).sum() / (np.abs(crec) ** 2).sum())
    for f in (0.97, 1.03):
        assert nrmse(f * s * np.abs(crec), ref) > nrmse(crec, ref, scale=True)


def test_torch_and_numpy_agree_and_types():
    rec, ref = _pair((20, 20), seed=5)
    a = evaluate(rec, ref)
    b = evaluate(torch.from_numpy(rec).float(), torch.from_numpy(ref).float())
    assert set(a) == {"psnr", "ssim", "nrmse"} and all(isinstance(v, float) for v in a.values())
    assert abs(a["psnr"] - b["psnr"]) < 1e-3 and abs(a["ssim"] - b["ssim"]) < 1e-4


def test_identical_images():
    _, ref = _pair((16, 16))
    assert psnr(ref, ref) == float("inf")
    assert nrmse(ref, ref) == 0.0
    assert abs(ssim(ref, ref) - 1.0) < 1e-12


def test_bad_inputs():
    rec, ref = _pair((16, 16))
    with pytest.raises(ShapeError, match="Fix:"):
        psnr(rec[:15], ref)
    bad = rec.copy()
    bad[3, 3] = np.nan
    with pytest.raises(InreconError, match="NaN"):
        ssim(bad, ref)
    with pytest.raises(InreconError, match="roi"):
        psnr(rec, ref, roi=np.zeros((16, 16), bool))
    with pytest.raises(ShapeError):
        nrmse(rec, ref, roi=np.ones((16, 15), bool))
    with pytest.raises(InreconError, match="data range"):
        psnr(rec, np.ones((16, 16)))
    with pytest.raises(ShapeError, match="window"):
        ssim(rec[:5], ref[:5])
    with pytest.raises(InreconError, match="odd"):
        ssim(rec, ref, win_size=4)
