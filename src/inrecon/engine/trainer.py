"""The optimisation loop shared by every single-scan INR fit (NGP, IMJENSE, DisINR adaptation, Meta/STRAINER
fine-tuning, the bilevel lower level, residual series frames).

A fit is described by a ``forward()`` closure returning ``(image, pred)``: the current image and the predicted
measurement at *every acquired sample* as a flat vector ``(M,)``, aligned with the data ``y (M,)``. Index
vectors select the samples that are trained on and, optionally, held out for validation. Because the held-out
prediction comes from the same forward pass, validation costs nothing extra and is tracked every step.

The loop does Adam (two weight-decay groups are the caller's business) with step decay, records a history,
evaluates against a reference every ``eval_every`` steps when one is given, tracks the best validation step and
its weights, stops early after ``patience`` steps without improvement, and checkpoints every
``checkpoint_every`` steps so that a killed run resumes to the identical result.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from inrecon.engine.checkpoint import load_checkpoint, save_checkpoint
from inrecon.engine.losses import LOSSES, data_loss
from inrecon.errors import InreconError
from inrecon.progress import progress

__all__ = ["FitResult", "OptimConfig", "fit"]


@dataclass
class OptimConfig:
    """Optimiser and loop settings (METHODS.md section 3 defaults)."""

    steps: int = 2000
    lr: float = 1e-2
    lr_decay_every: int = 1000
    lr_decay: float = 0.5
    beta1: float = 0.9
    beta2: float = 0.99
    eps: float = 1e-15
    loss: str = "mse"
    delta: float = 1e-3
    val_loss: str = "mse"
    val_delta: float = 1e-4
    patience: int = 0  # 0: never stop early
    min_steps: int = 50
    eval_every: int = 50
    checkpoint_every: int = 200
    sync_every: int = 25  # GPU: read losses back every this many steps (no host sync in between)

    def validate(self) -> None:
        if self.loss not in LOSSES or self.val_loss not in LOSSES:
            raise InreconError(f"unknown loss {self.loss!r} / {self.val_loss!r}", f"use one of {LOSSES}")
        for name in ("steps", "lr", "lr_decay_every", "eval_every", "checkpoint_every"):
            if not getattr(self, name) > 0:
                raise InreconError(f"{name} must be positive, got {getattr(self, name)}", f"set {name} > 0")


@dataclass
class FitResult:
    """What a fit produced. ``history`` holds parallel lists keyed by name (``step``, ``loss``, ``val_step``,
    ``val_loss``, ``eval_step``, ``psnr``, ``ssim``)."""

    image: torch.Tensor
    steps_run: int
    best_step: int | None
    best_val: float | None
    history: dict = field(default_factory=dict)
    seconds: float = 0.0
    stopped_early: bool = False


def _adam(param_groups: list[dict], cfg: OptimConfig) -> torch.optim.Adam:
    params = [p for g in param_groups for p in g["params"]]
    use_fused = all(p.is_floating_point() for p in params) and (
        params[0].device.type in ("cpu", "cuda") if params else False
    )
    return torch.optim.Adam(
        param_groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, fused=use_fused or None
    )


def fit(
    forward: Callable[[], tuple[torch.Tensor, torch.Tensor]],
    module: nn.Module,
    param_groups: list[dict],
    y: torch.Tensor,
    cfg: OptimConfig,
    *,
    train: torch.Tensor | None = None,
    val: torch.Tensor | None = None,
    evaluate: Callable[[torch.Tensor], dict] | None = None,
    restore_best: bool = False,
    checkpoint_path: str | Path | None = None,
    fingerprint: str = "",
    show_progress: bool | None = None,
    desc: str = "fit",
    step_callback: Callable[[int, dict], None] | None = None,
    render: Callable[[], torch.Tensor] | None = None,
    on_resume: Callable[[int], None] | None = None,
    regularizer: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> FitResult:
    """Run the optimisation.

    Parameters
    ----------
    forward
        ``() -> (image, pred)`` with ``pred`` the predicted samples ``(M,)`` aligned with ``y``; or
        ``() -> (image_or_None, pred_batch, y_batch)`` for stochastic mini-batches (no hold-out then).
    module
        Holds every trainable tensor (its ``state_dict`` is checkpointed and restored).
    param_groups
        Adam parameter groups, e.g. ``[{"params": enc, "weight_decay": wd_enc}, {"params": mlp, ...}]``.
    y
        Measured samples ``(M,)``.
    train, val
        Index (int64) vectors into ``y`` for the training and held-out samples; ``train=None`` uses all.
    evaluate
        ``image -> {"psnr": ..., "ssim": ...}`` against a reference, called every ``cfg.eval_every`` steps.
    restore_best
        Load the weights of the best validation step at the end (needs ``val``).
    checkpoint_path
        Save here every ``cfg.checkpoint_every`` steps and resume from it when it exists (same ``fingerprint``).
    render
        ``() -> image`` used for evaluation and the result when ``forward`` returns no image.
    on_resume
        Called with the resumed step after a checkpoint is loaded (e.g. to re-seek a batch sampler).
    regularizer
        ``image -> scalar`` added to the training loss (e.g. IMJENSE's total variation).
    """
    cfg.validate()
    opt = _adam(param_groups, cfg)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.lr_decay_every, gamma=cfg.lr_decay)
    y_train = y if train is None else y[train]
    y_val = None if val is None else y[val]
    hist: dict[str, list] = {"step": [], "loss": [], "val_step": [], "val_loss": [], "eval_step": []}
    best_val, best_step, best_state = math.inf, None, None
    start = 0
    elapsed = 0.0
    if checkpoint_path is not None:
        state = load_checkpoint(checkpoint_path, fingerprint)
        if state is not None:
            module.load_state_dict(state["module"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            hist = state["history"]
            best_val, best_step, best_state = state["best_val"], state["best_step"], state["best_state"]
            start = state["step"]
            elapsed = state["seconds"]
            if on_resume is not None:
                on_resume(start)
    stopped_early = False
    t0 = time.perf_counter() - elapsed
    bar = progress(range(start, cfg.steps), total=cfg.steps, initial=start, desc=desc, show=show_progress)
    step = start
    # Host syncs: on a GPU the held-out and training losses stay on the device and are read back every
    # `sync_every` steps; on the CPU (and for restore_best, which must snapshot before the update) every step.
    device = y.device
    sync_every = 1 if (device.type == "cpu" or restore_best) else max(1, cfg.sync_every)
    pending_val: list[tuple[int, torch.Tensor]] = []
    pending_loss: list[tuple[int, torch.Tensor]] = []
    last_loss = float("nan")

    def flush() -> None:
        nonlocal best_val, best_step, last_loss
        if pending_val:
            vals = torch.stack([v for _, v in pending_val]).tolist()
            for (s_, _), v in zip(pending_val, vals):
                hist["val_step"].append(s_)
                hist["val_loss"].append(v)
                if v < best_val:
                    best_val, best_step = v, s_
            pending_val.clear()
        if pending_loss:
            vals = torch.stack([v for _, v in pending_loss]).tolist()
            for (s_, _), v in zip(pending_loss, vals):
                hist["step"].append(s_)
                hist["loss"].append(v)
            last_loss = vals[-1]
            pending_loss.clear()

    for step in bar:
        out = forward()
        image, pred = out[0], out[1]
        batch_y = out[2] if len(out) > 2 else None
        logs = {}
        if y_val is not None and batch_y is None:
            # scored before the update: the weights that produced this loss are the current ones
            with torch.no_grad():
                vl_t = data_loss(pred.detach()[val], y_val, cfg.val_loss, cfg.val_delta)
            if restore_best:
                vl = float(vl_t)
                hist["val_step"].append(step)
                hist["val_loss"].append(vl)
                if vl < best_val:
                    best_val, best_step = vl, step
                    best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
            else:
                pending_val.append((step, vl_t))
        if batch_y is not None:
            loss = data_loss(pred, batch_y, cfg.loss, cfg.delta)
        else:
            p_train = pred if train is None else pred[train]
            loss = data_loss(p_train, y_train, cfg.loss, cfg.delta)
        if regularizer is not None:
            loss = loss + regularizer(image)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        done = step + 1
        if step % 10 == 0 or done == cfg.steps:
            pending_loss.append((step, loss.detach()))
        evaluating = evaluate is not None and (step % cfg.eval_every == 0 or done == cfg.steps)
        checkpointing = checkpoint_path is not None and done % cfg.checkpoint_every == 0 and done < cfg.steps
        if done % sync_every == 0 or done == cfg.steps or evaluating or checkpointing:
            flush()
            if best_step is not None and hist["val_loss"]:
                logs["val"] = hist["val_loss"][-1]
        if evaluating:
            with torch.no_grad():
                m = evaluate(image.detach() if image is not None else render())
            hist["eval_step"].append(step)
            for k, v in m.items():
                hist.setdefault(k, []).append(v)
            logs.update({k: v for k, v in m.items() if k == "psnr"})
        if bar is not None and not bar.disable and logs:
            bar.set_postfix({"loss": f"{last_loss:.3g}", **{k: f"{v:.4g}" for k, v in logs.items()}})
        if step_callback is not None:
            step_callback(step, logs)
        if checkpointing:
            save_checkpoint(
                checkpoint_path,
                {
                    "fingerprint": fingerprint,
                    "step": done,
                    "module": module.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "history": hist,
                    "best_val": best_val,
                    "best_step": best_step,
                    "best_state": best_state,
                    "seconds": time.perf_counter() - t0,
                    "config": asdict(cfg),
                },
            )
        if (
            cfg.patience > 0
            and best_step is not None
            and done >= cfg.min_steps
            and step - best_step >= cfg.patience
        ):
            stopped_early = True
            break
    flush()
    steps_run = step + 1 if cfg.steps > start else start
    if restore_best and best_state is not None:
        module.load_state_dict(best_state)
    with torch.no_grad():
        image = render() if render is not None else forward()[0]
    return FitResult(
        image=image.detach(),
        steps_run=steps_run,
        best_step=best_step,
        best_val=None if best_step is None else best_val,
        history=hist,
        seconds=time.perf_counter() - t0,
        stopped_early=stopped_early,
    )


def clone_module(module: nn.Module) -> nn.Module:
    """A deep copy (used to freeze a pre-trained module before adapting a copy)."""
    return copy.deepcopy(module)
