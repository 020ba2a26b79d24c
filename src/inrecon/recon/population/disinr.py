"""DisINR (docs/methods.md section 5): pre-train a shared encoder-decoder pair from raw measurements, then adapt a
fresh subject encoder to a new scan with the shared pair frozen.

Pre-training (Algorithm 1) fits ``psi`` (shared encoder), ``phi`` (shared decoder) and one ``theta_i`` per
subject to every subject's measurements through its own forward operator; no images are used. Adaptation
(Algorithm 2) loads ``psi, phi``, freezes them (``freeze=False`` for the ablation), initialises a new ``theta``
and fits it to the new scan with the one reference-free stopping rule. Because the shared encoder is frozen and
the coordinates are fixed, its features are computed once per adaptation. The adaptation is tunable (learning
rate and subject-encoder weight decay, :data:`DISINR_SPACE`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from inrecon.config import PosFloat, PosInt, config_from_dict
from inrecon.engine.holdout import Candidate, resolve_prior, score_trial
from inrecon.errors import InreconError
from inrecon.models.fields import grid_coords
from inrecon.models.population import DisINRNetwork, PopulationArch
from inrecon.physics.measurement import measure
from inrecon.recon.inr.ngp import NGP_MODALITY_DEFAULTS
from inrecon.recon.population import common
from inrecon.recon.registry import Context, MethodSpec, Pretrainer, ReconResult
from inrecon.tuning.bo import Param, SearchSpace
from inrecon.tuning.objective import Tunable, apply_h, final_overrides

__all__ = [
    "DISINR",
    "DISINR_ADAPT_MODALITY_DEFAULTS",
    "DISINR_PRETRAIN_MODALITY_DEFAULTS",
    "DISINR_SPACE",
    "DisINRAdaptConfig",
    "DisINRPretrainConfig",
    "feature_pca",
    "load_disinr",
    "pretrain_disinr",
    "reconstruct_disinr",
]


@dataclass
class DisINRPretrainConfig(common.PopulationPretrainConfig):
    """DisINR pre-training: encoders of two 128-unit layers, decoder 256 -> 128 -> out (paper appendix A.1)."""


@dataclass
class DisINRAdaptConfig(common.AdaptConfig):
    """Test-time adaptation (Algorithm 2): Adam lr 1e-3 halved every 1000 steps, up to 4000 steps, stopped by the
    hold-out rule."""

    freeze: bool | Literal["auto"] = True
    """Keep the shared pair fixed (False: the ablation that also trains it; "auto": adapt both ways on the
    hold-out split and keep the one with the lower held-out loss, ``info["candidate"]`` -- about twice the
    hold-out stage's time)."""
    shared_lr_scale: PosFloat = 1.0
    """With ``freeze=False``: the shared pair's learning rate as a fraction of ``optim.lr`` (1: the paper's
    ablation, every weight at one rate; below 1 the pre-trained pair moves more slowly than the new subject
    encoder)."""
    coord_batch: PosInt = 2**18
    """Volumes larger than this: coordinates per step."""


DISINR_PRETRAIN_MODALITY_DEFAULTS = {
    "ct": {
        "arch.hash.n_levels": 8,
        "arch.hash.max_resolution": "grid",
        "arch.mlp_dtype": "auto",
        "augment.rotations": 4,
        "augment.mirror": True,
    },
    "mri": {
        "arch.hash.n_levels": 8,
        "arch.hash.max_resolution": "grid",
        "arch.mlp_dtype": "auto",
        "data.scale": "image",
    },
}
"""Where DisINR's pre-training defaults differ by modality (the model file records them, so adaptation uses
the same). CT: both encoders on 8 hash levels, none finer than the image grid (instead of 16 levels growing by
1.5). Measured with ``benchmarks/disinr_ct.py`` (lungdx 128^2, 60 fan views, 1e5 photons; pre-trained on 16
noisy A0001 slices): chosen on A0001 slice 30 / A0002 slice 15, 30.64 / 31.31 dB (2000 steps) -> 31.14 / 31.74
dB (1000 steps); confirmed on A0001 slice 45 / A0002 slices 5 and 25 (RESULTS.md); a pre-training step 1.39x
faster. MRI takes the same 8 grid-limited levels since 2026-12-04 (stop 39; with the image-scale pre-training
and NGP's MRI optimiser): chosen on the dipy T1 slice at 128^2, AF 6 (``benchmarks/disinr_mri_dipy.py``) 32.85
-> 33.19 dB and the real 8-coil brain (``benchmarks/disinr_mri_brain.py``, 12 phantoms x 1000 steps) 33.66 ->
33.88 dB, pre-training 1.2x faster; confirmed by ``inrecon bench mri_undersampled --quick --set 'arch={}'``
(every method's own architecture), means of two subjects: AF 6 in domain +0.86, out of domain +0.09, unseen
Poisson AF 12 +1.01, the real brain +0.20 dB (one subject -0.04). For NGP the grid-limited hash lost 1.5 dB on
the real brain; NGP keeps the paper's grid.
CT and MRI: bfloat16 products where the hardware has them (``auto``): the same images (31.16 /
31.76 dB on the case above; the demo's MRI 26.97 vs 26.99 dB) from a pre-training step 1.7x faster again.
Volumes keep float32: their fits pass 60 dB, beyond bf16's precision. Re-checked on slices projected from
their native 512^2 grid (no inverse crime), adapted with the Hann ramp: the paper's 16 levels against these 8,
tuning slices +1.92 / -0.11 dB, confirmation slices A0001[45] / A0002[5] / A0002[25] +0.09 / -0.46 / -0.08 dB,
so the 8 levels stay. CT also pre-trains on every scan at 4 rotations and their mirrors (exact
measurement-domain augmentation, :mod:`inrecon.data.augment`; 8 subjects per scan, the same steps, a
pre-training 1.1x slower): on those native-grid slices, two pre-training seeds each, tuning +1.18 / +0.15 dB
and confirmation +1.11 / +0.29 / +0.15 dB (means), every slice better under both seeds (RESULTS.md). MRI
pre-trains at NGP's image scale (``data.scale="image"``: the image peaks near 1 whatever the scan's size and
sampling) and adapts with NGP's MRI optimiser (:data:`DISINR_ADAPT_MODALITY_DEFAULTS`)."""


DISINR_ADAPT_MODALITY_DEFAULTS = {
    **common.ADAPT_MODALITY_DEFAULTS,
    "ct": {
        **common.ADAPT_MODALITY_DEFAULTS["ct"],
        "stop.min_chosen": 0.02,
        # NGP's finer image grid where the scan is on a GPU
        "data.ct_supersample": NGP_MODALITY_DEFAULTS["ct"]["data.ct_supersample"],
    },
    "mri": {
        **common.ADAPT_MODALITY_DEFAULTS["mri"],
        **{k: NGP_MODALITY_DEFAULTS["mri"][k] for k in ("optim.lr", "optim.wd_enc")},  # NGP's MRI optimiser
    },
}
"""DisINR's test-time fit: the population methods' defaults
(:data:`~inrecon.recon.population.common.ADAPT_MODALITY_DEFAULTS`) and, on CT, a hold-out floor of 2 % of the
budget (80 of 4000 steps) instead of 5 %: with the shared pair frozen a subject encoder fits the noisy
sinogram's anatomy within 100-160 steps, and the 200-step floor ran it into the noise. On the native-grid
lungdx slices (RESULTS.md), with the augmented pre-training, two seeds: tuning A0001[30] / A0002[15] +0.30 /
0.00 and +0.15 / 0.00 dB, confirmation A0001[45] / A0002[5] / A0002[25] +0.27 / +0.16 / 0.00 and 0.00 / +0.26
/ 0.00 dB; no slice worse; the rule chose 100-361 steps. MRI keeps 5 % (on the real 8-coil brain 2 % gained
+0.19 dB, one case). MRI adapted at lr 3e-3 instead of 1e-3 (stop 36), with the image-scale pre-training
(:data:`DISINR_PRETRAIN_MODALITY_DEFAULTS`; the data scale follows the model file): the real 8-coil brain
(``benchmarks/disinr_mri_brain.py``, 12 phantoms x 1000 steps) 30.30 -> 31.32 dB (lr 1e-2: 30.18); the dipy T1
slice at 128^2, 12 coils, Cartesian AF 6 (12 phantoms) 30.76 -> 31.52 dB (max scale at 3e-3: 31.07; image
scale at 1e-3: 30.57). The image scale came from the quick demo's phantoms (+0.4-0.6 dB), the rate from the
brain; the dipy slice confirms the pair, as do the cases of ``inrecon bench mri_undersampled --quick`` (+0.01
to +1.52 dB, none worse). Since 2026-12-04 (stop 38) MRI adapts with NGP's MRI optimiser, lr 1e-2 and a weight
decay of 1e-5 on the subject's hash tables only (``optim.wd_enc``; the subject's layers take ``optim.wd_mlp``,
0): an undecayed subject table fits the aliasing within ~200 steps. The dipy T1 slice at 256^2 (12 phantoms x
1000 steps): 35.75 -> 39.21 dB (lr 3e-3: 39.14; decay 3e-5: 38.28; the same decay on the whole subject encoder
stopped at the 200-step floor); the real brain 31.34 -> 33.74 dB (lr 3e-3: 32.60; 3e-5: 33.33). NGP 41.11 /
34.15 dB on the two (RESULTS.md). Confirmed where nothing was chosen: ``inrecon bench mri_undersampled
--quick`` in domain +1.86, out of domain +0.33, Poisson AF 12 +1.21, the real brain +1.72 dB (phantoms: means
of two subjects); the full demo profile's 256^2 phantom 22.73 -> 30.47 dB (NGP 30.96). Since 2026-12-04 (stop
39) a CT adaptation models the image on NGP's grid (``data.ct_supersample="auto"``: 2x finer where the scan is on
a GPU, and since stop 45 on the CPU too for a scan of at most 128^2 pixels, where it costs 3-4x the time).
Measured on the CPU with the 62-slice augmented model (RESULTS.md, stop 35): 2x finer against the scan's grid
+0.67 / +0.57 dB on the tuning slices A0001[30] / A0002[15] and +0.75 / +1.37 / +0.48 on the confirmation slices,
as NGP gains there; with it DisINR and NGP are compared on the same grid on every device. A CT weight decay on
the subject's hash tables (``optim.wd_enc`` 1e-5 / 1e-4 / 1e-3) changed nothing or lost (stop 39: tuning slices
27.58 / 29.77, 27.55 / 29.83, 26.22 / 29.77 against 27.60 / 29.77 dB), so CT keeps none."""


def pretrain_disinr(scans, cfg: DisINRPretrainConfig, output, **run) -> Path:
    """Pre-train DisINR on ``scans`` (their raw measurements only) and write the model file ``output``; ``run``:
    ``names``, ``show_progress``, ``checkpoint_dir``."""
    return common.pretrain_population("disinr", DisINRNetwork, scans, cfg, output, **run)


def load_disinr(model: str | Path, scan=None, device=None) -> tuple[DisINRNetwork, dict]:
    """The pre-trained shared pair (no subject encoders) and the model's metadata; checks ``scan`` first."""
    state, meta = common.load_model(model, "disinr", scan)
    sig = meta["signature"]
    net = DisINRNetwork(
        len(sig["image_shape"]), sig["channels"], [], config_from_dict(PopulationArch, meta["architecture"])
    )
    missing, unexpected = net.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith("subjects.") for k in missing):
        raise InreconError(
            f"{model} does not match the DisINR architecture in its own header",
            "re-create it with inrecon pretrain",
        )
    return (net.to(device) if device is not None else net), meta


