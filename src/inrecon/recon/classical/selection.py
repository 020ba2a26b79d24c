"""Choosing a regularisation weight (or iteration count) without a reference: k-space hold-out.

The acquired samples are split at random, pointwise, into a training part (default 80 %) and a validation
part (20 %); the calibration region is part of the draw, like every other sample. A reconstruction from the
training part is scored on the validation samples it never saw:
``loss = ||A_val x - y_val||^2 / ||y_val||^2``. The candidate with the smallest loss wins; the method then
reconstructs from *all* samples with it. The bilevel INR method reuses exactly this split
(:func:`holdout_split`, :func:`split_scan`).

The reconstruction ``x`` must live in the domain of the scan's forward operator: with coil maps in
``scan.sens_maps`` one combined image ``image_shape``; without maps the coil images ``(C, *image_shape)``.
Methods that estimate maps attach them to the scan *before* splitting so both parts and the final
reconstruction share the same maps.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch

from inrecon.data.scans import MRIScan
from inrecon.errors import InreconError, ShapeError
from inrecon.physics.factory import build_operator
from inrecon.progress import progress

__all__ = [
    "holdout_loss",
    "holdout_split",
    "select_along_path",
    "select_by_holdout",
    "split_scan",
]


def holdout_split(
    mask_or_n_samples: torch.Tensor | np.ndarray | int, fraction: float = 0.2, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded pointwise random split of the acquired samples into training and validation parts.

    Parameters
    ----------
    mask_or_n_samples
        Cartesian: the sampling mask (bool or 0/1, any shape, e.g. ``(H, W)``); the draw is over its True
        positions (the fully sampled centre included). Non-Cartesian: the number of samples ``K``; the draw
        is over sample indices ``0 .. K-1`` (each trajectory point independently, not whole spokes).
    fraction
        Share of the acquired samples held out for validation, in (0, 1); ``round(fraction * n)`` samples.
    seed
        Seed of the draw (a CPU ``torch.Generator``, so the split is identical on every device).

    Returns
    -------
    train, val
        Disjoint bool tensors whose union is the acquired set: masks of the mask's shape on its device
        (Cartesian), or vectors ``(K,)`` (non-Cartesian).
    """
    if not (0.0 < float(fraction) < 1.0):
        raise InreconError(f"hold-out fraction is {fraction} but must lie in (0, 1)", "use e.g. fraction=0.2")
    if isinstance(mask_or_n_samples, int | np.integer):
        n_samples = int(mask_or_n_samples)
        if n_samples < 2:
            raise InreconError(f"cannot split {n_samples} sample(s)", "pass at least 2 samples")
        acquired = torch.ones(n_samples, dtype=torch.bool)
        device = torch.device("cpu")
    else:
        m = mask_or_n_samples
        m = torch.as_tensor(np.ascontiguousarray(m)) if isinstance(m, np.ndarray) else m
        if not isinstance(m, torch.Tensor):
            raise InreconError(
                f"holdout_split got a {type(m).__name__}", "pass a sampling mask or the number of samples"
            )
        if m.is_complex() or (m.dtype != torch.bool and not bool(((m == 0) | (m == 1)).all())):
            raise InreconError("the sampling mask holds values other than 0 and 1", "pass a boolean mask")
        device = m.device
        acquired = m.to(torch.bool).cpu()
    idx = acquired.reshape(-1).nonzero().reshape(-1)
    n = idx.numel()
    n_val = int(round(float(fraction) * n))
    if n_val < 1 or n_val >= n:
        raise InreconError(
            f"a hold-out fraction of {fraction} of {n} acquired samples leaves an empty part",
            "use more samples or a fraction between 1/n and 1 - 1/n",
        )
    gen = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(n, generator=gen)
    val = torch.zeros(acquired.numel(), dtype=torch.bool)
    val[idx[perm[:n_val]]] = True
    val = val.reshape(acquired.shape)
    train = acquired & ~val
    return train.to(device), val.to(device)


