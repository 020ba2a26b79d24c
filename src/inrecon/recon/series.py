"""Residual learning for real-time MRI series (METHODS.md section 4; Bilevel paper section 5.5).

Frame 0 (fully sampled or lightly undersampled) is fitted like one scan by the scan-specific INR (hold-out rule
or a given step count, ``ngp`` settings, e.g. tuned ones from ``inrecon tune``). Every later, undersampled frame
then fine-tunes the previous frame's weights for ``steps_frame`` steps (~500; a fresh Adam each frame), so that
only what changed (a needle advancing, a bolus) has to be learnt. ``mode="scratch"`` fits every frame
independently the way frame 0 is fitted (each with its own data scaling), for comparison. Residual frames
share frame 0's data scaling, so the INR's output units do not jump between frames; all frames share the coil
maps.

File format (``modality="mri-series"``)
---------------------------------------
An HDF5 file with, at the root:

``kspace``
    complex64 ``(T, C, H, W)``: centred orthonormal Cartesian k-space per frame, zero where not sampled
    (native complex, or float with a trailing axis of 2 and the dataset attribute ``complex_as_last_axis=1``).
``mask``
    uint8 ``(T, H, W)``: the sampling mask of each frame (1 = acquired).
``sens_maps`` (optional)
    complex64 ``(C, H, W)``: coil sensitivities shared by all frames. When absent they are estimated with
    ESPIRiT from frame 0's calibration region (:func:`inrecon.physics.measurement.resolve_maps`).
``target`` (optional)
    float32 or complex64 ``(T, H, W)``: reference images, for metrics.
``roi`` (optional)
    uint8 ``(H, W)`` or ``(T, H, W)``: region scored by the metrics.
attributes
    ``modality = "mri-series"`` (required), ``n_frames``; any others are kept as provenance.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from inrecon.data.atomic import atomic_path
from inrecon.data.scans import MRIScan
from inrecon.engine.holdout import Built, fit_with_stopping
from inrecon.engine.trainer import OptimConfig, fit
from inrecon.errors import FileFormatError, InreconError, ShapeError
from inrecon.models.fields import ImageINR
from inrecon.physics.measurement import MRIProblem, resolve_maps
from inrecon.progress import progress
from inrecon.recon.inr.ngp import ScanINRConfig, build_field, param_groups, stop_config

__all__ = ["SeriesConfig", "read_series", "reconstruct_series", "simulate_series", "write_series"]


# --- file format ----------------------------------------------------------------------------------------------
def read_series(path: str | os.PathLike) -> list[MRIScan]:
    """Read a series file (module docstring) as one :class:`MRIScan` per frame, all sharing the coil maps."""
    from inrecon.data.io.hdf5 import _attr, _open, _provenance, _read

    path = str(path)
    with _open(path) as f:
        modality = _attr(f, "modality", path, required=False)
        if modality != "mri-series":
            raise FileFormatError(
                f"{path}: modality is {modality!r}, not 'mri-series'",
                "give a series file (attribute modality='mri-series'); single scans go to `inrecon recon`",
            )
        kspace = _read(f, "kspace", path)
        mask = _read(f, "mask", path)
        maps = _read(f, "sens_maps", path) if "sens_maps" in f else None
        target = _read(f, "target", path) if "target" in f else None
        roi = _read(f, "roi", path) if "roi" in f else None
        prov = _provenance(f, {"modality", "n_frames"})
    if kspace.ndim != 4:
        raise ShapeError(f"{path}: kspace has shape {kspace.shape}", "store kspace as (frames, coils, H, W)")
    T, _, H, W = kspace.shape
    if mask.shape != (T, H, W):
        raise ShapeError(
            f"{path}: mask has shape {mask.shape} but kspace is {kspace.shape}",
            f"store one mask per frame, shape ({T}, {H}, {W})",
        )
    if target is not None and target.shape != (T, H, W):
        raise ShapeError(f"{path}: target has shape {target.shape}", f"store target as ({T}, {H}, {W})")
    if roi is not None and roi.shape not in ((H, W), (T, H, W)):
        raise ShapeError(f"{path}: roi has shape {roi.shape}", f"store roi as ({H}, {W}) or ({T}, {H}, {W})")
    frames = []
    for t in range(T):
        r = None if roi is None else (roi if roi.ndim == 2 else roi[t])
        frames.append(
            MRIScan(
                kspace=kspace[t],
                mask=mask[t],
                sens_maps=maps,
                target=None if target is None else target[t],
                roi=r,
                provenance={**prov, "frame": t, "source": path},
            )
        )
    if maps is None:
        m = resolve_maps(frames[0], "auto")
        frames = [dataclasses.replace(fr, sens_maps=m) for fr in frames]
    return frames


def _check_frames(frames: list[MRIScan]) -> None:
    if not frames:
        raise InreconError("the series has no frames", "give at least one frame")
    f0 = frames[0]
    for t, fr in enumerate(frames):
        if not isinstance(fr, MRIScan) or not fr.is_cartesian:
            raise InreconError(f"frame {t} is not a Cartesian MRI scan", "series hold Cartesian MRI frames")
        if fr.image_shape != f0.image_shape or fr.n_coils != f0.n_coils or fr.ndim != 2:
            raise ShapeError(
                f"frame {t} has grid {fr.image_shape} and {fr.n_coils} coils, frame 0 {f0.image_shape} and "
                f"{f0.n_coils}",
                "give 2D frames of one grid and one coil array",
            )


def write_series(path: str | os.PathLike, frames: list[MRIScan]) -> Path:
    """Write ``frames`` as a series file (module docstring), atomically. Maps: frame 0's, when it has any."""
    _check_frames(frames)
    path = Path(path)
    f0 = frames[0]

    def arr(x, dtype):
        return x.detach().cpu().numpy().astype(dtype, copy=False)

    with atomic_path(path, suffix=".h5") as tmp, h5py.File(tmp, "w") as f:
        f.attrs["modality"] = "mri-series"
        f.attrs["n_frames"] = len(frames)
        for k, v in (f0.provenance or {}).items():
            if k in ("modality", "n_frames", "frame", "json_attrs", "source"):
                continue
            if isinstance(v, str | int | float | bool):
                f.attrs[k] = v
        f.create_dataset(
            "kspace", data=np.stack([arr(fr.kspace, np.complex64) for fr in frames]), compression="gzip"
        )
        f.create_dataset("mask", data=np.stack([arr(fr.mask, np.uint8) for fr in frames]), compression="gzip")
        if f0.sens_maps is not None:
            f.create_dataset("sens_maps", data=arr(f0.sens_maps, np.complex64), compression="gzip")
        if all(fr.target is not None for fr in frames):
            tg = [fr.target.detach().cpu().numpy() for fr in frames]
            dt = np.complex64 if any(np.iscomplexobj(x) for x in tg) else np.float32
            f.create_dataset("target", data=np.stack(tg).astype(dt), compression="gzip")
        if all(fr.roi is not None for fr in frames):
            f.create_dataset(
                "roi", data=np.stack([arr(fr.roi, np.uint8) for fr in frames]), compression="gzip"
            )
    return path


