"""IMJENSE (Feng et al., IEEE TMI 2024): scan-specific INR with jointly estimated coil sensitivities.

The image is an INR (here the hash-grid backbone, as DisINR reproduces it; the authors' hash demo uses 16 levels,
per-level scale 2, one hidden layer of 64). Each coil's sensitivity is a smooth function: a 2D polynomial of
order ``poly_order`` (the authors' SIREN variant uses order 15) in a Legendre basis for conditioning, with
complex coefficients, normalised so that ``sum_c |S_c|^2 = 1`` at every pixel. Both are fitted to the k-space of
the coil images (the measurement model with ``coil_images=True``) with a total-variation prior on the image, by
the one engine and its stopping rule; a final data-consistency step replaces the acquired k-space samples with
the measurements before coil combination. Works for Cartesian and non-Cartesian data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from inrecon.config import PosFloat, PosInt, config_to_dict
from inrecon.data.scans import MRIScan
from inrecon.engine.fit import Model
from inrecon.engine.holdout import StopConfig, fit_with_holdout
from inrecon.engine.losses import LossConfig
from inrecon.engine.regularizers import PriorConfig
from inrecon.engine.trainer import MonitorConfig, OptimConfig
from inrecon.errors import InreconError
from inrecon.models.coils import PolynomialCoils
from inrecon.models.encodings import HashGridConfig
from inrecon.models.fields import FieldConfig, ImageINR, NeuralField, count_parameters, for_grid
from inrecon.models.networks import MLPConfig
from inrecon.physics.measurement import Measurement, build_measurement
from inrecon.recon.inr.ngp import NET_ALIASES
from inrecon.recon.registry import DEFAULT_CONTEXT, Context, MethodSpec, ReconResult

__all__ = ["IMJENSE", "IMJENSEConfig", "reconstruct_imjense"]


@dataclass
class IMJENSEConfig:
    """IMJENSE (defaults: the authors' hash-encoding demo; ``benchmarks/imjense_tv.py`` scans the TV weight)."""

    net: FieldConfig = field(
        default_factory=lambda: FieldConfig(
            hash=HashGridConfig(log2_table_size=18, per_level_scale=2.0), mlp=MLPConfig(n_hidden_layers=1)
        )
    )
    """The image INR (hash backbone)."""
    poly_order: PosInt = 15
    """Order of the polynomial coil sensitivities."""
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(steps=1000, lr=1e-2, beta2=0.999, eps=1e-8)
    )
    """Adam for the image INR (lr) and the coils (lr_csm)."""
    lr_csm: PosFloat = 1e-2
    """Learning rate of the coil coefficients."""
    loss: LossConfig = field(default_factory=LossConfig)
    """The data term."""
    stop: StopConfig = field(default_factory=lambda: StopConfig(patience=200))
    """The reference-free stopping rule."""
    prior: PriorConfig = field(default_factory=lambda: PriorConfig(tv=1e-3, relative=False))
    """IMJENSE's total-variation penalty on the image (the authors' absolute weight)."""
    monitor: MonitorConfig = field(default_factory=lambda: MonitorConfig(eval_every=25))
    """Evaluation, checkpoint and sync intervals."""
    dc: bool = True
    """Replace the acquired k-space with the measurements at the end (Cartesian)."""
    seed: int = 0
    """Seeds the weights and the hold-out split."""

    ALIASES: ClassVar[dict] = {
        **NET_ALIASES,
        "tv_weight": "prior.tv",
        "stop": "stop.rule",
        "holdout_fraction": "stop.fraction",
    }


def _acs_coil_maps(scan: MRIScan, op_nomaps) -> tuple[torch.Tensor, torch.Tensor]:
    """Low-resolution coil images from the calibration region, divided by their RSS: an initial guess."""
    k = scan.kspace
    if scan.is_cartesian:
        H, W = scan.image_shape
        cy, cx = H // 2, W // 2
        # largest fully sampled centre square (at least 8 wide)
        r = 4
        while r < min(H, W) // 2 and bool(scan.mask[cy - r - 1 : cy + r + 1, cx - r - 1 : cx + r + 1].all()):
            r += 1
        win = torch.zeros_like(scan.mask, dtype=torch.float32)
        hy = torch.hann_window(2 * r, periodic=False, device=k.device)
        win[cy - r : cy + r, cx - r : cx + r] = hy[:, None] * hy[None, :]
        low = op_nomaps.adjoint(k * win)
    else:
        kr = scan.trajectory.norm(dim=1)
        w = torch.clamp(1 - kr / (0.15 * np.pi), min=0) ** 2
        low = op_nomaps.adjoint(k * w)
    rss = low.abs().square().sum(0).sqrt()
    return low / (rss + 1e-6 * rss.max()), rss


def _model(scan: MRIScan, meas: Measurement, cfg: IMJENSEConfig, init_maps, rss) -> Model:
    torch.manual_seed(cfg.seed)
    device = meas.y.device
    inr = ImageINR(NeuralField(2, 2, for_grid(cfg.net, scan.image_shape)).to(device), scan.image_shape, True)
    coils = PolynomialCoils(scan.n_coils, scan.image_shape, cfg.poly_order, device=device)
    coils.fit_to(init_maps, rss / rss.max())
    module = nn.ModuleDict({"inr": inr, "coils": coils})
    groups = [
        {"params": list(inr.parameters()), "lr": cfg.optim.lr},
        {"params": list(coils.parameters()), "lr": cfg.lr_csm},
    ]
    return Model(module, groups, render=inr, to_domain=lambda image: coils() * image)


def _data_consistency(meas: Measurement, image, maps, scan: MRIScan) -> torch.Tensor:
    """Replace the acquired k-space of each coil image with the measurement, then combine with the maps."""
    coil = maps * image
    if not scan.is_cartesian:
        return image  # no grid to replace samples on; the fitted image is the result
    from inrecon.physics.fft import fftc, ifftc

    full = fftc(coil, dims=(-2, -1))
    mixed = torch.where(scan.mask, scan.kspace / meas.scale, full)
    coil_dc = ifftc(mixed, dims=(-2, -1))
    return (maps.conj() * coil_dc).sum(0)


def reconstruct_imjense(scan: MRIScan, cfg: IMJENSEConfig, ctx: Context = DEFAULT_CONTEXT) -> ReconResult:
    """Fit IMJENSE to ``scan`` (module docstring)."""
    if scan.ndim != 2:
        raise InreconError("IMJENSE is implemented for 2D scans", "reconstruct 3D data slice by slice")
    meas = build_measurement(scan, coil_images=True, scale="coil_rss")
    init_maps, rss = _acs_coil_maps(scan, meas.physics)
    _, info, model = fit_with_holdout(
        meas,
        lambda: _model(scan, meas, cfg, init_maps, rss),
        cfg,
        run_id={"method": "imjense", "cfg": config_to_dict(cfg)},
        checkpoint_dir=ctx.checkpoint_dir,
        show_progress=ctx.show_progress,
        desc="IMJENSE",
    )
    with torch.no_grad():
        image, maps = model.module["inr"](), model.module["coils"]()
        if cfg.dc:
            image = _data_consistency(meas, image, maps, scan)
    info.update(n_parameters=count_parameters(model.module), sens_maps_estimated=True)
    return ReconResult(image=image * meas.scale, method="imjense", config=config_to_dict(cfg), info=info)


IMJENSE = MethodSpec(
    "imjense",
    reconstruct_imjense,
    IMJENSEConfig,
    ("mri",),
    "IMJENSE: INR image + jointly estimated polynomial coil sensitivities + TV, hold-out stopping",
)