def _builder(net: DisINRNetwork, meas, cfg: DisINRAdaptConfig):
    if not isinstance(cfg.freeze, bool):
        raise ValueError(f"one adaptation freezes or not, got freeze={cfg.freeze!r}")  # auto: resolved first
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}

    def build():
        return common.adapted_model(
            lambda: DisINRNetwork(net.dim, net.out_channels, [], net.cfg),
            state,
            meas,
            freeze=cfg.freeze,
            seed=cfg.seed,
            wd_enc=cfg.optim.wd_enc,
            wd_mlp=cfg.optim.wd_mlp,
            batch_size=cfg.coord_batch,
            shared_lr_scale=cfg.shared_lr_scale,
        )

    return build


def reconstruct_disinr(scan, cfg: DisINRAdaptConfig, ctx: Context) -> ReconResult:
    """Adapt a pre-trained DisINR to ``scan`` (model compatibility is checked before any work)."""
    common.require_model(ctx, "disinr")
    net, meta = load_disinr(ctx.model, scan, device=scan.device)  # compatibility checked before any work
    cfg = common.resolve_data_scale(cfg, meta, str(ctx.model))
    meas = measure(scan, cfg.data)
    main, alternatives, label = cfg, (), "main"
    if cfg.freeze == "auto":  # both ways on the hold-out split; the lower held-out loss is refitted
        main, unfrozen = replace(cfg, freeze=True), replace(cfg, freeze=False)
        alternatives, label = (Candidate("unfrozen", unfrozen, _builder(net, meas, unfrozen)),), "frozen"
    result = common.adapt(
        "disinr",
        scan,
        meas,
        _builder(net, meas, main),
        main,
        ctx,
        batch_size=cfg.coord_batch,
        alternatives=alternatives,
        label=label,
    )
    result.info["pretrained_on"] = meta.get("trained_on")
    return result


