"""DisINR, STRAINER and Meta: pre-training from measurements, adaptation, model files, compatibility checks."""

from __future__ import annotations

import pytest
import torch

import inrecon.recon.population.common as population
from inrecon.config import build_config
from inrecon.data.phantoms import shepp_logan
from inrecon.data.scans import CTGeometry
from inrecon.errors import FileFormatError, InreconError
from inrecon.metrics import psnr
from inrecon.physics.measurement import MeasurementConfig, measure
from inrecon.physics.simulate.ct import full_scan_angles, simulate_ct
from inrecon.recon.api import run_method
from inrecon.recon.methods import METHODS
from inrecon.recon.population.common import load_model
from inrecon.recon.population.disinr import (
    DISINR_SPACE,
    DisINRAdaptConfig,
    DisINRPretrainConfig,
    disinr_objective,
    load_disinr,
    pretrain_disinr,
)
from inrecon.recon.population.meta import MetaPretrainConfig, pretrain_meta
from inrecon.recon.population.strainer import StrainerPretrainConfig, pretrain_strainer
from tests.inr_fixtures import tiny_mri

ARCH = dict(n_levels=6, log2_table_size=10, encoder_width=32, decoder_width=32)


@pytest.fixture(scope="module")
def subjects():
    return [tiny_mri(seed=s) for s in range(3)]


@pytest.fixture(scope="module")
def disinr_model(tmp_path_factory, subjects):
    out = tmp_path_factory.mktemp("m") / "disinr.safetensors"
    pretrain_disinr(
        subjects,
        build_config(DisINRPretrainConfig, dict(steps=40, subjects_per_step=2, **ARCH)),
        out,
        show_progress=False,
    )
    return out


def test_model_file_holds_shared_pair_and_provenance(disinr_model):
    state, meta = load_model(disinr_model)
    assert meta["method"] == "disinr" and meta["n_subjects"] == 3
    assert meta["signature"] == {"modality": "mri", "image_shape": [32, 32], "channels": 2}
    assert all(k.startswith(("shared_encoder.", "decoder.")) for k in state)
    assert meta["pretrain_seconds"] > 0 and "inrecon_version" in meta
    assert len(meta["history"]["loss"]) >= 4


def test_adaptation_trains_only_the_subject_encoder(disinr_model):
    scan = tiny_mri(seed=7)
    net, _ = load_disinr(disinr_model, scan)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    res = run_method("disinr", scan, {"steps": 30, "patience": 10, "eval_every": 10}, model=str(disinr_model))
    n_enc = sum(p.numel() for p in net.shared_encoder.parameters())
    assert res.info["n_parameters_trainable"] == n_enc  # a subject encoder has the shared encoder's size
    after, _ = load_disinr(disinr_model, scan)
    for k, v in after.state_dict().items():
        torch.testing.assert_close(v, before[k])
    assert torch.isfinite(torch.view_as_real(res.image)).all()


def test_subject_levels_travel_in_the_model_file_and_shrink_the_adapted_encoder(subjects, tmp_path):
    out = tmp_path / "coarse.safetensors"
    over = dict(steps=10, subjects_per_step=2, **ARCH, **{"arch.subject_levels": 3})
    pretrain_disinr(subjects, build_config(DisINRPretrainConfig, over), out, show_progress=False)
    net, meta = load_disinr(out, subjects[0])
    assert meta["architecture"]["subject_levels"] == 3
    res = run_method("disinr", tiny_mri(seed=7), {"steps": 10, "stop": "none"}, model=str(out))
    n_enc = sum(p.numel() for p in net.shared_encoder.parameters())
    assert 0 < res.info["n_parameters_trainable"] < n_enc  # the subject encoder reads 3 of the 6 levels
    assert torch.isfinite(torch.view_as_real(res.image)).all()


def test_pretraining_prior_smooths_the_subjects_and_refuses_auto(subjects, tmp_path):
    over = dict(steps=30, subjects_per_step=3, seed=1, **ARCH)
    losses = {}
    for tv in (0.0, 0.3):
        out = tmp_path / f"tv{tv}.safetensors"
        cfg = build_config(DisINRPretrainConfig, {**over, "prior.tv": tv})
        pretrain_disinr(subjects, cfg, out, show_progress=False)
        losses[tv] = load_model(out)[1]["history"]["loss"][-1]
    assert losses[0.3] > losses[0.0]  # the prior term is part of what pre-training minimises
    cfg = build_config(DisINRPretrainConfig, {**over, "prior.tv": "auto"})
    with pytest.raises(InreconError, match="not available in pre-training"):
        pretrain_disinr(subjects, cfg, tmp_path / "auto.safetensors", show_progress=False)


