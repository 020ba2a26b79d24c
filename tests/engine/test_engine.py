"""The one training engine: the loop and its callbacks, the stopping rule with its prior choice, the priors."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from inrecon.config import build_config
from inrecon.engine.callbacks import HoldOut, Settle
from inrecon.engine.losses import data_loss
from inrecon.engine.regularizers import (
    PriorConfig,
    make_prior,
    phase_penalty,
    total_variation,
    wavelet_l1,
)
from inrecon.engine.trainer import Callback, Checkpoint, OptimConfig, StepOutput, Task, train
from inrecon.errors import InreconError
from inrecon.physics.mri import phase_roughness, smooth_phase
from inrecon.recon.api import run_method
from tests.engine.tasks import Quadratic
from tests.inr_fixtures import tiny_ct, tiny_mri

pytestmark = pytest.mark.usefixtures("one_thread")
SMALL = {"n_levels": 6, "log2_table_size": 10, "mlp_width": 32, "steps": 40, "patience": 10}


def test_train_converges_and_calls_every_hook():
    calls = []

    class Spy(Callback):
        def on_start(self, run):
            calls.append("start")

        def on_forward(self, run, step, out):
            calls.append("forward")

        def after_backward(self, run, step, out):
            assert run.task.p.grad is not None  # gradients exist before the update
            calls.append("backward")

        def on_step_end(self, run, step, out):
            calls.append("end")

        def on_end(self, run):
            calls.append("done")

    task = Quadratic()
    run = train(task, OptimConfig(steps=300, lr=0.05, schedule="constant", eps=1e-8), [Spy()])
    torch.testing.assert_close(task.image(), task.target, atol=1e-3, rtol=0)
    assert calls[0] == "start" and calls[-1] == "done" and calls[1:4] == ["forward", "backward", "end"]
    assert (
        run.step == 300 and run.history["step"][:2] == [0, 10] and len(run.history["loss"]) == 31
    )  # every 10th and the last


def test_which_fits_a_cuda_graph_may_record():
    """Full-image fits through graph-safe operators are capturable; the torchkbnufft NUFFT (it reads sizes back
    from the device) and coordinate-batched volume fits (a different batch every step) are not; on the CPU the
    flag changes nothing."""
    from inrecon.data.sampling import radial_trajectory
    from inrecon.data.scans import VolumeScan
    from inrecon.engine.fit import FitTask, Model
    from inrecon.engine.losses import LossConfig
    from inrecon.physics.measurement import build_measurement
    from inrecon.physics.simulate.mri import simulate_mri
    from tests.inr_fixtures import tiny_ct

    def task(scan, **kw):
        meas = build_measurement(scan)
        model = Model(torch.nn.Linear(1, 1), [], render=lambda: None, at=lambda c: c[:, 0])
        return FitTask(model, meas, LossConfig(), **kw)

    radial = simulate_mri(torch.rand(16, 16).numpy(), n_coils=2, trajectory=radial_trajectory(8, 32), seed=0)
    volume = VolumeScan(volume=torch.rand(4, 8, 8))
    assert task(tiny_mri(seed=0)).capturable and task(tiny_ct(photons=None, views=12)).capturable
    assert not task(radial).capturable
    assert task(volume).capturable and not task(volume, batch_size=64).capturable
    runs = [train(Quadratic(), OptimConfig(steps=20, lr=0.05), cuda_graph=g) for g in (False, True)]
    assert not runs[1].graphed and runs[1].history["loss"] == runs[0].history["loss"]


def test_holdout_callback_stops_after_patience():
    task = Quadratic()
    hold = HoldOut(torch.tensor([0]), torch.tensor([1.0, 0.0, 0.0]), patience=5, min_steps=1)
    # the held-out target of entry 0 is reached, then overshot: the loss stops improving
    run = train(task, OptimConfig(steps=500, lr=0.5, schedule="constant", eps=1e-8), [hold])
    assert hold.stopped_early and run.step < 500 and run.step - 1 - hold.best_step == 5


def test_a_weighted_holdout_weights_each_held_out_term():
    y = torch.tensor([1.0, 2.0, 0.0, 3.0])
    pred = torch.tensor([0.0, 2.0, 1.0, 1.0])
    w = torch.tensor([1.0, 5.0, 0.5, 2.0])
    assert float(data_loss(pred, y, weight=w)) == pytest.approx((1 * 1 + 0 + 0.5 * 1 + 2 * 4) / 4)
    yc, pc = y.to(torch.complex64) * 1j, pred.to(torch.complex64)  # real and imaginary parts alike
    assert float(data_loss(pc, yc, weight=w)) == pytest.approx((1 * 1 + 5 * 8 + 0.5 * 1 + 2 * 10) / 8)
    hold = HoldOut(torch.tensor([0, 3]), y, weight=w)
    out = StepOutput(torch.zeros(()), image=pred, pred=pred)
    hold.on_forward(None, 0, out)
    assert float(hold.pending[0][1]) == pytest.approx((1 * 1 + 2 * 4) / 2)


def test_the_normalised_self_weighted_loss_is_eq9_at_the_scale_of_the_mse():
    g = torch.Generator().manual_seed(0)
    pred = torch.complex(torch.randn(64, generator=g), torch.randn(64, generator=g))
    y = torch.complex(torch.randn(64, generator=g), torch.randn(64, generator=g))
    for delta in (1e-4, 1e-2, 1.0):
        inv = 1.0 / (pred.abs().square() + delta)
        eq9 = data_loss(pred, y, "self_weighted", delta)
        norm = data_loss(pred, y, "self_weighted_normalized", delta)
        torch.testing.assert_close(norm, eq9 / inv.mean())
    # a delta far above every weight: the MSE itself (eq. 9 is then the MSE divided by delta)
    torch.testing.assert_close(
        data_loss(pred, y, "self_weighted_normalized", 1e6), data_loss(pred, y), rtol=1e-4, atol=0
    )
    torch.testing.assert_close(
        data_loss(pred, y, "self_weighted", 1e6) * 1e6, data_loss(pred, y), rtol=1e-4, atol=0
    )


def test_density_weighted_holdout_scores_mri_by_area_and_ct_as_before():
    over = {**SMALL, "stop.patience": 0, "prior.tv": 0.0, "prior.phase": 0.0}
    mri = tiny_mri()
    plain = run_method("ngp", mri, over).info["holdout"]
    dens = run_method("ngp", mri, {**over, "stop.val_weight": "density"}).info["holdout"]
    assert plain["history"]["val_loss"] != dens["history"]["val_loss"]
    # the same fit (the weights only score it): the training losses agree step by step
    assert plain["history"]["loss"] == dens["history"]["loss"]
    ct_over = {**over, "steps": 20}
    ct = tiny_ct(photons=1e5)
    a = run_method("ngp", ct, ct_over).info["holdout"]["history"]["val_loss"]
    b = run_method("ngp", ct, {**ct_over, "stop.val_weight": "density"}).info["holdout"]["history"][
        "val_loss"
    ]
    assert a == b


class _Scripted(Task):
    """A task whose held-out loss (entry 0 of ``pred`` against 0, mse) follows ``losses`` step by step."""

    def __init__(self, losses):
        self.p = torch.nn.Parameter(torch.zeros(1))
        self.module = torch.nn.ParameterList([self.p])
        self.losses = losses

    def step(self, step):
        pred = torch.tensor([math.sqrt(self.losses[step]), 0.0]) + 0.0 * self.p
        return StepOutput((self.p**2).sum(), image=pred.detach(), pred=pred)


def _scripted_run(losses, **kw):
    hold = HoldOut(torch.tensor([0]), torch.zeros(2), min_steps=1, **kw)
    run = train(_Scripted(losses), OptimConfig(steps=len(losses), lr=0.1), [hold])
    return hold, run


def test_smoothed_holdout_is_not_ended_by_one_lucky_low():
    # a slowly falling held-out loss with one low outlier at step 3 that the raw curve first beats at step 50
    losses = [1.0 - 0.01 * s for s in range(60)]
    losses[3] = 0.5
    raw, run = _scripted_run(losses, patience=10)
    assert raw.best_step == 3 and raw.stopped_early and run.step == 14
    smooth, run = _scripted_run(losses, patience=10, smooth=0.9)
    assert not smooth.stopped_early and run.step == 60 and smooth.best_step == 59
    assert len(run.history["val_smooth"]) == 60 and run.history["val_loss"][3] == pytest.approx(0.5)
    assert smooth.best_val == pytest.approx(run.history["val_smooth"][-1])


def test_smoothed_holdout_survives_a_non_finite_loss():
    losses = [1.0 - 0.01 * s for s in range(30)]
    losses[5] = math.inf
    hold, run = _scripted_run(losses, patience=10, smooth=0.9)
    assert hold.best_step == 29 and math.isinf(run.history["val_smooth"][5])
    assert run.history["val_smooth"][6] < run.history["val_smooth"][4]  # the average went on from step 4's
    with pytest.raises(ValueError, match="smooth"):
        HoldOut(torch.tensor([0]), torch.zeros(2), smooth=1.0)


def test_smoothed_holdout_resumes_after_a_kill(tmp_path):
    losses = [1.0 + 0.3 * math.sin(s) - 0.01 * s for s in range(40)]

    class Die(Callback):
        def on_forward(self, run, step, out):
            if step == 25:  # after the checkpoint at step 20
                raise KeyboardInterrupt

    ref, ref_run = _scripted_run(losses, smooth=0.8)
    cfg = OptimConfig(steps=40, lr=0.1)
    ck = Checkpoint(tmp_path / "run.pt", "fp", every=10)
    with pytest.raises(KeyboardInterrupt):
        train(
            _Scripted(losses),
            cfg,
            [HoldOut(torch.tensor([0]), torch.zeros(2), smooth=0.8), Die()],
            checkpoint=ck,
        )
    hold = HoldOut(torch.tensor([0]), torch.zeros(2), smooth=0.8)
    run = train(_Scripted(losses), cfg, [hold], checkpoint=ck)
    assert run.history["val_smooth"] == pytest.approx(ref_run.history["val_smooth"])
    assert (hold.best_step, hold.best_val) == (ref.best_step, pytest.approx(ref.best_val))


def test_settle_keeps_the_lowest_loss_weights_of_the_last_steps():
    class Kick(Callback):  # a loss spike: the weights thrown off after the update of step 37
        def on_step_end(self, run, step, out):
            if step == 37:
                run.task.p.data.add_(5.0)

    cfg = OptimConfig(steps=40, lr=0.1, schedule="constant", optimizer="sgd")
    plain = Quadratic()
    train(plain, cfg, [Kick()])
    assert (plain.image() - plain.target).abs().max() > 1.0  # the run ends on the spike
    task, settle = Quadratic(), Settle(from_step=30)
    run = train(task, cfg, [Kick(), settle])
    # the weights step 37's forward pass saw (after 37 updates), the last before the kick
    assert run.history["settled_step"] == 37 == settle.best_step
    torch.testing.assert_close(task.image(), task.target, atol=1e-3, rtol=0)


def test_settle_state_survives_a_kill(tmp_path):
    class Kick(Callback):  # a loss spike after step 25's update: the best weights are those step 25 saw
        def on_step_end(self, run, step, out):
            if step == 25:
                run.task.p.data.add_(5.0)

    class Die(Callback):
        def on_forward(self, run, step, out):
            if step == 35:  # after the checkpoint at step 30
                raise KeyboardInterrupt

    cfg = OptimConfig(steps=40, lr=0.1, schedule="constant", optimizer="sgd")
    ref, ref_settle = Quadratic(), Settle(from_step=20)
    train(ref, cfg, [Kick(), ref_settle])
    assert ref_settle.best_step == 25
    ck = Checkpoint(tmp_path / "run.pt", "fp", every=10)
    with pytest.raises(KeyboardInterrupt):
        train(Quadratic(), cfg, [Kick(), Settle(from_step=20), Die()], checkpoint=ck)
    task, settle = Quadratic(), Settle(from_step=20)
    train(task, cfg, [Kick(), settle], checkpoint=ck)  # resumes at step 30, past the best step
    assert settle.best_step == 25
    torch.testing.assert_close(task.image(), ref.image(), rtol=0, atol=0)


def test_settle_runs_in_the_final_fit_only():
    scan = tiny_mri()
    res = run_method("ngp", scan, {**SMALL, "stop.settle": 0.25})
    chosen = res.info["chosen_steps"]
    assert chosen - math.ceil(0.25 * chosen) <= res.info["settled_step"] < chosen
    assert "settled_step" not in res.info["holdout"]["history"]  # stage 1 keeps its own rule
    res = run_method("ngp", scan, {**SMALL, "stop": "none", "stop.settle": 0.5})
    assert 20 <= res.info["settled_step"] < 40
    assert "settled_step" not in run_method("ngp", scan, {**SMALL, "stop.settle": 0}).info


def test_linear_schedule_holds_the_rate_until_decay_start():
    from inrecon.engine.trainer import make_optimizer

    w = torch.nn.Parameter(torch.zeros(3))
    cfg = OptimConfig(steps=100, lr=0.1, schedule="linear", decay_start=0.8)
    opt, sched = make_optimizer([{"params": [w]}], cfg, cfg.steps)
    rates = []
    for _ in range(100):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert rates[:80] == [0.1] * 80  # the full rate for the first 80 % of the steps
    assert rates[90] == pytest.approx(0.05) and rates[99] == pytest.approx(0.005)  # then linear to 0
    plain = OptimConfig(steps=100, lr=0.1, schedule="linear")
    opt, sched = make_optimizer([{"params": [w]}], plain, plain.steps)
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.099)  # decay_start=0: from the first step
    with pytest.raises(InreconError):
        build_config(OptimConfig, {"decay_start": 1.0})


def test_a_group_with_lr_scale_follows_the_schedule_at_its_fraction_of_the_rate():
    from inrecon.engine.trainer import make_optimizer

    a, b = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(3))
    cfg = OptimConfig(steps=100, lr=0.1, lr_decay_every=50)
    opt, sched = make_optimizer([{"params": [a]}, {"params": [b], "lr_scale": 0.25}], cfg, cfg.steps)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.1, 0.025])
    for _ in range(50):
        opt.step()
        sched.step()
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.05, 0.0125])  # both halved


def test_a_second_run_of_the_same_model_runs_at_its_own_settings():
    # torch's optimisers write lr, betas and eps into the group dicts they are given: a model's groups must not
    # carry one run's final settings into the next run (the denoiser splitting after NGP's fit ran at the fit's
    # rate until stop 67)
    task = Quadratic()
    groups = [{"params": [task.p], "weight_decay": 0.0}]
    task.param_groups = lambda: groups
    train(task, OptimConfig(steps=5, lr=0.5, beta2=0.99, eps=1e-15))
    assert groups == [{"params": [task.p], "weight_decay": 0.0}]
    before = task.p.detach().clone()
    train(task, OptimConfig(steps=1, lr=1e-4, beta2=0.999, eps=1e-8))
    moved = float((task.p.detach() - before).abs().max())
    assert moved <= 1.01e-4  # Adam's first step: at most lr per weight


def test_sgd_with_task_gradients_and_linear_schedule():
    class Filled(Quadratic):
        def step(self, step):
            self.p.grad = 2 * (self.p.detach() - self.target)  # the task fills the gradient itself
            return StepOutput(torch.zeros(()))

    task = Filled()
    train(task, OptimConfig(steps=50, lr=0.2, optimizer="sgd", schedule="linear"))
    assert float((task.image() - task.target).abs().max()) < 1e-2


def test_priors_are_nonnegative_and_zero_on_constants():
    x = torch.ones(16, 12)
    assert float(total_variation(x)) < 1e-5 and float(wavelet_l1((16, 12))(x)) > 0
    z = torch.randn(16, 12, dtype=torch.complex64)
    assert float(total_variation(z)) > 0 and float(wavelet_l1((16, 12))(z)) > 0
    assert make_prior(PriorConfig()) is None
    with pytest.raises(ValueError, match="auto"):
        make_prior(PriorConfig(tv="auto"))


def test_prior_weight_chosen_by_holdout_and_used_in_the_refit():
    scan = tiny_mri()
    over = {**SMALL, "prior.tv": "auto", "prior.tv_candidates": "0.0001,0.3", "prior.phase": 0.003}
    res = run_method("ngp", scan, over)
    scores = res.info["prior_scores"]
    assert set(scores) == {0.0001, 0.3} and res.info["prior_tv"] == min(scores, key=scores.get)
    assert res.config["prior"]["tv"] == "auto"  # the config as given; the choice is in info


def test_prior_weight_auto_with_a_fixed_step_count_chooses_then_runs_every_step():
    scan = tiny_mri()
    over = {**SMALL, "prior.tv": "auto", "prior.tv_candidates": "0,0.3", "prior.phase": 0.003}
    res = run_method("ngp", scan, {**over, "stop": "none"})
    scores = res.info["prior_scores"]
    assert set(scores) == {0.0, 0.3} and res.info["prior_tv"] == min(scores, key=scores.get)
    assert res.info["steps_run"] == SMALL["steps"] and "chosen_steps" not in res.info
    # the weight it chose, given as a number, gives the same image
    fixed = run_method("ngp", scan, {**over, "prior.tv": res.info["prior_tv"], "stop": "none"})
    assert torch.equal(fixed.image, res.image)


def test_phase_weight_chosen_by_holdout_and_fixed_in_the_refit():
    scan = tiny_mri()
    over = {
        **SMALL,
        "prior.tv": 0.0,
        "prior.phase": "auto",
        "prior.phase_candidates": "0,0.3",
        "stop": "none",
    }
    res = run_method("ngp", scan, over)
    scores = res.info["prior_scores"]
    assert set(scores) == {0.0, 0.3} and res.info["prior_phase"] == min(scores, key=scores.get)
    assert "prior_tv" not in res.info
    # the weight it chose, given as a number, gives the same image
    fixed = {**over, "prior.phase": res.info["prior_phase"]}
    assert torch.equal(run_method("ngp", scan, fixed).image, res.image)


def test_phase_weight_auto_takes_the_strongest_candidate_where_the_phase_is_smooth():
    scan = tiny_mri()  # its simulated phase is a smooth polynomial
    over = {
        **SMALL,
        "prior.tv": 0.0,
        "prior.phase": "auto",
        "prior.phase_candidates": "0,0.3",
        "stop": "none",
    }
    res = run_method("ngp", scan, {**over, "prior.phase_smooth_below": 1.0})
    assert set(res.info["prior_scores"]) == {0.3} and res.info["prior_phase"] == 0.3
    assert 0 <= res.info["phase_roughness"] < 1.0
    # the same as the weight given as a number
    assert torch.equal(run_method("ngp", scan, {**over, "prior.phase": 0.3}).image, res.image)
    # a threshold below the scan's roughness leaves the choice to the hold-out
    res = run_method("ngp", scan, {**over, "prior.phase_smooth_below": res.info["phase_roughness"]})
    assert set(res.info["prior_scores"]) == {0.0, 0.3}


def test_an_auto_prior_weight_needs_candidates():
    with pytest.raises(InreconError, match="no candidates"):
        build_config(PriorConfig, {"phase": "auto", "phase_candidates": ()})
    with pytest.raises(InreconError, match=r"prior\.tv=auto with no candidates"):
        build_config(PriorConfig, {"phase": "auto", "tv": "auto", "tv_candidates": ()})
    assert build_config(PriorConfig, {"tv": "auto", "phase": "auto"}).auto_terms() == ("phase", "tv")


BOTH_AUTO = {
    **SMALL,
    "prior.phase": "auto",
    "prior.phase_candidates": "0,0.003",
    "prior.tv": "auto",
    "prior.tv_candidates": "0,0.0003,0.001,0.003",
}


def _fake_prior_stages(monkeypatch, losses: dict) -> tuple[list, list]:
    """Replace each hold-out stage by a lookup of ``losses[(phase, tv)]``; returns the lists of the settings
    fitted and of their checkpoint folders' names, in order."""
    from inrecon.engine import holdout

    tried, dirs = [], []

    def fake_choose(self, build):
        key = (self.cfg.prior.phase, self.cfg.prior.tv)
        tried.append(key)
        dirs.append(self.ckdir.name)
        return 5, {"best_val_loss": losses[key]}, None, None

    monkeypatch.setattr(holdout._Stages, "choose_steps", fake_choose)
    return tried, dirs