@torch.no_grad()
def feature_pca(
    net: DisINRNetwork, subject: int, image_shape, n_components: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """PCA of the shared and the subject features on the grid, as images (paper Fig. 5).

    Returns two arrays ``(*image_shape, n_components)`` scaled to [0, 1] per component.
    """
    device = next(net.parameters()).device
    plan = net.plan(grid_coords(tuple(image_shape), device=device))

    def pca(feats: torch.Tensor) -> np.ndarray:
        f = feats.double() - feats.double().mean(0, keepdim=True)
        _, _, v = torch.linalg.svd(f, full_matrices=False)
        comp = (f @ v[:n_components].T).cpu().numpy()
        lo, hi = np.percentile(comp, 1, axis=0), np.percentile(comp, 99, axis=0)
        comp = np.clip((comp - lo) / np.maximum(hi - lo, 1e-12), 0, 1)
        return comp.reshape(*image_shape, n_components)

    return pca(net.shared_features(plan)), pca(net.subject_features(plan, subject))


DISINR_SPACE = SearchSpace((Param("lr", -4.0, -2.0, log=True), Param("wd_enc", -9.0, -4.0, log=True)))
"""Adaptation learning rate and the weight decay of the subject's hash tables (log10 bounds; the MRI default 1e-5
inside them)."""


def disinr_objective(
    scan, cfg: DisINRAdaptConfig, space: SearchSpace, *, oracle=False, show_progress=None, model=None
):
    """``h -> (score, info)``: a trial adapts a fresh subject encoder (shared pair as ``cfg.freeze`` says) on the
    training part of the hold-out split and is scored by its best held-out loss (``-PSNR`` in oracle mode)."""
    if model is None:
        raise InreconError("tuning DisINR's adaptation needs its pre-trained model", "pass --model PATH")
    if cfg.freeze == "auto":
        raise InreconError(
            "tuning DisINR's adaptation needs one freezing choice, got freeze=auto",
            "tune with --set freeze=true (or false)",
        )
    apply_h(cfg, space.from_unit([0.5] * space.dim))  # names checked before any work
    net, meta = load_disinr(model, scan, device=scan.device)
    cfg = common.resolve_data_scale(cfg, meta, str(model))
    meas = measure(scan, cfg.data)
    if meas.pointwise:
        raise InreconError("bilevel tuning needs an MRI or CT scan", "tune on measured data, not a volume")
    split = meas.split(cfg.stop.fraction, cfg.seed)
    # prior.tv=auto: chosen once, with the defaults, before the search; every trial then runs that weight
    cfg = resolve_prior(meas, _builder(net, meas, cfg), cfg, show_progress=show_progress)

    def objective(h: dict) -> tuple[float, dict]:
        c = apply_h(cfg, h)
        m = _builder(net, meas, c)()
        return score_trial(
            meas, m, c, oracle=oracle, split=split, show_progress=show_progress, desc="DisINR trial"
        )

    return objective


DISINR = MethodSpec(
    "disinr",
    reconstruct_disinr,
    DisINRAdaptConfig,
    ("mri", "ct", "volume"),
    "DisINR: adapt a subject encoder with the pre-trained shared encoder-decoder frozen (needs --model)",
    needs_model=True,
    pretrain=Pretrainer(
        DisINRPretrainConfig,
        pretrain_disinr,
        distributed=True,
        summary="shared encoder-decoder + one encoder per subject (DisINR Algorithm 1)",
        modality_defaults=DISINR_PRETRAIN_MODALITY_DEFAULTS,
    ),
    tunable=Tunable(DISINR_SPACE, disinr_objective, final_overrides),
    modality_defaults=DISINR_ADAPT_MODALITY_DEFAULTS,
)