def split_scan(scan: MRIScan, fraction: float = 0.2, seed: int = 0) -> tuple[MRIScan, MRIScan]:
    """Split an MRI scan's acquired samples with :func:`holdout_split` into two scans.

    Cartesian: both scans keep the full grid, each with its own mask and k-space zeroed elsewhere.
    Non-Cartesian: the samples (and their trajectory points and density weights) are subset.
    Coil maps, target, ROI and provenance are carried over (provenance gains ``"holdout"``).

    Returns
    -------
    scan_train, scan_val
        :class:`~inrecon.data.scans.MRIScan` each.
    """
    if not isinstance(scan, MRIScan):
        raise InreconError(
            f"split_scan needs an MRIScan, got {type(scan).__name__}", "hold-out splitting is for MRI k-space"
        )
    parts = []
    if scan.is_cartesian:
        train, val = holdout_split(scan.mask, fraction, seed)
        for m, name in ((train, "train"), (val, "val")):
            k = scan.kspace * m.to(scan.kspace.device)
            prov = {**scan.provenance, "holdout": {"part": name, "fraction": fraction, "seed": seed}}
            parts.append(dataclasses.replace(scan, kspace=k, mask=m, provenance=prov))
    else:
        train, val = holdout_split(scan.kspace.shape[1], fraction, seed)
        for m, name in ((train, "train"), (val, "val")):
            sel = m.nonzero().reshape(-1).to(scan.kspace.device)
            prov = {**scan.provenance, "holdout": {"part": name, "fraction": fraction, "seed": seed}}
            parts.append(
                dataclasses.replace(
                    scan,
                    kspace=scan.kspace.index_select(1, sel),
                    trajectory=scan.trajectory.index_select(0, sel.to(scan.trajectory.device)),
                    dcf=None if scan.dcf is None else scan.dcf.index_select(0, sel.to(scan.dcf.device)),
                    provenance=prov,
                )
            )
    return parts[0], parts[1]


def holdout_loss(op_val, image: torch.Tensor, y_val: torch.Tensor) -> float:
    """Relative validation error ``||A_val x - y_val||^2 / ||y_val||^2`` (a Python float)."""
    dom = op_val.domain_shape
    if dom is not None and tuple(image.shape) != tuple(dom):
        raise ShapeError(
            f"the reconstruction has shape {tuple(image.shape)} but the scan's forward model expects {dom}",
            "reconstruct with the scan's own coil maps (attach them as scan.sens_maps before splitting)",
        )
    with torch.no_grad():
        r = op_val(image.to(y_val.dtype)) - y_val
        return float(r.abs().square().sum()) / max(float(y_val.abs().square().sum()), 1e-300)


def _val_op(scan_val: MRIScan):
    return build_operator(scan_val, scan_val.sens_maps)


def select_by_holdout(
    recon_fn: Callable[[MRIScan, Any], torch.Tensor],
    scan: MRIScan,
    values: Sequence[Any],
    fraction: float = 0.2,
    seed: int = 0,
    show_progress: bool | None = None,
) -> tuple[Any, list[float]]:
    """Pick the candidate whose reconstruction from the training part best predicts the held-out samples.

    Parameters
    ----------
    recon_fn
        ``recon_fn(scan_train, value) -> image`` in the domain of ``build_operator(scan)`` (see module doc).
    scan
        The full scan (with ``sens_maps`` when the reconstruction uses maps).
    values
        Candidate values (weights, iteration counts, ...), tried in order.
    fraction, seed
        The split, see :func:`holdout_split`.

    Returns
    -------
    best, scores
        The winning value and the validation loss of every candidate (same order as ``values``).
    """
    values = list(values)
    if not values:
        raise InreconError("no candidate values to select from", "pass at least one candidate")
    scan_train, scan_val = split_scan(scan, fraction, seed)
    op_val = _val_op(scan_val)
    scores = []
    for v in progress(values, desc="hold-out", show=show_progress):
        scores.append(holdout_loss(op_val, recon_fn(scan_train, v), scan_val.kspace))
    best = values[int(np.nanargmin(scores))] if not all(math.isnan(s) for s in scores) else values[0]
    return best, scores


def select_along_path(
    path_fn: Callable[[MRIScan, Callable[[Any, torch.Tensor], None]], Iterable | None],
    scan: MRIScan,
    fraction: float = 0.2,
    seed: int = 0,
) -> tuple[Any, dict[Any, float]]:
    """Hold-out selection along one solver run (e.g. the iterates of CG: value = iteration count).

    ``path_fn(scan_train, report)`` runs once on the training part and calls ``report(value, image)`` for
    every point of its path; each image is scored at once (nothing is stored), so choosing among hundreds of
    iterates costs one forward application each.

    Returns
    -------
    best, scores
        The value with the smallest validation loss and ``{value: loss}`` for every reported point.
    """
    scan_train, scan_val = split_scan(scan, fraction, seed)
    op_val = _val_op(scan_val)
    scores: dict[Any, float] = {}

    def report(value: Any, image: torch.Tensor) -> None:
        scores[value] = holdout_loss(op_val, image, scan_val.kspace)

    path_fn(scan_train, report)
    if not scores:
        raise InreconError(
            "the solver path reported no candidate", "check path_fn calls report(value, image)"
        )
    best = min(scores, key=lambda k: (math.isnan(scores[k]), scores[k]))
    return best, scores
