"""Bilevel-optimised INR (METHODS.md section 4): hyperparameters tuned per scan without a reference.

Lower level: the scan-specific INR of :mod:`inrecon.recon.inr.ngp` with the self-weighted k-space loss (Bilevel
eq. 9, ``delta`` from ``h``), trained on the *train* part of the seeded pointwise hold-out split of the acquired
samples (``problem.split(holdout_fraction=0.2, seed)``, the split every INR method's stopping rule uses: k-space
locations for Cartesian MRI, trajectory samples for non-Cartesian MRI, sinogram entries for CT). Upper level: the
loss on the held-out 20 % (self-weighted, ``delta`` fixed at 1e-4), minimised over ``h`` by
:func:`inrecon.tuning.bo.tune` (Sobol start, GP-UCB with kappa 2.576; 20 + 40 trials by default). A trial
runs the ordinary early-stopping loop (``patience`` steps without improvement of the held-out loss); its score is
the best held-out loss and its best step is recorded, so one trial both scores ``h`` and says how long the
final fit must train. Final: a fresh INR with the best ``h`` trained on *all* acquired samples for the best
trial's chosen number of steps, like :func:`~inrecon.engine.holdout.fit_with_stopping`'s refit stage. The
chosen count is ``max(1, best_step)``: ``fit`` scores the held-out loss of step ``s`` before that step's update,
so it belongs to the weights after ``s`` updates (``fit_with_stopping`` refits ``best_step + 1`` steps, one
more).

Oracle mode (evaluation only): a trial trains on all samples for ``steps`` steps, evaluates the PSNR against
``scan.target`` every ``eval_every`` steps and scores ``-max PSNR``; its chosen step count is the step of that
maximum (``fit`` evaluates the image of the step's forward pass, after ``s`` updates). The final fit then
reproduces the oracle's best image exactly (when the best step is not 0).

Plugging in another method
--------------------------
Tuning is generic: a method declares a :class:`Tunable` in :data:`TUNABLES` (via :func:`register_tunable`):

``default_space``
    a :class:`~inrecon.tuning.bo.SearchSpace` whose names are fields of the method's config;
``objective_factory(scan, cfg, space, *, oracle, show_progress, **extra) -> objective``
    builds ``objective(h) -> (score, info)`` (lower is better). ``info`` must hold the scalar entries the
    ``apply`` function needs (e.g. ``chosen_steps``); only scalar entries survive the trial log;
``apply(cfg, h, info) -> dict``
    the config overrides of the method's *final* reconstruction for the best ``h`` and its trial info.

:func:`tune_method` runs it and returns :class:`Tuned`; ``run_method(name, scan, tuned.hparams)`` (or
``inrecon recon --method NAME --hparams FILE``) is then the final reconstruction. For DisINR's test-time
adaptation, an objective would adapt the pre-trained model on the train split (model passed as ``model=`` in
``extra``) and score the held-out loss, and ``apply`` would return the adaptation settings.

Hyperparameter files
--------------------
:func:`save_hparams` writes ``{"method", "hparams", "tuned", "protocol", "score", "oracle", "trials",
"created", "inrecon_version"}``. ``hparams`` are config overrides of the tuned method: for ``ngp`` the tuned
``lr, wd_enc, wd_mlp, delta, per_level_scale``, ``loss="self_weighted"``, the chosen ``steps`` and
``stop="none"`` (the tuned step count replaces the hold-out rule: it is what the hold-out rule chose for this
``h``, and transfer to another scan of the same protocol keeps it, as the paper keeps a fixed iteration count),
plus every base INR setting that differs from the ``ngp`` defaults, so that ``inrecon recon --method ngp
--hparams H.json`` on the tuned scan reproduces the bilevel reconstruction exactly. ``--set stop=holdout``
(when ``--set`` is applied after ``--hparams``) makes the hold-out rule pick the step count instead.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from inrecon import __version__
from inrecon.data.atomic import atomic_path
from inrecon.data.scans import CTScan, MRIScan
from inrecon.engine.trainer import OptimConfig, fit
from inrecon.errors import InreconError
from inrecon.models.fields import ImageINR
from inrecon.physics.measurement import VolumeProblem, make_problem, resolve_maps
from inrecon.recon.inr.ngp import ScanINRConfig, build_field, param_groups, reconstruct_ngp
from inrecon.recon.registry import ReconResult, register
from inrecon.tuning.bo import Objective, Param, SearchSpace, TuneResult, tune

__all__ = [
    "NGP_SPACE",
    "TUNABLES",
    "BilevelConfig",
    "Tunable",
    "Tuned",
    "apply_h",
    "load_hparams",
    "ngp_apply",
    "ngp_objective",
    "protocol_mismatches",
    "reconstruct_bilevel",
    "register_tunable",
    "save_hparams",
    "scan_identity",
    "scan_protocol",
    "tune_bilevel",
    "tune_method",
]

NGP_SPACE = SearchSpace(
    (
        Param("lr", -5.0, -2.0, log=True),
        Param("wd_enc", -6.0, -3.0, log=True),
        Param("wd_mlp", -10.0, -7.0, log=True),
        Param("delta", -5.0, -3.0, log=True),
        Param("per_level_scale", 1.2, 1.6),
    )
)
"""The Bilevel authors' search space (log10 bounds for the log parameters)."""


