"""The reference-free stopping rule every INR method uses, and the trial score of the bilevel tuner.

An INR fitted long enough to one scan fits its noise. Stage 1 trains a fresh model on the *train* part of the
measurement's seeded hold-out split (:meth:`~inrecon.physics.measurement.Measurement.split`) and follows the
loss on the held-out part, which the same forward pass predicts for free; it stops ``patience`` steps after the
held-out loss last improved. Its best step ``s*`` answers "how long should this model be fitted to this scan".
Stage 2 (``final="refit"``) trains a fresh model on *all* samples for ``s*`` steps; ``final="restore"``
instead keeps stage 1's weights at ``s*`` (half the cost, 20 % less data). Both stages checkpoint, and a
finished stage 1 is remembered, so a killed run resumes where it was.

Every fit of a method goes through :func:`fit_model` (one call of :func:`~inrecon.engine.trainer.train` with
the standard callbacks); :func:`fit_with_holdout` is the two-stage rule; :func:`score_trial` is one bilevel
trial (stage 1 only, scored by its best held-out loss, or by PSNR against the reference in oracle mode).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Annotated, Literal, Protocol

import torch

from inrecon.config import Fraction, InRange, NonNegInt, PosFloat, PosInt, Probability
from inrecon.data.atomic import atomic_path
from inrecon.engine.callbacks import Evaluate, HoldOut, Progress, Settle
from inrecon.engine.checkpoint import config_fingerprint
from inrecon.engine.fit import FitTask, Model, evaluator
from inrecon.engine.losses import LossConfig, LossKind
from inrecon.engine.regularizers import PriorConfig, make_prior, prior_scale
from inrecon.engine.trainer import Checkpoint, MonitorConfig, OptimConfig, Run, train
from inrecon.errors import InreconError
from inrecon.physics.measurement import Measurement, MeasurementConfig
from inrecon.physics.mri import phase_roughness, smooth_phase

__all__ = [
    "Candidate",
    "FitConfig",
    "FitSettings",
    "StopConfig",
    "data_identity",
    "fit_model",
    "fit_with_holdout",
    "measurement_prior",
    "resolve_prior",
    "score_trial",
    "unimodal_argmin",
]


@dataclass
class StopConfig:
    """The reference-free stopping rule (module docstring)."""

    rule: Literal["holdout", "none"] = "holdout"
    """holdout: choose the step count on a held-out split, then refit; none: run optim.steps on all samples."""
    fraction: Fraction = 0.2
    """Share of the acquired units held out."""
    patience: NonNegInt = 300
    """Stop stage 1 this many steps after the held-out loss last improved (0: never stop early)."""
    final: Literal["refit", "restore"] = "refit"
    """refit: train a fresh model on all samples for the chosen steps; restore: keep stage 1's best weights."""
    val_loss: LossKind = "mse"
    """Loss on the held-out samples."""
    val_delta: PosFloat = 1e-4
    """delta of a self-weighted held-out loss."""
    val_weight: Literal["none", "density"] = "none"
    """Weight of each held-out sample's term: none (every sample alike), or density (MRI: the k-space area the
    sample stands for, :attr:`~inrecon.physics.measurement.Measurement.density`, so that the held-out loss
    estimates the image's squared error, by Parseval, rather than the error where samples lie densely; CT and
    volumes have no such weights and score as with none)."""
    min_steps: PosInt = 50
    """Never stop stage 1 before this many steps."""
    smooth: Annotated[float, InRange(0.0, 1.0, hi_open=True)] = 0.0
    """Read the best step and the patience off an exponential moving average of the per-step held-out losses
    with this factor (:class:`~inrecon.engine.callbacks.HoldOut`; 0.9: a memory of about 10 steps) instead of the
    raw losses (0), so that one lucky low of a curve that oscillates at a high learning rate cannot end stage 1;
    the candidates' scores (prior weights, backbones, bilevel trials) are then the lowest average too. Not the
    default: on MRI it chose worse (benchmarks/RESULTS.md, stop 43) -- where the held-out loss is flat or rises
    for a while although the image still improves, the raw curve's lucky lows are what carry the rule on."""
    settle: Annotated[float, InRange(0.0, 1.0, hi_open=True)] = 0.1
    """The final fit (refit, or rule none) keeps the weights of its lowest-training-loss step among its last
    settle of steps instead of the last step's (:class:`~inrecon.engine.callbacks.Settle`: a fit may otherwise end
    on one of Adam's loss spikes); 0: the last step's weights. Not for volumes (their steps see coordinate
    batches, whose losses are not comparable)."""
    min_chosen: Probability = 0.05
    """Smallest step count the rule may choose, as a fraction of optim.steps: a held-out minimum within the
    first min_chosen of the budget (a scan too small or too noisy to fit, or a learning rate too high) is
    distrusted -- a warning is issued, recorded as holdout.warning, and min_chosen * optim.steps steps are run
    instead. 0 accepts any step."""