def test_two_auto_priors_as_alternatives_are_searched_each_with_the_other_off(monkeypatch, tmp_path):
    # (phase, tv) -> held-out loss; both on is never a candidate
    losses = {(0.003, 0.0): 2.0, (0.0, 0.0): 3.0, (0.0, 0.0003): 2.5, (0.0, 0.001): 1.5, (0.0, 0.003): 1.8}
    tried, dirs = _fake_prior_stages(monkeypatch, losses)
    over = {**BOTH_AUTO, "prior.combine": False}
    res = run_method("ngp", tiny_mri(), over, checkpoint_dir=tmp_path)
    # the phase search (middle = 0, then 0.003), then the TV search from its middle (0.0003): one step weaker to
    # 0, which the phase search had fitted already (no better, not refitted), then stronger up to the rise at
    # 0.003: five stages, not six
    assert tried == [(0.0, 0.0), (0.003, 0.0), (0.0, 0.0003), (0.0, 0.001), (0.0, 0.003)]
    assert dirs == ["phase0_tv0", "phase0.003_tv0", "phase0_tv0.0003", "phase0_tv0.001", "phase0_tv0.003"]
    assert res.info["prior_phase"] == 0.0 and res.info["prior_tv"] == 0.001
    assert res.info["prior_scores"] == {
        "phase=0,tv=0": 3.0,
        "phase=0.003,tv=0": 2.0,
        "phase=0,tv=0.0003": 2.5,
        "phase=0,tv=0.001": 1.5,
        "phase=0,tv=0.003": 1.8,
    }
    # where the phase prior's loss is lowest, it wins and the TV weight is 0
    losses[(0.003, 0.0)] = 1.0
    res = run_method("ngp", tiny_mri(), over, checkpoint_dir=tmp_path / "again")
    assert res.info["prior_phase"] == 0.003 and res.info["prior_tv"] == 0.0