# --- the generic plug-in -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Tunable:
    """How to tune one registered method (module docstring, "Plugging in another method")."""

    default_space: SearchSpace
    objective_factory: Callable[..., Objective]
    apply: Callable[[Any, dict, dict], dict]


TUNABLES: dict[str, Tunable] = {}


def register_tunable(
    method: str,
    default_space: SearchSpace,
    objective_factory: Callable[..., Objective],
    apply: Callable[[Any, dict, dict], dict],
) -> None:
    """Declare that ``method`` (a registered method name) can be tuned; see the module docstring."""
    TUNABLES[method] = Tunable(default_space, objective_factory, apply)


@dataclass
class Tuned:
    """Result of :func:`tune_method`.

    Attributes
    ----------
    method
        The tuned method's name (e.g. ``"ngp"``).
    hparams
        Config overrides of its final reconstruction (``Tunable.apply`` of the best trial).
    h
        The best point of the search space.
    score
        Its score (held-out loss, or ``-PSNR`` in oracle mode).
    oracle
        Whether the scores came from the reference (evaluation only).
    result
        The full :class:`~inrecon.tuning.bo.TuneResult` (every trial).
    """

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


def _config_fields(cfg) -> set[str]:
    return {f.name for f in dataclasses.fields(cfg)}


def apply_h(cfg, h: dict):
    """``cfg`` with the fields named in ``h`` replaced (unknown names raise)."""
    unknown = sorted(set(h) - _config_fields(cfg))
    if unknown:
        raise InreconError(
            f"search-space parameter(s) {unknown} are not fields of {type(cfg).__name__}",
            f"name parameters after config fields: {', '.join(sorted(_config_fields(cfg)))}",
        )
    return dataclasses.replace(cfg, **h)


def scan_identity(scan) -> str:
    """A short hash of everything measured in ``scan`` (data, sampling, geometry, coil maps)."""
    sha = hashlib.sha256()
    sha.update(scan.modality.encode())

    def add(x) -> None:
        if x is None:
            sha.update(b"-")
            return
        a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        sha.update(str((a.dtype.str, a.shape)).encode())
        sha.update(np.ascontiguousarray(a).tobytes())

    if isinstance(scan, MRIScan):
        for x in (scan.kspace, scan.mask, scan.trajectory, scan.dcf, scan.sens_maps):
            add(x)
        sha.update(str(tuple(scan.image_shape)).encode())
    elif isinstance(scan, CTScan):
        add(scan.sinogram)
        add(scan.angles)
        sha.update(json.dumps(scan.geometry.to_attrs(), default=str, sort_keys=True).encode())
    else:
        raise InreconError(f"cannot tune on a {type(scan).__name__}", "pass an MRI or CT scan")
    return sha.hexdigest()[:16]


def scan_protocol(scan) -> dict:
    """What identifies a scan's protocol, for hyperparameter files (modality, grid, sampling, coils, views)."""
    if isinstance(scan, MRIScan):
        prov = scan.provenance or {}
        d = {
            "modality": "mri",
            "image_shape": list(scan.image_shape),
            "sampling": "cartesian" if scan.is_cartesian else "non-cartesian",
            "acceleration": round(float(scan.acceleration), 3),
            "coils": scan.n_coils,
        }
        for k in ("pattern", "contrast", "anatomy"):
            if k in prov:
                d[k] = prov[k]
        return d
    if isinstance(scan, CTScan):
        g = scan.geometry
        return {
            "modality": "ct",
            "image_shape": list(scan.image_shape),
            "geometry": g.kind,
            "views": scan.n_views,
            "detectors": g.n_detectors,
        }
    raise InreconError(f"cannot describe a {type(scan).__name__}", "pass an MRI or CT scan")


