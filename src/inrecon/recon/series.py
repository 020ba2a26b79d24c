"""Residual learning for real-time MRI series (docs/methods.md section 4; Bilevel paper section 5.5).

Frame 0 (fully sampled or lightly undersampled) is fitted like one scan by the scan-specific INR (hold-out rule
or a given step count, ``ngp`` settings, e.g. tuned ones from ``inrecon tune``). Every later, undersampled frame
then fine-tunes the previous frame's weights for ``steps_frame`` steps (~500; a fresh Adam each frame), so that
only what changed (a needle advancing, a bolus) has to be learnt. ``mode="scratch"`` fits every frame
independently the way frame 0 is fitted (each with its own data scaling), for comparison. Residual frames
share frame 0's data scaling, so the INR's output units do not jump between frames; all frames share the coil
maps (the file's, else ESPIRiT on frame 0). Every fit runs through the one engine.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from inrecon.config import NonNegFloat, PosInt, config_to_dict
from inrecon.data.scans import SeriesScan
from inrecon.engine.holdout import fit_model, fit_with_holdout
from inrecon.physics.coils import coil_maps
from inrecon.physics.measurement import Measurement, measure
from inrecon.progress import progress
from inrecon.recon.inr.ngp import NGPConfig, field_model
from inrecon.recon.registry import DEFAULT_CONTEXT, Context, MethodSpec, ReconResult

__all__ = ["SERIES", "SeriesConfig", "reconstruct_series"]


@dataclass
class SeriesConfig:
    """Residual learning of a series: frame 0 (and every frame in ``scratch`` mode) is an ``ngp`` fit."""

    ngp: NGPConfig = field(default_factory=NGPConfig)
    """The scan-specific INR of frame 0 (its stopping rule, steps, patience)."""
    steps_frame: PosInt = 500
    """Fine-tuning steps of each later frame (the paper's 500)."""
    mode: Literal["residual", "scratch"] = "residual"
    """residual: fine-tune the previous frame's weights; scratch: fit every frame anew."""
    frame_stop: Literal["none", "holdout"] = "none"
    """none: run steps_frame; holdout: fine-tune on the train split, stop ngp.stop.patience steps after the
    held-out loss last improved, keep the best weights."""
    lr_frame: NonNegFloat = 0.0
    """Fine-tuning learning rate (0: ngp's lr)."""


def _frame(scan, cfg: NGPConfig, first: Measurement | None) -> Measurement:
    """A frame's measurement without its reference (metrics are computed outside the timed fit), optionally
    on the ``first`` frame's data scale (and its ``peak``, so a self-weighted ``delta`` means the same)."""
    m = dataclasses.replace(measure(scan, cfg.data), target=None)
    if first is not None:
        m.y, m.scale, m.peak = m.y * (m.scale / first.scale), first.scale, first.peak
    return m


def _metrics(image: torch.Tensor, frame) -> dict:
    if frame.target is None:
        return {}
    from inrecon.metrics import evaluate

    return evaluate(image, frame.target, roi=frame.roi, scale=True)


def reconstruct_series(scan: SeriesScan, cfg: SeriesConfig, ctx: Context = DEFAULT_CONTEXT) -> ReconResult:
    """Reconstruct a series (module docstring). ``image`` is complex64 ``(T, H, W)``; ``info["frames"]`` has one
    row per frame (``seconds``, ``steps``, ``first_loss``/``last_loss`` of its fit, ``best_step`` with a hold-out
    rule, metrics when targets exist), plus ``seconds_first``, ``seconds_per_frame`` and ``psnr_mean`` /
    ``ssim_mean`` over frames 1.. ."""
    t_all = time.perf_counter()
    maps = coil_maps(scan.frames[0], cfg.ngp.data.maps)
    frames = [dataclasses.replace(fr, sens_maps=maps) for fr in scan.frames]
    ngp = cfg.ngp
    first = None
    images, rows, model = [], [], None
    bar = progress(range(len(frames)), desc="series", show=ctx.show_progress)
    for t in bar:
        t0 = time.perf_counter()
        # residual frames share frame 0's output units; scratch frames are independent fits (own scaling)
        meas = _frame(frames[t], ngp, None if (t == 0 or cfg.mode == "scratch") else first)
        first = meas if t == 0 else first
        row: dict = {"frame": t}
        if t == 0 or cfg.mode == "scratch":
            image, info, model = fit_with_holdout(
                meas,
                lambda m=meas, c=ngp: field_model(m, c),
                ngp,
                run_id={"method": "series", "frame": t, "cfg": config_to_dict(cfg)},
                show_progress=False,
                desc=f"frame {t}",
            )
            hist = info["history"]
            row.update(steps=info["steps_run"], chosen_steps=info.get("chosen_steps"))
            # an auto prior weight: frame 0 chooses the weight every later frame runs
            terms = ngp.prior.auto_terms()
            if t == 0 and terms:
                chosen = {term: info[f"prior_{term}"] for term in terms}
                ngp = dataclasses.replace(ngp, prior=dataclasses.replace(ngp.prior, **chosen))
                row.update({f"prior_{term}": w for term, w in chosen.items()})
        else:
            split = (
                meas.split(ngp.stop.fraction, ngp.seed + t) if cfg.frame_stop == "holdout" else (None, None)
            )
            run, hold = fit_model(
                meas,
                model,
                ngp,
                steps=cfg.steps_frame,
                optim=dataclasses.replace(ngp.optim, lr=cfg.lr_frame or ngp.optim.lr),
                train_idx=split[0],
                val_idx=split[1],
                patience=ngp.stop.patience if cfg.frame_stop == "holdout" else 0,
                restore_best=cfg.frame_stop == "holdout",
                settle=ngp.stop.settle if cfg.frame_stop == "none" else 0.0,
                evaluate=False,
                show_progress=False,
                desc=f"frame {t}",
            )
            image, hist = meas.finalize(model.image()), run.history
            row.update(steps=run.step, best_step=None if hold is None else hold.best_step)
        row["seconds"] = time.perf_counter() - t0
        row["first_loss"] = hist["loss"][0] if hist["loss"] else None
        row["last_loss"] = hist["loss"][-1] if hist["loss"] else None
        row.update(_metrics(image, scan.frames[t]))
        images.append(image.detach().to(torch.complex64))
        rows.append(row)
        if bar is not None and not bar.disable and "psnr" in row:
            bar.set_postfix({"psnr": f"{row['psnr']:.2f}", "s": f"{row['seconds']:.1f}"})
    later = rows[1:]
    info = {
        "mode": cfg.mode,
        "frames": rows,
        "seconds": time.perf_counter() - t_all,
        "seconds_first": rows[0]["seconds"],
        "seconds_per_frame": float(np.mean([r["seconds"] for r in later])) if later else None,
    }
    if later and all("psnr" in r for r in later):
        info["psnr_mean"] = float(np.mean([r["psnr"] for r in later]))
        info["ssim_mean"] = float(np.mean([r["ssim"] for r in later]))
    return ReconResult(torch.stack(images), "series", config_to_dict(cfg), info)


SERIES = MethodSpec(
    "series",
    reconstruct_series,
    SeriesConfig,
    ("mri-series",),
    "residual learning of a real-time MRI series: frame 0 by NGP, later frames fine-tune the previous weights",
)
