"""Meta: a learned initialisation of the whole scan-specific network (Tancik et al., CVPR 2021).

Pre-training runs Reptile (default) or first-order MAML over the population's raw measurements: the inner loop
fits a copy of the initial weights to one subject for a few Adam steps through its forward model; the outer
loop moves the initialisation towards the adapted weights (Reptile: ``theta += eps * (theta_i - theta)``, ``eps``
decayed linearly) or applies the inner-loop end gradient with an outer Adam (FOMAML). At test time the network
(same architecture as NGP) starts from the learned weights and *all* of them are fine-tuned with NGP's schedule
and the hold-out stopping rule.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from inrecon.engine.checkpoint import config_fingerprint, load_checkpoint, save_checkpoint
from inrecon.engine.holdout import Built, data_identity, fit_with_stopping
from inrecon.engine.losses import data_loss
from inrecon.errors import InreconError
from inrecon.models.fields import ImageINR, NeuralField, count_parameters
from inrecon.physics.measurement import make_problem
from inrecon.progress import progress
from inrecon.recon.inr.ngp import ScanINRConfig, param_groups
from inrecon.recon.population.common import (
    AdaptConfig,
    SubjectSet,
    batch_schedule,
    check_compatible,
    load_model,
    save_model,
)
from inrecon.recon.registry import ReconResult, register

__all__ = ["MetaAdaptConfig", "MetaPretrainConfig", "pretrain_meta", "reconstruct_meta"]

_ARCH_FIELDS = (
    "backbone",
    "n_levels",
    "n_features",
    "log2_table_size",
    "base_resolution",
    "per_level_scale",
    "smoothstep",
    "mlp_width",
    "mlp_layers",
    "fourier_frequencies",
    "siren_width",
    "siren_layers",
    "siren_w0",
)


@dataclass
class MetaPretrainConfig:
    """Architecture (that of NGP) and the meta-learning schedule."""

    backbone: str = "hash"
    n_levels: int = 16
    n_features: int = 2
    log2_table_size: int = 0
    base_resolution: int = 16
    per_level_scale: float = 1.5
    smoothstep: bool = False
    mlp_width: int = 64
    mlp_layers: int = 2
    fourier_frequencies: int = 10
    siren_width: int = 256
    siren_layers: int = 3
    siren_w0: float = 30.0
    algorithm: str = "reptile"  # reptile | fomaml
    outer_steps: int = 1000
    inner_steps: int = 5
    inner_lr: float = 3e-3
    meta_lr: float = 0.5
    subjects_per_step: int = 2
    loss: str = "mse"
    maps: str = "auto"
    seed: int = 0
    checkpoint_every: int = 100

    def scan_config(self) -> ScanINRConfig:
        return ScanINRConfig(**{k: getattr(self, k) for k in _ARCH_FIELDS})


@dataclass
class MetaAdaptConfig(AdaptConfig):
    """Fine-tuning of all weights from the learned initialisation, with NGP's optimiser settings."""

    steps: int = 2000
    lr: float = 3e-3
    wd_enc: float = 1e-6
    wd_mlp: float = 1e-8


def _field(dim: int, channels: int, scfg: ScanINRConfig) -> NeuralField:
    return NeuralField(dim, channels, scfg.field_config())


