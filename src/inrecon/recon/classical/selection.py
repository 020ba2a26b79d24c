"""Choosing a regularisation weight (or an iteration count) without a reference: the hold-out loss.

The measurement's samples are split with the library's one split (:meth:`Measurement.split`: seeded, pointwise
over units, 20 % held out by default, the calibration region part of the draw). A reconstruction from the
training part is scored on the samples it never saw, ``||A_val x - y_val||^2 / ||y_val||^2``; the candidate
with the smallest loss wins (a weight grid is walked from its middle downhill, :func:`refine_weight`), and the
method then reconstructs from all samples with it. The INR methods'
stopping rule (:mod:`inrecon.engine.holdout`) uses the same split.
"""

from __future__ import annotations

import copy
import math
import weakref
from collections.abc import Callable, Iterable
from typing import Any, Literal

import torch

from inrecon.engine.holdout import unimodal_argmin
from inrecon.errors import InreconError
from inrecon.physics.measurement import Measurement
from inrecon.progress import progress
from inrecon.recon.classical.solvers import once_per_object

__all__ = [
    "Search",
    "holdout_loss",
    "holdout_parts",
    "refine_from_start",
    "refine_weight",
    "remember_choices",
    "remembered_choices",
    "select_along_path",
    "weight_by_holdout",
]

Search = Literal["walk", "grid"]
"""How a regularisation weight's hold-out visits its grid (:func:`refine_weight`)."""


def holdout_loss(val: Measurement, image: torch.Tensor) -> float:
    """Relative validation error ``||A_val x - y_val||^2 / ||y_val||^2`` (a Python float)."""
    with torch.no_grad():
        r = val.predict(image) - val.y
        return float(r.abs().square().sum()) / max(float(val.y.abs().square().sum()), 1e-300)


def holdout_parts(meas: Measurement, fraction: float, seed: int) -> tuple[Measurement, Measurement]:
    """The training and held-out measurements of the library's split (:meth:`Measurement.split`)."""
    tr, va = meas.split(fraction, seed)
    return meas.subset(tr), meas.subset(va)


def refine_weight(
    recon: Callable[[Measurement, float], torch.Tensor],
    meas: Measurement,
    candidates: list[float],
    refine: bool,
    fraction: float,
    seed: int,
    show_progress: bool | None,
    search: Search = "walk",
    parts: tuple[Measurement, Measurement] | None = None,
) -> tuple[float, dict[float, float]]:
    """The hold-out's weight among ``candidates`` (an ascending log grid), optionally refined half a grid step
    either side of the winner. Returns the weight and ``{weight: held-out loss}`` of every weight solved.
    ``parts``: the split's training and held-out measurements (:func:`holdout_parts` of ``meas``, ``fraction``
    and ``seed``) where the caller already has them, so that what it cached per part is found again.

    ``search="grid"`` solves at every candidate; ``"walk"`` takes the held-out loss as unimodal in the weight
    (:func:`~inrecon.engine.holdout.unimodal_argmin`: from the middle candidate downhill, stopping at the first
    rise) and solves at 3-4 of a 5-weight grid: the same choice wherever the loss is unimodal over the grid."""
    if search not in ("walk", "grid"):
        raise InreconError(f"unknown weight search {search!r}", "use 'walk' or 'grid'")
    if not candidates:
        raise InreconError("no candidate weights to select from", "pass at least one candidate")
    train, val = parts if parts is not None else holdout_parts(meas, fraction, seed)
    table: dict[float, float] = {}
    bar = progress(
        total=None if search == "walk" else len(candidates) + 2 * refine, desc="hold-out", show=show_progress
    )

    def score(w: float) -> float:
        if w not in table:
            table[w] = holdout_loss(val, recon(train, w))
            if bar is not None:
                bar.update(1)
        return math.inf if math.isnan(table[w]) else table[w]

    if search == "walk":
        i = unimodal_argmin(lambda k: score(candidates[k]), len(candidates))
    else:
        i = min(range(len(candidates)), key=lambda k: score(candidates[k]))
    best = candidates[i]
    if refine and len(candidates) > 1:
        ratio = candidates[min(i + 1, len(candidates) - 1)] / candidates[max(i - 1, 0)]
        half = ratio ** (0.25 if 0 < i < len(candidates) - 1 else 0.5)
        best = min((best / half, best, best * half), key=score)
    if bar is not None:
        bar.close()
    return best, {float(k): float(v) for k, v in sorted(table.items())}


def select_along_path(
    path: Callable[[Measurement, Callable[[Any, torch.Tensor], None]], Iterable | None],
    meas: Measurement,
    fraction: float = 0.2,
    seed: int = 0,
) -> tuple[Any, dict[Any, float]]:
    """Hold-out selection along one solver run (e.g. the iterates of CG: value = iteration count).

    ``path(meas_train, report)`` runs once on the training part and calls ``report(value, image)`` for every
    point of its path; each image is scored at once (nothing is stored). Returns the best value and
    ``{value: loss}``.
    """
    tr, va = meas.split(fraction, seed)
    train, val = meas.subset(tr), meas.subset(va)
    scores: dict[Any, float] = {}

    def report(value: Any, image: torch.Tensor) -> None:
        scores[value] = holdout_loss(val, image)

    path(train, report)
    if not scores:
        raise InreconError(
            "the solver path reported no candidate", "check that path calls report(value, image)"
        )
    best = min(scores, key=lambda k: (math.isnan(scores[k]), scores[k]))
    return best, scores