@dataclass
class FitConfig:
    """The sections every scan fit's config has (NGP, SAX-NeRF, the population methods' adaptation); a method's
    config subclasses it, adds its network and overrides the defaults it differs in."""

    optim: OptimConfig = field(default_factory=OptimConfig)
    """Adam, step decay, weight decay of the encoding (wd_enc) and of the decoder (wd_mlp)."""
    loss: LossConfig = field(default_factory=LossConfig)
    """The data term."""
    stop: StopConfig = field(default_factory=StopConfig)
    """The reference-free stopping rule."""
    prior: PriorConfig = field(default_factory=PriorConfig)
    """Explicit image priors added to the data term."""
    data: MeasurementConfig = field(default_factory=MeasurementConfig)
    """Coil maps (MRI), the data weighting and the hold-out unit (CT)."""
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    """Evaluation, checkpoint and sync intervals."""
    seed: int = 0
    """Seeds the initial weights and the hold-out split."""


class FitSettings(Protocol):
    """The sections a method config gives a fit (every INR method's config has them)."""

    optim: OptimConfig
    loss: LossConfig
    stop: StopConfig
    monitor: MonitorConfig
    prior: PriorConfig
    seed: int


def data_identity(meas: Measurement) -> list:
    """A cheap identity of the data for checkpoint fingerprints."""
    return [list(meas.y.shape), float(meas.y.abs().sum())]


def measurement_prior(meas: Measurement, cfg: PriorConfig):
    """``image -> penalty`` of ``cfg`` with relative weights scaled for ``meas`` (``None`` without a prior).

    The phase term's smooth phase comes from the zero-filled image ``A^H y`` of all the scan's samples, in a
    hold-out stage too: like the coil maps, it is a calibration read off the densely sampled centre of k-space,
    and one read from the training samples alone (a fifth of the centre missing at random) is noisy enough to
    make the phase prior look worse on held-out samples than no prior where it gains 2.6 dB
    (benchmarks/RESULTS.md, stop 51).
    """
    if cfg.tv == 0 and cfg.wavelet == 0 and cfg.phase == 0:
        return None
    if cfg.phase > 0 and not meas.complex_image:
        raise InreconError(
            f"prior.phase={cfg.phase} needs a complex image (MRI), but this scan's images are real",
            "set prior.phase=0 for CT and real-valued volumes",
        )
    phase_reference = None
    with torch.no_grad():
        aty = meas.image_adjoint(meas.y)
        scale = prior_scale(math.prod(meas.image_shape), meas.n_samples, aty)
        if cfg.phase > 0:
            phase_reference = smooth_phase(aty, len(meas.image_shape), cfg.phase_width)
    if cfg.noise_reference is not None and meas.noise is not None:
        scale *= meas.noise / cfg.noise_reference
    return make_prior(cfg, meas.image_shape, scale, phase_reference)


