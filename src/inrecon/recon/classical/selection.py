"""Choosing a regularisation weight (or an iteration count) without a reference: the hold-out loss.

The measurement's samples are split with the library's one split (:meth:`Measurement.split`: seeded, pointwise
over units, 20 % held out by default, the calibration region part of the draw). A reconstruction from the
training part is scored on the samples it never saw, ``||A_val x - y_val||^2 / ||y_val||^2``; the candidate
with the smallest loss wins, and the method then reconstructs from all samples with it. The INR methods'
stopping rule (:mod:`inrecon.engine.holdout`) uses the same split.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch

from inrecon.errors import InreconError
from inrecon.physics.measurement import Measurement
from inrecon.progress import progress

__all__ = ["holdout_loss", "refine_weight", "select_along_path", "select_by_holdout"]


def holdout_loss(val: Measurement, image: torch.Tensor) -> float:
    """Relative validation error ``||A_val x - y_val||^2 / ||y_val||^2`` (a Python float)."""
    with torch.no_grad():
        r = val.predict(image) - val.y
        return float(r.abs().square().sum()) / max(float(val.y.abs().square().sum()), 1e-300)


def select_by_holdout(
    recon: Callable[[Measurement, Any], torch.Tensor],
    meas: Measurement,
    values: Sequence[Any],
    fraction: float = 0.2,
    seed: int = 0,
    show_progress: bool | None = None,
) -> tuple[Any, list[float]]:
    """The candidate whose reconstruction from the training part best predicts the held-out samples.

    ``recon(meas_train, value) -> image`` (in the measurement's domain and scale). Returns the winner and the
    held-out loss of every candidate (in the order of ``values``).
    """
    values = list(values)
    if not values:
        raise InreconError("no candidate values to select from", "pass at least one candidate")
    tr, va = meas.split(fraction, seed)
    train, val = meas.subset(tr), meas.subset(va)
    scores = [
        holdout_loss(val, recon(train, v)) for v in progress(values, desc="hold-out", show=show_progress)
    ]
    best = values[int(np.nanargmin(scores))] if not all(math.isnan(s) for s in scores) else values[0]
    return best, scores


def refine_weight(
    recon: Callable[[Measurement, float], torch.Tensor],
    meas: Measurement,
    candidates: list[float],
    refine: bool,
    fraction: float,
    seed: int,
    show_progress: bool | None,
) -> tuple[float, dict[float, float]]:
    """Hold-out over a log grid of ``candidates``, optionally refined half a grid step either side of the
    winner. Returns the weight and ``{weight: held-out loss}``."""
    best, scores = select_by_holdout(recon, meas, candidates, fraction, seed, show_progress)
    table = dict(zip(candidates, scores))
    if refine and len(candidates) > 1:
        i = candidates.index(best)
        ratio = candidates[min(i + 1, len(candidates) - 1)] / candidates[max(i - 1, 0)]
        half = ratio ** (0.25 if 0 < i < len(candidates) - 1 else 0.5)
        extra = [best / half, best * half]
        _, scores2 = select_by_holdout(recon, meas, extra, fraction, seed, show_progress)
        table.update(zip(extra, scores2))
        best = min(table, key=table.get)
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
