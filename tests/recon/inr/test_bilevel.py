"""The bilevel-optimised INR: end to end on tiny MRI and CT scans, hparams files, oracle, split, final refit."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from inrecon.config import build_config
from inrecon.data.phantoms import brain_phantom
from inrecon.data.sampling import cartesian_1d
from inrecon.data.scans import MRIScan
from inrecon.engine import holdout
from inrecon.errors import InreconError
from inrecon.metrics import psnr
from inrecon.physics.measurement import build_measurement
from inrecon.physics.simulate.mri import simulate_mri
from inrecon.recon import api
from inrecon.recon.api import run_method
from inrecon.recon.inr import bilevel as bl
from inrecon.recon.inr import ngp
from inrecon.tuning.bo import Param, SearchSpace
from inrecon.tuning.hparams import load_hparams, protocol_mismatches, save_hparams, scan_protocol

# A tiny INR: the trials are about the machinery, not image quality.
TINY = {"n_levels": 4, "log2_table_size": 10, "base_resolution": 4, "mlp_layers": 2, "eval_every": 5}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def mri_scan() -> MRIScan:
    img = brain_phantom((32, 32), seed=1)
    return simulate_mri(img, n_coils=4, mask=cartesian_1d((32, 32), 3, acs=6), snr_db=30.0, seed=0)


def _cfg(**kw) -> dict:
    return {**TINY, "n_random": 3, "n_guided": 2, "steps": 20, "patience": 8, **kw}


def test_mri_end_to_end_hparams_and_reuse(mri_scan, tmp_path):
    res = run_method("bilevel", mri_scan, _cfg(), checkpoint_dir=tmp_path / "ck")
    info = res.info
    assert res.image.shape == (32, 32) and res.image.is_complex()
    assert info["n_trials"] == 5 and [r["phase"] for r in info["trials"]].count("guided") == 2
    h, hp = info["tuned_h"], info["hparams"]
    assert set(h) == {"lr", "wd_enc", "wd_mlp", "delta", "per_level_scale"}
    assert 1e-5 <= h["lr"] <= 1e-2 and 1.2 <= h["per_level_scale"] <= 1.6
    assert hp["loss.kind"] == "self_weighted" and hp["stop.rule"] == "none"
    assert hp["optim.steps"] == info["chosen_steps"]
    best = info["trials"][info["best_trial"]]
    assert best["score"] == pytest.approx(info["score"]) and hp["optim.steps"] == max(1, best["best_step"])
    assert info["score"] == min(r["score"] for r in info["trials"] if r["score"] is not None)
    # final fit: all samples, exactly the chosen number of steps, no hold-out
    assert info["final"]["steps_run"] == hp["optim.steps"] and "holdout" not in info["final"]
    assert (tmp_path / "ck" / "trials.jsonl").exists()

    # hyperparameter file round trip, and `recon --method ngp --hparams` reproduces the bilevel image
    path = save_hparams(tmp_path / "h.json", bl.hparams_record(res), scan_protocol(mri_scan))
    rec = load_hparams(path)
    assert rec["method"] == "ngp" and rec["trials"] == 5 and rec["protocol"]["coils"] == 4
    assert rec["protocol"]["sampling"] == "cartesian" and "created" in rec and "inrecon_version" in rec
    again = run_method("ngp", mri_scan, rec["hparams"])
    assert torch.allclose(again.image, res.image, rtol=1e-4, atol=1e-5 * float(res.image.abs().max()))
    assert protocol_mismatches(rec, mri_scan) == []

    # resuming from the finished log runs no trial and gives the same choice
    calls = []
    real = ngp.score_trial

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    ngp.score_trial = counting
    try:
        res2 = run_method("bilevel", mri_scan, _cfg(), checkpoint_dir=tmp_path / "ck")
    finally:
        ngp.score_trial = real
    assert calls == [] and res2.info["tuned_h"] == h
    # the same log with other trial settings is refused, before any trial
    with pytest.raises(InreconError, match="another tuning run"):
        run_method("bilevel", mri_scan, _cfg(steps=21), checkpoint_dir=tmp_path / "ck")


def test_split_is_the_measurement_split_and_final_uses_all(mri_scan, monkeypatch):
    seen = []
    real_fit = holdout.fit_model

    def spy(*a, train_idx=None, val_idx=None, **k):
        seen.append((train_idx, val_idx))
        return real_fit(*a, train_idx=train_idx, val_idx=val_idx, **k)

    monkeypatch.setattr(holdout, "fit_model", spy)
    run_method("bilevel", mri_scan, _cfg(n_random=2, n_guided=0, seed=3, steps=6))
    train, val = build_measurement(mri_scan).split(0.2, 3)
    # MRI's prior.phase=auto is chosen first (one stage per weight), then the 2 trials, all on the split
    *stages, final = seen
    assert len(stages) >= 2
    for tr, va in stages:
        assert torch.equal(tr, train) and torch.equal(va, val)
    assert final == (None, None)  # the final refit trains on every acquired sample


def test_oracle_needs_target_and_matches_final_psnr(mri_scan):
    no_ref = MRIScan(kspace=mri_scan.kspace, mask=mri_scan.mask, sens_maps=mri_scan.sens_maps)
    with pytest.raises(InreconError, match="no target"):
        run_method("bilevel", no_ref, _cfg(oracle=True))
    with pytest.raises(InreconError, match="no target"):
        api.tune(no_ref, "ngp", TINY, {"oracle": True, "n_random": 1, "n_guided": 0})
    # without the denoiser prior, which refines the final fit after the trials (NGP's MRI default)
    res = run_method(
        "bilevel", mri_scan, _cfg(oracle=True, n_random=2, n_guided=1, steps=15, **{"ngp.splitting.noise": 0})
    )
    assert res.info["oracle"] is True
    p = psnr(res.image, mri_scan.target, roi=mri_scan.roi, scale=True)
    assert p == pytest.approx(
        -res.info["score"], abs=1e-3
    )  # the final fit reproduces the oracle's best image


def test_bad_inputs(mri_scan, tmp_path):
    space = SearchSpace((Param("no_such_field", 0.0, 1.0),))
    with pytest.raises(InreconError, match="unknown config key"):
        ngp.ngp_objective(mri_scan, build_config(ngp.NGPConfig, TINY), space)
    with pytest.raises(InreconError, match="declares no hyperparameter space"):
        api.tune(mri_scan, "cgsense")
    with pytest.raises(InreconError, match="no trials"):
        run_method("bilevel", mri_scan, {"n_random": 0, "n_guided": 0})
    bad = tmp_path / "bad.json"
    bad.write_text('{"lr": 1}')
    with pytest.raises(InreconError, match="not a hyperparameter file"):
        load_hparams(bad)
    with pytest.raises(InreconError, match="does not exist"):
        load_hparams(tmp_path / "missing.json")


def test_blown_up_trial_scores_its_best_before_divergence(mri_scan):
    # an explosive learning rate: the held-out loss of the weights before the blow-up is the (finite) score,
    # and the chosen step count stops before the blow-up
    cfg = build_config(ngp.NGPConfig, {**TINY, "steps": 12, "patience": 0})
    obj = ngp.ngp_objective(mri_scan, cfg, ngp.NGP_SPACE)
    h = {"lr": 1e4, "wd_enc": 1e-6, "wd_mlp": 1e-10, "delta": 1e-4, "per_level_scale": 1.4}
    score, info = obj(h)
    assert math.isfinite(score) and info["chosen_steps"] <= 1 and info["steps_run"] == 12


def test_cli_tune_then_recon(mri_scan, tmp_path):
    from inrecon import cli
    from inrecon.data.io.hdf5 import write_scan

    scan_path = write_scan(tmp_path / "scan.h5", mri_scan)
    parser = cli.build_parser()
    out = tmp_path / "h.json"
    sets = [x for k, v in TINY.items() for x in ("--set", f"{k}={v}")]
    args = parser.parse_args(
        [
            "tune",
            str(scan_path),
            "-o",
            str(out),
            "--random",
            "2",
            "--guided",
            "1",
            "--steps",
            "10",
            "-q",
            *sets,
        ]
    )
    assert args.func(args) == 0
    rec = json.loads(out.read_text())
    assert rec["hparams"]["optim.steps"] >= 1 and (tmp_path / "h.trials.jsonl").exists()
    assert len((tmp_path / "h.trials.jsonl").read_text().splitlines()) == 4  # header + 3 trials
    img = tmp_path / "rec.npy"
    assert (
        cli.main(["recon", str(scan_path), "-o", str(img), "--method", "ngp", "--hparams", str(out), "-q"])
        == 0
    )
    assert np.load(img).shape == (32, 32)
    bad = parser.parse_args(["tune", str(scan_path), "-o", str(tmp_path / "h.txt")])
    with pytest.raises(InreconError, match="json"):
        bad.func(bad)


def test_noncartesian_runs():
    from inrecon.data.sampling import radial_trajectory

    img = brain_phantom((32, 32), seed=2)
    scan = simulate_mri(img, n_coils=4, trajectory=radial_trajectory(16, 32), snr_db=30.0, seed=0)
    res = run_method("bilevel", scan, _cfg(n_random=2, n_guided=0, steps=5))
    assert res.image.shape == (32, 32) and math.isfinite(res.info["score"])


def test_ct_runs():
    ct = pytest.importorskip("inrecon.physics.ct")
    from inrecon.data.scans import CTGeometry, CTScan

    geom = CTGeometry(kind="parallel", n_detectors=48, detector_spacing_mm=1.0, image_shape=(32, 32))
    angles = torch.arange(20, dtype=torch.float32) * (math.pi / 20)
    truth = torch.from_numpy(brain_phantom((32, 32), seed=0)) * 0.02
    sino = ct.CTProjector(geom, angles)(truth)
    scan = CTScan(sinogram=sino, angles=angles, geometry=geom, target=truth)
    res = run_method("bilevel", scan, _cfg(n_random=2, n_guided=1, steps=10))
    assert res.image.shape == (32, 32) and not res.image.is_complex()
    assert res.info["n_trials"] == 3 and scan_protocol(scan)["views"] == 20
    # CT's default prior.tv=auto is chosen once before the search and fixed in the final fit's settings
    from inrecon.engine.regularizers import PriorConfig

    assert res.info["hparams"]["prior.tv"] in PriorConfig().tv_candidates
    # the CT split is the sinogram-entry split of the measurement
    train, val = build_measurement(scan).split(0.2, 0)
    assert train.numel() + val.numel() == sino.numel() and val.numel() == round(0.2 * sino.numel())