def fit_model(
    meas: Measurement,
    model: Model,
    cfg: FitSettings,
    *,
    steps: int | None = None,
    train_idx: torch.Tensor | None = None,
    val_idx: torch.Tensor | None = None,
    patience: int = 0,
    restore_best: bool = False,
    settle: float = 0.0,
    evaluate: bool = True,
    checkpoint: Checkpoint | None = None,
    show_progress: bool | None = None,
    desc: str = "fit",
    batch_size: int = 2**18,
    optim: OptimConfig | None = None,
) -> tuple[Run, HoldOut | None]:
    """One training run of ``model`` on ``meas`` with the standard callbacks.

    Trains on ``train_idx`` (default all samples) for ``steps`` (default ``cfg.optim.steps``); with
    ``val_idx`` tracks the held-out loss (early stop after ``patience``, ``restore_best``); evaluates against
    the reference every ``cfg.monitor.eval_every`` steps when the scan has one and ``evaluate``.
    """
    optim = replace(optim or cfg.optim, steps=steps or (optim or cfg.optim).steps)
    task = FitTask(
        model,
        meas,
        cfg.loss,
        train=train_idx,
        prior=measurement_prior(meas, cfg.prior),
        batch_size=batch_size,
        seed=cfg.seed,
    )
    callbacks = []
    hold = None
    if val_idx is not None:
        s = cfg.stop
        hold = HoldOut(
            val_idx,
            meas.y,
            kind=s.val_loss,
            delta=s.val_delta * meas.peak**2,
            patience=patience,
            min_steps=s.min_steps,
            restore_best=restore_best,
            smooth=s.smooth,
            weight=meas.density if s.val_weight == "density" else None,
        )
        callbacks.append(hold)
    if settle > 0 and not meas.pointwise:
        callbacks.append(Settle(optim.steps - max(1, math.ceil(settle * optim.steps))))
    ev = evaluator(meas) if evaluate else None
    if ev is not None:
        callbacks.append(Evaluate(ev, cfg.monitor.eval_every))
    callbacks.append(Progress(desc, show_progress))
    run = train(
        task,
        optim,
        callbacks,
        checkpoint=checkpoint,
        sync_every=cfg.monitor.sync_every,
        cuda_graph=cfg.monitor.cuda_graph,
    )
    return run, hold


def _summary(run: Run, hold: HoldOut) -> dict:
    return {
        "best_step": hold.best_step,
        "best_val_loss": None if hold.best_step is None else hold.best_val,
        "steps_run": run.step,
        "stopped_early": hold.stopped_early,
        "seconds": run.seconds,
        "history": run.history,
    }


@dataclass
class _Stages:
    """The runs of one :func:`fit_with_holdout`: where they checkpoint and how they are labelled."""

    meas: Measurement
    cfg: FitSettings
    ckdir: Path | None
    base: dict
    show_progress: bool | None
    desc: str
    batch_size: int

    def run(self, model: Model, name: str, steps: int, **kw) -> tuple[Run, HoldOut | None]:
        ck = None
        if self.ckdir is not None:
            fp = config_fingerprint({**self.base, "stage": name, "steps": steps})
            ck = Checkpoint(self.ckdir / f"{name}.pt", fp, self.cfg.monitor.checkpoint_every)
        return fit_model(
            self.meas,
            model,
            self.cfg,
            steps=steps,
            checkpoint=ck,
            show_progress=self.show_progress,
            desc=f"{self.desc} {name}",
            batch_size=self.batch_size,
            **kw,
        )

    def choose_steps(self, build: Callable[[], Model]) -> tuple[int, dict, Model | None, Run | None]:
        """Stage 1: the chosen step count and its record, plus the stage-1 model and run (``None`` when a
        finished stage 1 was read back from the checkpoint directory)."""
        stop = self.cfg.stop
        summary = self.ckdir / "holdout.json" if self.ckdir else None
        fp1 = config_fingerprint({**self.base, "stage": "holdout"})
        if summary is not None and summary.exists() and stop.final == "refit":
            s1 = json.loads(summary.read_text())
            if s1.get("fingerprint") != fp1:
                raise InreconError(
                    f"{summary} belongs to another run", "use another --checkpoint-dir or delete it"
                )
            return s1["chosen_steps"], s1["info"], None, None
        train_idx, val_idx = self.meas.split(stop.fraction, self.cfg.seed)
        model = build()
        r1, hold = self.run(
            model,
            "holdout",
            self.cfg.optim.steps,
            train_idx=train_idx,
            val_idx=val_idx,
            patience=stop.patience,
            restore_best=stop.final == "restore",
        )
        # the held-out loss of step s is scored on the weights after s updates: refit s updates
        chosen, record = _floor_chosen(max(1, hold.best_step or 0), _summary(r1, hold), self.cfg)
        if summary is not None and stop.final == "refit":
            with atomic_path(summary, suffix=".json") as tmp:
                tmp.write_text(json.dumps({"fingerprint": fp1, "chosen_steps": chosen, "info": record}))
        return chosen, record, model, r1


