"""FBP against independent references (ASTRA): fan beam as good as ODL's FBP, parallel beam as good as ASTRA's
CPU FBP, with the intensity scale right; and the fan-to-parallel rebinning checked against a direct parallel
projection.

The fan-beam reference is ODL's ``fbp_op`` (Ram-Lak) written with ASTRA alone: the Kak-Slaney ramp along the
physical detector (a linear convolution in numpy, no FFT padding), then ASTRA's ``line_fanflat`` backprojector
(``BP``, the exact transpose of the projector), times ``pi / (V p^2)``. ODL 1.0 itself cannot live in the test
environment (it installs a pytest plugin that fails to load under pytest 9); measured once beside it, this
reproduces ODL's images to 1.1-1.3 % relative and 0.05-0.11 dB on the cases below.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from inrecon.data.scans import CTGeometry
from inrecon.metrics import psnr
from inrecon.physics.ct import CTProjector
from inrecon.physics.fbp import dense_view_count, fbp, rebin_fan_to_parallel
from tests.fixtures.make_ct_fixtures import astra_project, ellipse_phantom, needs_astra

# DisINR's fan geometry scaled to 128 x 128 (inrecon.data.shared.disinr_fan_geometry((128, 128)))
FAN_128 = CTGeometry("fan", 250, 2.0, (128, 128), 1.0, 150.0, 150.0)


def _views(n: int, arc: float = 2 * math.pi) -> np.ndarray:
    return np.arange(n) * arc / n


def _ramp_kak_slaney(sino: np.ndarray) -> np.ndarray:
    """Rows convolved with ``h[0] = 1/4, h[n odd] = -1/(pi n)^2`` (sample units), the full linear convolution."""
    n = sino.shape[-1]
    k = np.arange(-(n - 1), n)
    odd = k % 2 != 0
    h = np.zeros(k.size)
    h[k == 0] = 0.25
    h[odd] = -1.0 / (math.pi * k[odd]) ** 2
    return np.stack([np.convolve(row, h)[n - 1 : 2 * n - 1] for row in sino.astype(np.float64)])


def _astra_volume(geometry: CTGeometry):
    import astra

    h, w = geometry.image_shape
    p = geometry.pixel_size_mm
    return astra.create_vol_geom(h, w, -w * p / 2, w * p / 2, -h * p / 2, h * p / 2)


def odl_style_fan_fbp(geometry: CTGeometry, angles: np.ndarray, sino: np.ndarray) -> np.ndarray:
    """ODL's fan-beam FBP (module docstring) with ASTRA's CPU backprojector, float64 ``(H, W)``."""
    import astra

    proj = astra.create_proj_geom(
        "fanflat",
        geometry.detector_spacing_mm,
        geometry.n_detectors,
        np.asarray(angles, np.float64),
        geometry.source_to_center_mm,
        geometry.center_to_detector_mm,
    )
    pid = astra.create_projector("line_fanflat", proj, _astra_volume(geometry))
    try:
        bid, img = astra.create_backprojection(_ramp_kak_slaney(sino).astype(np.float32), pid)
        astra.data2d.delete(bid)
    finally:
        astra.projector.delete(pid)
    return np.asarray(img, np.float64) * math.pi / (len(angles) * geometry.pixel_size_mm**2)


def astra_parallel_fbp(geometry: CTGeometry, angles: np.ndarray, sino: np.ndarray) -> np.ndarray:
    """ASTRA's CPU ``FBP`` (Ram-Lak) of a parallel-beam sinogram."""
    import astra

    vol = _astra_volume(geometry)
    proj = astra.create_proj_geom(
        "parallel", geometry.detector_spacing_mm, geometry.n_detectors, np.asarray(angles, np.float64)
    )
    pid = astra.create_projector("line", proj, vol)
    sid = astra.data2d.create("-sino", proj, sino.astype(np.float32))
    rid = astra.data2d.create("-vol", vol, 0.0)
    cfg = astra.astra_dict("FBP")
    cfg.update(
        ReconstructionDataId=rid, ProjectionDataId=sid, ProjectorId=pid, option={"FilterType": "ram-lak"}
    )
    aid = astra.algorithm.create(cfg)
    try:
        astra.algorithm.run(aid)
        return np.asarray(astra.data2d.get(rid), np.float64)
    finally:
        astra.algorithm.delete(aid)
        astra.data2d.delete([sid, rid])
        astra.projector.delete(pid)


def ls_scale(rec: np.ndarray, ref: np.ndarray) -> float:
    """The least-squares intensity scale ``<rec, ref> / <rec, rec>`` (1 when the scale is right)."""
    return float((rec * ref).sum() / (rec * rec).sum())


def _ours(geometry, angles, sino, **kw) -> np.ndarray:
    return fbp(torch.as_tensor(sino), geometry, angles, **kw).numpy()


def _score(img: np.ndarray, rec: np.ndarray) -> float:
    return psnr(torch.as_tensor(rec.astype(np.float32)), torch.as_tensor(img))


