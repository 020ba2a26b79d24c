"""Bench drivers for the DisINR paper's tables and figures (Tables 1-5 and 7, Figs. 2B, 5 and 7).

Every driver builds its pre-training and test populations from real data when present (chest CT volumes from
two scanners; the real T1 brain slice and the real 8-coil brain scan) and from phantoms otherwise, pre-trains
the population methods on measurements only, then compares every method on unseen subjects with the same
reference-free stopping rule. Each reads its parameters as a typed config (below); the experiment's JSON file
gives the values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from inrecon.config import NonNegFloat, PosFloat, PosInt
from inrecon.data import shared
from inrecon.data.phantoms import body_ct_volume, brain_phantom
from inrecon.data.scans import VolumeScan
from inrecon.errors import InreconError
from inrecon.experiments.drivers.common import QUALITY_BEST, Log, entries
from inrecon.experiments.drivers.populations import (
    CTMethod,
    Fitting,
    MetaPretraining,
    MRIMethod,
    MRISimulation,
    PopulationMethod,
    Pretrainer,
    Pretraining,
    Running,
    Subjects,
    compare,
    ct_images,
    ct_scans,
    method_runs,
    mri_images,
    mri_scans,
    new_report,
    pretrain_and_compare,
    section,
)
from inrecon.experiments.runner import MethodRun
from inrecon.physics.coils import with_espirit_support
from inrecon.report import Report, aggregate

__all__ = [
    "AblationFreezingConfig",
    "BackboneLR",
    "BackbonesConfig",
    "CTSparseViewConfig",
    "FeaturePCAConfig",
    "MRIUndersampledConfig",
    "PretrainSizeConfig",
    "RealBrain",
    "UnseenPattern",
    "VolumeFittingConfig",
    "ablation_freezing",
    "backbones",
    "ct_sparse_view",
    "feature_pca",
    "mri_undersampled",
    "pretrain_size",
    "volume_fitting",
]


# --- Table 3: sparse-view CT -----------------------------------------------------------------------------
@dataclass
class CTSparseViewConfig(Subjects, MetaPretraining, Fitting, Running):
    """DisINR Table 3: sparse-view fan-beam CT, in and out of domain."""

    views: tuple[PosInt, ...] = (60, 90)
    """View counts (one pre-training and one comparison per count and noise level)."""
    photons: tuple[NonNegFloat, ...] = (0.0, 1e5)
    """Noise levels: Poisson noise at this many photons per ray (0: noise-free); pre-training and test scans of a
    setting share it."""
    methods: tuple[CTMethod, ...] = ("fbp", "sart", "tv", "ngp", "saxnerf", "meta", "strainer", "disinr")
    """Methods compared (population methods only when pre-trained)."""
    pretrain_methods: tuple[PopulationMethod, ...] = ("disinr", "meta", "strainer")
    """Population methods pre-trained for each view count."""


def ct_sparse_view(cfg: CTSparseViewConfig, out: Path, show_progress, log: Log) -> Report:
    *images, note = ct_images(cfg, log)
    rep = new_report("Sparse-view CT (DisINR Table 3)", note)
    pretrain = Pretrainer(cfg, out, show_progress, log)
    settings = [
        (
            (f"ct {v} views{_noise(p)}", f"{v} views{_noise(p)}", f"ct{v}" + (f"_p{p:g}" if p else "")),
            lambda imgs, seed0, v=v, p=p: ct_scans(imgs, v, p, seed0, cfg.size),
        )
        for v in cfg.views
        for p in cfg.photons
    ]
    done = pretrain_and_compare(rep, cfg, pretrain, images, settings, show_progress, log)
    summary = [row for _runs, rows in done for row in rows]
    rep.add_table(
        "Summary (PSNR / SSIM, mean ± std)",
        summary,
        columns=["setting", "method", "psnr", "ssim", "seconds"],
        best=None,
    )
    pretrain.add_bars(rep)
    return rep


def _noise(photons: float) -> str:
    return f", {photons:g} photons/ray" if photons else ""


# --- Table 2 (and 7): undersampled MRI -------------------------------------------------------------------
@dataclass
class UnseenPattern:
    """A sampling pattern the models never saw in pre-training (DisINR Table 7)."""

    pattern: Literal["radial", "poisson", "cartesian"] = "poisson"
    """radial (Nyquist-sampled readouts), poisson (Poisson disc with the acs calibration square) or cartesian."""
    af: PosInt | PosFloat = 12
    """Its acceleration."""


@dataclass
class RealBrain:
    """The real 8-coil brain (Poisson 12.7 %) with models pre-trained on simulated phantom acquisitions on its
    grid (skipped when the data is absent)."""

    enabled: bool = True
    """Run this section."""
    n_pretrain: PosInt | None = None
    """Simulated pre-training subjects (unset: the experiment's n_pretrain)."""
    acs: PosInt = 24
    """Calibration square of the simulated Poisson-disc acquisitions."""
    methods: tuple[MRIMethod, ...] | None = None
    """Methods compared (unset: the experiment's methods)."""
    pretrain_methods: tuple[PopulationMethod, ...] | None = None
    """Population methods pre-trained (unset: the experiment's pretrain_methods)."""


@dataclass
class MRIUndersampledConfig(Subjects, MRISimulation, MetaPretraining, Fitting, Running):
    """DisINR Tables 2 and 7: 1D Cartesian multi-coil MRI in and out of domain, unseen patterns, real brain."""

    unseen_patterns: tuple[UnseenPattern, ...] = field(
        default_factory=lambda: (UnseenPattern("radial", 10), UnseenPattern("poisson", 20))
    )
    """Patterns tested with the models pre-trained on each Cartesian AF ({"pattern", "af"} objects)."""
    methods: tuple[MRIMethod, ...] = (
        "zf",
        "cgsense",
        "l1wavelet",
        "tv",
        "imjense",
        "ngp",
        "meta",
        "strainer",
        "disinr",
    )
    """Methods compared (population methods only when pre-trained)."""
    pretrain_methods: tuple[PopulationMethod, ...] = ("disinr", "meta", "strainer")
    """Population methods pre-trained for each AF."""
    real_brain: RealBrain = field(default_factory=RealBrain)
    """The real 8-coil brain section."""

    def check(self) -> None:
        self.unseen_patterns = entries(UnseenPattern, self.unseen_patterns, "unseen_patterns")


def mri_undersampled(cfg: MRIUndersampledConfig, out: Path, show_progress, log: Log) -> Report:
    *images, note = mri_images(cfg, log)
    rep = new_report("Undersampled multi-coil MRI (DisINR Table 2)", note)
    pretrain = Pretrainer(cfg, out, show_progress, log)
    settings = [
        (
            (f"mri AF {af}", f"AF {af}", f"mri_af{af}"),
            lambda imgs, s0, af=af: mri_scans(imgs, cfg, af, seed0=s0),
        )
        for af in cfg.afs
    ]
    summary = []
    done = pretrain_and_compare(rep, cfg, pretrain, images, settings, show_progress, log)
    for af, (runs, rows) in zip(cfg.afs, done):
        summary += rows
        summary += _unseen_sections(rep, cfg, out, images[1], af, runs, show_progress, log)
    if cfg.real_brain.enabled and shared.available(shared.BRAIN8CH):
        summary += _real_brain_section(rep, cfg, pretrain, show_progress, log)
    rep.add_table("Summary (mean ± std)", summary, columns=["setting", "method", "psnr", "ssim", "seconds"])
    return rep


def _unseen_sections(
    rep: Report,
    cfg: MRIUndersampledConfig,
    out: Path,
    images,
    af: int,
    runs: list[MethodRun],
    show_progress,
    log: Log,
) -> list[dict]:
    """Table 7: the models pre-trained on Cartesian AF ``af`` tested on the unseen patterns."""
    summary = []
    for u in cfg.unseen_patterns:
        scans = mri_scans(images, cfg, u.af, seed0=200, pattern=u.pattern)
        cases = [(f"{u.pattern}-AF{u.af}-{i + 1}", s) for i, s in enumerate(scans)]
        prun = [r for r in runs if r.method != "imjense" or u.pattern != "radial"]
        comp = compare(cases, prun, cfg, out, show_progress, log)
        title = f"Unseen pattern: {u.pattern} AF {u.af} (pre-trained on Cartesian AF {af})"
        summary += [{"setting": f"{u.pattern} AF {u.af}", **row} for row in section(rep, title, comp)]
    return summary


def _real_brain_section(
    rep: Report, cfg: MRIUndersampledConfig, pretrain: Pretrainer, show_progress, log: Log
) -> list[dict]:
    """The real 8-coil brain (Poisson 12.7 %, scored against ``img`` in the coil-map support).

    A model is tied to its image grid and coil layout, so a second DisINR (and Meta/STRAINER when asked) is
    pre-trained on simulated 8-coil Poisson-disc acquisitions of T2-like phantoms on the scan's own 180 x 230
    grid, at the scan's acceleration; no image of the real scan is used anywhere.
    """
    rb = cfg.real_brain
    scan = with_espirit_support(shared.brain8ch())
    shape = tuple(scan.kspace.shape[-2:])
    af = float(scan.mask.numel() / scan.mask.sum())
    n_pre = rb.n_pretrain or cfg.n_pretrain
    log(f"[real brain8ch, Poisson AF {af:.1f}] pre-training on {n_pre} simulated phantoms at {shape}")
    phantoms = [brain_phantom(shape, seed=s, contrast="t2") for s in range(n_pre)]
    pre = mri_scans(phantoms, cfg, af, pattern="poisson", coils=scan.kspace.shape[0], acs=rb.acs)
    pretrain_methods = cfg.pretrain_methods if rb.pretrain_methods is None else rb.pretrain_methods
    models = pretrain.all(pretrain_methods, pre, "brain8ch")
    runs = method_runs(cfg, cfg.arch, models, cfg.methods if rb.methods is None else rb.methods)
    comp = compare([("brain8ch", scan)], runs, cfg, pretrain.out, show_progress, log)
    table = section(rep, f"Real 8-coil brain (Poisson AF {af:.1f}), pre-trained on phantoms", comp)
    return [{"setting": "real brain8ch", **row} for row in table]


# --- Table 1 / Fig. 2B: 3D volume fitting ----------------------------------------------------------------
@dataclass
class VolumeFittingConfig(Subjects, MetaPretraining, Running):
    """DisINR Table 1 / Fig. 2B: 3D CT volume fitting, coordinates in batches."""

    depth: PosInt = 16
    """Slices per volume."""
    coord_batch: PosInt = 262144
    """Coordinates per step (pre-training and fitting)."""
    steps: PosInt = 500
    """Fitting steps of NGP and DisINR (no stopping rule for volumes)."""
    early_step: PosInt = 50
    """Also report the PSNR after this many steps."""
    eval_every: PosInt = 25
    """Evaluate the PSNR every this many steps."""
    ood: bool = True
    """With real data: also test on a block of the second scanner's volume."""
    adapt_lr: PosFloat = 1e-3
    """DisINR's adaptation learning rate."""
    pretrain_methods: tuple[PopulationMethod, ...] = ("disinr",)
    """Population methods pre-trained (DisINR is compared when pre-trained)."""


def _volumes(p: VolumeFittingConfig, log: Log) -> tuple[list, list, str]:
    d, n = p.depth, p.size
    if p.real and shared.available(shared.LUNGDX_A0001):
        a = shared.lungdx_slices("A0001", size=n)
        blocks = [a[i : i + d] for i in range(0, len(a) - d + 1, d)]
        pre, test = blocks[: p.n_pretrain], blocks[p.n_pretrain : p.n_pretrain + p.n_test]
        if shared.available(shared.LUNGDX_A0002) and p.ood:
            b = shared.lungdx_slices("A0002", size=n)
            test = [*test, b[:d]]
        note = (
            f"Data: real chest CT sub-volumes {n}x{n}x{d} (A0001 blocks for pre-training and "
            "test; one A0002 block, another scanner). HU window [-800, 400] -> [0, 1]."
        )
        return pre, test, note
    log("  real CT volumes not found: using chest phantom volumes")
    pre = [body_ct_volume((d, n, n), seed=s) for s in range(p.n_pretrain)]
    test = [body_ct_volume((d, n, n), seed=500 + s) for s in range(p.n_test)]
    return pre, test, "Data: chest phantom volumes (no real CT found)."


def _volume_runs(cfg: VolumeFittingConfig, models: dict[str, Path]) -> list[MethodRun]:
    common = {"steps": cfg.steps, "eval_every": cfg.eval_every}
    ngp = {**common, "batch_size": cfg.coord_batch, **cfg.arch.overrides()}
    runs = [MethodRun("NGP", "ngp", ngp)]
    if "disinr" in models:
        over = {**common, "coord_batch": cfg.coord_batch, "lr": cfg.adapt_lr}
        runs.append(MethodRun("DisINR", "disinr", over, model=str(models["disinr"])))
    return runs


def volume_fitting(cfg: VolumeFittingConfig, out: Path, show_progress, log: Log) -> Report:
    pre_v, test_v, note = _volumes(cfg, log)
    rep = new_report("3D volume fitting (DisINR Table 1, Fig. 2B)", note)
    pretrain = Pretrainer(cfg, out, show_progress, log)
    pre = [VolumeScan(volume=v) for v in pre_v]
    batch = {"coord_batch": cfg.coord_batch}
    models = {m: pretrain(m, pre, "volume", None if m == "meta" else batch) for m in cfg.pretrain_methods}
    cases = [(f"volume-{i + 1}", VolumeScan(volume=v)) for i, v in enumerate(test_v)]
    comp = compare(cases, _volume_runs(cfg, models), cfg, out, show_progress, log)
    early = f"psnr@{cfg.early_step}"
    rows = []
    for r in comp.results:
        h = r.info.get("history", {})
        at = dict(zip(h.get("eval_step", []), h.get("psnr", [])))
        first = max((s for s in at if s <= cfg.early_step), default=None)
        rows.append(
            {
                "case": r.case,
                "method": r.label,
                "psnr": r.metrics["psnr"],
                "ssim": r.metrics["ssim"],
                early: at.get(first, float("nan")),
                "seconds": r.seconds,
                "trainable_params": r.info.get("n_parameters_trainable", r.info.get("n_parameters")),
            }
        )
    table = aggregate(rows, by="method", metrics=("psnr", "ssim", early, "seconds", "trainable_params"))
    title = f"Volume fitting: PSNR after {cfg.steps} steps and after {cfg.early_step}"
    rep.add_table(title, table, best=QUALITY_BEST)
    mid = next(iter(comp.references))
    ref = comp.references[mid]
    k = ref.shape[0] // 2
    rep.add_image_grid(
        f"Middle slice of {mid}",
        {lab: img[k] for lab, img in comp.images(mid).items()},
        reference=ref[k],
        metrics=comp.metrics_for(mid),
    )
    rep.add_curves("Convergence (PSNR vs step)", comp.curves(mid))
    pretrain.add_bars(rep)
    return rep


# --- Table 4: freezing ablation; Table 5: backbones ------------------------------------------------------
@dataclass
class AblationFreezingConfig(Subjects, Pretraining, Fitting, Running):
    """DisINR Table 4: freezing the shared pair (DisINR) or the encoder (STRAINER) vs not; CT in domain."""

    views: PosInt = 60
    """Views of the sparse-view CT scans."""


def ablation_freezing(cfg: AblationFreezingConfig, out: Path, show_progress, log: Log) -> Report:
    pre_img, test_img, _ood, note = ct_images(cfg, log)
    rep = new_report("Effect of weight freezing (DisINR Table 4)", note)
    views = cfg.views
    models = Pretrainer(cfg, out, show_progress, log).all(
        ("disinr", "strainer"), ct_scans(pre_img, views, size=cfg.size), f"ct{views}"
    )
    inr = cfg.inr_overrides()
    strainer, disinr = str(models["strainer"]), str(models["disinr"])
    runs = [
        MethodRun("NGP", "ngp", inr),
        MethodRun("STRAINER (w/o frozen)", "strainer", inr, model=strainer),
        MethodRun("STRAINER (frozen encoder)", "strainer", {**inr, "freeze_trunk": True}, model=strainer),
        MethodRun("DisINR (w/o frozen)", "disinr", {**inr, "freeze": False}, model=disinr),
        MethodRun("DisINR (frozen pair)", "disinr", inr, model=disinr),
    ]
    cases = [(f"in-domain-{i + 1}", s) for i, s in enumerate(ct_scans(test_img, views, size=cfg.size))]
    comp = compare(cases, runs, cfg, out, show_progress, log)
    section(rep, f"{views} views, in-domain", comp)
    return rep


@dataclass
class BackboneLR:
    """A learning rate per backbone (unset: the method's default)."""

    hash: PosFloat | None = None
    """Hash grid + ReLU MLP."""
    fourier: PosFloat | None = None
    """Fourier features + ReLU MLP."""
    siren: PosFloat | None = None
    """SIREN."""

    def overrides(self, backbone: str) -> dict:
        lr = getattr(self, backbone)
        return {} if lr is None else {"lr": lr}


@dataclass
class BackbonesConfig(Subjects, MRISimulation, Pretraining, Fitting, Running):
    """DisINR Table 5: the scan-specific INR vs DisINR with each backbone, MRI in domain (the first AF)."""

    backbones: tuple[Literal["hash", "fourier", "siren"], ...] = ("hash", "fourier", "siren")
    """Backbones compared."""
    ngp_lr: BackboneLR = field(default_factory=lambda: BackboneLR(fourier=1e-3, siren=1e-4))
    """Learning rate of the scan-specific INR per backbone."""
    pretrain_lr: BackboneLR = field(default_factory=lambda: BackboneLR(siren=1e-4))
    """Learning rate of DisINR's pre-training per backbone."""


def _mri_in_domain(cfg, log: Log, title: str) -> tuple[Report, list, list, int]:
    """The report, the pre-training scans and the in-domain test cases at the first AF of ``cfg``."""
    pre_img, test_img, _ood, note = mri_images(cfg, log)
    af = cfg.afs[0]
    cases = [(f"in-domain-{i + 1}", s) for i, s in enumerate(mri_scans(test_img, cfg, af, seed0=100))]
    return new_report(title, note), mri_scans(pre_img, cfg, af), cases, af


def backbones(cfg: BackbonesConfig, out: Path, show_progress, log: Log) -> Report:
    rep, pre, cases, af = _mri_in_domain(cfg, log, "Backbones (DisINR Table 5)")
    pretrain = Pretrainer(cfg, out, show_progress, log)
    inr = cfg.inr_overrides()
    rows = []
    for bb in cfg.backbones:
        model = pretrain("disinr", pre, f"mri_{bb}", {"backbone": bb, **cfg.pretrain_lr.overrides(bb)})
        runs = [
            MethodRun(f"NGP-style ({bb})", "ngp", {**inr, "backbone": bb, **cfg.ngp_lr.overrides(bb)}),
            MethodRun(f"DisINR ({bb})", "disinr", inr, model=str(model)),
        ]
        comp = compare(cases, runs, cfg, out, show_progress, log)
        rows += aggregate(comp.rows(), by="method", metrics=("psnr", "ssim", "seconds"))
    rep.add_table(f"AF {af}, in-domain: scan-specific vs DisINR per backbone", rows, best=QUALITY_BEST)
    return rep


# --- Fig. 7: pre-training set size; Fig. 5: PCA of features ----------------------------------------------
@dataclass
class PretrainSizeConfig(Subjects, MRISimulation, Pretraining, Fitting, Running):
    """DisINR Fig. 7: PSNR vs the number of pre-training subjects, MRI in domain (the first AF)."""

    sizes: tuple[PosInt, ...] = (5, 10, 20)
    """Pre-training set sizes (the first n of the n_pretrain subjects)."""
    methods: tuple[Literal["imjense"], ...] = ("imjense",)
    """Reference methods without pre-training."""

    def check(self) -> None:
        if self.sizes and max(self.sizes) > self.n_pretrain:
            raise InreconError(
                f"sizes={list(self.sizes)} asks for more than n_pretrain={self.n_pretrain} subjects",
                "raise n_pretrain or lower sizes",
            )


def pretrain_size(cfg: PretrainSizeConfig, out: Path, show_progress, log: Log) -> Report:
    rep, pre_all, cases, af = _mri_in_domain(cfg, log, "Pre-training set size (DisINR Fig. 7)")
    pretrain = Pretrainer(cfg, out, show_progress, log)
    inr = cfg.inr_overrides()
    rows = []
    curves: dict[str, tuple[list, list]] = {}
    for n in cfg.sizes:
        models = pretrain.all(("disinr", "strainer"), pre_all[:n], f"mri_n{n}")
        runs = [
            MethodRun("DisINR", "disinr", inr, model=str(models["disinr"])),
            MethodRun("STRAINER", "strainer", inr, model=str(models["strainer"])),
        ]
        comp = compare(cases, runs, cfg, out, show_progress, log)
        for row in aggregate(comp.rows(), by="method", metrics=("psnr", "ssim")):
            rows.append({"n_pretrain": n, **row})
            xs, ys = curves.setdefault(row["method"], ([], []))
            xs.append(n)
            ys.append(row["psnr"][0])
    if "imjense" in cfg.methods:
        runs = [MethodRun("IMJENSE", "imjense", inr)]
        comp = compare(cases, runs, cfg, out, show_progress, log)
        imj = aggregate(comp.rows(), by="method", metrics=("psnr", "ssim"))[0]
        rows.append({"n_pretrain": "-", **imj})
        curves["IMJENSE"] = (list(cfg.sizes), [imj["psnr"][0]] * len(cfg.sizes))
    rep.add_table(f"AF {af}: PSNR vs number of pre-training subjects", rows, best=QUALITY_BEST)
    rep.add_curves("PSNR vs pre-training set size", curves, xlabel="pre-training subjects")
    return rep


@dataclass
class FeaturePCAConfig(Subjects, MRISimulation, Pretraining):
    """DisINR Fig. 5: PCA of the shared and the subject-specific features after pre-training (MRI)."""

    n_show: PosInt = 4
    """Subjects shown."""


def _pretrained_disinr(cfg: FeaturePCAConfig, scans, show_progress):
    """DisINR jointly pre-trained on ``scans``, *with* its subject encoders (a model file keeps only the
    shared pair), and the subjects."""
    from inrecon.config import build_config
    from inrecon.models.population import DisINRNetwork
    from inrecon.recon.population.common import SubjectSet, pretrain_joint
    from inrecon.recon.population.disinr import DisINRPretrainConfig

    over = {"steps": cfg.pretrain_steps, "subjects_per_step": cfg.subjects_per_step, **cfg.arch.overrides()}
    pcfg = build_config(DisINRPretrainConfig, over)
    subjects = SubjectSet(scans, pcfg.data)
    torch.manual_seed(pcfg.seed)
    n = len(subjects)
    net = DisINRNetwork(len(subjects.image_shape), 2 if subjects.complex_output else 1, n, pcfg.arch)
    pretrain_joint(
        net,
        subjects,
        pcfg,
        mine=range(n),
        checkpoint_path=None,
        fingerprint="",
        show_progress=show_progress,
        desc="DisINR pre-train",
    )
    return net, subjects


def feature_pca(cfg: FeaturePCAConfig, out: Path, show_progress, log: Log) -> Report:
    from matplotlib.figure import Figure

    from inrecon.recon.population.disinr import feature_pca as pca_images

    pre_img, _t, _o, note = mri_images(cfg, log)
    rep = new_report("Shared vs subject features (DisINR Fig. 5)", note)
    net, subjects = _pretrained_disinr(cfg, mri_scans(pre_img, cfg, cfg.afs[0]), show_progress)
    k = min(cfg.n_show, len(subjects))
    fig = Figure(figsize=(3 * k, 9))
    axes = fig.subplots(3, k, squeeze=False)
    for j in range(k):
        shared_rgb, subj_rgb = pca_images(net, j, subjects.image_shape)
        axes[0][j].imshow(np.abs(pre_img[j]), cmap="gray")
        axes[1][j].imshow(shared_rgb)
        axes[2][j].imshow(subj_rgb)
        for i, t in enumerate(("subject", "shared features (PCA)", "subject features (PCA)")):
            axes[i][j].set_title(f"{t} {j + 1}" if i == 0 else t, fontsize=9)
            axes[i][j].axis("off")
    fig.tight_layout()
    rep.add_figure(
        "PCA of shared and subject-specific features",
        fig,
        caption="Top: the pre-training subjects (never seen as images by DisINR). Middle: first three "
        "principal components of the shared encoder's features as RGB. Bottom: the same for each "
        "subject's own encoder. The shared row should look alike across subjects.",
    )
    return rep
