"""The denoiser prior's splitting (inrecon.engine.splitting): the coupling pulls the INR to the denoiser's output,
the dual variable and the target survive a checkpoint, ||A||^2 matches the operator's."""

from __future__ import annotations

import pytest
import torch

from inrecon.config import build_config
from inrecon.engine.fit import FitTask
from inrecon.engine.holdout import fit_model
from inrecon.engine.losses import LossConfig
from inrecon.engine.splitting import Splitting, SplittingConfig, operator_norm_sq, split_with_denoiser
from inrecon.engine.trainer import OptimConfig, train
from inrecon.errors import InreconError
from inrecon.physics.measurement import measure
from inrecon.recon.inr.ngp import NGPConfig, field_model
from tests.inr_fixtures import tiny_ct, tiny_mri

SMALL = dict(n_levels=6, log2_table_size=10, mlp_layers=2, mlp_width=32, eval_every=10)


def _fitted(scan, steps=40):
    cfg = build_config(NGPConfig, dict(steps=steps, stop="none", **SMALL))
    meas = measure(scan, cfg.data)
    model = field_model(meas, cfg)
    fit_model(meas, model, cfg, evaluate=False)
    return meas, model


def test_operator_norm_sq_is_the_largest_eigenvalue_of_the_normal_operator():
    meas = measure(tiny_ct(), build_config(NGPConfig, {}).data)
    a = torch.stack([meas.predict(e.reshape(meas.domain_shape)) for e in torch.eye(32 * 32)], dim=1)
    top = float(torch.linalg.matrix_norm(a.double(), ord=2)) ** 2
    assert operator_norm_sq(meas, iters=100) == pytest.approx(top, rel=1e-3)


@pytest.mark.parametrize("kind", ["hqs", "admm"])
def test_a_strong_coupling_pulls_the_image_to_the_denoisers_output(kind):
    """A "denoiser" that returns one fixed image: with a coupling far stronger than the data term the INR ends
    near it (HQS: the target is that image; ADMM: the dual variable stays small when x = z)."""
    scan = tiny_mri()
    meas, model = _fitted(scan)
    fixed = 0.5 * scan.target.to(torch.complex64) / float(meas.scale)
    start_err = float((model.image() - fixed).abs().norm() / fixed.abs().norm())
    cfg = SplittingConfig(noise=0.01, iterations=6, inner_steps=40, inner_lr=3e-3, mu=1e3, scheme=kind)
    run = split_with_denoiser(meas, model, cfg, lambda v: fixed, show_progress=False)
    assert run.step == 240
    err = float((model.image() - fixed).abs().norm() / fixed.abs().norm())
    assert err < 0.25 * start_err and err < 0.1


def test_the_splitting_state_round_trips_and_the_last_step_is_not_denoised():
    calls = []

    def denoise(v):
        calls.append(1)
        return 0.5 * v

    x0 = torch.ones(4, 4)
    cb = Splitting(x0, denoise, every=3, kind="admm", total=9)
    from inrecon.engine.trainer import StepOutput

    for step in range(9):
        cb.on_forward(None, step, StepOutput(torch.zeros(()), image=torch.full((4, 4), 2.0)))
    assert len(calls) == 2  # after steps 3 and 6, not after the last (9)
    other = Splitting(torch.zeros(4, 4), denoise, every=3, kind="admm", total=9)
    other.load_state_dict(cb.state_dict())
    torch.testing.assert_close(other.target, cb.target)
    torch.testing.assert_close(other.u, cb.u)


def test_a_volume_is_refused():
    from inrecon.data.scans import VolumeScan

    vol = VolumeScan(torch.rand(8, 8, 4))
    cfg = build_config(NGPConfig, dict(steps=5, stop="none", **SMALL))
    meas = measure(vol, cfg.data)
    model = field_model(meas, cfg)
    with pytest.raises(InreconError, match="volume"):
        split_with_denoiser(meas, model, SplittingConfig(noise=0.01), lambda v: v, show_progress=False)


def test_the_coupling_is_the_fit_tasks_prior():
    """One step of the splitting's task is the data term plus c ||x - target||^2 (what the module says)."""
    scan = tiny_ct()
    meas, model = _fitted(scan, steps=5)
    target = torch.zeros(meas.domain_shape)
    task = FitTask(model, meas, LossConfig(kind="mse"), prior=lambda im: 2.0 * (im - target).square().sum())
    out = task.step(0)
    image = model.render()
    data = (meas.predict(image) - meas.y).square().mean()
    torch.testing.assert_close(out.loss, data + 2.0 * image.square().sum())
    run = train(task, OptimConfig(steps=3, lr=1e-3, schedule="constant"))
    assert run.step == 3


def test_on_a_training_part_the_held_out_samples_are_scored_and_never_fitted():
    """``train_idx`` with a hold-out callback: the held-out samples' values change nothing in the fit (the same
    weights whatever they hold), and their loss is recorded at every step."""
    import dataclasses

    from inrecon.engine.callbacks import HoldOut

    scan = tiny_mri()
    cfg = SplittingConfig(noise=0.01, iterations=2, inner_steps=5)
    images = []
    for zero_held_out in (False, True):
        meas, model = _fitted(scan)  # seeded: the same fitted weights both times
        train_idx, val_idx = meas.split(0.2, 0)
        if zero_held_out:
            y = meas.y.clone()
            y[val_idx] = 0
            meas = dataclasses.replace(meas, y=y)
        hold = HoldOut(val_idx, meas.y, min_steps=1)
        run = split_with_denoiser(
            meas, model, cfg, lambda v: v, train_idx=train_idx, holdout=hold, show_progress=False
        )
        assert len(run.history["val_loss"]) == 10
        images.append(model.image())
    torch.testing.assert_close(images[0], images[1], rtol=0, atol=0)
