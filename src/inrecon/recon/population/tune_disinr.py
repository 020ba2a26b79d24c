"""Bilevel tuning of DisINR's test-time adaptation: the same trial machinery as the scan-specific INR.

A trial adapts a fresh subject encoder (shared pair frozen, as in :func:`~inrecon.recon.population.disinr.reconstruct_disinr`)
on the 80 % training part of the scan's acquired samples with hyperparameters ``h`` and is scored by the lowest
held-out loss on the other 20 % (early stopping picks the step); the oracle mode scores by PSNR against the
reference instead. Registered as ``TUNABLES["disinr"]``; ``tune_method(scan, "disinr", cfg, model=PATH)``.
"""

from __future__ import annotations

from dataclasses import asdict

from inrecon.errors import InreconError
from inrecon.physics.measurement import VolumeProblem, make_problem
from inrecon.recon.inr.bilevel import _psnr_fn, apply_h, register_tunable, trial_score
from inrecon.recon.population.disinr import DisINRAdaptConfig, _scan_device, adapt_network, load_disinr
from inrecon.tuning.bo import Objective, Param, SearchSpace

__all__ = ["DISINR_SPACE", "disinr_apply", "disinr_objective"]

DISINR_SPACE = SearchSpace(
    (
        Param("lr", -4.0, -2.0, log=True),
        Param("wd_enc", -9.0, -5.0, log=True),
    )
)
"""Adaptation learning rate and the subject encoder's weight decay (log10 bounds)."""


def disinr_objective(
    scan,
    cfg: DisINRAdaptConfig,
    space: SearchSpace,
    *,
    oracle: bool = False,
    show_progress: bool | None = None,
    model: str | None = None,
) -> Objective:
    """``h -> (score, info)`` for DisINR adaptation on ``scan`` (MRI or CT) with the pre-trained ``model``.

    ``cfg.steps`` limits each trial, ``cfg.patience`` is its early-stopping patience, ``cfg.holdout_fraction``
    and ``cfg.seed`` define the split (the seed also initialises every trial's subject encoder). ``info`` holds
    ``chosen_steps`` (steps of the final fit), ``best_step``, ``steps_run`` and, with a reference, ``psnr``.
    """
    if model is None:
        raise InreconError(
            "tuning DisINR's adaptation needs its pre-trained model", "pass model=PATH (a DisINR model file)"
        )
    apply_h(cfg, space.from_unit([0.5] * space.dim))  # names checked before any work
    net, _meta = load_disinr(model, scan, device=_scan_device(scan))  # compatibility checked here
    problem = make_problem(scan, cfg.maps)
    if isinstance(problem, VolumeProblem):
        raise InreconError("bilevel tuning needs an MRI or CT scan", "tune on measured data, not a volume")
    train, val = problem.split(cfg.holdout_fraction, cfg.seed)
    psnr_of = _psnr_fn(problem) if problem.target is not None else None
    if oracle and psnr_of is None:
        raise InreconError("oracle tuning needs the scan's reference", "use a scan with a 'target'")

    def objective(h: dict) -> tuple[float, dict]:
        c = apply_h(cfg, h)
        built = adapt_network(net, problem, c)()
        return trial_score(
            built.forward,
            built.module,
            built.groups,
            problem,
            asdict(c.optim()),
            oracle=oracle,
            psnr_of=psnr_of,
            train=train,
            val=val,
            patience=c.patience,
            show_progress=show_progress,
            desc="DisINR trial",
        )

    return objective


def disinr_apply(cfg: DisINRAdaptConfig, h: dict, info: dict) -> dict:
    """``disinr`` overrides for the final adaptation: non-default base settings, ``h``, the chosen step count
    and ``stop="none"`` (all acquired samples)."""
    defaults = asdict(DisINRAdaptConfig())
    base = {k: v for k, v in asdict(cfg).items() if k in defaults and v != defaults[k]}
    if info.get("chosen_steps") is None:
        raise InreconError("the best trial recorded no chosen step count", "re-run the tuning")
    return {**base, **h, "steps": int(info["chosen_steps"]), "stop": "none"}


register_tunable("disinr", DISINR_SPACE, disinr_objective, disinr_apply)
