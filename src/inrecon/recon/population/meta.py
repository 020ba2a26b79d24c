"""Meta: a learned initialisation of the whole scan-specific network (Tancik et al., CVPR 2021).

Pre-training runs Reptile (default) or first-order MAML over the population's raw measurements, both as tasks of
the one engine. A step's inner loop fits a copy of the initial weights to each drawn subject for a few Adam steps
through its forward model (itself a :func:`~inrecon.engine.trainer.train` run); the outer update moves the
initialisation towards the adapted weights (Reptile: ``theta += eps * mean(theta_i - theta)``, an SGD step on the
pseudo-gradient with ``eps`` decayed linearly) or applies the inner loop's end gradient with Adam (FOMAML). At
test time the network (NGP's architecture) starts from the learned weights and *all* of them are fine-tuned
with NGP's optimiser settings and the hold-out stopping rule.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import torch

from inrecon.config import PosFloat, PosInt, config_from_dict, config_to_dict
from inrecon.data.augment import AugmentConfig, augment_scans
from inrecon.engine.callbacks import Progress
from inrecon.engine.checkpoint import config_fingerprint
from inrecon.engine.fit import FitTask
from inrecon.engine.losses import LossConfig, data_loss
from inrecon.engine.trainer import Checkpoint, OptimConfig, StepOutput, Task, train
from inrecon.models.fields import FieldConfig, NeuralField, count_parameters, for_grid
from inrecon.models.networks import MLPConfig
from inrecon.physics.measurement import MeasurementConfig, measure
from inrecon.recon.inr.ngp import NET_ALIASES, NGPConfig, field_model
from inrecon.recon.population.common import (
    ADAPT_MODALITY_DEFAULTS,
    AdaptConfig,
    SubjectSet,
    adapt,
    batch_schedule,
    counts_weighted,
    load_model,
    require_model,
    resolve_data_scale,
    save_model,
)
from inrecon.recon.registry import Context, MethodSpec, Pretrainer, ReconResult

__all__ = ["META", "MetaAdaptConfig", "MetaPretrainConfig", "pretrain_meta", "reconstruct_meta"]


@dataclass
class MetaPretrainConfig:
    """The NGP architecture and the meta-learning schedule."""

    net: FieldConfig = field(default_factory=lambda: FieldConfig(mlp=MLPConfig(n_hidden_layers=2)))
    """The network (NGP's)."""
    algorithm: Literal["reptile", "fomaml"] = "reptile"
    """Reptile or first-order MAML."""
    outer_steps: PosInt = 1000
    """Meta-updates."""
    inner_steps: PosInt = 5
    """Adam steps fitting each drawn subject."""
    inner_lr: PosFloat = 3e-3
    """Inner-loop learning rate (also FOMAML's outer Adam rate)."""
    meta_lr: PosFloat = 0.5
    """Reptile's initial step towards the adapted weights (decayed linearly to 0)."""
    subjects_per_step: PosInt = 2
    """Subjects drawn for each meta-update."""
    loss: LossConfig = field(default_factory=LossConfig)
    """The data term of every subject."""
    data: MeasurementConfig = field(default_factory=counts_weighted)
    """Coil maps (MRI), data weighting (CT: ramp+counts, i.e. counts-weighted where the scans record photons)."""
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    """Measurement-domain augmentation (exact physics): every transformed scan is one more subject."""
    seed: int = 0
    """Seeds the initial weights and the subject draws."""
    checkpoint_every: PosInt = 100
    """With a checkpoint directory: save every this many meta-updates."""

    ALIASES: ClassVar[dict] = {**NET_ALIASES, "loss": "loss.kind", "maps": "data.maps"}


@dataclass
class MetaAdaptConfig(AdaptConfig):
    """Fine-tuning of all weights from the learned initialisation, with NGP's optimiser settings."""

    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(steps=2000, lr=3e-3, wd_enc=1e-6, wd_mlp=1e-8)
    )
    """NGP's Adam, schedule and weight decays."""