def test_combined_priors_search_tv_with_the_chosen_phase_weight(monkeypatch, tmp_path):
    """``prior.combine``: the phase search first (TV off), then the TV walk with the phase weight it chose, so
    both priors can apply at once; where the phase prior loses, the TV walk runs with it off, as without."""
    losses = {
        (0.0, 0.0): 3.0,
        (0.003, 0.0): 2.0,
        (0.003, 0.0003): 1.6,
        (0.003, 0.001): 1.2,
        (0.003, 0.003): 1.4,
    }
    tried, _ = _fake_prior_stages(monkeypatch, losses)
    over = {**BOTH_AUTO, "prior.combine": True}
    res = run_method("ngp", tiny_mri(), over, checkpoint_dir=tmp_path)
    assert tried == [(0.0, 0.0), (0.003, 0.0), (0.003, 0.0003), (0.003, 0.001), (0.003, 0.003)]
    assert res.info["prior_phase"] == 0.003 and res.info["prior_tv"] == 0.001
    assert res.config["prior"]["combine"] is True
    # the phase prior losing: the TV walk runs with it off, exactly the alternatives' TV walk
    losses.update({(0.003, 0.0): 3.5, (0.0, 0.0003): 2.5, (0.0, 0.001): 1.5, (0.0, 0.003): 1.8})
    tried.clear()
    res = run_method("ngp", tiny_mri(), over, checkpoint_dir=tmp_path / "again")
    assert tried == [(0.0, 0.0), (0.003, 0.0), (0.0, 0.0003), (0.0, 0.001), (0.0, 0.003)]
    assert res.info["prior_phase"] == 0.0 and res.info["prior_tv"] == 0.001


