"""Bilevel tuning as the Bilevel-paper experiments run and inspect it.

:class:`TuningBudget` is the config section those experiments share (the INR settings of every fit and the
tuner's budget); :func:`tune` runs :func:`inrecon.recon.api.tune` with a trial log named by a hash of the
resolved settings and the data (so a changed default never resumes a stale log) and writes the hyperparameter
file; the rest summarises the trials: counts and times, how well the held-out loss ranks them by PSNR, the
defaults scored as one more trial, the best-so-far curve and the loss-vs-PSNR scatter.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inrecon.config import NonNegInt, PosInt, build_config, canonical_keys, config_diff, config_to_dict
from inrecon.experiments.drivers.common import Log
from inrecon.recon.inr.ngp import NGP_SPACE, NGPConfig
from inrecon.tuning.run import Tuned

__all__ = [
    "H_NAMES",
    "StepLimits",
    "TuningBudget",
    "default_trial",
    "fmt_h",
    "ngp_value",
    "progress_curve",
    "proxy",
    "scatter_figure",
    "space_check",
    "trial_stats",
    "tune",
]

H_NAMES = tuple(p.name for p in NGP_SPACE.params)
"""The tuned hyperparameters (lr, wd_enc, wd_mlp, delta, per_level_scale)."""


@dataclass
class StepLimits:
    """Step cap and hold-out patience of one run (unset: those of the INR settings)."""

    steps: PosInt | None = None
    """Step cap."""
    patience: NonNegInt | None = None
    """Hold-out patience."""

    def overrides(self) -> dict:
        out = {"optim.steps": self.steps, "stop.patience": self.patience}
        return {k: v for k, v in out.items() if v is not None}


@dataclass
class TuningBudget:
    """The INR settings and the tuner's budget of a Bilevel-paper experiment."""

    inr: NGPConfig = field(default_factory=NGPConfig)
    """Settings of every INR fit (ngp keys; e.g. a smaller hash grid for the quick profile; defaults: the
    library's)."""
    ngp_default: StepLimits = field(default_factory=StepLimits)
    """Extra limits of the defaults' own run only (e.g. a lower step cap)."""
    trial_steps: PosInt = 2000
    """Step cap of every tuning trial."""
    trial_patience: NonNegInt = 300
    """Hold-out patience of every tuning trial."""
    oracle_eval_every: PosInt = 10
    """Oracle trials evaluate the PSNR every this many steps."""
    n_random: NonNegInt = 20
    """Random (Sobol) trials."""
    n_guided: NonNegInt = 40
    """Trials proposed by Bayesian optimisation."""
    tune_seed: int = 0
    """Seeds the split, every trial's weights and the proposals."""

    def inr_overrides(self) -> dict:
        """The INR settings that differ from the ``ngp`` defaults (dotted keys)."""
        return config_diff(self.inr)

    def defaults_overrides(self) -> dict:
        """The defaults' run: the INR settings and ``ngp_default``."""
        return {**self.inr_overrides(), **self.ngp_default.overrides()}

    def tuning(self, oracle: bool) -> tuple[dict, dict]:
        """``(ngp overrides, tuner overrides)`` of one tuning run."""
        ngp = {
            **self.inr_overrides(),
            "optim.steps": self.trial_steps,
            "stop.patience": self.trial_patience,
            "monitor.eval_every": self.oracle_eval_every,
            "seed": self.tune_seed,
        }
        return ngp, {"n_random": self.n_random, "n_guided": self.n_guided, "oracle": bool(oracle)}


def ngp_value(cfg: NGPConfig, key: str) -> Any:
    """The value of ``cfg`` at ``key`` (a dotted key or a short flat one such as ``lr``)."""
    (path,) = canonical_keys(NGPConfig, {key: None})
    obj = cfg
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def fmt_h(name: str, v: Any) -> Any:
    if not isinstance(v, int | float) or isinstance(v, bool):
        return v
    return f"{v:.3g}" if name == "per_level_scale" else f"{v:.2e}"


def space_check(h: dict) -> list[str]:
    """Which of ``h``'s values lie outside the bilevel search space (NGP_SPACE)."""
    out = []
    for p in NGP_SPACE.params:
        if p.name not in h:
            continue
        u = p.to_unit(h[p.name]) if (not p.log or h[p.name] > 0) else -1.0
        if not (-1e-9 <= u <= 1 + 1e-9):
            lo, hi = (10**p.low, 10**p.high) if p.log else (p.low, p.high)
            out.append(f"{p.name}={h[p.name]:.3g} outside [{lo:.3g}, {hi:.3g}]")
    return out


def _bilevel_config(cfg: TuningBudget, oracle: bool):
    from inrecon.recon.inr.bilevel import BilevelConfig

    ngp, tuner = cfg.tuning(oracle)
    return build_config(BilevelConfig, {"ngp": ngp, "tuner": tuner})