def _floor_chosen(chosen: int, record: dict, cfg: FitSettings) -> tuple[int, dict]:
    """``stop.min_chosen``: a chosen step in the first ``min_chosen`` of the budget is raised to that floor,
    with a warning (also kept in ``record["warning"]``)."""
    floor = math.ceil(cfg.stop.min_chosen * cfg.optim.steps)
    if chosen >= floor:
        return chosen, record
    msg = (
        f"the hold-out rule chose step {chosen} of {cfg.optim.steps} (the held-out loss was lowest almost at "
        f"once: too few samples or coils, too few steps, or a too high learning rate); running {floor} steps "
        f"(stop.min_chosen={cfg.stop.min_chosen:g} of the budget) instead"
    )
    warnings.warn(msg, UserWarning, stacklevel=3)
    return floor, {**record, "warning": msg, "rule_chose": chosen}


def unimodal_argmin(score: Callable[[int], float], n: int) -> int:
    """The index ``i`` in ``range(n)`` of the lowest ``score(i)``, taking the scores as unimodal in ``i``: start
    at the middle index, walk towards higher indices while the score falls and, if the first step that way is
    no better, towards lower ones; stop at the first rise. ``score`` may be called again for an index it has
    already scored (cache in it what is expensive); NaN counts as no better than anything. Every hold-out
    search over an ordered grid of weights uses it (the INR methods' prior weight, the classical methods'
    regularisation weight), so that a scan skips the grid's far end instead of solving at every weight."""
    if n < 1:
        raise InreconError("no candidates to search", "pass at least one candidate")

    def value(i: int) -> float:
        v = score(i)
        return math.inf if math.isnan(v) else v

    best = middle = n // 2
    value(middle)
    for direction in (1, -1):
        i = best + direction
        while 0 <= i < n and value(i) < value(best):
            best, i = i, i + direction
        if best != middle:
            break
    return best