def test_prior_weight_search_starts_in_the_middle_and_stops_where_the_loss_rises(monkeypatch):
    from inrecon.engine import holdout

    # 0.001 has the lowest loss but lies past a rise: a unimodal search never reaches it
    losses = {0.1: 3.0, 0.03: 1.0, 0.01: 2.0, 0.003: 2.5, 0.001: 0.5}
    tried = []

    def fake_choose(self, build):
        tried.append(self.cfg.prior.tv)
        return 5, {"best_val_loss": losses[self.cfg.prior.tv]}, None, None

    monkeypatch.setattr(holdout._Stages, "choose_steps", fake_choose)
    over = {
        **SMALL,
        "prior.tv": "auto",
        "prior.tv_candidates": "0.001,0.003,0.01,0.03,0.1",
        "prior.phase": 0.003,
    }
    res = run_method("ngp", tiny_mri(), over)
    # the middle (0.01), one weaker (no better), then stronger until the loss rises
    assert tried == [0.01, 0.003, 0.03, 0.1] and res.info["prior_tv"] == 0.03
    assert res.info["prior_scores"] == {0.01: 2.0, 0.003: 2.5, 0.03: 1.0, 0.1: 3.0}
    assert res.info["steps_run"] == 5
    losses.update({0.003: 1.5, 0.001: 1.2})  # now weaker is better: walk down and never try stronger
    tried.clear()
    res = run_method("ngp", tiny_mri(), over)
    assert tried == [0.01, 0.003, 0.001] and res.info["prior_tv"] == 0.001