def weight_by_holdout(
    recon: Callable[[Measurement, float], torch.Tensor],
    meas: Measurement,
    candidates: Iterable[float],
    cfg: Any,
    show_progress: bool | None,
    parts: tuple[Measurement, Measurement] | None = None,
) -> tuple[float, dict[float, float]]:
    """:func:`refine_weight` over ``candidates`` (sorted here) with a classical config's hold-out settings:
    ``cfg.refine``, ``cfg.holdout_fraction``, ``cfg.seed`` and ``cfg.search``."""
    cands = sorted(float(c) for c in candidates)
    return refine_weight(
        recon, meas, cands, cfg.refine, cfg.holdout_fraction, cfg.seed, show_progress, cfg.search, parts
    )


def refine_from_start(
    meas: Measurement,
    start: Callable[[Measurement, float], torch.Tensor],
    start_candidates: Iterable[float],
    refine: Callable[[Measurement, torch.Tensor, float, bool | None], torch.Tensor],
    cfg: Any,
    show_progress: bool | None,
    final: bool = True,
) -> tuple[torch.Tensor | None, dict]:
    """A reconstruction refined from a TV start, each weight by hold-out, the start kept where the refinement
    does not predict the held-out samples better: the plug-and-play methods (a denoiser's noise level).

    ``start(part, w)``: TV's reconstruction of a measurement (all samples, or a training part) at weight ``w``;
    ``refine(part, x0, v, show)``: the refinement of ``x0`` at noise level ``v``. ``cfg`` carries ``start_tv``
    (a weight, or ``"auto"``: the hold-out over ``start_candidates``), ``lam`` (a noise level, or ``"auto"``:
    the hold-out over ``cfg.lam_candidates``) and :func:`weight_by_holdout`'s settings: one split for both, so
    the held-out losses compare.

    Returns the image and ``info``: ``start_tv``, ``start_holdout_scores``, ``holdout_scores``, ``lam`` (None
    where the start was kept) and ``denoiser_used`` (False where, with ``lam="auto"``, no noise level beat the
    start's held-out loss: the image is then the start's). ``final=False`` stops after the choices and returns
    ``None`` for the image: what an INR's denoiser prior takes from the classical method
    (:mod:`inrecon.engine.splitting`)."""
    # one split for every search, and TV cached per part and weight: the noise levels refine the very image the
    # start's search solved on that part
    parts = holdout_parts(meas, cfg.holdout_fraction, cfg.seed)
    start = once_per_object(start)
    if cfg.start_tv == "auto":
        start_w, start_scores = weight_by_holdout(start, meas, start_candidates, cfg, show_progress, parts)
    else:
        start_w, start_scores = float(cfg.start_tv), None
    start_image = lambda m: start(m, start_w)  # noqa: E731
    info: dict = {"start_tv": start_w, "start_holdout_scores": start_scores}
    refined = True
    if cfg.lam == "auto":
        if start_scores is None:  # a fixed start: its held-out loss only, for the guard
            start_scores = weight_by_holdout(start, meas, [start_w], cfg, show_progress, parts)[1]
            info["start_holdout_scores"] = start_scores
        v, info["holdout_scores"] = weight_by_holdout(
            lambda part, w: refine(part, start_image(part), w, False),
            meas,
            cfg.lam_candidates,
            cfg,
            show_progress,
            parts,
        )
        refined = min(info["holdout_scores"].values()) < start_scores[start_w]
    else:
        v = float(cfg.lam)
    info.update(lam=v if refined else None, denoiser_used=refined)
    if not final:
        return None, info
    x = refine(meas, start_image(meas), v, show_progress) if refined else start_image(meas)
    return x, info


# The hold-out choices of the last few (scan, settings) pairs, newest last: the quality suite and the demo run
# ``pnp`` and then NGP, whose denoiser prior asks for the same noise level, on the very same scan object.
_REMEMBER = 4
_CHOICES: list[tuple[weakref.ref, str, dict]] = []


def remembered_choices(scan: Any, settings: str) -> dict | None:
    """A copy of the choices :func:`remember_choices` stored for this scan object (by identity, while it lives)
    and ``settings`` (e.g. the method's config as text), or ``None``. Scans are not changed in place (the
    library never does), so the same object means the same data."""
    for ref, key, info in reversed(_CHOICES):
        if ref() is scan and key == settings:
            return copy.deepcopy(info)
    return None


def remember_choices(scan: Any, settings: str, info: dict) -> None:
    """Keep ``info`` (a hold-out search's choices) for :func:`remembered_choices` on this scan object and
    ``settings``; the oldest of more than a few entries, and those of scans that no longer exist, are dropped."""
    _CHOICES[:] = [e for e in _CHOICES if e[0]() is not None and not (e[0]() is scan and e[1] == settings)]
    _CHOICES.append((weakref.ref(scan), settings, copy.deepcopy(info)))
    del _CHOICES[:-_REMEMBER]