# --- simulation -----------------------------------------------------------------------------------------------
def _segment_coverage(shape: tuple[int, int], p0, p1, width: float) -> np.ndarray:
    """Anti-aliased coverage (0..1) of a segment ``p0 -> p1`` (pixel coords (row, col)) of ``width`` pixels."""
    r, c = np.meshgrid(np.arange(shape[0]) + 0.0, np.arange(shape[1]) + 0.0, indexing="ij")
    d = np.array(p1, float) - np.array(p0, float)
    L2 = float(d @ d) or 1.0
    s = np.clip(((r - p0[0]) * d[0] + (c - p0[1]) * d[1]) / L2, 0.0, 1.0)
    dist = np.hypot(r - (p0[0] + s * d[0]), c - (p0[1] + s * d[1]))
    return np.clip(width / 2 + 0.5 - dist, 0.0, 1.0)


def _disc_coverage(shape: tuple[int, int], centre, radius: float) -> np.ndarray:
    r, c = np.meshgrid(np.arange(shape[0]) + 0.0, np.arange(shape[1]) + 0.0, indexing="ij")
    return np.clip(radius + 0.5 - np.hypot(r - centre[0], c - centre[1]), 0.0, 1.0)


def series_images(n_frames: int, shape: tuple[int, int], seed: int = 0, motion: str = "needle") -> np.ndarray:
    """The dynamic phantom ``(T, H, W)`` float32 in [0, 1].

    ``"needle"``: a brain phantom with a 2-pixel signal void (a biopsy needle) entering from the upper left and
    advancing by a constant step towards a bright target lesion near the centre. ``"disc"``: a bright disc of
    radius ``H / 12`` moving on a circle through the brain.
    """
    from inrecon.data.phantoms import brain_phantom

    if motion not in ("needle", "disc"):
        raise InreconError(f"motion={motion!r}", "use motion='needle' or 'disc'")
    H, W = shape
    base = brain_phantom(shape, seed=seed).astype(np.float64)
    out = []
    centre = (0.55 * H, 0.52 * W)
    lesion = _disc_coverage(shape, centre, max(1.5, H / 40))
    for t in range(n_frames):
        img = base.copy()
        if motion == "needle":
            img = img * (1 - lesion) + 0.9 * lesion
            entry = np.array((0.12 * H, 0.15 * W))
            tip_end = np.array(centre) - np.array((0.04 * H, 0.04 * W))
            frac = 0.35 + 0.65 * (t / max(1, n_frames - 1))
            tip = entry + frac * (tip_end - entry)
            cov = _segment_coverage(shape, entry, tip, width=max(1.5, H / 48))
            img = img * (1 - cov)
        else:
            ang = 2 * math.pi * t / max(1, n_frames)
            c = (0.5 * H + 0.18 * H * math.sin(ang), 0.5 * W + 0.18 * W * math.cos(ang))
            cov = _disc_coverage(shape, c, H / 12)
            img = img * (1 - cov) + 0.95 * cov
        out.append(img)
    return np.clip(np.stack(out), 0.0, 1.0).astype(np.float32)