def test_unimodal_argmin_walks_from_the_middle_and_scores_each_index_once():
    from inrecon.engine.holdout import unimodal_argmin

    def walk(values):
        calls = []

        def score(i):
            calls.append(i)
            return values[i]

        return unimodal_argmin(score, len(values)), sorted(set(calls))

    assert walk([5.0, 4.0, 3.0, 2.0, 1.0]) == (4, [2, 3, 4])  # downhill to the high end
    assert walk([1.0, 2.0, 3.0, 4.0, 5.0]) == (0, [0, 1, 2, 3])  # one step up (worse), then down
    assert walk([3.0, 2.0, 1.0, 2.0, 3.0]) == (2, [1, 2, 3])  # the middle: only its neighbours
    assert walk([7.0]) == (0, [0])
    # NaN (a failed solve) is never better: the walk turns at it, as at a rise
    assert walk([2.0, 1.0, 3.0, float("nan"), 0.0]) == (1, [0, 1, 2, 3])
    assert walk([0.5, float("nan"), float("nan")]) == (0, [0, 1, 2])
    with pytest.raises(InreconError, match="no candidates"):
        unimodal_argmin(lambda i: 0.0, 0)


def test_prior_weight_auto_is_refused_for_volumes_before_any_work():
    from inrecon.data.scans import VolumeScan

    vol = VolumeScan(volume=torch.rand(8, 8, 8))
    with pytest.raises(InreconError, match="volume"):
        run_method("ngp", vol, {**SMALL, "prior.tv": "auto"})


