"""``bilevel_series`` (Bilevel paper section 5.5): residual learning for real-time MRI.

A simulated series (:func:`~inrecon.physics.simulate.series.simulate_series`) is reconstructed by the
``series`` method twice -- residual fine-tuning of the previous frame's weights, and every frame from scratch --
and by CG-SENSE and GRAPPA per frame: time and PSNR per frame, means over the undersampled frames.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from inrecon.config import (
    NonNegFloat,
    NonNegInt,
    PosInt,
    build_config,
    canonical_keys,
    config_diff,
    config_to_dict,
)
from inrecon.data.atomic import write_json
from inrecon.experiments.drivers.common import QUALITY_BEST, Log, set_environment
from inrecon.recon.inr.ngp import NGPConfig
from inrecon.report import Report

__all__ = ["BilevelSeriesConfig", "FrameSettings", "SeriesSimulation", "run_bilevel_series"]

_LABELS = {
    "residual": "residual fine-tuning",
    "scratch": "from scratch per frame",
    "CG-SENSE": "CG-SENSE",
    "GRAPPA": "GRAPPA",
}


@dataclass
class SeriesSimulation:
    """The simulated series (the keyword arguments of ``simulate_series``)."""

    n_frames: PosInt = 8
    """Frames."""
    shape: tuple[PosInt, PosInt] = (96, 96)
    """Image grid [H, W]."""
    af: PosInt = 4
    """Acceleration of frames 1.. (Cartesian line spacing; the lattice shifts by one line per frame)."""
    n_coils: PosInt = 8
    """Simulated coils."""
    seed: int = 0
    """Seeds the phantom, the coil maps, the phase and (with the frame index) the noise."""
    motion: Literal["needle", "disc"] = "needle"
    """needle (a needle advancing towards a lesion) or disc (a bright disc moving on a circle)."""
    snr_db: float | None = 30.0
    """SNR of the simulated noise (dB; unset: no noise)."""
    acs: PosInt | None = None
    """Fully sampled centre lines / calibration square (unset: 8 % of the width, at least 4)."""
    pattern: Literal["cartesian", "poisson"] = "cartesian"
    """Sampling of frames 1.. ."""
    first_af: PosInt = 1
    """Acceleration of frame 0 (1: fully sampled, as in the paper)."""


@dataclass
class FrameSettings:
    """Extra settings of one series run (unset: the ``series`` method's defaults or the INR settings)."""

    steps_frame: PosInt | None = None
    """Fine-tuning steps of each later frame (residual mode)."""
    lr_frame: NonNegFloat | None = None
    """Fine-tuning learning rate (0: the INR's lr)."""
    frame_stop: Literal["none", "holdout"] | None = None
    """Fine-tuning stop: none (steps_frame steps) or holdout."""
    steps: PosInt | None = None
    """Step cap of the from-scratch fits (frame 0, and every frame in scratch mode)."""
    patience: NonNegInt | None = None
    """Hold-out patience of the from-scratch fits."""

    def overrides(self) -> dict:
        """The settings given (short keys, as in the experiment file)."""
        return {k: v for k, v in config_to_dict(self).items() if v is not None}


@dataclass
class BilevelSeriesConfig:
    """Bilevel section 5.5: residual fine-tuning vs per-frame fits from scratch vs per-frame CG-SENSE and GRAPPA."""

    series: SeriesSimulation = field(default_factory=lambda: SeriesSimulation(n_frames=20, shape=(128, 128)))
    """The simulated series."""
    hparams: str | None = None
    """A tuned hyperparameter file (from `inrecon tune`) applied to every INR fit before inr (unset: none)."""
    inr: NGPConfig = field(default_factory=NGPConfig)
    """Settings of every INR fit (ngp keys; defaults: the library's)."""
    residual: FrameSettings = field(default_factory=lambda: FrameSettings(steps_frame=500))
    """Extra settings of the residual run."""
    scratch: FrameSettings = field(default_factory=FrameSettings)
    """Extra settings of the from-scratch run."""
    cgsense: bool = True
    """Also run CG-SENSE on every frame."""
    grappa: bool = True
    """Also run GRAPPA on every frame (calibrated on the frame's own ACS lines, lam by hold-out)."""


def _series_overrides(cfg: BilevelSeriesConfig) -> tuple[dict, dict[str, dict]]:
    """The INR settings of every fit (``series`` keys) and the overrides of the residual and scratch runs."""
    from inrecon.recon.series import SeriesConfig
    from inrecon.tuning.hparams import load_hparams

    inr: dict = {}
    if cfg.hparams:
        inr.update(canonical_keys(NGPConfig, load_hparams(cfg.hparams)["hparams"]))
    inr.update(config_diff(cfg.inr))
    base = {f"ngp.{k}": v for k, v in inr.items()}
    runs = {
        mode: {**base, "mode": mode, **canonical_keys(SeriesConfig, extra.overrides())}
        for mode, extra in (("residual", cfg.residual), ("scratch", cfg.scratch))
    }
    return base, runs


def _inr_runs(series, runs: dict[str, dict], show_progress, log: Log) -> tuple[dict, dict]:
    """Per mode: the per-frame rows and the frame images of the ``series`` method."""
    from inrecon.recon.api import run_method

    per_frame, images = {}, {}
    for label, over in runs.items():
        res = run_method("series", series, over, show_progress=show_progress)
        info = res.info
        per_frame[label] = [dict(r) for r in info["frames"]]
        images[label] = [res.image[t].abs().numpy() for t in range(series.n_frames)]
        log(
            f"  {label}: {info['seconds']:.1f} s, frame 0 {info['seconds_first']:.1f} s, later frames "
            f"{info['seconds_per_frame'] or 0:.2f} s each, PSNR (frames 1..) {info.get('psnr_mean', math.nan):.2f}"
        )
    return per_frame, images


def _per_frame_run(series, method: str, label: str, log: Log) -> tuple[list[dict], list[np.ndarray]]:
    """A classical method (defaults) on every frame on its own: per-frame rows and magnitude images."""
    from inrecon.metrics import evaluate
    from inrecon.recon.api import run_method

    rows, imgs = [], []
    for t, fr in enumerate(series.frames):
        t0 = time.perf_counter()
        res = run_method(method, fr, {}, show_progress=False)
        secs = time.perf_counter() - t0
        rows.append({"frame": t, "seconds": secs, **evaluate(res.image, fr.target, roi=fr.roi, scale=True)})
        imgs.append(res.image.abs().numpy())
    log(f"  {label}: {np.mean([r['seconds'] for r in rows[1:]] or [0]):.2f} s per frame")
    return rows, imgs


def _mean_table(per_frame: dict[str, list[dict]]) -> list[dict]:
    """Per method: mean ± std over the undersampled frames, and frame 0 and the total on their own."""
    table = []
    for key, rows in per_frame.items():
        later = rows[1:] if len(rows) > 1 else rows
        entry = {"method": _LABELS[key], "n": len(later)}
        for mkey in ("psnr", "ssim", "nrmse", "seconds"):
            vals = [r[mkey] for r in later if r.get(mkey) is not None]
            if vals:
                entry[mkey] = (float(np.mean(vals)), float(np.std(vals)))
        entry["frame 0 psnr"] = rows[0].get("psnr")
        entry["frame 0 s"] = rows[0].get("seconds")
        entry["total s"] = float(sum(r["seconds"] for r in rows))
        table.append(entry)
    return table


def run_bilevel_series(cfg: BilevelSeriesConfig, out: Path, show_progress=None, log: Log = print) -> Report:
    """Residual fine-tuning vs per-frame fits from scratch vs per-frame CG-SENSE and GRAPPA (module docstring)."""
    from inrecon.physics.simulate.series import simulate_series
    from inrecon.recon.series import SeriesConfig

    t_start = time.perf_counter()
    sp = cfg.series
    series = simulate_series(**config_to_dict(sp))
    base, runs = _series_overrides(cfg)
    frames = series.frames
    shape = tuple(series.image_shape)
    log(f"[series] {series.n_frames} frames {shape[0]}x{shape[1]}, {frames[0].n_coils} coils, af {sp.af}")
    per_frame, images = _inr_runs(series, runs, show_progress, log)
    for key, method, wanted in (("CG-SENSE", "cgsense", cfg.cgsense), ("GRAPPA", "grappa", cfg.grappa)):
        if wanted:
            per_frame[key], images[key] = _per_frame_run(series, method, key, log)
    table = _mean_table(per_frame)
    rep = Report(
        title="Bilevel INR: residual learning for a real-time series",
        subtitle=(
            f"{series.n_frames} frames; frame 0 af {sp.first_af}, later frames af {sp.af} "
            f"({sp.pattern}); residual frames fine-tune the previous weights"
        ),
        data_note=(
            f"Data: simulated dynamic brain phantom ({sp.motion} motion), {shape[0]}x{shape[1]}, "
            f"{frames[0].n_coils} simulated coils, SNR {sp.snr_db} dB; no real data."
        ),
    )
    steps_frame = build_config(SeriesConfig, runs["residual"]).steps_frame
    rep.add_text(
        "What was run",
        "Residual: frame 0 fitted by the scan-specific INR (hold-out rule), then each later frame fine-tunes the "
        f"previous frame's weights for {steps_frame} steps (fresh Adam). From "
        "scratch: every frame fitted independently like frame 0. CG-SENSE: per frame, hold-out iteration count. "
        "GRAPPA: per frame, kernels calibrated on the frame's ACS lines, Tikhonov weight by hold-out. "
        f"INR settings: library defaults plus {json.dumps(base) if base else 'nothing'}; residual extras "
        f"{json.dumps(cfg.residual.overrides())}; scratch extras {json.dumps(cfg.scratch.overrides())}. "
        "Means are over frames 1.. (the undersampled ones).",
    )
    rep.add_table(
        "Mean ± std over the undersampled frames",
        table,
        columns=["method", "n", "psnr", "ssim", "nrmse", "seconds", "frame 0 psnr", "frame 0 s", "total s"],
        best=QUALITY_BEST,
    )
    _frame_sections(rep, series, per_frame, images)
    rep.add_bars(
        "Mean time per undersampled frame",
        {e["method"]: e["seconds"] for e in table if "seconds" in e},
        ylabel="seconds",
        logy=True,
    )
    series_json = config_to_dict(sp)
    write_json(
        Path(out) / "results.json",
        {"table": table, "per_frame": per_frame, "series": series_json, "inr": base},
    )
    return set_environment(rep, t_start)


def _frame_sections(rep: Report, series, per_frame: dict[str, list[dict]], images: dict[str, list]) -> None:
    """The per-frame table and curves, and the last frame's images (least-squares scaled, as scored)."""
    T = series.n_frames
    frame_rows = []
    for t in range(T):
        row: dict = {"frame": t}
        for key, rows in per_frame.items():
            row[f"{_LABELS[key]} PSNR"] = rows[t].get("psnr")
            row[f"{_LABELS[key]} s"] = rows[t].get("seconds")
        frame_rows.append(row)
    rep.add_table("Per frame", frame_rows, columns=list(frame_rows[0]))
    rep.add_curves(
        "PSNR per frame",
        {_LABELS[k]: (list(range(T)), [r.get("psnr") for r in rows]) for k, rows in per_frame.items()},
        xlabel="frame",
    )
    rep.add_curves(
        "Time per frame",
        {_LABELS[k]: (list(range(T)), [r["seconds"] for r in rows]) for k, rows in per_frame.items()},
        xlabel="frame",
        ylabel="seconds",
    )
    last = T - 1
    frame = series.frames[last]
    ref = frame.target.numpy()
    roi = None if frame.roi is None else frame.roi.numpy().astype(bool)
    shown, metrics = {}, {}
    for key, imgs in images.items():
        img = imgs[last]
        sel = roi if roi is not None else np.ones_like(img, dtype=bool)
        s = float((img[sel] * ref[sel]).sum()) / (float((img[sel] ** 2).sum()) or 1.0)
        shown[_LABELS[key]] = img * s  # least-squares scaled, as scored
        r = per_frame[key][last]
        metrics[_LABELS[key]] = {k: r[k] for k in ("psnr", "ssim", "nrmse") if k in r}
    rep.add_image_grid(f"Frame {last}: reference vs methods", shown, reference=ref, metrics=metrics)