# --- ngp ------------------------------------------------------------------------------------------------------
def _psnr_fn(problem):
    """``scaled image -> PSNR`` against the problem's target (NaN for a non-finite image)."""
    from inrecon.metrics import psnr

    target, roi, is_mri = problem.target, problem.roi, problem.complex_output

    def f(image_scaled: torch.Tensor) -> float:
        img = problem.finalize(image_scaled)
        if not bool(torch.isfinite(torch.view_as_real(img) if img.is_complex() else img).all()):
            return math.nan
        return float(psnr(img, target, roi=roi, scale=is_mri))

    return f


def trial_score(
    forward,
    module,
    groups,
    problem,
    base: dict,
    *,
    oracle: bool,
    psnr_of,
    train,
    val,
    patience: int,
    extra: dict | None = None,
    info: dict | None = None,
    show_progress=None,
    desc: str = "trial",
) -> tuple[float, dict]:
    """Run one trial's fit and score it: the lowest held-out loss (train on ``train``, early stopping on
    ``val``), or in oracle mode ``-PSNR`` of the best evaluated step (all samples, no early stopping).

    ``base`` is the :class:`OptimConfig` as a dict; ``extra`` overrides its fields for both modes. ``info``
    gains ``chosen_steps`` (steps the final fit runs), ``best_step``, ``steps_run``, ``seconds`` and, with a
    reference, ``psnr``. Fits evaluate the image of step ``s``'s forward pass, i.e. after ``s`` updates.
    """
    info = dict(info or {})
    extra = dict(extra or {})
    if oracle:
        res = fit(
            forward,
            module,
            groups,
            problem.y,
            OptimConfig(**{**base, **extra, "patience": 0}),
            evaluate=lambda im: {"psnr": psnr_of(im)},
            show_progress=show_progress,
            desc=f"oracle {desc}",
        )
        pairs = [
            (p, s) for p, s in zip(res.history.get("psnr", []), res.history["eval_step"]) if math.isfinite(p)
        ]
        info.update(steps_run=res.steps_run, seconds=res.seconds)
        if not pairs:
            return math.nan, info
        p, s = max(pairs, key=lambda ps: (ps[0], -ps[1]))
        info.update(best_step=s, chosen_steps=max(1, s), psnr=p)
        return -p, info
    res = fit(
        forward,
        module,
        groups,
        problem.y,
        OptimConfig(**{**base, **extra, "patience": patience}),
        train=train,
        val=val,
        restore_best=psnr_of is not None,
        show_progress=show_progress,
        desc=desc,
    )
    info.update(
        best_step=res.best_step,
        best_val=res.best_val,
        steps_run=res.steps_run,
        stopped_early=res.stopped_early,
        seconds=res.seconds,
    )
    if res.best_step is None or res.best_val is None:
        return math.nan, info
    # the held-out loss of step s is scored before that step's update: the weights after s updates
    info["chosen_steps"] = max(1, res.best_step)
    if psnr_of is not None:
        info["psnr"] = psnr_of(res.image)
    return float(res.best_val), info