def test_wavelet_prior_runs_through_every_inr_method():
    scan = tiny_mri()
    res = run_method("ngp", scan, {**SMALL, "prior.wavelet": 1e-3, "stop": "none"})
    assert torch.isfinite(torch.view_as_real(res.image)).all()
    assert build_config(PriorConfig, {"wavelet": 0.1}).wavelet == 0.1


def test_phase_roughness_separates_smooth_from_rough_phase():
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 64), torch.linspace(-1, 1, 64), indexing="ij")
    # a smooth object (no sharp edges, whose blur would leak into the imaginary part)
    mag = torch.exp(-(xx.square() + yy.square()) / 0.3) * (1 + 0.3 * torch.cos(3 * xx))
    assert phase_roughness(mag.to(torch.complex64), 2, 0.0625) < 1e-10  # a real image
    smooth = mag * torch.exp(1j * (0.8 * xx + 0.4 * yy.square() + 2.0))
    r_smooth = phase_roughness(smooth, 2, 0.0625)
    assert r_smooth < 1e-4  # not 0: the blurred phase of a non-uniform object bends a little
    # a global gain and constant phase change nothing
    assert phase_roughness(3j * smooth, 2, 0.0625) == pytest.approx(r_smooth, rel=1e-3, abs=1e-9)
    # phase detail at a few pixels' scale (in-vivo phase near vessels, sinuses): far above
    detail = torch.randn(64, 64, generator=torch.Generator().manual_seed(0))
    detail = torch.fft.ifft2(torch.fft.fft2(detail) * (torch.fft.fftfreq(64).abs()[:, None] < 0.15)).real
    rough = smooth * torch.exp(1j * 3 * detail / detail.std())
    assert phase_roughness(rough, 2, 0.0625) > 3e-3  # ten times what separated smooth scans (RESULTS.md)
    assert phase_roughness(torch.zeros(8, 8, dtype=torch.complex64), 2, 0.0625) == 0.0


