"""Tune one method on one scan: its objective, the Bayesian optimiser, and the final-config rule.

:func:`tune_method` takes the method's :class:`~inrecon.tuning.objective.Tunable` (from its registry entry) and
a :class:`TunerConfig`, runs :func:`~inrecon.tuning.bo.tune` with a resumable trial log fingerprinted by the
method, its config, the oracle flag and :func:`~inrecon.tuning.hparams.scan_identity`, and returns
:class:`Tuned`: the best point and the config overrides of the final reconstruction.
"""

from __future__ import annotations

import contextlib
import functools
import os
from dataclasses import dataclass

from inrecon.config import NonNegFloat, NonNegInt, PosInt, config_to_dict
from inrecon.errors import InreconError
from inrecon.tuning.bo import SearchSpace, TuneResult, tune
from inrecon.tuning.hparams import scan_identity
from inrecon.tuning.objective import Tunable

__all__ = ["Tuned", "TunerConfig", "tune_method"]


@dataclass
class TunerConfig:
    """The upper level of the bilevel search (docs/methods.md section 4)."""

    n_random: NonNegInt = 20
    """Random (scrambled Sobol) initial trials."""
    n_guided: NonNegInt = 40
    """Trials proposed by Bayesian optimisation (GP, upper confidence bound)."""
    kappa: NonNegFloat = 2.576
    """UCB exploration weight (the paper's 2.576)."""
    oracle: bool = False
    """Score trials by PSNR against the scan's reference (evaluation only, never the default)."""
    log: str = ""
    """Trial log (JSON lines) to append to and resume from; "" = none (or the command's default)."""
    workers: PosInt = 1
    """Trials proposed (q-batch UCB) and evaluated at a time, in as many worker processes (or Ray tasks)."""

    def check(self) -> None:
        if self.n_random + self.n_guided < 1:
            raise InreconError("the tuner has no trials", "set n_random + n_guided >= 1")


@dataclass
class Tuned:
    """Result of :func:`tune_method`: ``hparams`` (overrides of the final reconstruction), the best point
    ``h``, its ``score`` (held-out loss, or ``-PSNR`` in oracle mode) and every trial (``result``)."""

    method: str
    hparams: dict
    h: dict
    score: float
    oracle: bool
    result: TuneResult

    def trial_table(self) -> list[dict]:
        """One flat row per trial: index, phase, the parameters, score and the scalar trial info."""
        rows = []
        for t in self.result.trials:
            row = {"index": t["index"], "phase": t["phase"], **t["h"], "score": t["score"]}
            row.update({k: v for k, v in t["info"].items() if k not in row})
            row["seconds"] = t["seconds"]
            rows.append(row)
        return rows

    def record(self) -> dict:
        """What a hyperparameter file stores (:func:`~inrecon.tuning.hparams.save_hparams`)."""
        return {
            "method": self.method,
            "hparams": self.hparams,
            "tuned": self.h,
            "score": self.score,
            "oracle": self.oracle,
            "trials": len(self.result.trials),
        }


def tune_method(
    scan,
    method: str,
    tunable: Tunable,
    cfg,
    tuner: TunerConfig,
    *,
    space: SearchSpace | None = None,
    log_path: str | os.PathLike | None = None,
    show_progress: bool | None = None,
    model=None,
    ray=None,
) -> Tuned:
    """Tune ``method`` on ``scan`` from its config ``cfg`` (module docstring). The config's ``seed`` seeds the
    split, every trial's initial weights, the Sobol points and every proposal.

    With ``tuner.workers`` N > 1 the trials run N at a time (:func:`~inrecon.tuning.bo.tune`, "Parallel
    trials") in N spawned processes, each building the objective once from the scan and config; with ``ray``
    (:class:`~inrecon.parallel.RayOptions`) as Ray tasks instead.

    Raises :class:`~inrecon.errors.InreconError` before any work for an oracle run without a reference or a
    space naming unknown config keys, and after the trials when none gave a finite score.
    """
    space = space or tunable.space
    if tuner.oracle and getattr(scan, "target", None) is None:
        raise InreconError(
            "oracle tuning scores against the reference, but the scan has no target",
            "use a scan with a 'target' (e.g. simulated), or drop --oracle",
        )
    objective = tunable.objective(
        scan, cfg, space, oracle=tuner.oracle, show_progress=show_progress, model=model
    )
    ident = {
        "method": method,
        "cfg": config_to_dict(cfg),
        "model": None if model is None else str(model),
        "oracle": bool(tuner.oracle),
        "data": scan_identity(scan),
    }
    runner = None
    if tuner.workers > 1 or ray is not None:
        from inrecon.parallel import Runner

        factory = functools.partial(
            tunable.objective, scan, cfg, space, oracle=tuner.oracle, show_progress=False, model=model
        )
        runner = Runner(tuner.workers, ray=ray, make_context=factory)
    # left by an exception (Ctrl-C, SIGTERM), the workers' running trials are stopped, not waited for
    with runner if runner is not None else contextlib.nullcontext():
        res = tune(
            objective,
            space,
            n_random=tuner.n_random,
            n_guided=tuner.n_guided,
            seed=getattr(cfg, "seed", 0),
            kappa=tuner.kappa,
            minimize=True,
            log_path=log_path if log_path is not None else (tuner.log or None),
            show_progress=show_progress,
            objective_id=ident,
            workers=tuner.workers,
            runner=runner,
        )
    if res.best_h is None:
        raise InreconError(
            f"all {len(res.trials)} tuning trials diverged (non-finite score)",
            "narrow the search space (e.g. a lower learning-rate bound) or check the data",
        )
    hparams = tunable.apply(cfg, res.best_h, res.best_trial["info"])
    if tuner.oracle:  # the final fit reproduces the image the oracle scored at its best step, unsettled
        hparams["stop.settle"] = 0.0
    return Tuned(method, hparams, dict(res.best_h), float(res.best_score), bool(tuner.oracle), res)
