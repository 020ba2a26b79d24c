"""NGP with the block-matching denoiser as its prior (``splitting.noise``): the classical pnp's noise level, the
guard that keeps NGP's image where pnp's hold-out keeps TV's, refusals before work."""

from __future__ import annotations

import pytest
import torch

import inrecon.recon.classical.mri as classical_mri
from inrecon.data.scans import VolumeScan
from inrecon.errors import InreconError
from inrecon.metrics import psnr
from inrecon.recon.api import run_method
from tests.inr_fixtures import stacked_3d, tiny_ct, tiny_mri
from tests.recon.classical.test_mri import _textured_scan

BASE = dict(n_levels=8, log2_table_size=12, mlp_layers=2, mlp_width=32, steps=300, patience=60)
SHORT = {"splitting.iterations": 6, "splitting.inner_steps": 30}


@pytest.mark.slow
def test_the_denoiser_prior_lifts_ngp_to_pnp_with_pnps_noise_level():
    """Measured (64 x 64 textured brain phantom, AF 3, 4 coils): NGP 31.95 dB, with the prior 32.41 (pnp's
    hold-out noise level 0.0177), pnp itself 32.26."""
    s = _textured_scan()
    plain = run_method("ngp", s, {**BASE, "splitting.noise": 0}, show_progress=False)
    res = run_method("ngp", s, {**BASE, **SHORT, "splitting.noise": "auto"}, show_progress=False)
    sp = res.info["splitting"]
    scores = sp["holdout_scores"]
    assert sp["denoiser_used"] and sp["noise"] == min(scores, key=scores.get) and sp["steps"] == 180
    assert res.image.shape == (64, 64) and res.image.dtype == torch.complex64
    assert psnr(res.image, s.target, scale=True) > psnr(plain.image, s.target, scale=True) + 0.25


def test_an_auto_noise_level_is_pnps_in_the_fitted_images_units(monkeypatch):
    """The level pnp's hold-out returns, relative to pnp's scale (in the scan's units), becomes an absolute noise
    level in the units of the image NGP fits (its data are scaled by ``meas.scale``)."""
    from inrecon.physics.measurement import measure
    from inrecon.recon.api import resolve

    scan = tiny_mri()
    over = {**BASE, "steps": 20, "stop": "none", "splitting.noise": "auto", "splitting.iterations": 2}
    over["splitting.inner_steps"] = 5
    monkeypatch.setattr(
        classical_mri, "pnp_noise_level", lambda s, **kw: (0.02, 3.0, {"holdout_scores": {0.02: 1}})
    )
    res = run_method("ngp", scan, over, show_progress=False)
    sp = res.info["splitting"]
    meas = measure(scan, resolve("ngp", scan).build("mri", over).data)
    assert sp["noise"] == 0.02 and sp["noise_abs"] == pytest.approx(0.02 * 3.0 / meas.scale)
    assert sp["holdout_scores"] == {0.02: 1} and sp["steps"] == 10


def test_where_pnps_holdout_keeps_tv_ngps_own_image_is_kept(monkeypatch):
    scan = tiny_mri()
    over = {**BASE, "steps": 40, "stop": "none"}
    plain = run_method("ngp", scan, {**over, "splitting.noise": 0}, show_progress=False)
    monkeypatch.setattr(classical_mri, "pnp_noise_level", lambda s, **kw: (None, 1.0, {"holdout_scores": {}}))
    res = run_method("ngp", scan, {**over, "splitting.noise": "auto"}, show_progress=False)
    assert res.info["splitting"]["denoiser_used"] is False
    assert torch.equal(res.image, plain.image)


def test_a_fixed_noise_level_on_ct_runs_without_the_holdout(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("a fixed noise level must not run pnp's hold-out")

    import inrecon.recon.classical.ct as classical_ct

    monkeypatch.setattr(classical_ct, "pnp_noise_level", refuse)
    scan = tiny_ct(photons=1e5)
    over = {**BASE, "steps": 30, "stop": "none", "splitting.noise": 0.05, **SHORT, "splitting.scheme": "admm"}
    res = run_method("ngp", scan, over, show_progress=False)
    sp = res.info["splitting"]
    # 6 data steps of at most 30 // 6 = 5 updates: never more splitting steps than the fit's budget
    assert sp["noise"] == 0.05 and sp["steps"] == 30
    assert res.image.shape == scan.image_shape and bool((res.image >= 0).all())


def test_a_given_level_on_volumes_and_3d_scans_is_refused_before_work():
    with pytest.raises(InreconError, match="2D MRI or CT"):
        run_method("ngp", VolumeScan(torch.rand(8, 8, 4)), {"splitting.noise": 0.02})
    with pytest.raises(InreconError, match="2D MRI or CT"):
        run_method("ngp", stacked_3d(tiny_mri(), keep_maps=True), {"splitting.noise": 0.02})


def test_the_auto_default_is_skipped_where_the_denoiser_cannot_run():
    """NGP's MRI default (``splitting.noise=auto``) must not refuse a 3D MRI scan (it did at stop 66)."""
    scan = stacked_3d(tiny_mri(), keep_maps=True)
    res = run_method("ngp", scan, {**BASE, "steps": 10, "stop": "none"}, show_progress=False)
    assert res.image.shape == scan.image_shape
    assert res.info["splitting"]["denoiser_used"] is False and "skipped" in res.info["splitting"]


@pytest.mark.parametrize("modality", ["mri", "ct"])
def test_the_noise_level_search_of_a_scan_is_run_once_for_pnp_and_ngp(monkeypatch, modality):
    """The suite runs ``pnp`` and then NGP on the same scan object: NGP's denoiser prior takes the noise level
    pnp's hold-out chose instead of searching again; another scan object or other settings search anew."""
    import inrecon.recon.classical.ct as classical_ct

    module = classical_mri if modality == "mri" else classical_ct
    calls = []

    def search(meas, start, candidates, refine, cfg, show, final):
        calls.append(final)
        info = {"lam": 0.0125, "denoiser_used": True, "holdout_scores": {0.0125: 1.0}}
        return (meas.image_adjoint(meas.y) if final else None), info

    monkeypatch.setattr(module, "refine_from_start", search)
    scan = tiny_mri() if modality == "mri" else tiny_ct(photons=1e5)
    run_method("pnp", scan, show_progress=False)
    level, _, info = module.pnp_noise_level(scan)
    assert calls == [True] and level == 0.0125 and info["holdout_scores"] == {0.0125: 1.0}
    info["lam"] = 1.0  # a copy: changing it changes nothing remembered
    assert module.pnp_noise_level(scan)[0] == 0.0125 and calls == [True]
    other = tiny_mri() if modality == "mri" else tiny_ct(photons=1e5)
    module.pnp_noise_level(other)
    module.pnp_noise_level(scan, module.PnPConfig(mu=0.3))
    assert calls == [True, False, False]