def test_augmentation_makes_more_subjects_and_refuses_what_the_modality_lacks(subjects, tmp_path):
    out = tmp_path / "aug.safetensors"
    over = dict(steps=2, subjects_per_step=2, **ARCH, **{"augment.mirror": True, "augment.conjugate": True})
    pretrain_disinr(
        subjects[:2], build_config(DisINRPretrainConfig, over), out, show_progress=False, names=["a", "b"]
    )
    meta = load_model(out)[1]
    assert meta["n_subjects"] == 12  # each scan, its two mirrors, and the conjugates of all three
    assert meta["trained_on"][:6] == ["a", "a flip0", "a flip1", "a conj", "a flip0 conj", "a flip1 conj"]
    assert meta["config"]["augment"] == {"rotations": 1, "mirror": True, "conjugate": True}
    for kind, cfg_cls, pretrain in [
        ("disinr", DisINRPretrainConfig, pretrain_disinr),
        ("meta", MetaPretrainConfig, pretrain_meta),
    ]:
        cfg = build_config(cfg_cls, {"augment.rotations": 4})
        with pytest.raises(InreconError, match="for CT scans"):  # before any work
            pretrain(subjects, cfg, tmp_path / f"{kind}.safetensors", show_progress=False)


def test_unfrozen_ablation_trains_everything(disinr_model):
    scan = tiny_mri(seed=7)
    res = run_method("disinr", scan, {"steps": 10, "stop": "none", "freeze": False}, model=str(disinr_model))
    net, _ = load_disinr(disinr_model, scan)
    total = sum(p.numel() for p in net.parameters()) + sum(p.numel() for p in net.shared_encoder.parameters())
    assert res.info["n_parameters_trainable"] == total


def test_adaptation_decays_the_hash_tables_by_wd_enc_and_the_layers_by_wd_mlp(disinr_model):
    # as NGP's groups: wd_enc on every trained hash table, wd_mlp on every other trained weight
    scan = tiny_mri(seed=7)
    net, _ = load_disinr(disinr_model, scan)
    meas = measure(scan, MeasurementConfig())
    state = net.state_dict()

    def groups(freeze):
        m = population.adapted_model(
            lambda: type(net)(net.dim, net.out_channels, [], net.cfg),
            state,
            meas,
            freeze=freeze,
            seed=0,
            wd_enc=1e-5,
            wd_mlp=1e-8,
        )
        sub = m.module.subjects["0"]
        by_wd = {}
        for g in m.groups:
            by_wd.setdefault(g["weight_decay"], set()).update(id(p) for p in g["params"])
        return m.module, sub, by_wd

    mod, sub, by_wd = groups(freeze=True)
    assert by_wd[1e-5] == {id(p) for p in sub.encoding.parameters()}
    assert by_wd[1e-8] == {id(p) for p in sub.layers.parameters()}
    mod, sub, by_wd = groups(freeze=False)
    tables = {id(p) for p in [*sub.encoding.parameters(), *mod.shared_encoder.encoding.parameters()]}
    assert by_wd[1e-5] == tables
    assert by_wd[1e-8] == {id(p) for p in mod.parameters()} - tables


def test_freeze_auto_keeps_the_way_with_the_lower_held_out_loss(disinr_model, tmp_path):
    scan = tiny_mri(seed=7)
    over = {"steps": 30, "patience": 10, "eval_every": 10}
    res = run_method(
        "disinr", scan, {**over, "freeze": "auto"}, model=str(disinr_model), checkpoint_dir=tmp_path
    )
    scores, winner = res.info["candidate_scores"], res.info["candidate"]
    assert set(scores) == {"frozen", "unfrozen"} and scores[winner] == min(scores.values())
    assert all(any((tmp_path / way).rglob("holdout.json")) for way in scores)  # each its own stage
    alone = run_method("disinr", scan, {**over, "freeze": winner == "frozen"}, model=str(disinr_model))
    assert alone.info["chosen_steps"] == res.info["chosen_steps"]
    assert alone.info["n_parameters_trainable"] == res.info["n_parameters_trainable"]
    torch.testing.assert_close(res.image, alone.image, rtol=0, atol=0)
    assert res.config["freeze"] == "auto"
    with pytest.raises(InreconError, match="freeze=auto"):  # tuning takes one way, before any work
        disinr_objective(
            scan, build_config(DisINRAdaptConfig, {"freeze": "auto"}), DISINR_SPACE, model=disinr_model
        )


