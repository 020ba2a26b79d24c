"""Scan-specific INR (NGP): hold-out stopping, reproducibility, resume after a kill, errors, every modality."""

from __future__ import annotations

import pytest
import torch

import inrecon.engine.fit as fitting
import inrecon.engine.holdout as holdout
from inrecon.config import build_config, override_config
from inrecon.data.scans import VolumeScan
from inrecon.engine.holdout import Candidate, fit_with_holdout
from inrecon.errors import InreconError
from inrecon.metrics import psnr
from inrecon.physics.measurement import measure
from inrecon.recon.api import run_method
from inrecon.recon.inr.bilevel import BILEVEL
from inrecon.recon.inr.ngp import (
    NGP,
    NGP_SPACE,
    SELF_WEIGHTED_SETTINGS,
    NGPConfig,
    backbone_candidate,
    field_model,
    loss_candidate,
    ngp_objective,
    reconstruct_ngp,
)
from inrecon.recon.registry import Context
from tests.inr_fixtures import tiny_mri

QUIET = Context(show_progress=False)

SMALL = dict(n_levels=6, log2_table_size=10, mlp_layers=2, mlp_width=32, eval_every=10, checkpoint_every=10)


def test_ngp_holdout_stops_and_beats_zero_filled():
    scan = tiny_mri()
    cfg = build_config(NGPConfig, dict(steps=150, patience=30, **SMALL))
    res = reconstruct_ngp(scan, cfg, QUIET)
    info = res.info
    assert 1 <= info["chosen_steps"] <= 150
    assert info["holdout"]["steps_run"] >= info["chosen_steps"]
    assert len(info["holdout"]["history"]["val_loss"]) == info["holdout"]["steps_run"]
    assert res.image.dtype == torch.complex64 and res.image.shape == scan.image_shape
    zf = run_method("zf", scan).image
    assert psnr(res.image, scan.target, scale=True) > psnr(zf, scan.target, scale=True) + 1.0


def test_seeded_runs_are_reproducible():
    scan = tiny_mri(seed=1)
    cfg = build_config(NGPConfig, dict(steps=25, stop="none", **SMALL))
    a = reconstruct_ngp(scan, cfg, QUIET).image
    b = reconstruct_ngp(scan, cfg, QUIET).image
    torch.testing.assert_close(a, b, rtol=0, atol=0)


class _Killed(Exception):
    pass


def test_resume_after_kill_gives_identical_result(tmp_path, monkeypatch):
    scan = tiny_mri(seed=2)
    cfg = build_config(NGPConfig, dict(steps=40, patience=15, **SMALL))
    ref = reconstruct_ngp(scan, cfg, QUIET).image

    real_loss = fitting.data_loss
    calls = {"n": 0}

    def dying_loss(*a, **k):
        calls["n"] += 1
        if calls["n"] == 27:  # mid stage 1, after the checkpoint at step 20
            raise _Killed
        return real_loss(*a, **k)

    monkeypatch.setattr(fitting, "data_loss", dying_loss)
    with pytest.raises(_Killed):
        reconstruct_ngp(scan, cfg, Context(show_progress=False, checkpoint_dir=tmp_path))
    assert (tmp_path / "holdout.pt").exists()
    monkeypatch.setattr(fitting, "data_loss", real_loss)
    resumed = reconstruct_ngp(scan, cfg, Context(show_progress=False, checkpoint_dir=tmp_path)).image
    torch.testing.assert_close(resumed, ref, rtol=0, atol=0)


def test_an_auto_prior_weight_resumes_after_a_kill_in_its_second_candidate(tmp_path, monkeypatch):
    scan = tiny_mri(seed=2)
    cfg = build_config(
        NGPConfig,
        dict(steps=40, patience=15, **SMALL, **{"prior.tv": "auto", "prior.tv_candidates": "0,0.01"}),
    )
    ref = reconstruct_ngp(scan, cfg, QUIET)

    real_loss = fitting.data_loss
    calls = {"n": 0}

    def dying_loss(*a, **k):
        calls["n"] += 1
        if calls["n"] == 40 + 25:  # the second candidate's stage 1, after its checkpoint at step 20
            raise _Killed
        return real_loss(*a, **k)

    monkeypatch.setattr(fitting, "data_loss", dying_loss)
    with pytest.raises(_Killed):
        reconstruct_ngp(scan, cfg, Context(show_progress=False, checkpoint_dir=tmp_path))
    # the search starts at the middle candidate (0 of 0.01 / 0), then 0.01, which was killed after its checkpoint
    assert (tmp_path / "tv0" / "holdout.json").exists() and (tmp_path / "tv0.01" / "holdout.pt").exists()
    monkeypatch.setattr(fitting, "data_loss", real_loss)
    resumed = reconstruct_ngp(scan, cfg, Context(show_progress=False, checkpoint_dir=tmp_path))
    assert resumed.info["prior_tv"] == ref.info["prior_tv"]
    torch.testing.assert_close(resumed.image, ref.image, rtol=0, atol=0)