def pretrain_meta(
    scans,
    cfg: MetaPretrainConfig,
    output,
    *,
    names=None,
    show_progress=None,
    checkpoint_dir=None,
    device=None,
) -> Path:
    """Meta-learn the initialisation of the NGP network from the subjects' raw measurements."""
    if cfg.algorithm not in ("reptile", "fomaml"):
        raise InreconError(f"algorithm={cfg.algorithm!r}", "use reptile or fomaml")
    t0 = time.perf_counter()
    subjects = SubjectSet(scans, maps=cfg.maps, names=names)
    dim, ch = len(subjects.image_shape), 2 if subjects.complex_output else 1
    device = device or subjects.problems[0].y.device
    scfg = cfg.scan_config()
    torch.manual_seed(cfg.seed)
    meta_field = _field(dim, ch, scfg).to(device)
    work = ImageINR(_field(dim, ch, scfg).to(device), subjects.image_shape, subjects.complex_output)
    meta_params = list(meta_field.parameters())
    outer_opt = torch.optim.Adam(meta_params, lr=cfg.inner_lr) if cfg.algorithm == "fomaml" else None
    hist: dict[str, list] = {"step": [], "loss": []}
    start, elapsed = 0, 0.0
    ck = Path(checkpoint_dir) / "meta_pretrain.pt" if checkpoint_dir else None
    fp = config_fingerprint(
        {"method": "meta", "cfg": asdict(cfg), "data": [data_identity(p) for p in subjects.problems]}
    )
    if ck is not None:
        state = load_checkpoint(ck, fp)
        if state is not None:
            meta_field.load_state_dict(state["module"])
            if outer_opt is not None:
                outer_opt.load_state_dict(state["optimizer"])
            hist, start, elapsed = state["history"], state["step"], state["seconds"]
    t_start = time.perf_counter() - elapsed
    bar = progress(
        range(start, cfg.outer_steps),
        total=cfg.outer_steps,
        initial=start,
        desc="Meta pre-train",
        show=show_progress,
    )
    for step in bar:
        batch = batch_schedule(len(subjects), cfg.subjects_per_step, step, cfg.seed)
        deltas = [torch.zeros_like(p) for p in meta_params]
        last = 0.0
        for i in batch:
            prob = subjects.problems[i]
            work.field.load_state_dict(meta_field.state_dict())
            inner = torch.optim.Adam(work.field.parameters(), lr=cfg.inner_lr, betas=(0.9, 0.99), eps=1e-15)
            for _ in range(cfg.inner_steps):
                loss = data_loss(prob.predict(work()), prob.y, cfg.loss)
                inner.zero_grad(set_to_none=True)
                loss.backward()
                inner.step()
                last = float(loss.detach())
            if cfg.algorithm == "fomaml":
                loss = data_loss(prob.predict(work()), prob.y, cfg.loss)
                grads = torch.autograd.grad(loss, list(work.field.parameters()))
                for d, g in zip(deltas, grads):
                    d += g / len(batch)
            else:
                with torch.no_grad():
                    for d, pw, pm in zip(deltas, work.field.parameters(), meta_params):
                        d += (pw - pm) / len(batch)
        if cfg.algorithm == "fomaml":
            outer_opt.zero_grad(set_to_none=True)
            for p, d in zip(meta_params, deltas):
                p.grad = d
            outer_opt.step()
        else:
            eps = cfg.meta_lr * (1.0 - step / cfg.outer_steps)
            with torch.no_grad():
                for p, d in zip(meta_params, deltas):
                    p += eps * d
        if step % 10 == 0 or step == cfg.outer_steps - 1:
            hist["step"].append(step)
            hist["loss"].append(last)
        if bar is not None and not bar.disable:
            bar.set_postfix(inner_loss=f"{last:.3g}")
        done = step + 1
        if ck is not None and done % cfg.checkpoint_every == 0 and done < cfg.outer_steps:
            save_checkpoint(
                ck,
                {
                    "fingerprint": fp,
                    "step": done,
                    "module": meta_field.state_dict(),
                    "optimizer": outer_opt.state_dict() if outer_opt else None,
                    "history": hist,
                    "seconds": time.perf_counter() - t_start,
                },
            )
    hist["seconds"] = time.perf_counter() - t_start
    meta = {
        "method": "meta",
        "config": asdict(cfg),
        "architecture": {k: getattr(cfg, k) for k in _ARCH_FIELDS},
        "signature": subjects.signature,
        "trained_on": subjects.names,
        "n_subjects": len(subjects),
        "pretrain_seconds": time.perf_counter() - t0,
        "history": hist,
        "n_parameters": count_parameters(meta_field),
    }
    return save_model(output, meta_field, meta)


def reconstruct_meta(scan, cfg: MetaAdaptConfig, *, model, show_progress=None, checkpoint_dir=None):
    state, meta = load_model(model)
    if meta.get("method") != "meta":
        raise InreconError(
            f"{model} is a {meta.get('method')!r} model, not Meta",
            f"use --method {meta.get('method')} with it",
        )
    check_compatible(meta, scan, str(model))
    scfg = ScanINRConfig(**meta["architecture"])
    problem = make_problem(scan, cfg.maps)
    device = problem.y.device
    dim, ch = len(problem.image_shape), 2 if problem.complex_output else 1

    def build() -> Built:
        f = _field(dim, ch, scfg).to(device)
        f.load_state_dict(state)
        inr = ImageINR(f, problem.image_shape, problem.complex_output)

        def forward():
            image = inr()
            return image, problem.predict(image)

        return Built(inr, forward, param_groups(f, cfg.wd_enc, cfg.wd_mlp))

    # NGP's optimiser (betas (0.9, 0.99), eps 1e-15): Meta is NGP started from learned weights
    ocfg, stop = cfg.optim(), cfg.stop_config()
    image, info, built = fit_with_stopping(
        problem,
        build,
        ocfg,
        stop,
        run_id={"method": "meta", "cfg": asdict(cfg), "model": str(model)},
        checkpoint_dir=checkpoint_dir,
        show_progress=show_progress,
        desc="Meta",
    )
    info["n_parameters_trainable"] = count_parameters(built.module)
    return ReconResult(image=image, method="meta", config=asdict(cfg), info=info)


@register(
    "meta",
    MetaAdaptConfig,
    ("mri", "ct"),
    "Meta: NGP started from a meta-learned (Reptile) initialisation, all weights fine-tuned (needs --model)",
    needs_model=True,
)
def _meta(scan, cfg, *, show_progress=None, model=None, checkpoint_dir=None) -> ReconResult:
    if model is None:
        raise InreconError("Meta needs a pre-trained model", "pass --model MODEL (from inrecon pretrain)")
    return reconstruct_meta(
        scan, cfg, model=model, show_progress=show_progress, checkpoint_dir=checkpoint_dir
    )