def _log_path(out: Path, tag: str, resolved, scan) -> Path:
    """A trial-log path unique to the settings and data (so a changed default never hits a stale log)."""
    from inrecon.tuning.hparams import scan_identity

    key = json.dumps(
        {"cfg": config_to_dict(resolved), "data": scan_identity(scan)}, sort_keys=True, default=str
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    return out / "trials" / f"{tag}_{digest}.jsonl"


def tune(
    scan, cfg: TuningBudget, out: Path, tag: str, oracle: bool, show_progress, log: Log
) -> tuple[Tuned, float, Path]:
    """Tune (or oracle-tune) ``scan``; returns ``(Tuned, seconds, hparams file)``."""
    from inrecon.recon.api import tune as tune_method
    from inrecon.tuning.hparams import save_hparams, scan_protocol

    mode = "oracle" if oracle else "tuned"
    ngp, tuner = cfg.tuning(oracle)
    path = _log_path(out, f"{tag}_{mode}", _bilevel_config(cfg, oracle), scan)
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    tuned = tune_method(scan, "ngp", ngp, tuner, log_path=path, show_progress=show_progress)
    seconds = time.perf_counter() - t0
    hp = out / "hparams" / f"{tag}_{mode}.json"
    hp.parent.mkdir(parents=True, exist_ok=True)
    save_hparams(hp, tuned.record(), scan_protocol(scan))
    log(
        f"  {tag}: {'oracle' if oracle else 'bilevel'} tuning, {len(tuned.result.trials)} trials in "
        f"{seconds:.0f} s; best score {tuned.score:.4g}, chosen steps {tuned.hparams['optim.steps']}"
    )
    return tuned, seconds, hp


def trial_stats(tuned: Tuned) -> dict:
    """Trial counts and times of a tuning run (logged seconds, resumed trials included)."""
    secs = [float(t["seconds"]) for t in tuned.result.trials]
    steps = [t["info"].get("steps_run") for t in tuned.result.trials if t["info"].get("steps_run")]
    return {
        "trials": len(secs),
        "failed": tuned.result.n_failed,
        "s_per_trial": (float(np.mean(secs)), float(np.std(secs))) if secs else None,
        "steps_per_trial": (float(np.mean(steps)), float(np.std(steps))) if steps else None,
        "trial_s_total": float(np.sum(secs)),
    }


def proxy(tuned: Tuned) -> dict:
    """How well the held-out loss ranks the tuned trials by (diagnostic) PSNR of their best-step image."""
    pairs = [
        (t["score"], t["info"]["psnr"])
        for t in tuned.result.trials
        if t["finite"] and t["info"].get("psnr") is not None
    ]
    out: dict = {"n": len(pairs)}
    if len(pairs) >= 3:
        from scipy.stats import spearmanr

        s, p = zip(*pairs)
        rho = spearmanr(np.asarray(s), -np.asarray(p)).statistic
        out["spearman"] = float(rho) if np.isfinite(rho) else None
    if pairs:
        out["best_trial_psnr"] = max(p for _, p in pairs)
        best = tuned.result.best_trial
        out["picked_trial_psnr"] = best["info"].get("psnr") if best else None
    return out


def default_trial(scan, cfg: TuningBudget, tuned: Tuned, log: Log) -> dict:
    """The NGP defaults (with the experiment's INR settings, their own training loss) scored exactly like a
    tuning trial: trained on the 80 % split, held-out loss on the 20 %. Its rank among the tuned trials says
    whether the tuner found points at least as good as the defaults *by its own criterion*."""
    from inrecon.config import override_config
    from inrecon.recon.methods import METHODS

    base = _bilevel_config(cfg, False).ngp
    h0 = {k: ngp_value(base, k) for k in H_NAMES}
    loss = cfg.inr.loss.kind
    tunable = METHODS["ngp"].tunable
    trial_cfg = override_config(base, {"loss.kind": loss})
    obj = tunable.objective(scan, trial_cfg, tunable.space, oracle=False, show_progress=False, model=None)
    t0 = time.perf_counter()
    score, info = obj(dict(h0))
    finite = [t["score"] for t in tuned.result.trials if t["finite"]]
    out = {
        "h": h0,
        "loss": loss,
        "score": float(score) if math.isfinite(score) else None,
        "psnr": info.get("psnr"),
        "best_step": info.get("best_step"),
        "steps_run": info.get("steps_run"),
        "seconds": time.perf_counter() - t0,
    }
    if out["score"] is not None:
        out["rank"] = f"{1 + sum(1 for v in finite if v < out['score'])} of {len(finite) + 1}"
    log(
        f"  defaults as a trial ({loss}): held-out loss {score:.4g}, rank {out.get('rank')}, PSNR {out['psnr']}"
    )
    return out


def progress_curve(tuned: Tuned, oracle: bool) -> tuple[list, list]:
    """Per trial index: PSNR of the best trial so far (tuned: the lowest held-out loss; oracle: the max)."""
    xs, ys = [], []
    best_score, best_psnr = math.inf, None
    for t in tuned.result.trials:
        if t["finite"] and t["score"] < best_score:
            best_score = t["score"]
            best_psnr = -t["score"] if oracle else t["info"].get("psnr")
        if best_psnr is not None:
            xs.append(t["index"])
            ys.append(float(best_psnr))
    return xs, ys


def scatter_figure(per_scan: dict[str, Tuned]):
    """Held-out loss vs PSNR of every tuned trial, one panel per scan (is the upper level a good proxy?)."""
    from matplotlib.figure import Figure

    n = len(per_scan)
    fig = Figure(figsize=(4.2 * n, 3.6), layout="constrained")
    axes = fig.subplots(1, n, squeeze=False)[0]
    for ax, (name, tuned) in zip(axes, per_scan.items()):
        tr = [t for t in tuned.result.trials if t["finite"] and t["info"].get("psnr") is not None]
        if tr:
            ax.scatter([t["score"] for t in tr], [t["info"]["psnr"] for t in tr], s=14, color="#1f77b4")
            b = tuned.result.best_trial
            if b is not None and b["info"].get("psnr") is not None:
                ax.scatter(
                    [b["score"]], [b["info"]["psnr"]], s=60, marker="*", color="#d62728", label="chosen"
                )
                ax.legend(frameon=False, fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("held-out loss (upper level)")
        ax.set_ylabel("PSNR of the trial image (dB)")
        ax.set_title(name, fontsize=9)
        ax.grid(True, alpha=0.3)
    return fig