def _choose_prior(meas, build, cfg, ckdir, base, show_progress, desc, batch_size):
    """``prior.tv="auto"`` and/or ``prior.phase="auto"``: one hold-out stage per candidate setting tried; the
    settings with the lowest held-out loss, their stage-1 result, the table of the candidates tried (``{weight:
    best held-out loss}`` for one auto term, ``{"tv=0.001": loss, ...}`` for two), and the scan's phase roughness
    (``prior.phase="auto"``, else ``None``).

    The held-out loss is taken as unimodal in a term's weight (it was on every scan where all candidates were
    scored, benchmarks/RESULTS.md): :func:`unimodal_argmin` over the candidates strongest first, i.e. from the
    middle candidate towards weaker weights while the loss falls, else towards stronger ones, stopping at the
    first rise. Noisy scans then skip the weakest weights' long fits, and noise-free ones the strongest weights'.
    With both terms auto, each term's candidates are searched this way with the other term off (the setting
    with both off is fitted once), and the lowest loss of either search wins: the two priors are alternatives,
    not a product grid; with ``prior.combine`` the TV search runs with the phase weight the phase search chose
    instead (coordinate-wise, not a product grid either). A phase prior on a scan whose phase is smooth
    (``prior.phase_smooth_below``) takes the strongest phase candidate without a search."""
    terms = cfg.prior.auto_terms()
    roughness = None
    searches = []
    for term in terms:
        order = sorted({float(w) for w in getattr(cfg.prior, f"{term}_candidates")}, reverse=True)
        if term == "phase" and cfg.prior.phase_smooth_below > 0:
            with torch.no_grad():
                roughness = phase_roughness(
                    meas.image_adjoint(meas.y), len(meas.image_shape), cfg.prior.phase_width
                )
            if roughness < cfg.prior.phase_smooth_below:
                order = order[:1]
        searches.append((term, order))
    table: dict = {}
    tried: dict[tuple, tuple] = {}

    def score(setting: dict[str, float]) -> float:
        key = tuple(setting[t] for t in terms)
        if key not in tried:
            name = "_".join(f"{t}{setting[t]:g}" for t in terms)
            c = replace(cfg, prior=replace(cfg.prior, **setting))
            sub = ckdir / name if ckdir else None
            label = " ".join(f"{t}={setting[t]:g}" for t in terms)
            stages = _Stages(meas, c, sub, {**base, **setting}, show_progress, f"{desc} {label}", batch_size)
            chosen, record, model, run = stages.choose_steps(build)
            table[key[0] if len(terms) == 1 else label.replace(" ", ",")] = record["best_val_loss"]
            loss = math.inf if record["best_val_loss"] is None else record["best_val_loss"]
            tried[key] = (loss, c, stages, chosen, record, model, run)
        return tried[key][0]

    fixed = {t: 0.0 for t in terms}  # the other terms' weights while one term is searched
    for term, order in searches:
        at = unimodal_argmin(
            lambda i, term=term, order=order, fixed=dict(fixed): score({**fixed, term: order[i]}), len(order)
        )
        if cfg.prior.combine:
            fixed[term] = order[at]
    # the first of equal losses (the order they were fitted in), NaN never best: what each walk itself keeps
    best = min(tried.values(), key=lambda found: math.inf if math.isnan(found[0]) else found[0])
    return best[1:], table, roughness


def resolve_prior(
    meas: Measurement,
    build: Callable[[], Model],
    cfg: FitSettings,
    *,
    show_progress: bool | None = None,
    desc: str = "prior",
) -> FitSettings:
    """``cfg`` with its ``"auto"`` prior weights (``prior.tv``, ``prior.phase``) replaced by the weights the
    hold-out rule chooses (as in :func:`fit_with_holdout`), or ``cfg`` itself when the weight is already a
    number. For runs that fix the weight once before many fits: the trials of bilevel tuning (not
    checkpointed: a resumed tuning run chooses again, identically)."""
    if not cfg.prior.is_auto():
        return cfg
    base = {"run": "resolve_prior", "data": data_identity(meas)}
    (c, *_), _, _ = _choose_prior(meas, build, cfg, None, base, show_progress, desc, 2**18)
    return c


@dataclass
class Candidate:
    """One alternative setting of a fit for the hold-out rule to choose between (:func:`fit_with_holdout`'s
    ``alternatives``): a label, its settings and a builder of its fresh model. Its settings must keep the
    measurement, the split (``stop.fraction``, ``seed``) and the held-out loss (``stop.val_loss``) of the main
    settings, so that every candidate is scored on the same held-out samples in the same units."""

    label: str
    cfg: FitSettings
    build: Callable[[], Model]


def _choose_steps(meas, build, cfg, ckdir, base, show_progress, desc, batch_size, info):
    """The hold-out stage(s) of one setting: an ``"auto"`` prior weight's search (its choice and scores into
    ``info``) or one stage. Returns ``(cfg, stages, chosen, record, model, run)``."""
    if cfg.prior.is_auto():
        found, info["prior_scores"], roughness = _choose_prior(
            meas, build, cfg, ckdir, base, show_progress, desc, batch_size
        )
        for term in cfg.prior.auto_terms():
            info[f"prior_{term}"] = getattr(found[0].prior, term)
        if roughness is not None:
            info["phase_roughness"] = roughness
        return found
    stages = _Stages(meas, cfg, ckdir, base, show_progress, desc, batch_size)
    return (cfg, stages, *stages.choose_steps(build))