def simulate_series(
    n_frames: int = 8,
    shape: tuple[int, int] = (96, 96),
    af: int = 4,
    n_coils: int = 8,
    seed: int = 0,
    motion: str = "needle",
    snr_db: float | None = 30.0,
    acs: int | None = None,
    pattern: str = "cartesian",
    first_af: int = 1,
) -> list[MRIScan]:
    """A simulated real-time series: :func:`series_images`, known coil maps, a fixed smooth phase, noise.

    Parameters
    ----------
    n_frames, shape
        Number of frames and image grid ``(H, W)``.
    af
        Acceleration of frames 1.. : Cartesian line spacing (the lattice shifts by one line per frame) or the
        Poisson-disc acceleration.
    n_coils, seed, snr_db
        Coils, seed (phantom, maps, phase; frame ``t``'s noise uses ``seed + 101 t``), SNR in dB (see
        :func:`inrecon.physics.simulate.mri.simulate_mri`).
    acs
        Fully sampled centre lines / calibration square (default ``max(4, round(0.08 W))``).
    pattern
        ``"cartesian"`` (1D, along the last axis) or ``"poisson"``.
    first_af
        Acceleration of frame 0 (1: fully sampled, as in the paper).

    Returns
    -------
    list[MRIScan]
        One scan per frame with ``sens_maps``, ``target`` (magnitude), ``roi`` and provenance.
    """
    from inrecon.data import sampling
    from inrecon.physics.simulate.mri import coil_sensitivities, simulate_mri, smooth_phase_map

    if int(n_frames) < 1:
        raise InreconError(f"n_frames={n_frames}", "simulate at least one frame")
    if pattern not in ("cartesian", "poisson"):
        raise InreconError(f"pattern={pattern!r}", "use pattern='cartesian' or 'poisson'")
    shape = (int(shape[0]), int(shape[1]))
    acs = max(4, round(0.08 * shape[1])) if acs is None else int(acs)
    images = series_images(int(n_frames), shape, seed, motion)
    maps = coil_sensitivities(shape, n_coils, seed=seed)
    phase = torch.polar(torch.ones(shape), smooth_phase_map(shape, seed))
    frames = []
    for t in range(int(n_frames)):
        a = first_af if t == 0 else af
        if a <= 1:
            mask = torch.ones(shape, dtype=torch.bool)
        elif pattern == "cartesian":
            mask = sampling.cartesian_1d(shape, int(a), acs=acs, offset=t % int(a))
        else:
            mask = sampling.poisson_disc(shape, a, calib=(acs, acs), seed=seed + t)
        x = torch.from_numpy(images[t]).to(torch.complex64) * phase
        scan = simulate_mri(x, maps=maps, mask=mask, snr_db=snr_db, seed=seed + 101 * t, smooth_phase=False)
        scan.provenance.update(frame=t, motion=motion, af=float(a), pattern=pattern, series_seed=seed)
        frames.append(scan)
    return frames


