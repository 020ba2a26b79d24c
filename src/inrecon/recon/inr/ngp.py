"""Scan-specific INR ("NGP", docs/methods.md section 3) with the reference-free stopping rule.

A hash-grid field with a small ReLU MLP is fitted through the scan's measurement model
(:mod:`inrecon.physics.measurement`) by the one engine (:func:`inrecon.engine.holdout.fit_with_holdout`): an
INR fitted long enough fits the noise, so by default the step count is chosen on a held-out 20 % of the
acquired samples and the model refitted on all of them. Volume fitting (identity measurement, no noise model)
runs ``optim.steps`` steps on all voxels, in coordinate batches of ``batch_size`` when the volume is larger.

The method is tunable: :data:`NGP_SPACE` is the Bilevel authors' search space, scored by
:func:`~inrecon.engine.holdout.score_trial` (the bilevel method, :mod:`inrecon.recon.inr.bilevel`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar, Literal

import torch
from torch import nn

from inrecon.config import PosFloat, PosInt, config_to_dict, override_config
from inrecon.engine.checkpoint import config_fingerprint
from inrecon.engine.fit import Model
from inrecon.engine.holdout import (
    Candidate,
    FitConfig,
    data_identity,
    fit_with_holdout,
    resolve_prior,
    score_trial,
)
from inrecon.engine.splitting import SplittingConfig, split_with_denoiser
from inrecon.engine.trainer import Checkpoint, OptimConfig
from inrecon.errors import InreconError
from inrecon.models.coils import PolynomialCoils
from inrecon.models.fields import FieldConfig, ImageINR, NeuralField, count_parameters, for_grid
from inrecon.models.networks import MLPConfig
from inrecon.physics.denoisers import block_matching_denoise, denoise_complex
from inrecon.physics.measurement import Measurement, joint_coil_measurement, measure
from inrecon.recon.classical import ct as classical_ct
from inrecon.recon.classical import mri as classical_mri
from inrecon.recon.registry import DEFAULT_CONTEXT, Context, MethodSpec, ReconResult
from inrecon.tuning.bo import Param, SearchSpace
from inrecon.tuning.objective import Tunable, apply_h, final_overrides

__all__ = [
    "NGP",
    "NGP_MODALITY_DEFAULTS",
    "NGP_SPACE",
    "NGPConfig",
    "decay_groups",
    "field_model",
    "loss_candidate",
    "ngp_objective",
    "param_groups",
    "reconstruct_ngp",
]

# the short flat keys of earlier releases and of tuned-hyperparameter files, for keys that are not unique leaves
NET_ALIASES = {
    "mlp_width": "net.mlp.width",
    "mlp_layers": "net.mlp.n_hidden_layers",
    "fourier_frequencies": "net.fourier.n_frequencies",
    "siren_width": "net.siren.width",
    "siren_layers": "net.siren.n_hidden_layers",
    "siren_w0": "net.siren.w0",
}
FIT_ALIASES = {
    "loss": "loss.kind",
    "stop": "stop.rule",
    "holdout_fraction": "stop.fraction",
    "adam_eps": "optim.eps",
    "maps": "data.maps",
    "ct_precondition": "data.ct_weighting",
}


@dataclass
class NGPConfig(FitConfig):
    """Scan-specific INR. Defaults: docs/methods.md (Bilevel authors' code), except where measured otherwise
    (``benchmarks/RESULTS.md``, ``benchmarks/ngp_defaults.py``, real 8-coil brain and simulated AF 6 slice):
    a 2 x 64 MLP (authors: 8 x 64; same or better peak PSNR at 2.3x less time per step), lr 3e-3, wd_enc 1e-6,
    wd_mlp 1e-8, and the MSE loss (the self-weighted loss overfits fast without tuning; the bilevel method tunes
    it)."""

    net: FieldConfig = field(default_factory=lambda: FieldConfig(mlp=MLPConfig(n_hidden_layers=2)))
    """The neural field."""
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(steps=2000, lr=3e-3, wd_enc=1e-6, wd_mlp=1e-8)
    )
    """Adam, step decay, weight decay of the hash tables (wd_enc) and of the MLP (wd_mlp)."""
    compile: bool = False
    """torch.compile the MLP decoder (worth it on a GPU; costs seconds to compile)."""
    batch_size: PosInt = 2**18
    """Volume fitting: coordinates per step."""
    backbone_candidates: tuple[Literal["hash", "fourier", "siren"], ...] = ()
    """Backbones fitted besides net.backbone, each by its own hold-out stage on the same split; the one with the
    lowest held-out loss is the only one refitted (``info["candidate"]``, ``info["candidate_scores"]``). A SIREN
    candidate runs at lr ``siren_lr`` with 2.5x optim.steps and 2x stop.patience (:func:`backbone_candidate`).
    Needs the hold-out rule; not for volumes."""
    loss_candidates: tuple[Literal["mse", "l1", "self_weighted"], ...] = ()
    """Data terms fitted besides loss.kind, each by its own hold-out stage(s) on the same split (with its own
    prior search where the prior is "auto"); the setting with the lowest held-out loss (``stop.val_loss``) is
    the only one refitted (``info["candidate"]``, ``info["candidate_scores"]``). A self-weighted candidate runs
    with the settings the bilevel search found for it (:func:`loss_candidate`). A choice of the hold-out rule:
    with stop.rule=none, in bilevel trials and for volumes only loss.kind is fitted. ``("self_weighted",)`` on
    MRI (quick quality suite and three files written by other tools, benchmarks/RESULTS.md stop 56): chosen on the
    real radial scan (+0.53 dB) and BART's complex brain at Cartesian AF 6 (+1.00 dB), the MSE kept on the seven
    other scans (never below the MSE alone, but the held-out loss misses the self-weighted fit's +0.9-1.0 dB on
    the dipy Cartesian slices); twice the hold-out stages, so not the default."""
    siren_lr: PosFloat = 3e-4
    """Learning rate of a SIREN candidate (chosen on the dipy T1 Cartesian AF 6 slice: 1e-4 was still rising at
    600 steps)."""
    coils: Literal["fixed", "joint"] = "fixed"
    """MRI coil sensitivities: ``fixed`` (``data.maps``: the scan's own, else ESPIRiT), or ``joint``: a smooth
    polynomial per coil (IMJENSE's model, :class:`~inrecon.models.coils.PolynomialCoils`), started from those
    maps and fitted with the image to the coil k-space (2D scans)."""
    coil_order: PosInt = 15
    """``coils="joint"``: order of the coil polynomials (IMJENSE's)."""
    coil_lr: PosFloat = 1e-2
    """``coils="joint"``: Adam learning rate of the coil coefficients (no weight decay)."""
    splitting: SplittingConfig = field(default_factory=SplittingConfig)
    """A block-matching denoiser as the INR's prior after its fit (:mod:`inrecon.engine.splitting`):
    ``splitting.noise=auto`` takes the noise level the classical ``pnp`` / ``pnp-ct`` hold-out chooses for the
    scan (NGP's MRI default, :data:`NGP_MODALITY_DEFAULTS`; on CT an option whose other keys the CT defaults set);
    0: off (the dataclass's default, and so for volumes). 2D MRI and CT scans only."""

    ALIASES: ClassVar[dict] = {**NET_ALIASES, **FIT_ALIASES}


NGP_MODALITY_DEFAULTS = {
    "ct": {
        "data.ct_weighting": "ramp+counts",
        "data.ct_ramp_filter": "hann",
        "data.ct_units": "view",
        "data.ct_supersample": "auto",
        "prior.tv": "auto",
        "optim.lr": 1e-2,
        "splitting.noise_factor": 2.0,
        "splitting.scheme": "admm",
        "splitting.mu": 0.005,
        "splitting.iterations": 30,
        "splitting.inner_steps": 20,
    },
    "mri": {
        "prior.phase": "auto",
        "prior.tv": "auto",
        "prior.tv_candidates": (0.0, 0.0003, 0.001),
        "prior.combine": True,
        "data.scale": "image",
        "optim.lr": 1e-2,
        "optim.wd_enc": 1e-5,
        "stop.min_steps": 1000,
        "splitting.noise": "auto",
    },
    "volume": {"optim.schedule": "linear", "optim.decay_start": 0.8},
}
"""Where the defaults differ by modality: chosen on the tuning half of the quality suite, checked on its
confirmation half (``benchmarks/quality_defaults.py``, ``benchmarks/RESULTS.md``). Since stop 66 NGP
refines its MRI fits with the block-matching denoiser as the INR's prior (``splitting``, docs/methods.md 3.1,
:mod:`inrecon.engine.splitting`): half-quadratic splitting at the classical ``pnp``'s hold-out noise level (12 x 50
steps); quick budget, NGP alone -> with it (stop 67, at the splitting's documented learning rate): tuning dipy
Cartesian AF 6 33.05 -> 34.56 dB (``pnp`` 33.54); confirmation the real brain under sigpy's mask 34.84 -> 35.79
(``pnp`` 35.86), dipy Cartesian AF 8 31.47 -> 32.52 (``pnp`` 31.11); the suite's full table in benchmarks/RESULTS.md. On CT it is an option
(``splitting.noise=auto``; the CT defaults set its other keys: ADMM at twice ``pnp-ct``'s level, 30 x 20 steps,
``mu`` 0.005): on lungdx A0001 at 60 views it lifts NGP 28.30 -> 30.96 dB noise-free (``pnp-ct`` 31.25), but on
piecewise-constant ellipses (48^2, 30 views, TV's own model) it costs 3.1 dB with and without noise, where
``pnp-ct``'s hold-out takes its denoiser although TV-CT's image is better. CT (tuning: lungdx A0001 slice
30, 60 fan views, 1e5 photons): a relative TV prior 0.01 with lr 1e-2 and the counts-weighted, view-held-out data
term, 27.02 -> 31.84 dB (the TV prior is most of it: 31.10 dB with the old data term); confirmed on A0002 at 60 /
90 noisy views (24.19 -> 32.05, 26.90 -> 33.94 dB), but it cost 0.9 / 2.6 dB on noise-free data. Since 2026-12 the
weight is chosen per scan by the hold-out rule (``prior.tv="auto"``: one hold-out stage per candidate tried,
0.0003 / 0.001 / 0.003 / 0.01 / 0.03, the lowest held-out loss wins; quick profile, NGP at most 600 steps): tuning
half, noise-free A0001 60 / 90 views 34.15 -> 37.81 / 37.18 -> 45.28 dB, noisy 90 views and SCOPE unchanged, noisy
60 views 31.81 -> 30.33 (the one loss: it chose 0.001); confirmation half, noise-free A0002 60 / 90 views 35.18 ->
37.61 / 38.23 -> 41.79 dB, noisy 60 / 90 views unchanged (it chose 0.01); the demo's noise-free phantoms 38.1 ->
41.7 dB. It costs three or four hold-out stages (a unimodal search from the middle candidate). A noise-aware
weight (``prior.noise_reference=0.0052``: 0.01 at the tuning scan's estimated relative noise level,
:func:`~inrecon.physics.measurement.sinogram_noise`, scaled by each scan's own estimate) wins on lungdx and the
real SCOPE sinogram (A0002 noise-free 60 / 90 views +2.3 / +2.2 dB, noisy -0.14 / -0.19 dB, SCOPE +0.5 dB) but
loses 3.5 dB on the demo's piecewise-constant noise-free phantoms, where TV is the right prior whatever the noise:
an option, not a default (benchmarks/RESULTS.md). Holding out views spread evenly over the angles
(``data.ct_split="spread"``, TV-CT's default) instead of a random draw (which holds out neighbouring views
together) won on the suite, noisy A0001 60 views 30.33 -> 31.82 dB (it chose 0.01), A0002 60 views noise-free
36.85 -> 37.64, the other cases within 0.3 dB, but chose 0.01 on both independent 256^2 files, where the random
draw's 0.001 / 0.003 were right (``fan60`` 32.54 -> 31.32, ``par90`` 38.60 -> 37.52 dB): an option, not a default.
Since 2026-12-04 CT models the image on a 2x finer grid where the scan is on a GPU (``data.ct_supersample="auto"``),
and since 2026-12-05 on the CPU too for a scan of at most 128^2 pixels (2.9x the time per step there; larger
scans keep their own grid on the CPU, where a 256^2 fit at 2x took about an hour on one thread): on the
suite's nine CT cases (H200, ``benchmarks/ct_supersample.py``) it gained on every one, tuning A0001 60 / 90 views
noisy and clean +1.35 / +0.18 / +0.98 / +0.57 dB and the real SCOPE sinogram +1.77, confirmation A0002 +0.28 /
+1.16 / +2.02 / +2.17 (the CPU gave the same to 0.2 dB, stop 31); on the independent 256^2 files (CPU) +0.99
(``fan60``) and -0.44 dB (``par90``). The nine fits took 78 s instead of 51 s on the H200.
MRI keeps the dataclass's hash grid: limiting it to the image grid (``net.hash.max_resolution="grid"``) won on the tuning half (dipy T1 Cartesian AF 6 30.22 -> 33.03 dB,
Poisson AF 8 33.09 -> 33.76 dB) and on the simulated confirmation case (AF 8 29.81 -> 30.86 dB), was even on the
real radial scan (32.50 -> 32.55 dB) but lost 1.5 dB on the real 8-coil brain (33.34 -> 31.84 dB), so it stays an
option. MRI penalises the imaginary part left after removing the scan's own smooth phase (``prior.phase=0.003``,
relative; the weight chosen on the tuning half from 0.001 / 0.003 / 0.01 / 0.1, quick profile): dipy T1 Cartesian
AF 6 30.90 -> 31.86 dB, Poisson AF 8 32.92 -> 34.61 dB; confirmation half: the real 8-coil brain 33.74 -> 33.85 dB
(33.35 -> 33.54 at the full budget), dipy Cartesian AF 8 29.36 -> 30.33 dB, the real radial scan 32.45 -> 33.14 dB.
Since 2026-12-03 the hold-out chooses whether it applies (``prior.phase="auto"`` over 0 / 0.003, two hold-out
stages): the suite's simulated slices carry a smooth polynomial phase, which the prior fits exactly, but on a
Cartesian AF 6 scan of a real complex brain image (BART's fully sampled reconstruction, 12 sigpy birdcage
coils, 30 dB, written with h5py) a fixed 0.003 cost 2.8 dB (29.99 against 32.80 without; 31.17 even with the
true image's smooth phase). Full budget, fixed 0.003 -> auto (its choice): that scan 29.99 -> 32.80 (0), dipy
AF 6 33.33 -> 33.41 (0), Poisson AF 8 35.52 (0.003); confirmation: the real brain 34.01 -> 34.09 (0), under
sigpy's mask 34.01 -> 34.16 (0), the real radial scan 33.60 (0.003), dipy AF 8 32.90 -> 31.94 (0: the one
wrong choice, held-out losses 2.7 % apart). Since 2026-12-06 a relative TV prior is searched as the phase
prior's alternative (``prior.tv="auto"`` over 0 / 0.0003 / 0.001: each term walked with the other off, the
lowest held-out loss of either search wins; two to four hold-out stages), and the phase prior's smooth phase is
read off the whole scan in every stage (read off a stage's training samples it was noisy enough to lose the
hold-out where it gains 2.6 dB). Full budget, stop 50's default -> now (its choice): tuning half dipy AF 6 33.38
-> 34.11 (phase), Poisson AF 8 35.45 -> 35.60 (phase); confirmation the real brain 34.15 -> 35.11 and under
sigpy's mask 34.13 -> 35.05 (TV 1e-3; TV-MRI 35.14 / 35.05), dipy AF 8 32.41 -> 32.54 and the real radial scan
33.62 -> 33.66 (phase); the quick demo's phantoms 27.85 / 35.09 -> 30.44 / 35.09; two Cartesian files written by
other tools unchanged (no prior chosen), the magnitude of BART's brain 35.87 -> 34.61 (the phase prior chosen
towards a smooth phase misread from the aliased zero-filled image: the one loss). Since 2026-12-07 the TV walk
runs with the phase weight the phase search chose (``prior.combine``: both priors at once where the hold-out
takes the phase prior, as TV-MRI always combines its TV with a phase term; before, the two were alternatives).
Full budget, alternatives -> combined (its choice): tuning half dipy AF 6 34.11 -> 34.11 (phase), Poisson AF 8
35.60 -> **36.01** (phase + TV 3e-4); confirmation the real spiral phantom (15 of 60 interleaves) 25.87 ->
**27.45** (phase + TV 1e-3; TV-MRI 27.61), the real brain 35.11 -> 35.12 and under sigpy's mask 35.05 -> 34.96
(phase + TV 1e-3), the real radial scan 33.66 -> 33.42 (phase + TV 3e-4), dipy AF 8 32.54 -> 32.54 (phase);
BART's brain written by other tools unchanged (TV 3e-4, the phase prior rejected, so the same walk), its
magnitude image 34.61 -> **35.80** (phase + TV 3e-4; TV-MRI 35.06). Searched alone (stop 50) the TV weight had
displaced the phase prior on the demo's phantoms, where NGP fell 31.47 -> 28.74 dB. MRI data are
scaled so that the image peaks near 1 (``data.scale="image"``; with the k-space maximum it peaked at 0.04-0.16 on
the suite's scans, which changes what a learning rate and a hash-table weight decay do), with lr 1e-2 and
``wd_enc`` 1e-5, chosen on the tuning half from lr 1e-3 / 3e-3 / 1e-2 x ``wd_enc`` 0 / 1e-6 / 3e-6 / 1e-5 /
3e-5 / 1e-4 (quick profile). At the full budget (old -> new): tuning half dipy AF 6 31.78 -> 33.33, Poisson AF 8
35.12 -> 35.52 dB; confirmation half: the real brain 33.57 -> 34.01 dB, the same brain under sigpy's mask 34.06 ->
34.01, dipy AF 8 30.00 -> 32.90, the real radial scan 33.55 -> 33.60 dB (benchmarks/RESULTS.md).
A hold-out stage on MRI never ends before step 1000 (``stop.min_steps``, the first learning-rate decay of
``optim.lr_decay_every``, where 10 of 11 full stage-1 held-out curves have their minimum): at lr 1e-2 the held-out
loss jumps by 5 % per step at the median, and a lucky low early on had ended one Poisson AF 8 seed at step 634
(its choice 334 steps, 37.33 dB; 39.00 with the floor). Over 14 runs (dipy 128^2 AF 6 / Cartesian AF 8 x seeds
0-3, Poisson AF 8 x seeds 0-2, the real brain x 2, the real radial scan; ``benchmarks/ngp_seeds.py``) it changed
that one (+0.56 dB on Poisson's mean) and the radial scan (33.50 -> 33.62 dB at 2.3x the time: its stages had
stopped near step 530); it costs time only where a stage would have stopped earlier (stop 43).
Tried on top and not adopted (the confirmation half did not move): a relative TV prior 1e-4 on MRI (mean
+0.05 dB), ``stop.patience=0`` on MRI (-0.02 dB at 1.2-2x the time), and ``data.scale="image"`` on CT (up to +1.5 dB
on noisy 60 views, -3.7 dB and worse on noise-free ones).
The lungdx numbers above come from sinograms projected from the reconstruction grid itself (the suite before
2026-12-03, an "inverse crime"). Projected from the native 512 x 512 slice, as the suite does now, NGP trailed
TV-CT by 0.9-4.9 dB: a real object's detail below the grid puts most of its mismatch at the highest detector
frequencies, which the plain ramp weights most. Since 2026-12-03 the ramp is apodised with a Hann window
(``data.ct_ramp_filter="hann"``): lungdx tuning cases (A0001 60 / 90 views, noisy and noise-free) +1.77 dB
mean (every case), SCOPE 35.87 -> 35.09; confirmation (A0002) +0.35 dB mean (+0.83 / +0.65 / +0.56 / -0.64);
independent files ``fan60`` 32.54 -> 34.01 dB and ``par90`` 38.60 -> 39.52 dB, both ahead of the best TV-CT
(33.76 / 38.72), ``fan60-clean`` level (35.69 / 35.79). Without the ramp (``"counts"``) won on the tuning half
(+1.5 dB) but not on the confirmation half (-0.3 dB) (benchmarks/RESULTS.md).
Volume fitting (a fixed number of steps on every voxel, no stopping rule) decays the learning rate linearly
to 0: with the step schedule Adam oscillates once the fit passes ~60 dB (lungdx 96 x 96 x 8 blocks, 500 steps, 12
levels, T = 2^15; tuning block A0001[24:32]: peak 62.4 at step 250, then 42-59 dB, 44.2 at the end; linear: 66.5 at
the end), confirmed on A0001[40:48] and A0002[0:8] (final 44.9 / 46.5 -> 67.1 / 63.9 dB, the same PSNR after 50
steps). Since 2026-12-04 the decay starts after 80 % of the steps (``optim.decay_start=0.8``): decaying from the
first step lost 8-9 dB at short budgets (the quick volume bench's 64 x 64 x 8 test block, 120 / 250 / 500 steps:
linear 42.18 / 54.73 / 65.64, step 51.26 / 62.33 / 62.56, decay from 80 % 49.41 / 61.06 / 68.08 dB; from 50 %
46.07 / 58.62 / 69.54); confirmed on two other blocks, 120 steps 42.65 / 41.92 -> 49.98 / 49.22 dB, 500 steps
67.41 / 65.18 -> 72.41 / 69.34 dB; at 2000 steps 88.48 -> 82.70 dB (one block), both far past any image's precision
(RESULTS.md)."""


def decay_groups(tables: list, layers: list, wd_enc: float, wd_mlp: float) -> list[dict]:
    """Adam groups with coupled L2 weight decay: ``wd_enc`` on the hash tables, ``wd_mlp`` on the layers' weights
    (an empty group is left out)."""
    return [{"params": ps, "weight_decay": wd} for ps, wd in ((tables, wd_enc), (layers, wd_mlp)) if ps]


def param_groups(field_: NeuralField, wd_enc: float, wd_mlp: float) -> list[dict]:
    """Two Adam groups with coupled L2 weight decay: encoder (hash tables) and decoder (MLP)."""
    enc = [p for p in field_.encoder_parameters() if p.requires_grad]
    dec = [p for p in field_.decoder_parameters() if p.requires_grad]
    return decay_groups(enc, dec, wd_enc, wd_mlp)


def ngp_measurement(scan, cfg: NGPConfig) -> Measurement:
    """The measurement NGP fits: :func:`~inrecon.physics.measurement.measure` with ``cfg.data``, or with
    ``cfg.coils="joint"`` the coil-image measurement of the same samples
    (:func:`~inrecon.physics.measurement.joint_coil_measurement`)."""
    if cfg.coils == "joint":
        return joint_coil_measurement(scan, cfg.data)
    return measure(scan, cfg.data)


def field_model(meas: Measurement, cfg: NGPConfig, state: dict | None = None) -> Model:
    """A freshly initialised (seeded) field on the measurement's grid as a :class:`Model`; ``state`` loads
    given weights instead (Meta's learned initialisation). On a coil-image measurement with maps
    (``coils="joint"``) the model also holds polynomial coil sensitivities, fitted to those maps (weighted by
    the zero-filled image's magnitude) and then trained with the field at ``cfg.coil_lr``."""
    torch.manual_seed(cfg.seed)
    f = NeuralField(
        len(meas.image_shape), 2 if meas.complex_image else 1, for_grid(cfg.net, meas.image_shape)
    )
    if state is not None:
        f.load_state_dict(state)
    f = f.to(meas.y.device)
    inr = ImageINR(f, meas.image_shape, meas.complex_image)
    if cfg.compile:
        inr.field.decoder = torch.compile(inr.field.decoder)
    groups = param_groups(f, cfg.optim.wd_enc, cfg.optim.wd_mlp)
    module, to_domain = inr, None
    if meas.image_maps is not None:
        maps = meas.image_maps
        coils = PolynomialCoils(maps.shape[0], tuple(meas.image_shape), cfg.coil_order, device=maps.device)
        with torch.no_grad():
            weight = meas.image_adjoint(meas.y).abs()
        coils.fit_to(maps, weight / weight.max().clamp_min(1e-30))
        module = nn.ModuleDict({"inr": inr, "coils": coils})
        groups = [*groups, {"params": list(coils.parameters()), "lr": cfg.coil_lr, "weight_decay": 0.0}]

        def to_domain(image):
            return coils() * image

    return Model(
        module,
        groups,
        render=inr,
        to_domain=to_domain,
        at=lambda coords: f(coords)[:, 0],
        render_nograd=inr.render,
    )


def backbone_candidate(cfg: NGPConfig, backbone: str) -> NGPConfig:
    """``cfg`` with another backbone, at that backbone's settings: a SIREN learns slower than a hash grid and
    diverges at its learning rates, so it runs at ``cfg.siren_lr`` for 2.5x the steps with 2x the patience (the
    budget SIREN needed on the quality suite's MRI cases: it chose 686-1363 of 1500 steps, where the hash grid
    chose 251-509 of 600). Other backbones keep ``cfg``'s optimiser."""
    net = replace(cfg.net, backbone=backbone)
    out = replace(cfg, net=net, backbone_candidates=())
    if backbone == "siren" and cfg.net.backbone != "siren":
        out = replace(
            out,
            optim=replace(cfg.optim, lr=cfg.siren_lr, steps=math.ceil(2.5 * cfg.optim.steps)),
            stop=replace(cfg.stop, patience=2 * cfg.stop.patience),
        )
    return out


SELF_WEIGHTED_SETTINGS = {
    "optim.wd_mlp": 1e-7,
    "net.hash.per_level_scale": 1.6,
    "net.hash.max_resolution": None,
}
"""What a self-weighted loss candidate changes besides the loss: the MLP's weight decay and the hash grid's
per-level scale at the point the bilevel search chose on the quality suite's tuning slices (dipy T1 Cartesian
AF 6 and Poisson AF 8, stop 55: lr and wd_enc at NGP's MRI defaults; benchmarks/RESULTS.md)."""


def loss_candidate(cfg: NGPConfig, kind: str) -> NGPConfig:
    """``cfg`` with the data term ``kind`` and no candidates of its own; a self-weighted term (where ``cfg``'s is
    not) at :data:`SELF_WEIGHTED_SETTINGS`."""
    out = replace(cfg, loss=replace(cfg.loss, kind=kind), backbone_candidates=(), loss_candidates=())
    if kind == "self_weighted" and cfg.loss.kind != "self_weighted":
        out = override_config(out, SELF_WEIGHTED_SETTINGS)
    return out


def candidate_settings(cfg: NGPConfig, pointwise: bool) -> list[tuple[str, NGPConfig]]:
    """The alternatives the hold-out rule chooses between beside ``cfg`` (labelled): other backbones
    (``backbone_candidates``), then other data terms (``loss_candidates``, only with the hold-out rule on a
    measured scan)."""
    out = [
        (b, backbone_candidate(cfg, b))
        for b in dict.fromkeys(cfg.backbone_candidates)
        if b != cfg.net.backbone
    ]
    if cfg.stop.rule == "holdout" and not pointwise:
        kinds = dict.fromkeys(cfg.loss_candidates)
        out += [(k, loss_candidate(cfg, k)) for k in kinds if k != cfg.loss.kind]
    return out


def reconstruct_ngp(scan, cfg: NGPConfig, ctx: Context = DEFAULT_CONTEXT) -> ReconResult:
    """Fit a scan-specific INR to ``scan`` (module docstring); with ``backbone_candidates`` or
    ``loss_candidates``, the backbone or the data term too."""
    meas = ngp_measurement(scan, cfg)
    split = splitting_applies(scan, meas, cfg.splitting)
    alternatives = [
        Candidate(label, c, lambda c=c: field_model(meas, c))
        for label, c in candidate_settings(cfg, meas.pointwise)
    ]
    image, info, model = fit_with_holdout(
        meas,
        lambda: field_model(meas, cfg),
        cfg,
        run_id={"method": "ngp", "cfg": config_to_dict(cfg), "supersample": meas.supersample},
        checkpoint_dir=ctx.checkpoint_dir,
        show_progress=ctx.show_progress,
        desc="NGP",
        batch_size=cfg.batch_size,
        alternatives=tuple(alternatives),
        label=cfg.net.backbone if cfg.backbone_candidates else cfg.loss.kind,
    )
    info["n_parameters"] = count_parameters(model.module)
    info["supersample"] = meas.supersample  # CT: what data.ct_supersample resolved to (1 for MRI and volumes)
    image = after_fit(scan, meas, model, cfg.splitting, cfg.optim.steps, split, info, ctx, image)
    return ReconResult(image=image, method="ngp", config=config_to_dict(cfg), info=info)


def splitting_applies(scan, meas: Measurement, cfg: SplittingConfig) -> bool:
    """Whether the denoiser prior runs on ``scan``: it needs a 2D MRI or CT scan of at least 16 x 16 pixels (the
    denoiser's 8 x 8 patches). ``noise="auto"`` (the MRI default) applies where it can and is skipped elsewhere
    (3D scans, volumes, tiny images: ``info["splitting"]["skipped"]``); a noise level given as a number on such
    a scan is refused before any fit."""
    if cfg.noise == 0:
        return False
    shape = tuple(meas.image_shape)
    fits = not meas.pointwise and scan.modality in ("mri", "ct") and len(shape) == 2 and min(shape) >= 16
    if not fits and cfg.noise != "auto":
        raise InreconError(
            f"splitting.noise={cfg.noise} needs a 2D MRI or CT scan of at least 16 x 16 pixels (the denoiser "
            f"matches 8 x 8 patches), got a {scan.modality} image of {shape}",
            "leave splitting.noise at 0 (or auto, which skips it there) for volumes, 3D scans and tiny images",
        )
    return fits


def after_fit(
    scan, meas: Measurement, model: Model, cfg: SplittingConfig, steps: int, applies: bool, info, ctx, image
):
    """The denoiser prior after an INR's fit of ``steps`` budget (NGP's, a population method's adaptation) where
    it ``applies`` (:func:`splitting_applies`): never more splitting steps than that budget (a short fit asked
    for is not followed by 600); where an ``auto`` prior cannot run, ``info["splitting"]`` says so."""
    if applies:
        inner = max(1, min(cfg.inner_steps, steps // cfg.iterations))
        return denoiser_prior(scan, meas, model, replace(cfg, inner_steps=inner), info, ctx, image)
    if cfg.noise == "auto":
        info["splitting"] = {
            "denoiser_used": False,
            "skipped": "the denoiser prior is for 2D images of 16^2+",
        }
    return image


def denoiser_prior(
    scan, meas: Measurement, model: Model, cfg: SplittingConfig, info: dict, ctx: Context, image
):
    """:func:`~inrecon.engine.splitting.split_with_denoiser` on the fitted ``model``, the noise level given or
    chosen by the classical ``pnp`` / ``pnp-ct`` hold-out (where that hold-out keeps TV's image, the INR's own
    image is kept too). Records ``info["splitting"]``; returns the image in the scan's units."""
    t0 = time.perf_counter()
    classical = classical_ct if scan.modality == "ct" else classical_mri
    if cfg.noise == "auto":
        level, scale, found = classical.pnp_noise_level(scan, show_progress=ctx.show_progress)
        record: dict = {
            "denoiser_used": level is not None,
            "holdout_noise": level,
            "holdout_scores": found.get("holdout_scores"),
        }
        level = None if level is None else level * cfg.noise_factor
    else:
        level, scale = float(cfg.noise), classical.pnp_scale(scan)
        record = {"denoiser_used": True}
    if not record["denoiser_used"]:
        info["splitting"] = {**record, "seconds": time.perf_counter() - t0}
        return image
    sigma = level * scale / meas.scale  # in the fitted image's units
    if scan.modality == "ct":

        def denoise(v):
            return block_matching_denoise(v, sigma).clamp_min(0.0)

    else:

        def denoise(v):
            return denoise_complex(v, sigma, classical_mri.PnPConfig().phase_width)

    ck = None
    if ctx.checkpoint_dir is not None:
        fp = config_fingerprint(
            {"splitting": config_to_dict(cfg), "noise": level, "data": data_identity(meas)}
        )
        ck = Checkpoint(Path(ctx.checkpoint_dir) / "splitting.pt", fp)
    run = split_with_denoiser(meas, model, cfg, denoise, checkpoint=ck, show_progress=ctx.show_progress)
    info["splitting"] = {
        **record,
        "noise": level,
        "noise_abs": sigma,
        "steps": run.step,
        "history": run.history,
        "seconds": time.perf_counter() - t0,
    }
    return meas.finalize(model.image())


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


def explicit_scale(h: dict) -> dict:
    """A tuned ``per_level_scale`` replaces one derived from ``max_resolution``."""
    return {**h, "net.hash.max_resolution": None} if "per_level_scale" in h else dict(h)


def ngp_apply(cfg: NGPConfig, h: dict, info: dict) -> dict:
    """The final fit's overrides (:func:`~inrecon.tuning.objective.final_overrides` with the tuned scale)."""
    return final_overrides(cfg, explicit_scale(h), info)


def ngp_objective(scan, cfg: NGPConfig, space: SearchSpace, *, oracle=False, show_progress=None, model=None):
    """``h -> (score, info)``: a trial fits the INR with ``cfg`` updated by ``h`` on the training part of the
    hold-out split (``cfg.stop.fraction``, ``cfg.seed``) and is scored by its best held-out loss (``cfg.stop``'s
    ``val_loss``), or by ``-PSNR`` in oracle mode; ``info["chosen_steps"]`` is its best step."""
    apply_h(cfg, space.from_unit([0.5] * space.dim))  # names checked before any work
    if cfg.backbone_candidates:
        raise InreconError(
            f"bilevel tuning searches one backbone's settings, but backbone_candidates={cfg.backbone_candidates}",
            "leave backbone_candidates empty (--set backbone_candidates=) and choose net.backbone for the tuning",
        )
    meas = ngp_measurement(scan, cfg)
    if meas.pointwise:
        raise InreconError("bilevel tuning needs an MRI or CT scan", "tune on measured data, not a volume")
    cfg = replace(cfg, loss_candidates=())  # a trial fits loss.kind (the candidates are the hold-out rule's)
    split = meas.split(cfg.stop.fraction, cfg.seed)
    # prior.tv=auto: chosen once, with the defaults, before the search; every trial then runs that weight
    cfg = resolve_prior(meas, lambda: field_model(meas, cfg), cfg, show_progress=show_progress)

    def objective(h: dict) -> tuple[float, dict]:
        c = apply_h(cfg, explicit_scale(h))
        score, info = score_trial(
            meas,
            field_model(meas, c),
            c,
            oracle=oracle,
            split=split,
            show_progress=show_progress,
            desc="NGP trial",
        )
        info["loss"] = c.loss.kind
        return score, info

    return objective


NGP = MethodSpec(
    "ngp",
    reconstruct_ngp,
    NGPConfig,
    ("mri", "ct", "volume"),
    "scan-specific INR (hash grid + MLP; net.backbone=fourier|siren) with a hold-out stopping rule",
    tunable=Tunable(NGP_SPACE, ngp_objective, ngp_apply),
    modality_defaults=NGP_MODALITY_DEFAULTS,
)