SIREN_SMALL = {"siren_width": 32, "siren_layers": 1}


@pytest.mark.parametrize(
    ("main_lr", "siren_lr", "winner"),
    [(3e-3, 1e-8, "hash"), (1e-8, 1e-3, "siren")],  # the crippled candidate (lr 1e-8 cannot fit) must lose
)
def test_a_backbone_candidate_is_chosen_by_held_out_loss_and_only_it_is_refitted(
    tmp_path, monkeypatch, main_lr, siren_lr, winner
):
    scan = tiny_mri(seed=4)
    over = dict(steps=30, patience=10, lr=main_lr, **SMALL, **SIREN_SMALL, siren_lr=siren_lr)
    cfg = build_config(NGPConfig, {**over, "backbone_candidates": "siren"})
    runs = []
    real_fit = holdout.fit_model
    monkeypatch.setattr(holdout, "fit_model", lambda *a, **k: runs.append(k["desc"]) or real_fit(*a, **k))
    res = reconstruct_ngp(scan, cfg, Context(show_progress=False, checkpoint_dir=tmp_path))
    scores = res.info["candidate_scores"]
    assert set(scores) == {"hash", "siren"} and res.info["candidate"] == winner
    assert scores[winner] == min(scores.values())
    # each candidate ran its own hold-out stage (the SIREN one on 2.5x the steps) and only the winner a refit
    assert (tmp_path / "hash" / "holdout.json").exists() and (tmp_path / "siren" / "holdout.json").exists()
    assert runs == ["NGP hash holdout", "NGP siren holdout", f"NGP {winner} refit"]
    # the same image as fitting the winner's settings alone
    alone = reconstruct_ngp(scan, backbone_candidate(build_config(NGPConfig, over), winner), QUIET)
    assert alone.info["chosen_steps"] == res.info["chosen_steps"]
    torch.testing.assert_close(res.image, alone.image, rtol=0, atol=0)


def test_backbone_candidates_need_the_hold_out_rule_and_are_not_tuned():
    scan = tiny_mri()
    with pytest.raises(InreconError, match="hold-out rule"):
        run_method("ngp", scan, {"backbone_candidates": "siren", "stop": "none", "steps": 5})
    with pytest.raises(InreconError, match="backbone_candidates"):
        ngp_objective(scan, build_config(NGPConfig, {"backbone_candidates": "siren"}), NGP_SPACE)


def test_a_loss_candidate_is_chosen_by_held_out_loss_and_only_it_is_refitted(tmp_path, monkeypatch):
    scan = tiny_mri(seed=4)
    over = dict(steps=30, patience=10, **SMALL)
    cfg = build_config(NGPConfig, {**over, "loss_candidates": "self_weighted"})
    runs = []
    real_fit = holdout.fit_model
    monkeypatch.setattr(holdout, "fit_model", lambda *a, **k: runs.append(k["desc"]) or real_fit(*a, **k))
    res = reconstruct_ngp(scan, cfg, Context(show_progress=False, checkpoint_dir=tmp_path))
    scores, winner = res.info["candidate_scores"], res.info["candidate"]
    assert set(scores) == {"mse", "self_weighted"} and scores[winner] == min(scores.values())
    assert scores["mse"] != scores["self_weighted"]  # two different fits
    assert runs == ["NGP mse holdout", "NGP self_weighted holdout", f"NGP {winner} refit"]
    # the same image as fitting the winner's settings alone
    base = build_config(NGPConfig, over)
    alone = reconstruct_ngp(scan, base if winner == "mse" else loss_candidate(base, winner), QUIET)
    assert alone.info["chosen_steps"] == res.info["chosen_steps"]
    torch.testing.assert_close(res.image, alone.image, rtol=0, atol=0)


