"""The registry's per-modality defaults: applied on scans of that modality only, a user's values win, and every
path that builds a method's config (run_method, the command line's checks, tuning) uses them."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from inrecon.errors import InreconError
from inrecon.recon.inr.ngp import NGP_MODALITY_DEFAULTS, NGPConfig
from inrecon.recon.methods import METHODS
from inrecon.recon.registry import MethodSpec


def test_modality_defaults_apply_only_to_their_modality_and_user_values_win():
    spec = METHODS["ngp"]
    ct, mri, vol = spec.build("ct"), spec.build("mri"), spec.build("volume")
    assert (
        ct.prior.tv == NGP_MODALITY_DEFAULTS["ct"]["prior.tv"] == "auto"
        and ct.data.ct_weighting == "ramp+counts"
        and ct.data.ct_ramp_filter == "hann"
    )
    assert mri.prior.phase == NGP_MODALITY_DEFAULTS["mri"]["prior.phase"] == "auto" and mri.prior.tv == "auto"
    assert mri.prior.tv_candidates == (0.0, 0.0003, 0.001) and mri.prior.auto_terms() == ("phase", "tv")
    assert mri.prior.combine and not ct.prior.combine
    assert mri.data.scale == "image" and (mri.optim.lr, mri.optim.wd_enc) == (1e-2, 1e-5)
    assert (
        mri.stop.min_steps == mri.optim.lr_decay_every == 1000
        and ct.stop.min_steps == NGPConfig().stop.min_steps
    )
    base = NGPConfig()
    # MRI takes the denoiser prior (HQS at the classical pnp's noise level); CT sets it up for ADMM at twice
    # pnp-ct's level but leaves it off (an option: it loses on piecewise-constant phantoms)
    assert mri.splitting.noise == "auto" and ct.splitting.noise == vol.splitting.noise == 0
    assert (mri.splitting.scheme, ct.splitting.scheme, ct.splitting.noise_factor) == ("hqs", "admm", 2.0)
    # MRI differs in the phase and TV priors, the data scale, the learning rate, the hash tables' weight decay,
    # the hold-out's earliest stop and the denoiser prior only
    assert (
        replace(
            mri, prior=base.prior, data=base.data, optim=base.optim, stop=base.stop, splitting=base.splitting
        )
        == base
    )
    assert replace(mri.stop, min_steps=base.stop.min_steps) == base.stop
    assert replace(mri.optim, lr=base.optim.lr, wd_enc=base.optim.wd_enc) == base.optim
    assert vol.optim.schedule == "linear" and vol.optim.decay_start == 0.8
    assert replace(vol, optim=NGPConfig().optim) == NGPConfig()
    mine = spec.build("ct", {"prior": {"tv": 0.0}, "lr": 3e-3})  # nested and flat-alias keys both win
    assert mine.prior.tv == 0.0 and mine.optim.lr == 3e-3 and mine.data.ct_units == "view"
    with pytest.raises(InreconError, match="unknown"):
        spec.build("ct", {"no_such_key": 1})


def test_bilevel_inherits_the_ngp_defaults_under_its_ngp_section():
    cfg = METHODS["bilevel"].build("ct")
    assert cfg.ngp.prior.tv == NGP_MODALITY_DEFAULTS["ct"]["prior.tv"]
    assert cfg.ngp.data.ct_weighting == "ramp+counts"


def test_population_adaptation_takes_the_mri_priors():
    for name in ("disinr", "strainer", "meta"):
        cfg = METHODS[name].build("mri")
        # NGP's MRI prior search: the phase prior and, beside it, the TV weight
        assert cfg.prior.phase == NGP_MODALITY_DEFAULTS["mri"]["prior.phase"], name
        assert cfg.prior.tv == NGP_MODALITY_DEFAULTS["mri"]["prior.tv"], name
        assert cfg.prior.tv_candidates == NGP_MODALITY_DEFAULTS["mri"]["prior.tv_candidates"], name
        # but not NGP's data scale: the data are scaled as the model's pre-training scaled them
        assert cfg.data.scale == "model", name
        # DisINR's subject encoder is a hash grid + MLP like NGP's and takes its optimiser; the others do not
        ngp_optim = (NGP_MODALITY_DEFAULTS["mri"]["optim.lr"], NGP_MODALITY_DEFAULTS["mri"]["optim.wd_enc"])
        assert ((cfg.optim.lr, cfg.optim.wd_enc) == ngp_optim) == (name == "disinr"), name
        assert METHODS[name].build("ct").prior.phase == 0, name
        # DisINR models a CT image on NGP's finer grid where NGP does (a GPU); the others on the scan's grid
        ngp_grid = NGP_MODALITY_DEFAULTS["ct"]["data.ct_supersample"]
        assert (METHODS[name].build("ct").data.ct_supersample == ngp_grid) == (name == "disinr"), name
        # and NGP's Hann-apodised CT ramp (confirmed for DisINR on held-out slices)
        assert (
            METHODS[name].build("ct").data.ct_ramp_filter
            == NGP_MODALITY_DEFAULTS["ct"]["data.ct_ramp_filter"]
        ), name


def test_a_bad_modality_default_fails_when_built():
    spec = MethodSpec("x", lambda *a: None, NGPConfig, ("ct",), "test", modality_defaults={"ct": {"lr": -1}})
    with pytest.raises(InreconError):
        spec.build("ct")


def test_run_method_uses_the_modality_defaults():
    from inrecon.data.phantoms import shepp_logan
    from inrecon.data.shared import disinr_fan_geometry
    from inrecon.physics.simulate.ct import full_scan_angles, simulate_ct
    from inrecon.recon.api import run_method

    scan = simulate_ct(shepp_logan((32, 32)), disinr_fan_geometry((32, 32)), full_scan_angles(30))
    res = run_method("ngp", scan, {"steps": 3, "stop": "none"}, show_progress=False)
    assert res.config["prior"]["tv"] == NGP_MODALITY_DEFAULTS["ct"]["prior.tv"]
    assert res.config["optim"]["steps"] == 3


def test_methods_command_lists_them(capsys):
    from inrecon.cli import main

    assert main(["methods", "ngp"]) == 0
    out = capsys.readouterr().out
    assert "on ct scans the defaults differ" in out and "prior.tv='auto'" in out
    assert main(["methods", "ngp", "--json"]) == 0
    assert (
        json.loads(capsys.readouterr().out)["modality_defaults"]["ct"]["data.ct_weighting"] == "ramp+counts"
    )


def test_pretraining_has_modality_defaults_too_and_every_path_uses_them(tmp_path, capsys):
    from inrecon.cli import main
    from inrecon.data.phantoms import shepp_logan
    from inrecon.data.shared import disinr_fan_geometry
    from inrecon.physics.simulate.ct import full_scan_angles, simulate_ct
    from inrecon.recon.api import pretrain
    from inrecon.recon.population.common import load_model
    from inrecon.recon.population.disinr import DISINR_PRETRAIN_MODALITY_DEFAULTS, DisINRPretrainConfig

    pre = METHODS["disinr"].pretrain
    want = DISINR_PRETRAIN_MODALITY_DEFAULTS["ct"]
    assert pre.build("ct").arch.hash.n_levels == want["arch.hash.n_levels"] == 8
    assert pre.build("ct").arch.mlp_dtype == pre.build("mri").arch.mlp_dtype == "auto"
    assert (
        pre.build("volume") == DisINRPretrainConfig()
    )  # volumes keep float32 (fits beyond bf16's precision)
    # CT and MRI: 8 levels, none finer than the image grid (volumes keep the paper's grid)
    assert pre.build("mri").arch.hash == pre.build("ct").arch.hash != DisINRPretrainConfig().arch.hash
    assert pre.build("ct", {"arch.hash.n_levels": 12}).arch.hash.n_levels == 12  # the user's value wins
    ct_aug, mri_aug = pre.build("ct").augment, pre.build("mri").augment
    assert (ct_aug.rotations, ct_aug.mirror) == (4, True)  # CT pre-trains on rotated and mirrored scans
    assert (mri_aug.rotations, mri_aug.mirror, mri_aug.conjugate) == (1, False, False)
    assert pre.build("ct", {"augment.rotations": 1, "augment.mirror": False}).augment.rotations == 1
    adapt = METHODS["disinr"]
    assert adapt.build("ct").stop.min_chosen == 0.02  # DisINR's CT hold-out floor
    # the shared adaptation data term; DisINR's image grid may be finer (NGP's ct_supersample)
    assert replace(adapt.build("ct").data, ct_supersample=1) == METHODS["strainer"].build("ct").data
    assert adapt.build("mri").stop.min_chosen == METHODS["strainer"].build("mri").stop.min_chosen == 0.05
    scan = simulate_ct(shepp_logan((32, 32)), disinr_fan_geometry((32, 32)), full_scan_angles(20))
    out = pretrain("disinr", [scan], tmp_path / "m.safetensors", {"steps": 1}, show_progress=False)
    assert load_model(out)[1]["architecture"]["hash"]["n_levels"] == 8  # the API applied the CT default
    assert main(["methods", "disinr", "--pretrain"]) == 0
    assert "pre-training on ct scans, the defaults differ" in capsys.readouterr().out