def test_unfrozen_shared_pair_trains_at_its_own_fraction_of_the_rate(disinr_model):
    from inrecon.engine.trainer import make_optimizer

    scan = tiny_mri(seed=7)
    net, _ = load_disinr(disinr_model, scan)
    meas = measure(scan, MeasurementConfig())
    optim = build_config(DisINRAdaptConfig, {"lr": 1e-2}).optim

    def shared_move(scale):  # the shared pair's largest change in three Adam steps
        m = population.adapted_model(
            lambda: type(net)(net.dim, net.out_channels, [], net.cfg),
            net.state_dict(),
            meas,
            freeze=False,
            seed=0,
            wd_enc=0.0,
            wd_mlp=0.0,
            shared_lr_scale=scale,
        )
        shared = {id(p) for p in m.module.shared_parameters()}
        for g in m.groups:  # the shared pair's groups, and only they, carry the scale
            ids = {id(p) for p in g["params"]}
            assert (ids <= shared) if g.get("lr_scale", 1.0) != 1.0 else (scale == 1.0 or not ids & shared)
        before = torch.cat([p.detach().flatten().clone() for p in m.module.shared_parameters()])
        opt, _ = make_optimizer(m.groups, optim, 3)
        for _ in range(3):
            opt.zero_grad()
            m.render().abs().square().mean().backward()
            opt.step()
        after = torch.cat([p.detach().flatten() for p in m.module.shared_parameters()])
        return float((after - before).abs().max())

    full, slow = shared_move(1.0), shared_move(0.1)
    assert full == pytest.approx(3e-2, rel=0.2)  # Adam moves a weight by about lr per step
    assert slow == pytest.approx(0.1 * full, rel=0.2)


def test_incompatible_scan_fails_before_work(disinr_model):
    other = tiny_mri(seed=1, shape=(32, 24))
    with pytest.raises(InreconError, match="shape"):
        run_method("disinr", other, {}, model=str(disinr_model))
    with pytest.raises(InreconError, match="needs a pre-trained model"):
        run_method("disinr", tiny_mri(), {})
    with pytest.raises(FileFormatError):
        run_method("disinr", tiny_mri(), {}, model="/nonexistent/model.safetensors")


def test_adaptation_at_another_data_scale_than_pretraining_fails_before_work(disinr_model, monkeypatch):
    # a frozen shared pair renders images at the scale it was pre-trained at: a mismatch is refused with the fix
    import inrecon.recon.population.common as common

    monkeypatch.setattr(common, "adapted_model", lambda *a, **k: pytest.fail("adaptation started"))
    with pytest.raises(InreconError, match=r"data.scale='max'.*data.scale='image'") as err:
        run_method("disinr", tiny_mri(), {"data.scale": "image"}, model=str(disinr_model))
    assert "leave data.scale unset" in str(err.value)


def test_adaptation_normalises_the_data_as_the_model_was_pretrained(subjects, tmp_path):
    # by default (data.scale="model") the adaptation follows the scale the model file records, with no flag
    out = tmp_path / "image_scale.safetensors"
    pretrain_disinr(
        subjects[:2],
        build_config(
            DisINRPretrainConfig, {"steps": 5, "subjects_per_step": 2, "data.scale": "image", **ARCH}
        ),
        out,
        show_progress=False,
    )
    res = run_method("disinr", tiny_mri(), {"steps": 3, "stop": "none"}, model=str(out), show_progress=False)
    assert res.info["data_scale"] == "image" and res.config["data"]["scale"] == "model"
    cfg = population.resolve_data_scale(METHODS["disinr"].build("mri"), {})  # a file that records none
    assert cfg.data.scale == "max"
    # "model" means nothing to a method without a model: refused with the fix
    with pytest.raises(InreconError, match="only a population method"):
        run_method("ngp", tiny_mri(), {"data.scale": "model", "steps": 1})


