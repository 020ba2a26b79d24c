"""The reference-free stopping rule every INR method uses (NGP, IMJENSE, DisINR, STRAINER, Meta).

Stage 1 trains a fresh model on the *train* part of a seeded hold-out split of the acquired samples (the split
of the bilevel method) and follows the loss on the held-out part, which the same forward pass predicts for free;
it stops ``patience`` steps after the held-out loss last improved. The best step ``s*`` is the answer to "how long
should this model be fitted to this scan". Stage 2 (``final="refit"``) trains a fresh model on *all* samples for
``s*`` steps; ``final="restore"`` instead returns stage 1's weights at ``s*`` (half the cost, 20 % less data).
Both stages checkpoint; a finished stage 1 is remembered, so a killed run resumes where it was.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from inrecon.data.atomic import atomic_path
from inrecon.engine.checkpoint import config_fingerprint
from inrecon.engine.trainer import FitResult, OptimConfig, fit
from inrecon.errors import InreconError
from inrecon.physics.measurement import Problem

__all__ = ["Built", "StopConfig", "data_identity", "fit_with_stopping"]


@dataclass
class StopConfig:
    """``stop="holdout"`` (default) or ``"none"`` (run ``steps`` on all data)."""

    stop: str = "holdout"
    holdout_fraction: float = 0.2
    patience: int = 300
    final: str = "refit"
    seed: int = 0

    def validate(self) -> None:
        if self.stop not in ("holdout", "none"):
            raise InreconError(f"stop={self.stop!r}", "use stop=holdout or stop=none")
        if self.final not in ("refit", "restore"):
            raise InreconError(f"final={self.final!r}", "use final=refit or final=restore")
        if self.patience < 0:
            raise InreconError(f"patience={self.patience}", "use patience >= 0 (0 never stops early)")


@dataclass
class Built:
    """A freshly initialised model for one fit: the module holding its trainable state, a ``forward() ->
    (image, pred)`` closure, Adam parameter groups, and optionally a regulariser ``image -> scalar``."""

    module: nn.Module
    forward: Callable[[], tuple[torch.Tensor, torch.Tensor]]
    groups: list[dict]
    regularizer: Callable[[torch.Tensor], torch.Tensor] | None = None


def data_identity(problem: Problem) -> list:
    """A cheap identity of the data for checkpoint fingerprints."""
    return [list(problem.y.shape), float(problem.y.abs().sum())]


def _evaluator(problem: Problem):
    if problem.target is None:
        return None
    from inrecon.metrics import evaluate

    def ev(image_scaled: torch.Tensor) -> dict:
        m = evaluate(
            problem.finalize(image_scaled), problem.target, roi=problem.roi, scale=problem.complex_output
        )
        return {"psnr": m["psnr"], "ssim": m["ssim"]}

    return ev


def fit_with_stopping(
    problem: Problem,
    build: Callable[[], Built],
    ocfg: OptimConfig,
    stop: StopConfig,
    *,
    run_id: dict,
    checkpoint_dir: str | Path | None = None,
    show_progress: bool | None = None,
    desc: str = "INR",
) -> tuple[torch.Tensor, dict, Built]:
    """Fit with the hold-out stopping rule. Returns ``(image, info, built)``: the image in the problem's units
    (``problem.finalize`` applied), what was chosen and measured, and the final model."""
    stop.validate()
    ev = _evaluator(problem)
    ckdir = Path(checkpoint_dir) if checkpoint_dir else None
    base = {"run": run_id, "optim": asdict(ocfg), "stop": asdict(stop), "data": data_identity(problem)}
    info: dict = {}

    def run(built: Built, cfg: OptimConfig, name: str, **kw) -> FitResult:
        fp = config_fingerprint({**base, "stage": name, "steps": cfg.steps})
        return fit(
            built.forward,
            built.module,
            built.groups,
            problem.y,
            cfg,
            evaluate=ev,
            regularizer=built.regularizer,
            show_progress=show_progress,
            desc=f"{desc} {name}",
            checkpoint_path=ckdir / f"{name}.pt" if ckdir else None,
            fingerprint=fp,
            **kw,
        )

    if stop.stop == "none":
        built = build()
        res = run(built, ocfg, "fit")
        info.update(history=res.history, steps_run=res.steps_run, fit_seconds=res.seconds)
        return problem.finalize(res.image), info, built

    summary = ckdir / "holdout.json" if ckdir else None
    fp1 = config_fingerprint({**base, "stage": "holdout"})
    if summary is not None and summary.exists() and stop.final == "refit":
        s1 = json.loads(summary.read_text())
        if s1.get("fingerprint") != fp1:
            raise InreconError(
                f"{summary} belongs to another run", "use another --checkpoint-dir or delete it"
            )
        chosen, info["holdout"] = s1["chosen_steps"], s1["info"]
        res1 = None
    else:
        train, val = problem.split(stop.holdout_fraction, stop.seed)
        built = build()
        res1 = run(
            built,
            OptimConfig(**{**asdict(ocfg), "patience": stop.patience}),
            "holdout",
            train=train,
            val=val,
            restore_best=stop.final == "restore",
        )
        # the held-out loss of step s is scored on the weights after s updates: refit s updates
        chosen = max(1, res1.best_step or 0)
        info["holdout"] = {
            "best_step": res1.best_step,
            "best_val_loss": res1.best_val,
            "steps_run": res1.steps_run,
            "stopped_early": res1.stopped_early,
            "seconds": res1.seconds,
            "history": res1.history,
        }
        if summary is not None and stop.final == "refit":
            with atomic_path(summary, suffix=".json") as tmp:
                tmp.write_text(
                    json.dumps({"fingerprint": fp1, "chosen_steps": chosen, "info": info["holdout"]})
                )
    info["chosen_steps"] = chosen
    if stop.final == "restore" and res1 is not None:
        res = res1
    else:
        built = build()
        res = run(built, OptimConfig(**{**asdict(ocfg), "steps": chosen, "patience": 0}), "refit")
    info.update(history=res.history, steps_run=res.steps_run, fit_seconds=res.seconds)
    return problem.finalize(res.image), info, built