def _check_alternatives(meas: Measurement, cfg: FitSettings, alternatives, label: str) -> None:
    labels = [label] + [c.label for c in alternatives]
    if len(set(labels)) != len(labels):
        raise InreconError(f"candidate labels must differ, got {labels}", "label every candidate once")
    if cfg.stop.rule != "holdout" or meas.pointwise:
        raise InreconError(
            f"choosing between {labels} needs the hold-out rule (stop.rule=holdout, a measured scan)",
            "keep one candidate, or use stop.rule=holdout on an MRI or CT scan",
        )
    for c in alternatives:
        for name in ("fraction", "val_loss", "val_delta", "val_weight", "smooth", "rule"):
            if getattr(c.cfg.stop, name) != getattr(cfg.stop, name):
                raise InreconError(
                    f"candidate {c.label!r} has stop.{name}={getattr(c.cfg.stop, name)!r}, the main setting "
                    f"{getattr(cfg.stop, name)!r}: their held-out losses would not be comparable",
                    f"give every candidate the same stop.{name}",
                )
        if c.cfg.seed != cfg.seed:
            raise InreconError(
                f"candidate {c.label!r} has seed {c.cfg.seed}, the main setting {cfg.seed}: another hold-out split",
                "give every candidate the same seed",
            )


def fit_with_holdout(
    meas: Measurement,
    build: Callable[[], Model],
    cfg: FitSettings,
    *,
    run_id: dict,
    checkpoint_dir: str | Path | None = None,
    show_progress: bool | None = None,
    desc: str = "INR",
    batch_size: int = 2**18,
    alternatives: tuple[Candidate, ...] = (),
    label: str = "main",
) -> tuple[torch.Tensor, dict, Model]:
    """Fit with the stopping rule of ``cfg.stop`` (module docstring); pointwise measurements (volumes) always
    run ``cfg.optim.steps`` on all samples. ``cfg.prior.tv="auto"`` (and/or ``prior.phase``) runs the hold-out
    stage once per candidate weight tried and keeps the one with the lowest held-out loss
    (``info["prior_tv"]`` and/or ``info["prior_phase"]``, ``info["prior_scores"]``); with ``stop.rule="none"``
    those stages choose the weight only, and the fit then runs ``cfg.optim.steps``.

    ``alternatives`` (:class:`Candidate`) are other settings and models of the same fit, e.g. other network
    backbones: each runs its own hold-out stage(s) on the same split, the setting with the lowest held-out loss
    (``label`` names the main one) is the only one refitted (``info["candidate"]``, ``info["candidate_scores"]``
    ``{label: best held-out loss}``).

    Returns ``(image, info, model)``: the image in the scan's units (``meas.finalize``), what was chosen and
    measured (``chosen_steps``, ``holdout``, ``history``, ``steps_run``, ``fit_seconds``), and the final model.
    """
    ckdir = Path(checkpoint_dir) if checkpoint_dir else None
    base = {"run": run_id, "data": data_identity(meas)}
    info: dict = {}
    if meas.pointwise and cfg.prior.is_auto():
        term = cfg.prior.auto_terms()[0]
        raise InreconError(
            f"prior.{term}=auto needs a hold-out split, and a volume fit has none",
            f"give a number for prior.{term} (or 0)",
        )
    if alternatives:
        _check_alternatives(meas, cfg, alternatives, label)
        scores: dict[str, float | None] = {}
        best = None
        for cand in (Candidate(label, cfg, build), *alternatives):
            sub = ckdir / cand.label if ckdir else None
            cinfo: dict = {}
            found = _choose_steps(
                meas,
                cand.build,
                cand.cfg,
                sub,
                {**base, "candidate": cand.label},
                show_progress,
                f"{desc} {cand.label}",
                batch_size,
                cinfo,
            )
            loss = found[3]["best_val_loss"]
            scores[cand.label] = loss
            loss = math.inf if loss is None else loss
            if best is None or loss < best[0]:
                best = (loss, cand, found, cinfo)
        _, cand, (cfg, stages, chosen, record, model, r), cinfo = best
        build = cand.build
        info.update(cinfo, candidate=cand.label, candidate_scores=scores)
    elif (cfg.stop.rule == "holdout" and not meas.pointwise) or cfg.prior.is_auto():
        # with stop.rule=none, an auto prior weight's hold-out stages only choose the weight (fit below)
        cfg, stages, chosen, record, model, r = _choose_steps(
            meas, build, cfg, ckdir, base, show_progress, desc, batch_size, info
        )
    if cfg.stop.rule == "none" or meas.pointwise:
        stages = _Stages(meas, cfg, ckdir, base, show_progress, desc, batch_size)
        model = build()
        r, _ = stages.run(model, "fit", cfg.optim.steps, settle=cfg.stop.settle)
    else:
        info.update(holdout=record, chosen_steps=chosen)
        if not (cfg.stop.final == "restore" and model is not None):
            model = build()
            r, _ = stages.run(model, "refit", chosen, settle=cfg.stop.settle)
    info.update(history=r.history, steps_run=r.step, fit_seconds=r.seconds, cuda_graph=r.graphed)
    if "settled_step" in r.history:
        info["settled_step"] = r.history["settled_step"]
    return meas.finalize(model.image()), info, model