def ngp_objective(
    scan,
    cfg: ScanINRConfig,
    space: SearchSpace,
    *,
    oracle: bool = False,
    show_progress: bool | None = None,
    loss: str = "self_weighted",
    val_loss: str = "self_weighted",
    val_delta: float = 1e-4,
) -> Objective:
    """The bilevel objective of the scan-specific INR (module docstring) for MRI (any sampling) and CT.

    Parameters
    ----------
    scan
        :class:`~inrecon.data.scans.MRIScan` or :class:`~inrecon.data.scans.CTScan`.
    cfg
        Base INR settings; ``steps`` is the step limit of a trial, ``patience`` its early-stopping patience,
        ``holdout_fraction`` and ``seed`` define the split (the seed also initialises every trial's INR).
    space
        Parameters to tune (names of ``ScanINRConfig`` fields).
    oracle
        Score by ``-PSNR`` against ``scan.target`` (module docstring).
    loss
        Lower-level training loss (``delta`` from ``h`` when it is tuned).
    val_loss, val_delta
        Upper-level loss on the held-out samples.

    Returns
    -------
    Objective
        ``h -> (score, info)``; ``info`` holds ``chosen_steps`` (steps the final fit runs), ``best_step``,
        ``steps_run``, ``stopped_early``, ``loss`` and, when the scan has a target, ``psnr`` of the trial's
        best-step image (diagnostic only unless ``oracle``).
    """
    cfg.validate()
    apply_h(cfg, space.from_unit([0.5] * space.dim))  # names checked before any work
    problem = make_problem(scan, cfg.maps, cfg.ct_precondition)
    if isinstance(problem, VolumeProblem):
        raise InreconError("bilevel tuning needs an MRI or CT scan", "tune on measured data, not a volume")
    if oracle and problem.target is None:
        raise InreconError(
            "oracle tuning scores against the reference, but the scan has no target",
            "use a scan with a 'target' (e.g. simulated), or drop --oracle",
        )
    device = problem.y.device
    train, val = problem.split(cfg.holdout_fraction, cfg.seed)
    psnr_of = _psnr_fn(problem) if problem.target is not None else None

    def objective(h: dict) -> tuple[float, dict]:
        c = dataclasses.replace(apply_h(cfg, h), loss=loss)
        inr = ImageINR(
            build_field(problem, c, seed=c.seed).to(device), problem.image_shape, problem.complex_output
        )
        groups = param_groups(inr.field, c.wd_enc, c.wd_mlp)

        def forward():
            image = inr()
            return image, problem.predict(image)

        base = c.optim_config()
        return trial_score(
            forward,
            inr,
            groups,
            problem,
            asdict(base),
            oracle=oracle,
            psnr_of=psnr_of,
            train=train,
            val=val,
            patience=c.patience,
            extra={"val_loss": val_loss, "val_delta": val_delta},
            info={"loss": loss},
            show_progress=show_progress,
            desc="bilevel trial",
        )

    return objective


def ngp_apply(cfg: ScanINRConfig, h: dict, info: dict) -> dict:
    """``ngp`` config overrides for the final fit: non-default base settings, ``h``, loss, chosen steps and
    ``stop="none"`` (module docstring, "Hyperparameter files")."""
    defaults = asdict(ScanINRConfig())
    base = {k: v for k, v in asdict(cfg).items() if k in defaults and v != defaults[k]}
    chosen = info.get("chosen_steps")
    if chosen is None:
        raise InreconError(
            "the best trial recorded no chosen step count", "re-run the tuning (its log is stale)"
        )
    return {**base, **h, "loss": info.get("loss", cfg.loss), "steps": int(chosen), "stop": "none"}


register_tunable("ngp", NGP_SPACE, ngp_objective, ngp_apply)


# --- generic driver -------------------------------------------------------------------------------------------
def tune_method(
    scan,
    method: str,
    cfg,
    *,
    space: SearchSpace | None = None,
    n_random: int = 20,
    n_guided: int = 40,
    seed: int = 0,
    kappa: float = 2.576,
    oracle: bool = False,
    log_path: str | os.PathLike | None = None,
    show_progress: bool | None = None,
    **extra,
) -> Tuned:
    """Tune ``method`` (a key of :data:`TUNABLES`) on ``scan`` starting from its config ``cfg``.

    ``extra`` is passed to the method's objective factory. The trial log (``log_path``) is fingerprinted with
    the method, ``cfg``, ``extra``, the oracle flag and :func:`scan_identity`, so it resumes only the same run.
    Raises :class:`~inrecon.errors.InreconError` before any work for an unknown method, an oracle run without a
    reference, or a space naming unknown config fields; and after the trials when none gave a finite score.
    """
    if method not in TUNABLES:
        from inrecon.recon.registry import _load_all

        _load_all()  # methods that declare a space in their own module (e.g. disinr) register on import
    if method not in TUNABLES:
        raise InreconError(
            f"method {method!r} declares no hyperparameter space",
            f"tune one of: {', '.join(sorted(TUNABLES))}",
        )
    tun = TUNABLES[method]
    space = space or tun.default_space
    if oracle and getattr(scan, "target", None) is None:
        raise InreconError(
            "oracle tuning scores against the reference, but the scan has no target",
            "use a scan with a 'target' (e.g. simulated), or drop --oracle",
        )
    objective = tun.objective_factory(scan, cfg, space, oracle=oracle, show_progress=show_progress, **extra)
    ident = {
        "method": method,
        "cfg": asdict(cfg),
        "extra": {k: str(v) for k, v in sorted(extra.items())},
        "oracle": bool(oracle),
        "data": scan_identity(scan),
    }
    res = tune(
        objective,
        space,
        n_random=n_random,
        n_guided=n_guided,
        seed=seed,
        kappa=kappa,
        minimize=True,
        log_path=log_path,
        show_progress=show_progress,
        objective_id=ident,
    )
    if res.best_h is None:
        raise InreconError(
            f"all {len(res.trials)} tuning trials diverged (non-finite score)",
            "narrow the search space (e.g. a lower learning-rate bound) or check the data",
        )
    hparams = tun.apply(cfg, res.best_h, res.best_trial["info"])
    return Tuned(method, hparams, dict(res.best_h), float(res.best_score), bool(oracle), res)