def test_phase_prior_is_near_zero_on_smooth_phase_and_large_on_rough_phase():
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 40), indexing="ij")
    mag = (xx.square() + yy.square() < 0.7).float() * (
        1 + 0.5 * (xx > 0.2).float()
    )  # an object inside the FOV
    smooth = mag * torch.exp(1j * (1.5 * xx + 0.8 * yy.square()))
    ref = smooth_phase(smooth, 2, 0.0625)
    assert ref.shape == smooth.shape and torch.allclose(ref.abs(), torch.ones(ref.shape))
    # the smooth phase is removed: little is left in the imaginary part
    assert float(phase_penalty(ref)(smooth)) < 0.06 * float(mag.mean())
    rough = mag * torch.exp(1j * torch.rand(mag.shape, generator=torch.Generator().manual_seed(0)) * 6.28)
    assert float(phase_penalty(smooth_phase(rough, 2, 0.0625))(rough)) > 0.4 * float(mag.mean())
    # leading axes (coil images) are low-passed one by one
    coils = torch.stack([smooth, 2j * smooth])
    assert torch.allclose(smooth_phase(coils, 2, 0.0625)[1], ref * -1j, atol=1e-5)
    with pytest.raises(ValueError, match="phase"):
        make_prior(PriorConfig(phase=0.01))