# --- reconstruction -------------------------------------------------------------------------------------------
@dataclass
class SeriesConfig(ScanINRConfig):
    """Every ``ngp`` setting (frame 0 and ``scratch`` frames use them: ``stop``, ``steps``, ``patience``) plus:

    ``steps_frame``: fine-tuning steps of each later frame (the paper's 500); ``mode``: ``residual`` or
    ``scratch``; ``frame_stop``: ``none`` (run ``steps_frame``) or ``holdout`` (fine-tune on the train split,
    stop ``patience`` steps after the held-out loss last improved, keep the best weights); ``lr_frame``: the
    fine-tuning learning rate (0: ``lr``).
    """

    steps_frame: int = 500
    mode: str = "residual"
    frame_stop: str = "none"
    lr_frame: float = 0.0

    def validate(self) -> None:
        super().validate()
        if self.mode not in ("residual", "scratch"):
            raise InreconError(f"mode={self.mode!r}", "use mode=residual or mode=scratch")
        if self.frame_stop not in ("none", "holdout"):
            raise InreconError(f"frame_stop={self.frame_stop!r}", "use frame_stop=none or frame_stop=holdout")
        if self.steps_frame < 1:
            raise InreconError(f"steps_frame={self.steps_frame}", "use steps_frame >= 1 (500 in the paper)")
        if self.lr_frame < 0:
            raise InreconError(f"lr_frame={self.lr_frame}", "use lr_frame > 0, or 0 for the lr of frame 0")


def _problem(frame: MRIScan, maps: torch.Tensor, scale: float | None) -> MRIProblem:
    p = MRIProblem(frame, maps)
    p.target = None  # metrics are computed once per frame, outside the timed fit
    if scale is not None:  # share frame 0's data scaling (the INR's output units)
        p.y = p.y * (p.scale / scale)
        p.scale = scale
    return p


def _metrics(image: torch.Tensor, frame: MRIScan) -> dict:
    if frame.target is None:
        return {}
    from inrecon.metrics import evaluate

    return evaluate(image, frame.target, roi=frame.roi, scale=True)