class _MetaTask(Task):
    """One meta-update: inner fits of the drawn subjects from the current initialisation, then the
    pseudo-gradient (Reptile) or the end gradient (FOMAML) in ``.grad`` for the outer optimiser."""

    def __init__(self, meta_field: NeuralField, subjects: SubjectSet, cfg: MetaPretrainConfig):
        self.module, self.subjects, self.cfg = meta_field, subjects, cfg
        # one working copy serves every subject (one grid); the inner loop has no weight decay
        self.work = field_model(
            subjects.measurements[0], NGPConfig(net=meta_field.cfg, optim=OptimConfig(), seed=cfg.seed)
        )
        self.inner = OptimConfig(steps=cfg.inner_steps, lr=cfg.inner_lr, schedule="constant")

    def step(self, step: int) -> StepOutput:
        cfg = self.cfg
        batch = batch_schedule(len(self.subjects), cfg.subjects_per_step, step, cfg.seed)
        params = list(self.module.parameters())
        deltas = [torch.zeros_like(p) for p in params]
        last = torch.zeros(())
        for i in batch:
            work, meas = self.work, self.subjects.measurements[i]
            work.module.field.load_state_dict(self.module.state_dict())
            run = train(FitTask(work, meas, cfg.loss), self.inner)
            last = torch.tensor(run.history["loss"][-1])
            wparams = list(work.module.field.parameters())
            if cfg.algorithm == "fomaml":
                loss = data_loss(meas.predict(work.render()), meas.y, cfg.loss.kind, cfg.loss.delta)
                for d, g in zip(deltas, torch.autograd.grad(loss, wparams)):
                    d += g / len(batch)
            else:
                with torch.no_grad():
                    for d, pw, pm in zip(deltas, wparams, params):
                        d -= (pw - pm) / len(batch)  # minus: SGD steps against the gradient
        for p, d in zip(params, deltas):
            p.grad = d
        return StepOutput(last)


def pretrain_meta(
    scans, cfg: MetaPretrainConfig, output, *, names=None, show_progress=None, checkpoint_dir=None
):
    """Meta-learn the initialisation of the NGP network from the subjects' raw measurements."""
    t0 = time.perf_counter()
    scans, names = augment_scans(scans, cfg.augment, names)
    subjects = SubjectSet(scans, cfg.data, names=names)
    dim, ch = len(subjects.image_shape), 2 if subjects.complex_output else 1
    torch.manual_seed(cfg.seed)
    net_cfg = for_grid(cfg.net, subjects.image_shape)
    meta_field = NeuralField(dim, ch, net_cfg).to(subjects.measurements[0].y.device)
    if cfg.algorithm == "fomaml":
        outer = OptimConfig(
            steps=cfg.outer_steps, lr=cfg.inner_lr, beta2=0.999, eps=1e-8, schedule="constant"
        )
    else:
        outer = OptimConfig(steps=cfg.outer_steps, lr=cfg.meta_lr, optimizer="sgd", schedule="linear")
    fp = config_fingerprint({"method": "meta", "cfg": config_to_dict(cfg), "data": subjects.identity()})
    ck = (
        Checkpoint(f"{checkpoint_dir}/meta_pretrain.pt", fp, cfg.checkpoint_every) if checkpoint_dir else None
    )
    run = train(
        _MetaTask(meta_field, subjects, cfg),
        outer,
        [Progress("Meta pre-train", show_progress)],
        checkpoint=ck,
    )
    meta = {
        "method": "meta",
        "config": config_to_dict(cfg),
        "architecture": config_to_dict(net_cfg),
        "signature": subjects.signature,
        "trained_on": subjects.names,
        "n_subjects": len(subjects),
        "pretrain_seconds": time.perf_counter() - t0,
        "history": {**run.history, "seconds": run.seconds},
        "n_parameters": count_parameters(meta_field),
    }
    return save_model(output, meta_field, meta)


def reconstruct_meta(scan, cfg: MetaAdaptConfig, ctx: Context) -> ReconResult:
    """Fine-tune NGP from the learned initialisation on ``scan`` (compatibility checked before any work)."""
    require_model(ctx, "meta")
    state, meta = load_model(ctx.model, "meta", scan)  # compatibility checked before any work
    cfg = resolve_data_scale(cfg, meta, str(ctx.model))
    meas = measure(scan, cfg.data)
    ngp = NGPConfig(net=config_from_dict(FieldConfig, meta["architecture"]), optim=cfg.optim, seed=cfg.seed)
    return adapt("meta", scan, meas, lambda: field_model(meas, ngp, state=state), cfg, ctx)


META = MethodSpec(
    "meta",
    reconstruct_meta,
    MetaAdaptConfig,
    ("mri", "ct"),
    "Meta: NGP started from a meta-learned (Reptile) initialisation, all weights fine-tuned (needs --model)",
    needs_model=True,
    pretrain=Pretrainer(
        MetaPretrainConfig,
        pretrain_meta,
        summary="Reptile / first-order MAML initialisation of the NGP network",
    ),
    modality_defaults=ADAPT_MODALITY_DEFAULTS,
)