def score_trial(
    meas: Measurement,
    model: Model,
    cfg: FitSettings,
    *,
    oracle: bool,
    split: tuple[torch.Tensor, torch.Tensor],
    show_progress: bool | None = None,
    desc: str = "trial",
) -> tuple[float, dict]:
    """One tuning trial: train ``model`` and score it (lower is better).

    Default: train on the split's training part with early stopping (``cfg.stop.patience``) and score the
    lowest held-out loss; its best step is the number of steps the final fit runs (``chosen_steps``). Oracle
    mode (evaluation only): train on all samples for ``cfg.optim.steps``, score ``-PSNR`` of the best evaluated
    step against the reference (the final fit then reproduces that image). ``info`` also holds ``best_step``,
    ``steps_run``, ``seconds``, the trial's ``prior_tv`` and ``prior_phase`` and, when the scan has a
    reference, ``psnr``.
    """
    ev = evaluator(meas)
    # the weight every trial of a search runs (the final fit fixes it)
    info: dict = {"prior_tv": cfg.prior.tv, "prior_phase": cfg.prior.phase}
    if oracle:
        run, _ = fit_model(meas, model, cfg, show_progress=show_progress, desc=f"oracle {desc}")
        pairs = [
            (p, s) for p, s in zip(run.history.get("psnr", []), run.history["eval_step"]) if math.isfinite(p)
        ]
        info.update(steps_run=run.step, seconds=run.seconds)
        if not pairs:
            return math.nan, info
        p, s = max(pairs, key=lambda ps: (ps[0], -ps[1]))
        info.update(best_step=s, chosen_steps=max(1, s), psnr=p)
        return -p, info
    train_idx, val_idx = split
    run, hold = fit_model(
        meas,
        model,
        cfg,
        train_idx=train_idx,
        val_idx=val_idx,
        patience=cfg.stop.patience,
        restore_best=ev is not None,
        evaluate=False,
        show_progress=show_progress,
        desc=desc,
    )
    info.update(
        best_step=hold.best_step,
        best_val=None if hold.best_step is None else hold.best_val,
        steps_run=run.step,
        stopped_early=hold.stopped_early,
        seconds=run.seconds,
    )
    if hold.best_step is None or not math.isfinite(hold.best_val):
        return math.nan, info
    # the held-out loss of step s is scored before that step's update: the weights after s updates
    info["chosen_steps"] = max(1, hold.best_step)
    if ev is not None:
        info["psnr"] = ev(model.image())["psnr"]
    return float(hold.best_val), info


def settings_dict(cfg: FitSettings) -> dict:
    """The fit-relevant sections of a config as a plain dict (for fingerprints)."""
    return {k: asdict(getattr(cfg, k)) for k in ("optim", "loss", "stop", "prior")} | {"seed": cfg.seed}