def reconstruct_series(
    frames: list[MRIScan], cfg: SeriesConfig, *, show_progress: bool | None = None
) -> tuple[torch.Tensor, dict]:
    """Reconstruct a series (module docstring).

    Returns
    -------
    images
        complex64 ``(T, H, W)``.
    info
        ``frames``: one dict per frame (``seconds``, ``steps``, ``first_loss`` and ``last_loss`` of its fit,
        ``best_step`` with a hold-out rule, and ``psnr``/``ssim``/``nrmse`` when targets exist); ``mode``;
        ``seconds_first`` (frame 0), ``seconds_per_frame`` (mean over frames 1..), ``psnr_mean`` (frames 1..).
    """
    cfg.validate()
    _check_frames(frames)
    t_all = time.perf_counter()
    maps = frames[0].sens_maps if frames[0].sens_maps is not None else resolve_maps(frames[0], cfg.maps)
    device = frames[0].kspace.device
    maps = maps.to(device)
    problem0 = _problem(frames[0], maps, None)
    scale = problem0.scale
    images, rows = [], []
    built: Built | None = None
    bar = progress(range(len(frames)), desc="series", show=show_progress)
    for t in bar:
        t0 = time.perf_counter()
        # residual frames share frame 0's output units; scratch frames are independent fits (own scaling)
        shared = None if cfg.mode == "scratch" else scale
        problem = problem0 if t == 0 else _problem(frames[t], maps, shared)
        row: dict = {"frame": t}
        if t == 0 or cfg.mode == "scratch":
            image, info, built = _fit_from_scratch(problem, cfg, t)
            hist = info["history"]
            row.update(steps=info["steps_run"], chosen_steps=info.get("chosen_steps"))
        else:
            image, res = _fine_tune(problem, built, cfg, t)
            hist = res.history
            row.update(steps=res.steps_run, best_step=res.best_step)
        row["seconds"] = time.perf_counter() - t0
        row["first_loss"] = hist["loss"][0] if hist["loss"] else None
        row["last_loss"] = hist["loss"][-1] if hist["loss"] else None
        row.update(_metrics(image, frames[t]))
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
    return torch.stack(images), info


def _fit_from_scratch(problem: MRIProblem, cfg: SeriesConfig, t: int):
    device = problem.y.device

    def build() -> Built:
        inr = ImageINR(build_field(problem, cfg, seed=cfg.seed).to(device), problem.image_shape, True)

        def forward():
            image = inr()
            return image, problem.predict(image)

        return Built(inr, forward, param_groups(inr.field, cfg.wd_enc, cfg.wd_mlp))

    return fit_with_stopping(
        problem,
        build,
        cfg.optim_config(),
        stop_config(cfg),
        run_id={"method": "series", "frame": t, "cfg": asdict(cfg)},
        show_progress=False,
        desc=f"frame {t}",
    )


def _fine_tune(problem: MRIProblem, built: Built, cfg: SeriesConfig, t: int):
    inr = built.module

    def forward():
        image = inr()
        return image, problem.predict(image)

    ocfg = OptimConfig(
        **{
            **asdict(cfg.optim_config(steps=cfg.steps_frame)),
            "lr": cfg.lr_frame or cfg.lr,
            "patience": cfg.patience if cfg.frame_stop == "holdout" else 0,
        }
    )
    kw = {}
    if cfg.frame_stop == "holdout":
        train, val = problem.split(cfg.holdout_fraction, cfg.seed + t)
        kw = {"train": train, "val": val, "restore_best": True}
    res = fit(
        forward,
        inr,
        param_groups(inr.field, cfg.wd_enc, cfg.wd_mlp),
        problem.y,
        ocfg,
        show_progress=False,
        desc=f"frame {t}",
        **kw,
    )
    return problem.finalize(res.image), res


def series_summary(info: dict) -> str:
    """A one-line JSON-able summary (mean time per later frame, mean PSNR) for logs and the CLI."""
    keys = ("mode", "seconds", "seconds_first", "seconds_per_frame", "psnr_mean", "ssim_mean")
    return json.dumps({k: info[k] for k in keys if k in info})