# --- the bilevel method ---------------------------------------------------------------------------------------
@dataclass
class BilevelConfig(ScanINRConfig):
    """The ``bilevel`` method: every ``ngp`` setting (the base INR; ``steps`` and ``patience`` apply to each
    trial) plus the tuner's. ``stop`` and ``final`` are not used (trials always use the hold-out split; the
    final fit always trains on all samples for the chosen step count)."""

    loss: str = "self_weighted"
    val_loss: str = "self_weighted"
    val_delta: float = 1e-4
    n_random: int = 20
    n_guided: int = 40
    kappa: float = 2.576
    oracle: bool = False
    log: str = ""  # trial log (JSON lines); "" = <checkpoint_dir>/trials.jsonl when checkpointing, else none

    def validate(self) -> None:
        super().validate()
        if self.n_random < 0 or self.n_guided < 0 or self.n_random + self.n_guided < 1:
            raise InreconError(
                f"n_random={self.n_random}, n_guided={self.n_guided}", "use n_random, n_guided >= 0, sum >= 1"
            )
        if not (math.isfinite(self.kappa) and self.kappa >= 0):
            raise InreconError(f"kappa={self.kappa}", "use kappa >= 0 (2.576 in the paper)")
        if self.val_delta <= 0:
            raise InreconError(f"val_delta={self.val_delta}", "use val_delta > 0 (1e-4 in the paper)")

    def base_config(self) -> ScanINRConfig:
        """The ``ngp`` part of this config."""
        names = {f.name for f in dataclasses.fields(ScanINRConfig)}
        return ScanINRConfig(**{k: v for k, v in asdict(self).items() if k in names})


def _with_maps(scan, how: str):
    """MRI: attach the coil maps once (ESPIRiT when absent), so that trials and the final fit share them."""
    if isinstance(scan, MRIScan) and scan.sens_maps is None:
        return dataclasses.replace(scan, sens_maps=resolve_maps(scan, how))
    return scan


def tune_bilevel(
    scan,
    cfg: BilevelConfig,
    *,
    space: SearchSpace | None = None,
    log_path: str | os.PathLike | None = None,
    show_progress: bool | None = None,
) -> Tuned:
    """Tune the scan-specific INR on ``scan`` with the settings of ``cfg`` (the ``tune`` command)."""
    cfg.validate()
    if cfg.oracle and scan.target is None:
        raise InreconError(
            "oracle tuning scores against the reference, but the scan has no target",
            "use a scan with a 'target' (e.g. simulated), or drop --oracle / oracle=true",
        )
    scan = _with_maps(scan, cfg.maps)
    return tune_method(
        scan,
        "ngp",
        cfg.base_config(),
        space=space,
        n_random=cfg.n_random,
        n_guided=cfg.n_guided,
        seed=cfg.seed,
        kappa=cfg.kappa,
        oracle=cfg.oracle,
        log_path=log_path if log_path is not None else (cfg.log or None),
        show_progress=show_progress,
        loss=cfg.loss,
        val_loss=cfg.val_loss,
        val_delta=cfg.val_delta,
    )