# --- fan beam ---------------------------------------------------------------------------------------------------
@needs_astra
def test_sparse_fan_fbp_is_as_good_as_odl_on_a_phantom():
    img = ellipse_phantom(128, 128)  # piecewise constant
    angles = _views(90)
    sino = astra_project(FAN_128, angles, img)
    ref = odl_style_fan_fbp(FAN_128, angles, sino)
    ours = _ours(FAN_128, angles, sino)
    # measured: ours 23.35 dB, reference 22.73 dB (ODL itself 22.84); the direct fan formula 21.9 dB
    assert _score(img, ours) > _score(img, ref) - 0.3
    assert 0.98 < ls_scale(ours, img) < 1.02  # measured 1.004
    direct = _ours(FAN_128, angles, sino, fan="direct")
    assert _score(img, ours) > _score(img, direct) + 0.8


@needs_astra
@pytest.mark.realdata
def test_sparse_fan_fbp_is_as_good_as_odl_on_real_slices(shared_data):
    from inrecon.data.io.ct_import import load_lungdx_slices

    slices = load_lungdx_slices(
        shared_data("ct/lungdx/lungdx_A0001_5mm_hu.npz"), indices=[8, 20, 32, 44], size=128
    )
    angles = _views(90)
    for img in slices:
        sino = astra_project(FAN_128, angles, img)
        ours = _ours(FAN_128, angles, sino)
        # measured (ours / reference / ODL): 23.00 / 22.62 / 22.73, 22.85 / 22.65 / 22.70,
        # 22.88 / 22.46 / 22.51, 22.81 / 22.73 / 22.79 dB; LS scale 1.001-1.005
        assert _score(img, ours) > _score(img, odl_style_fan_fbp(FAN_128, angles, sino)) - 0.3
        assert 0.99 < ls_scale(ours, img) < 1.01


def test_dense_fan_scans_run_the_direct_formula():
    assert dense_view_count(FAN_128) == 202  # pi / 2 * 128 mm / 1 mm
    img = ellipse_phantom(128, 128, smooth=True)
    angles = _views(360)
    sino = CTProjector(FAN_128, torch.as_tensor(angles))(torch.as_tensor(img)).numpy()
    auto, direct, rebin = (_ours(FAN_128, angles, sino, fan=k) for k in ("auto", "direct", "rebin"))
    np.testing.assert_array_equal(auto, direct)
    # both exact on smooth data: measured 53.2 dB (direct) and 51.2 dB (rebinned)
    assert _score(img, direct) > 50.0 and _score(img, rebin) > 48.0


def test_rebinning_matches_a_parallel_projection():
    # the rebinned fan sinogram of a smooth image equals the parallel projection of the same image
    geometry = CTGeometry("fan", 300, 1.0, (96, 96), 1.0, 200.0, 100.0)
    angles = _views(720) + 0.1
    img = ellipse_phantom(96, 96, smooth=True)
    fan = CTProjector(geometry, torch.as_tensor(angles))(torch.as_tensor(img))
    par, theta, pgeom = rebin_fan_to_parallel(fan[None], geometry, angles)
    assert pgeom.kind == "parallel" and np.isclose(theta[0], 0.1)
    direct = CTProjector(pgeom, torch.as_tensor(theta))(torch.as_tensor(img))
    err = float((par[0] - direct).norm() / direct.norm())
    assert err < 0.01  # measured 0.3 %


def test_rebinning_handles_unsorted_irregular_full_scans():
    geometry = CTGeometry("fan", 200, 1.0, (64, 64), 1.0, 150.0, 100.0)
    rng = np.random.default_rng(0)
    angles = np.mod(_views(240) + rng.uniform(-0.003, 0.003, 240), 2 * math.pi)
    perm = np.concatenate([[0], 1 + rng.permutation(239)])  # the first view sets the parallel angles
    img = ellipse_phantom(64, 64, smooth=True)
    sino = CTProjector(geometry, torch.as_tensor(angles))(torch.as_tensor(img)).numpy()
    a = _ours(geometry, angles, sino, fan="rebin")
    b = _ours(geometry, angles[perm], sino[perm], fan="rebin")
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert _score(img, a) > 40.0


def test_unknown_fan_method_is_refused():
    from inrecon.errors import InreconError

    with pytest.raises(InreconError, match="fan-beam FBP method"):
        fbp(torch.zeros(10, 250), FAN_128, _views(10), fan="exact")


# --- parallel beam ----------------------------------------------------------------------------------------------
@needs_astra
@pytest.mark.parametrize("views", [45, 90])
def test_sparse_parallel_fbp_is_as_good_as_astra_cpu_fbp(views):
    geometry = CTGeometry("parallel", 192, 1.0, (128, 128), 1.0)
    img = ellipse_phantom(128, 128)
    angles = _views(views, math.pi)
    sino = astra_project(geometry, angles, img)
    ours = _ours(geometry, angles, sino)
    # measured: 45 views 22.74 vs 20.44 dB, 90 views 26.35 vs 24.84 dB (ASTRA is 1 dB better at 360 views:
    # its ray-driven backprojector is the transpose of the line model that wrote the data)
    assert _score(img, ours) > _score(img, astra_parallel_fbp(geometry, angles, sino)) - 0.3
    assert 0.97 < ls_scale(ours, img) < 1.02
