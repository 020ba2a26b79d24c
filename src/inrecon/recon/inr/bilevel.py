"""Bilevel-optimised INR (docs/methods.md section 4): the scan-specific INR with hyperparameters tuned per scan.

Lower level: the ``ngp`` fit (:mod:`inrecon.recon.inr.ngp`) with the self-weighted loss (Bilevel eq. 9, ``delta``
from ``h``), trained on the *train* part of the measurement's seeded hold-out split (the split every INR
method's stopping rule uses). Upper level: the loss on the held-out 20 % (self-weighted, ``delta`` fixed at
1e-4), minimised over ``h`` by :func:`inrecon.tuning.run.tune_method` (Sobol start, GP-UCB with kappa 2.576;
20 + 40 trials by default). A trial stops ``patience`` steps after its best held-out loss; its score is that
loss and its best step is recorded, so one trial both scores ``h`` and says how long the final fit must train.
Final: a fresh INR with the best ``h`` trained on *all* acquired samples for the best trial's step count.

Oracle mode (evaluation only) scores trials by PSNR against the reference. Tuned settings are written as
``ngp`` overrides (:mod:`inrecon.tuning.hparams`) and transfer to other scans of the same protocol with
``inrecon recon --method ngp --hparams H.json``.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

from inrecon.config import config_to_dict, override_config
from inrecon.data.scans import MRIScan
from inrecon.physics.coils import coil_maps
from inrecon.recon.inr.ngp import NGP, NGP_MODALITY_DEFAULTS, NGPConfig, reconstruct_ngp
from inrecon.recon.registry import DEFAULT_CONTEXT, Context, MethodSpec, ReconResult
from inrecon.tuning.run import Tuned, TunerConfig, tune_method

__all__ = [
    "BILEVEL",
    "NGP_TUNING_DEFAULTS",
    "BilevelConfig",
    "hparams_record",
    "reconstruct_bilevel",
    "tune_ngp",
    "with_maps",
]

NGP_TUNING_DEFAULTS = {"loss.kind": "self_weighted", "stop.val_loss": "self_weighted", "stop.val_delta": 1e-4}
"""What the bilevel method changes in the ``ngp`` defaults: the self-weighted loss at both levels."""


@dataclass
class BilevelConfig:
    """The ``bilevel`` method: the base ``ngp`` settings (``optim.steps`` and ``stop.patience`` apply to each
    trial; the final fit always trains on all samples for the chosen step count) and the tuner's."""

    ngp: NGPConfig = field(default_factory=lambda: override_config(NGPConfig(), NGP_TUNING_DEFAULTS))
    """The scan-specific INR being tuned (self-weighted loss, held-out delta 1e-4)."""
    tuner: TunerConfig = field(default_factory=TunerConfig)
    """The Bayesian optimisation."""


def with_maps(scan, how: str):
    """MRI: the scan with its coil maps attached (estimated once, shared by every trial and the final fit)."""
    if isinstance(scan, MRIScan) and scan.sens_maps is None:
        return dataclasses.replace(scan, sens_maps=coil_maps(scan, how))
    return scan


def tune_ngp(scan, cfg: BilevelConfig, *, log_path=None, show_progress=None, ray=None) -> Tuned:
    """Tune the scan-specific INR on ``scan`` with the settings of ``cfg`` (the ``tune`` command); ``ray``:
    :class:`~inrecon.parallel.RayOptions` to run the trials as Ray tasks."""
    scan = with_maps(scan, cfg.ngp.data.maps)
    tuner = cfg.tuner
    return tune_method(
        scan, "ngp", NGP.tunable, cfg.ngp, tuner, log_path=log_path, show_progress=show_progress, ray=ray
    )


def reconstruct_bilevel(scan, cfg: BilevelConfig, ctx: Context = DEFAULT_CONTEXT) -> ReconResult:
    """Tune, then reconstruct with the tuned ``ngp`` settings on all samples (module docstring).

    ``info`` holds ``tuned_h``, ``hparams`` (the final ``ngp`` overrides), ``score``, ``oracle``,
    ``chosen_steps``, ``trials`` (one row per trial), ``n_trials``, ``n_failed``, ``tune_seconds``,
    ``final_seconds`` and ``final`` (the final fit's own info: history, steps).
    """
    t0 = time.perf_counter()
    scan = with_maps(scan, cfg.ngp.data.maps)
    ckdir = Path(ctx.checkpoint_dir) if ctx.checkpoint_dir else None
    log = cfg.tuner.log or (ckdir / "trials.jsonl" if ckdir else None)
    tuned = tune_ngp(scan, cfg, log_path=log, show_progress=ctx.show_progress)
    t1 = time.perf_counter()
    final_cfg = override_config(NGPConfig(), tuned.hparams)
    final = reconstruct_ngp(
        scan, final_cfg, dataclasses.replace(ctx, checkpoint_dir=ckdir / "final" if ckdir else None)
    )
    info = {
        "tuned_method": tuned.method,
        "tuned_h": tuned.h,
        "hparams": tuned.hparams,
        "score": tuned.score,
        "oracle": tuned.oracle,
        "chosen_steps": tuned.hparams["optim.steps"],
        "best_trial": tuned.result.best_index,
        "trials": tuned.trial_table(),
        "n_trials": len(tuned.result.trials),
        "n_failed": tuned.result.n_failed,
        "tune_seconds": t1 - t0,
        "final_seconds": time.perf_counter() - t1,
        "final": final.info,
    }
    return ReconResult(image=final.image, method="bilevel", config=config_to_dict(cfg), info=info)


def hparams_record(result: ReconResult) -> dict:
    """The hyperparameter-file record (:func:`inrecon.tuning.hparams.save_hparams`) of a ``bilevel`` result."""
    i = result.info
    return {
        "method": i["tuned_method"],
        "hparams": i["hparams"],
        "tuned": i["tuned_h"],
        "score": i["score"],
        "oracle": bool(i["oracle"]),
        "trials": i["n_trials"],
    }


BILEVEL = MethodSpec(
    "bilevel",
    reconstruct_bilevel,
    BilevelConfig,
    ("mri", "ct"),
    "scan-specific INR whose lr, weight decays, loss delta and hash scale are tuned per scan by Bayesian "
    "optimisation of a held-out sample loss (20 random + 40 guided trials), then refitted on all data",
    requires=(("botorch", "inrecon[tune]"),),
    modality_defaults={m: {f"ngp.{k}": v for k, v in d.items()} for m, d in NGP_MODALITY_DEFAULTS.items()},
)