def reconstruct_bilevel(
    scan, cfg: BilevelConfig, *, show_progress: bool | None = None, checkpoint_dir=None
) -> ReconResult:
    """Tune, then reconstruct with the tuned ``ngp`` settings on all samples (module docstring).

    ``info`` holds ``tuned_h``, ``hparams`` (the final ``ngp`` overrides), ``score``, ``oracle``,
    ``chosen_steps``, ``trials`` (one row per trial), ``n_trials``, ``n_failed``, ``tune_seconds``,
    ``final_seconds`` and ``final`` (the final fit's own info: history, steps).
    """
    cfg.validate()
    t0 = time.perf_counter()
    scan = _with_maps(scan, cfg.maps)
    ckdir = Path(checkpoint_dir) if checkpoint_dir else None
    log = cfg.log or (ckdir / "trials.jsonl" if ckdir else None)
    tuned = tune_bilevel(scan, cfg, log_path=log, show_progress=show_progress)
    t1 = time.perf_counter()
    final_cfg = dataclasses.replace(cfg.base_config(), **tuned.hparams)
    final = reconstruct_ngp(
        scan, final_cfg, show_progress=show_progress, checkpoint_dir=ckdir / "final" if ckdir else None
    )
    info = {
        "tuned_method": tuned.method,
        "tuned_h": tuned.h,
        "hparams": tuned.hparams,
        "score": tuned.score,
        "oracle": tuned.oracle,
        "chosen_steps": tuned.hparams["steps"],
        "best_trial": tuned.result.best_index,
        "trials": tuned.trial_table(),
        "n_trials": len(tuned.result.trials),
        "n_failed": tuned.result.n_failed,
        "tune_seconds": t1 - t0,
        "final_seconds": time.perf_counter() - t1,
        "final": final.info,
    }
    return ReconResult(image=final.image, method="bilevel", config=asdict(cfg), info=info)


@register(
    "bilevel",
    BilevelConfig,
    ("mri", "ct"),
    "scan-specific INR whose lr, weight decays, loss delta and hash scale are tuned per scan by Bayesian "
    "optimisation of a held-out k-space/sinogram loss (20 random + 40 guided trials), then refitted on all data",
)
def _bilevel(scan, cfg: BilevelConfig, *, show_progress=None, checkpoint_dir=None) -> ReconResult:
    return reconstruct_bilevel(scan, cfg, show_progress=show_progress, checkpoint_dir=checkpoint_dir)


# --- hyperparameter files -------------------------------------------------------------------------------------
def save_hparams(path: str | os.PathLike, result: Tuned | ReconResult, protocol: dict) -> Path:
    """Write tuned hyperparameters (module docstring) atomically; ``result`` from :func:`tune_method`,
    :func:`tune_bilevel` or the ``bilevel`` method. Returns the path."""
    if isinstance(result, Tuned):
        rec = {
            "method": result.method,
            "hparams": result.hparams,
            "tuned": result.h,
            "score": result.score,
            "oracle": result.oracle,
            "trials": len(result.result.trials),
        }
    elif isinstance(result, ReconResult) and "hparams" in result.info:
        i = result.info
        rec = {
            "method": i.get("tuned_method", "ngp"),
            "hparams": i["hparams"],
            "tuned": i.get("tuned_h"),
            "score": i.get("score"),
            "oracle": bool(i.get("oracle", False)),
            "trials": i.get("n_trials"),
        }
    else:
        raise InreconError(
            f"cannot save hyperparameters from a {type(result).__name__}",
            "pass the result of tune_method / tune_bilevel or of the bilevel method",
        )
    rec["protocol"] = dict(protocol)
    rec["created"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    rec["inrecon_version"] = __version__
    path = Path(path)
    with atomic_path(path, suffix=".json") as tmp:
        tmp.write_text(json.dumps(rec, indent=2, default=str) + "\n")
    return path


def load_hparams(path: str | os.PathLike) -> dict:
    """Read a file written by :func:`save_hparams` (checked: a JSON object with ``method`` and ``hparams``)."""
    p = Path(path)
    if not p.is_file():
        raise InreconError(
            f"hyperparameter file {str(p)!r} does not exist", "check the path (from `inrecon tune`)"
        )
    try:
        data = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InreconError(
            f"hyperparameter file {str(p)!r} is not valid JSON ({exc.__class__.__name__})",
            "give the file written by `inrecon tune`",
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("hparams"), dict) or "method" not in data:
        raise InreconError(
            f"{str(p)!r} is not a hyperparameter file (needs 'method' and an 'hparams' object)",
            "give the file written by `inrecon tune`",
        )
    return data


def protocol_mismatches(record: dict, scan) -> list[str]:
    """Differences between the protocol an hparams ``record`` was tuned on and ``scan``'s (empty if none)."""
    want, have = record.get("protocol", {}), scan_protocol(scan)
    out = []
    for k in ("modality", "image_shape", "sampling", "coils", "geometry", "views"):
        if k in want and k in have and want[k] != have[k]:
            out.append(f"{k}: tuned on {want[k]}, scan has {have[k]}")
    a, b = want.get("acceleration"), have.get("acceleration")
    if a and b and abs(a - b) / a > 0.1:
        out.append(f"acceleration: tuned on {a}, scan has {b}")
    return out