def test_phase_prior_reads_every_sample_like_the_coil_maps_and_refuses_real_images():
    """The smooth phase is a calibration of the whole scan (as the coil maps are), the same in a hold-out stage
    as in the refit: a fifth of the centre missing at random made it too noisy to judge the prior by."""
    from inrecon.engine.holdout import measurement_prior
    from inrecon.physics.measurement import build_measurement
    from tests.inr_fixtures import tiny_ct

    meas = build_measurement(tiny_mri())
    image = torch.randn(meas.domain_shape, dtype=torch.complex64, generator=torch.Generator().manual_seed(1))
    cfg = PriorConfig(phase=0.01, relative=False)
    before = float(measurement_prior(meas, cfg)(image))
    y = meas.y.clone()
    y[1::2] = y[1::2] * torch.exp(torch.tensor(2j))  # rotate the phase of every other sample
    assert float(measurement_prior(dataclasses.replace(meas, y=y), cfg)(image)) != pytest.approx(
        before, rel=1e-3
    )
    with pytest.raises(InreconError, match=r"prior\.phase"):
        measurement_prior(build_measurement(tiny_ct()), cfg)
    # a hold-out stage (trained on part of the samples) penalises an image exactly as the refit on all does
    import inrecon.engine.fit as fit_module
    from inrecon.engine.holdout import fit_model
    from inrecon.recon.inr.ngp import field_model
    from inrecon.recon.methods import METHODS

    seen = []
    original = fit_module.FitTask.__init__

    def spy(self, *args, **kw):
        original(self, *args, **kw)
        seen.append(self.prior)

    scan_cfg = METHODS["ngp"].build("mri", {**SMALL, "prior.phase": 0.01, "prior.tv": 0})
    train, _ = meas.split(0.2, 0)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fit_module.FitTask, "__init__", spy)
        for idx in (train, None):
            fit_model(meas, field_model(meas, scan_cfg), scan_cfg, steps=1, train_idx=idx, evaluate=False)
    assert float(seen[0](image)) == pytest.approx(float(seen[1](image)), rel=1e-6)


def test_noise_reference_scales_the_prior_by_the_scans_noise_level():
    from inrecon.engine.holdout import measurement_prior
    from inrecon.physics.measurement import build_measurement
    from tests.inr_fixtures import tiny_ct

    meas = build_measurement(tiny_ct(photons=1e4), ct_weighting="ramp+counts")
    image = torch.rand(meas.image_shape, generator=torch.Generator().manual_seed(0))
    plain = float(measurement_prior(meas, PriorConfig(tv=0.01))(image))
    at_level = float(measurement_prior(meas, PriorConfig(tv=0.01, noise_reference=meas.noise))(image))
    half = float(measurement_prior(meas, PriorConfig(tv=0.01, noise_reference=2 * meas.noise))(image))
    assert at_level == pytest.approx(plain) and half == pytest.approx(plain / 2)
    # no noise estimate (MRI, volumes): the weights as given
    quiet = dataclasses.replace(meas, noise=None)
    assert float(
        measurement_prior(quiet, PriorConfig(tv=0.01, noise_reference=1e-3))(image)
    ) == pytest.approx(plain)


def test_self_weighted_delta_means_the_same_under_every_data_scale():
    """``delta`` is relative to data whose largest sample is 1: the self-weighted loss of one image is the same
    whether the data were scaled by their maximum or by the image's magnitude."""
    from inrecon.engine.fit import FitTask, Model
    from inrecon.engine.losses import LossConfig
    from inrecon.physics.measurement import build_measurement

    scan = tiny_mri()
    x = scan.target.to(torch.complex64) * 0.9
    losses = []
    for how in ("max", "image"):
        meas = build_measurement(scan, scale=how)
        image = x / meas.scale
        model = Model(torch.nn.Linear(1, 1), [], render=lambda image=image: image)
        task = FitTask(model, meas, LossConfig(kind="self_weighted", delta=1e-3))
        losses.append(float(task.step(0).loss))
    assert build_measurement(scan, scale="image").peak > 3.0  # the two scales differ a lot here
    assert losses[1] == pytest.approx(losses[0], rel=1e-4)