def test_pretraining_rejects_mixed_subjects():
    with pytest.raises(InreconError, match="one modality and one matrix size"):
        pretrain_disinr(
            [tiny_mri(), tiny_mri(shape=(32, 24))],
            build_config(DisINRPretrainConfig, dict(steps=1, **ARCH)),
            "/tmp/x",
        )
    with pytest.raises(InreconError, match=r"data\.ct_supersample=1"):
        pretrain_disinr(
            [tiny_mri()],
            build_config(DisINRPretrainConfig, {"steps": 1, "data.ct_supersample": 2, **ARCH}),
            "/tmp/x",
        )


def test_pretraining_resumes_after_kill(tmp_path, subjects, monkeypatch):
    cfg = build_config(DisINRPretrainConfig, dict(steps=30, subjects_per_step=2, checkpoint_every=10, **ARCH))
    pretrain_disinr(subjects, cfg, tmp_path / "ref.safetensors", show_progress=False)
    real = population.data_loss
    calls = {"n": 0}

    class Killed(Exception):
        pass

    def dying(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2 * 25:
            raise Killed
        return real(*a, **k)

    monkeypatch.setattr(population, "data_loss", dying)
    with pytest.raises(Killed):
        pretrain_disinr(
            subjects, cfg, tmp_path / "b.safetensors", show_progress=False, checkpoint_dir=tmp_path
        )
    monkeypatch.setattr(population, "data_loss", real)
    pretrain_disinr(subjects, cfg, tmp_path / "b.safetensors", show_progress=False, checkpoint_dir=tmp_path)
    a, _ = load_model(tmp_path / "ref.safetensors")
    b, _ = load_model(tmp_path / "b.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


def test_disinr_prior_helps_on_a_new_subject(tmp_path):
    # pre-trained properly on 5 phantom subjects, a short adaptation beats an equally short NGP fit
    subjects = [tiny_mri(seed=s) for s in range(5)]
    model = tmp_path / "d.safetensors"
    pretrain_disinr(
        subjects,
        build_config(DisINRPretrainConfig, dict(steps=250, subjects_per_step=3, lr=3e-3, **ARCH)),
        model,
        show_progress=False,
    )
    scan = tiny_mri(seed=9)
    d = run_method("disinr", scan, {"steps": 40, "stop": "none", "lr": 1e-2}, model=str(model))
    n = run_method(
        "ngp",
        scan,
        {
            "steps": 40,
            "stop": "none",
            "n_levels": 6,
            "log2_table_size": 10,
            "mlp_layers": 2,
            "mlp_width": 32,
            "lr": 1e-2,
            "splitting.noise": 0,  # the fits alone: NGP's MRI denoiser prior would refine it after them
        },
    )
    assert psnr(d.image, scan.target, scale=True) > psnr(n.image, scan.target, scale=True)


def test_strainer_and_meta_end_to_end(tmp_path, subjects):
    s_path = pretrain_strainer(
        subjects,
        build_config(StrainerPretrainConfig, dict(steps=10, n_levels=6, log2_table_size=10, width=32)),
        tmp_path / "s.safetensors",
        show_progress=False,
    )
    res = run_method("strainer", tiny_mri(seed=5), {"steps": 10, "stop": "none"}, model=str(s_path))
    assert res.image.shape == (32, 32)
    frozen = run_method(
        "strainer", tiny_mri(seed=5), {"steps": 5, "stop": "none", "freeze_trunk": True}, model=str(s_path)
    )
    assert frozen.info["n_parameters_trainable"] < res.info["n_parameters_trainable"]
    m_path = pretrain_meta(
        subjects,
        build_config(
            MetaPretrainConfig,
            dict(outer_steps=3, inner_steps=2, n_levels=6, log2_table_size=10, mlp_layers=2, mlp_width=32),
        ),
        tmp_path / "m.safetensors",
        show_progress=False,
    )
    res = run_method("meta", tiny_mri(seed=5), {"steps": 10, "stop": "none"}, model=str(m_path))
    assert torch.isfinite(torch.view_as_real(res.image)).all()
    with pytest.raises(InreconError, match="not meta"):
        run_method("meta", tiny_mri(seed=5), {}, model=str(s_path))


def test_fomaml_variant_runs(tmp_path, subjects):
    over = dict(algorithm="fomaml", outer_steps=2, inner_steps=2, n_levels=4, log2_table_size=8)
    cfg = build_config(MetaPretrainConfig, {**over, "mlp_layers": 1, "mlp_width": 16})
    pretrain_meta(subjects, cfg, tmp_path / "f.safetensors", show_progress=False)
    with pytest.raises(InreconError, match="algorithm"):
        build_config(MetaPretrainConfig, {**over, "algorithm": "maml2"})


def test_disinr_adaptation_is_tunable_by_the_bilevel_machinery(disinr_model, tmp_path):
    pytest.importorskip("botorch")
    from inrecon.recon.api import tune

    scan = tiny_mri(seed=7)
    over = {"steps": 12, "patience": 4, "eval_every": 4}
    log = tmp_path / "trials.jsonl"
    budget = {"n_random": 2, "n_guided": 1}
    tuned = tune(scan, "disinr", over, budget, log_path=log, model=str(disinr_model), show_progress=False)
    assert tuned.method == "disinr" and len(tuned.result.trials) == 3
    assert set(tuned.h) == {"lr", "wd_enc"} and 1e-4 <= tuned.hparams["optim.lr"] <= 1e-2
    assert tuned.hparams["stop.rule"] == "none" and 1 <= tuned.hparams["optim.steps"] <= 12
    again = tune(scan, "disinr", over, budget, log_path=log, model=str(disinr_model), show_progress=False)
    assert again.h == tuned.h  # resumed from the log, no trial re-run
    res = run_method("disinr", scan, tuned.hparams, show_progress=False, model=str(disinr_model))
    assert res.info["steps_run"] == tuned.hparams["optim.steps"]
    with pytest.raises(InreconError, match="pre-trained model"):
        tune(scan, "disinr", over, {"n_random": 1, "n_guided": 0})


def test_disinr_adapts_a_ct_scan_on_a_finer_grid_by_default(tmp_path):
    # the CT default "auto" is NGP's: 2x finer for a scan of at most 128 x 128 pixels on the CPU (any scan on a
    # GPU: tests/test_cuda.py), the scan's own grid when asked
    geometry = CTGeometry("fan", 50, 2.0, (24, 24), 2.0, 300.0, 300.0)
    objects = [shepp_logan((96, 96)), shepp_logan((96, 96))[:, ::-1].copy()]  # drawn 4x finer than the grid
    scans = [simulate_ct(0.5 * o, geometry, full_scan_angles(20)) for o in objects]
    cfg = build_config(DisINRPretrainConfig, dict(steps=5, **ARCH))
    model = pretrain_disinr(scans, cfg, tmp_path / "ct.safetensors", show_progress=False)
    over = {"steps": 6, "stop": "none"}
    plain = run_method(
        "disinr", scans[0], {**over, "data.ct_supersample": 1}, model=str(model), show_progress=False
    )
    fine = run_method("disinr", scans[0], over, model=str(model), show_progress=False)
    assert (plain.info["supersample"], fine.info["supersample"]) == (1, 2)
    # the block mean, on the scan's grid
    assert fine.image.shape == plain.image.shape == scans[0].target.shape
    assert torch.isfinite(fine.image).all()


def test_disinr_adaptation_takes_ngps_denoiser_prior_with_its_shared_pair_frozen(disinr_model):
    """``splitting`` after the adaptation: the splitting updates the subject encoder only (the shared pair is
    frozen), runs at most the adaptation's budget, and records what it did; off by default."""
    scan = tiny_mri(seed=7)
    over = {"steps": 30, "stop": "none", "freeze": True}
    plain = run_method("disinr", scan, over, model=str(disinr_model))
    assert "splitting" not in plain.info
    split = {"splitting.noise": 0.02, "splitting.iterations": 3, "splitting.inner_steps": 50}
    res = run_method("disinr", scan, {**over, **split}, model=str(disinr_model))
    sp = res.info["splitting"]
    assert sp["denoiser_used"] and sp["noise"] == 0.02 and sp["steps"] == 30  # 3 x (30 // 3): the budget
    assert res.info["n_parameters_trainable"] == plain.info["n_parameters_trainable"]
    assert not torch.equal(res.image, plain.image)