def test_a_self_weighted_candidate_takes_the_bilevel_settings_and_no_candidates():
    cfg = build_config(NGPConfig, {"loss_candidates": "self_weighted", "backbone_candidates": "siren"})
    c = loss_candidate(cfg, "self_weighted")
    assert c.loss.kind == "self_weighted" and c.loss_candidates == () and c.backbone_candidates == ()
    assert c.optim.wd_mlp == SELF_WEIGHTED_SETTINGS["optim.wd_mlp"] == 1e-7
    assert c.net.hash.per_level_scale == 1.6 and c.net.hash.max_resolution is None
    assert c.optim.lr == cfg.optim.lr and c.stop == cfg.stop  # the same split and held-out loss
    # a data term other than the self-weighted one changes nothing else
    mse = loss_candidate(c, "mse")
    assert mse.loss.kind == "mse" and mse.optim == c.optim and mse.net == c.net


def test_loss_candidates_are_the_hold_out_rules_only():
    scan = tiny_mri()
    over = dict(steps=5, **SMALL)
    plain = run_method("ngp", scan, {**over, "stop": "none"}, show_progress=False)
    cands = run_method(
        "ngp", scan, {**over, "stop": "none", "loss_candidates": "self_weighted"}, show_progress=False
    )
    assert "candidate" not in cands.info  # stop.rule=none fits loss.kind alone
    torch.testing.assert_close(cands.image, plain.image, rtol=0, atol=0)
    # a bilevel trial fits loss.kind too (the candidates are not the tuner's), where backbone candidates are refused
    cfg = NGP.build("mri", {**over, "loss_candidates": "self_weighted"})
    with_c = ngp_objective(scan, cfg, NGP_SPACE)(NGP_SPACE.from_unit([0.5] * NGP_SPACE.dim))
    without = ngp_objective(scan, NGP.build("mri", over), NGP_SPACE)(
        NGP_SPACE.from_unit([0.5] * NGP_SPACE.dim)
    )
    assert with_c[0] == without[0] and with_c[1]["loss"] == "mse"
    assert NGP.build("mri", {}).loss_candidates == () and BILEVEL.build("mri", {}).ngp.loss_candidates == ()


def test_candidates_scored_on_another_split_are_refused():
    scan = tiny_mri()
    cfg = build_config(NGPConfig, dict(steps=5, **SMALL))
    meas = measure(scan, cfg.data)
    other = build_config(NGPConfig, dict(steps=5, holdout_fraction=0.3, **SMALL))
    alt = Candidate("other", other, lambda: field_model(meas, other))
    with pytest.raises(InreconError, match=r"stop\.fraction"):
        fit_with_holdout(meas, lambda: field_model(meas, cfg), cfg, run_id={}, alternatives=(alt,))
    with pytest.raises(InreconError, match="labels"):
        fit_with_holdout(
            meas, lambda: field_model(meas, cfg), cfg, run_id={}, alternatives=(alt,), label="other"
        )


def test_checkpoint_of_another_run_is_refused(tmp_path):
    scan = tiny_mri(seed=3)
    cfg = build_config(NGPConfig, dict(steps=30, stop="none", **{**SMALL, "checkpoint_every": 10}))
    ctx = Context(show_progress=False, checkpoint_dir=tmp_path)
    reconstruct_ngp(scan, cfg, ctx)
    # a leftover checkpoint exists (step 20 < 30); a different config must not silently reuse it
    with pytest.raises(InreconError, match="different run"):
        reconstruct_ngp(scan, override_config(cfg, {"lr": 1e-3}), ctx)


def test_bad_config_values_fail_before_work():
    scan = tiny_mri()
    with pytest.raises(InreconError, match="stop"):
        run_method("ngp", scan, {"stop": "never"})
    with pytest.raises(InreconError, match="backbone"):
        run_method("ngp", scan, {"backbone": "transformer"})
    with pytest.raises(InreconError, match="unknown config"):
        run_method("ngp", scan, {"learning_rate": 1})
    with pytest.raises(InreconError, match="loss"):
        run_method("ngp", scan, {"loss": "huber", "steps": 5, "stop": "none"})


@pytest.mark.parametrize("backbone", ["fourier", "siren"])
def test_other_backbones_run(backbone):
    scan = tiny_mri()
    res = run_method(
        "ngp",
        scan,
        {
            "backbone": backbone,
            "steps": 8,
            "stop": "none",
            "siren_width": 32,
            "siren_layers": 1,
            "mlp_layers": 2,
            "mlp_width": 32,
        },
    )
    assert torch.isfinite(torch.view_as_real(res.image)).all()


def test_self_weighted_loss_runs():
    scan = tiny_mri()
    res = run_method(
        "ngp", scan, {"loss": "self_weighted", "delta": 1e-3, "steps": 20, "stop": "none", **SMALL}
    )
    assert res.info["steps_run"] == 20


def test_volume_fitting_in_batches_converges():
    g = torch.Generator().manual_seed(0)
    z, y, x = torch.meshgrid(*(torch.linspace(-1, 1, n) for n in (8, 16, 16)), indexing="ij")
    vol = ((x**2 + y**2 + 0.5 * z**2) < 0.6).float() * 0.8 + 0.05 * torch.rand(8, 16, 16, generator=g)
    scan = VolumeScan(volume=vol)
    res = run_method("ngp", scan, {"steps": 60, "batch_size": 512, "lr": 1e-2, **SMALL})
    hist = res.info["history"]
    assert hist["psnr"][-1] > hist["psnr"][0] + 5
    assert res.image.shape == vol.shape


def test_ngp_on_a_finer_grid_explains_detail_below_the_scan_grid():
    from inrecon.data.scans import CTGeometry
    from inrecon.physics.simulate.ct import full_scan_angles, simulate_ct
    from tests.fixtures.make_ct_fixtures import ellipse_phantom

    # a piecewise-constant object whose edges do not fall on the 48 x 48 grid, projected from 4x finer
    geometry = CTGeometry("fan", 100, 2.0, (48, 48), 2.0, 300.0, 300.0)
    scan = simulate_ct(0.5 * ellipse_phantom(192, 192), geometry, full_scan_angles(30), rays_per_detector=4)
    over = {
        "optim.steps": 150,
        "stop.rule": "none",
        "prior.tv": 0.0,
        "net.hash.n_levels": 8,
        "splitting.noise": 0,
    }
    over.update({"net.hash.log2_table_size": 12, "monitor.eval_every": 50})
    plain = run_method("ngp", scan, {**over, "data.ct_supersample": 1}, show_progress=False)
    fine = run_method("ngp", scan, over, show_progress=False)
    assert fine.image.shape == plain.image.shape == (48, 48)
    # the CT default "auto" models a scan of at most 128 x 128 pixels on the 2x finer grid on the CPU too (any
    # scan on a GPU: tests/test_cuda.py; tests/physics/test_measurement.py for the size rule)
    assert (plain.info["supersample"], fine.info["supersample"]) == (1, 2)
    # the monitor scores the block mean against the scan's reference
    assert fine.info["history"]["psnr"][-1] == pytest.approx(float(psnr(fine.image, scan.target)), abs=0.05)
    assert psnr(fine.image, scan.target) > psnr(plain.image, scan.target) + 2.0


def test_ct_ramp_weighting_equalises_the_normal_operator():
    """sqrt-ramp weighting: A^T W^T W A treats a smooth and a checkerboard image alike (A^T A does not)."""
    from inrecon.data.scans import CTGeometry
    from inrecon.physics.measurement import build_measurement
    from inrecon.physics.simulate.ct import full_scan_angles, simulate_ct

    n = 32
    geom = CTGeometry(
        kind="parallel", n_detectors=48, detector_spacing_mm=1.0, image_shape=(n, n), pixel_size_mm=1.0
    )
    scan = simulate_ct(torch.ones(n, n).numpy(), geom, full_scan_angles(64, "parallel"))
    yy, xx = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    disc = (((yy - n / 2 + 0.5) ** 2 + (xx - n / 2 + 0.5) ** 2) < (n / 3) ** 2).float()
    smooth, checker = disc, disc * (((yy + xx) % 2) * 2.0 - 1.0)

    def ratio(weighting: str) -> float:
        meas = build_measurement(scan, ct_weighting=weighting)
        gain = [float(meas.predict(x).square().sum() / x.square().sum()) for x in (smooth, checker)]
        return gain[0] / gain[1]

    assert ratio("none") > 20  # A^T A: coarse scales weigh 1/|w| more than fine ones
    assert ratio("ramp") < 5
    with pytest.raises(InreconError, match="weighting"):
        build_measurement(scan, ct_weighting="hann")


def test_ngp_gathered_hash_lookup_is_the_sparse_one():
    """``net.hash.lookup="gather"`` (meant for a GPU) fits exactly what the sparse plan fits."""
    scan = tiny_mri(seed=0)
    over = {"n_levels": 8, "log2_table_size": 12, "steps": 30, "stop": "none", "splitting.noise": 0}
    a, b = (
        run_method("ngp", scan, {**over, "net.hash.lookup": how}, show_progress=False)
        for how in ("sparse", "gather")
    )
    assert float(psnr(b.image.abs(), scan.target.abs())) == pytest.approx(
        float(psnr(a.image.abs(), scan.target.abs())), abs=1e-3
    )
