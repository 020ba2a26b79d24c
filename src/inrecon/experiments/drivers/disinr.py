"""Bench drivers for the DisINR paper's tables and figures (Tables 1-5 and 7, Figs. 2B, 5 and 7).

Every driver builds its pre-training and test populations from real data when present (chest CT volumes from
two scanners; the real T1 brain slice and the real 8-coil brain scan) and from phantoms otherwise, pre-trains
the population methods on measurements only, then compares every method on unseen subjects with the same
reference-free stopping rule. Parameters (sizes, subject counts, steps) come from the experiment's JSON file.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from inrecon.data import shared
from inrecon.data.phantoms import body_ct_phantom, body_ct_volume, brain_phantom
from inrecon.data.sampling import cartesian_1d, poisson_disc, radial_spokes_for_af, radial_trajectory
from inrecon.data.scans import VolumeScan
from inrecon.experiments.bench import driver
from inrecon.experiments.runner import Comparison, MethodRun, run_comparison
from inrecon.physics.simulate.ct import full_scan_angles, simulate_ct
from inrecon.physics.simulate.mri import simulate_mri
from inrecon.recon.pretraining import get_pretrainer
from inrecon.recon.registry import config_from_dict
from inrecon.report import Report, aggregate, collect_environment

__all__: list[str] = []

BEST = {"psnr": "max", "ssim": "max", "nrmse": "min", "seconds": "min"}


# --- populations -----------------------------------------------------------------------------------------
def _ct_images(p: dict, log) -> tuple[list, list, list, str]:
    """(pre-train images, in-domain test images, out-of-domain test images, data note)."""
    n = p["size"]
    if (
        p.get("real", True)
        and shared.available(shared.LUNGDX_A0001)
        and shared.available(shared.LUNGDX_A0002)
    ):
        a = shared.lungdx_slices("A0001", size=n)
        b = shared.lungdx_slices("A0002", size=n)
        pre_idx = np.linspace(0, len(a) - 1, p["n_pretrain"] + p["n_test"]).round().astype(int)
        test_pos = np.linspace(1, len(pre_idx) - 2, p["n_test"]).round().astype(int)
        test_idx = pre_idx[test_pos]
        pre_idx = np.setdiff1d(pre_idx, test_idx)
        ood_idx = np.linspace(3, len(b) - 4, p["n_test"]).round().astype(int)
        note = (
            f"Data: real chest CT (TCIA Lung-PET-CT-Dx). Pre-training: {len(pre_idx)} slices of A0001 "
            f"(Philips); in-domain test: {len(test_idx)} other A0001 slices; out-of-domain: {len(ood_idx)} "
            f"slices of A0002 (Siemens B40f). HU window [-800, 400] -> [0, 1], {n}x{n}, 1 mm pixels."
        )
        return list(a[pre_idx]), list(a[test_idx]), list(b[ood_idx]), note
    log("  real CT data not found: using chest phantoms")
    pre = [body_ct_phantom((n, n), seed=s) for s in range(p["n_pretrain"])]
    test = [body_ct_phantom((n, n), seed=500 + s) for s in range(p["n_test"])]
    ood = [np.clip(body_ct_phantom((n, n), seed=900 + s) * 1.08 - 0.03, 0, 1) for s in range(p["n_test"])]
    return (
        pre,
        test,
        ood,
        "Data: chest phantoms (no real CT found); out-of-domain = phantoms with shifted contrast.",
    )


def _ct_scans(images, views: int):
    geom = shared.disinr_fan_geometry(images[0].shape)
    angles = full_scan_angles(views)
    return [simulate_ct(img, geom, angles) for img in images]


def _mri_scans(images, p: dict, af: int, seed0: int = 0, pattern: str = "cartesian"):
    out = []
    for i, img in enumerate(images):
        shape = img.shape
        if pattern == "cartesian":
            kw = {"mask": cartesian_1d(shape, af, acs=p.get("acs", 24))}
        elif pattern == "poisson":
            kw = {"mask": poisson_disc(shape, af, calib=(p.get("acs", 24),) * 2, seed=seed0 + i)}
        else:  # radial, Nyquist-sampled readout
            kw = {"trajectory": radial_trajectory(radial_spokes_for_af(max(shape), af), max(shape))}
        out.append(simulate_mri(img, n_coils=p["coils"], snr_db=p.get("snr_db", 30.0), seed=seed0 + i, **kw))
    return out


def _mri_images(p: dict, log) -> tuple[list, list, list, str]:
    n = p["size"]
    pre = [brain_phantom((n, n), seed=s, contrast="t2") for s in range(p["n_pretrain"])]
    test = [brain_phantom((n, n), seed=500 + s, contrast="t2") for s in range(p["n_test"])]
    ood = [brain_phantom((n, n), seed=900 + s, contrast="flair") for s in range(p["n_test"])]
    note = (
        f"Data: brain phantoms, {n}x{n}: pre-training on {len(pre)} T2-like subjects; in-domain test: T2-like; "
        "out-of-domain: FLAIR-like contrast."
    )
    if p.get("real", True) and shared.available(shared.DIPY_T1):
        img = shared.dipy_t1()
        if img.shape == (n, n):
            ood = [*ood[:-1], img]
            note += " The last out-of-domain case is the real T1 slice (dipy)."
    return pre, test, ood, note


# --- methods ---------------------------------------------------------------------------------------------
def _pretrain(
    method: str, scans, p: dict, out: Path, tag: str, show_progress, extra: dict | None = None
) -> Path:
    spec = get_pretrainer(method)
    over = {"seed": 0, **p.get("arch", {}), **(extra or {})}
    if method == "meta":
        over.update(outer_steps=p["meta_outer_steps"], inner_steps=p.get("meta_inner_steps", 5))
    else:
        over.update(steps=p["pretrain_steps"], subjects_per_step=p.get("subjects_per_step", 4))
    cfg = config_from_dict(spec.config_cls, over)
    path = out / "models" / f"{method}_{tag}.safetensors"
    t0 = time.perf_counter()
    spec.fn(scans, cfg, path, names=[f"{tag}-{i}" for i in range(len(scans))], show_progress=show_progress)
    _PRETRAIN_SECONDS[str(path)] = time.perf_counter() - t0
    return path


_PRETRAIN_SECONDS: dict[str, float] = {}


def _runs(modality: str, p: dict, models: dict[str, Path], methods: list[str]) -> list[MethodRun]:
    inr = {"steps": p["inr_steps"], "patience": p["patience"]}
    ngp = {
        **inr,
        **p.get("ngp", {}),
        **{k: v for k, v in p.get("arch", {}).items() if k in ("n_levels", "log2_table_size")},
    }
    table = {
        "zf": MethodRun("ZF", "zf"),
        "cgsense": MethodRun("CG-SENSE", "cgsense"),
        "l1wavelet": MethodRun("L1-wavelet", "l1wavelet"),
        "tv": MethodRun("TV", "tv"),
        "fbp": MethodRun("FBP", "fbp"),
        "sart": MethodRun("SART", "sart"),
        "ngp": MethodRun("NGP", "ngp", ngp),
        "imjense": MethodRun("IMJENSE", "imjense", dict(inr)),
    }
    for m in ("meta", "strainer", "disinr"):
        if m in models:
            table[m] = MethodRun(
                {"meta": "Meta", "strainer": "STRAINER", "disinr": "DisINR"}[m],
                m,
                {**inr, **p.get(m, {})},
                model=str(models[m]),
            )
    return [table[m] for m in methods if m in table]


def _section(rep: Report, title: str, comp: Comparison, case: str | None = None) -> list[dict]:
    table = aggregate(comp.rows(), by="method", metrics=("psnr", "ssim", "nrmse", "seconds"))
    rep.add_table(title, table, columns=["method", "psnr", "ssim", "nrmse", "seconds", "n"], best=BEST)
    case = case or next(iter(comp.references))
    rep.add_image_grid(
        f"{title}: {case}", comp.images(case), reference=comp.references[case], metrics=comp.metrics_for(case)
    )
    curves = comp.curves(case)
    if curves:
        rep.add_curves(f"{title}: PSNR during the final fit ({case})", curves)
    return table


def _new_report(title: str, note: str) -> Report:
    _PRETRAIN_SECONDS.clear()
    rep = Report(title=title, data_note=note)
    rep.set_environment(collect_environment(device="cuda" if torch.cuda.is_available() else "cpu"))
    return rep


# --- Table 3: sparse-view CT -----------------------------------------------------------------------------
@driver("ct_sparse_view")
def ct_sparse_view(p: dict, out: Path, show_progress, log) -> Report:
    pre_img, test_img, ood_img, note = _ct_images(p, log)
    rep = _new_report("Sparse-view CT (DisINR Table 3)", note)
    summary = []
    for views in p["views"]:
        log(f"[ct {views} views] pre-training on {len(pre_img)} subjects")
        pre = _ct_scans(pre_img, views)
        models = {m: _pretrain(m, pre, p, out, f"ct{views}", show_progress) for m in p["pretrain_methods"]}
        runs = _runs("ct", p, models, p["methods"])
        for domain, images in (("in-domain", test_img), ("out-of-domain", ood_img)):
            cases = [(f"{domain}-{i + 1}", s) for i, s in enumerate(_ct_scans(images, views))]
            comp = run_comparison(cases, runs, show_progress=show_progress, log=log)
            table = _section(rep, f"{views} views, {domain}", comp)
            summary += [{"setting": f"{views} views {domain}", **row} for row in table]
    rep.add_table(
        "Summary (PSNR / SSIM, mean ± std)",
        summary,
        columns=["setting", "method", "psnr", "ssim", "seconds"],
        best=None,
    )
    rep.add_bars(
        "Pre-training time", {Path(k).stem: v for k, v in _PRETRAIN_SECONDS.items()}, ylabel="seconds"
    )
    return rep


# --- Table 2 (and 7, Fig. 7): undersampled MRI -----------------------------------------------------------
@driver("mri_undersampled")
def mri_undersampled(p: dict, out: Path, show_progress, log) -> Report:
    pre_img, test_img, ood_img, note = _mri_images(p, log)
    rep = _new_report("Undersampled multi-coil MRI (DisINR Table 2)", note)
    summary = []
    for af in p["afs"]:
        log(f"[mri AF {af}] pre-training on {len(pre_img)} subjects")
        pre = _mri_scans(pre_img, p, af)
        models = {m: _pretrain(m, pre, p, out, f"mri_af{af}", show_progress) for m in p["pretrain_methods"]}
        runs = _runs("mri", p, models, p["methods"])
        for domain, images in (("in-domain", test_img), ("out-of-domain", ood_img)):
            cases = [(f"{domain}-{i + 1}", s) for i, s in enumerate(_mri_scans(images, p, af, seed0=100))]
            comp = run_comparison(cases, runs, show_progress=show_progress, log=log)
            table = _section(rep, f"AF {af}, {domain}", comp)
            summary += [{"setting": f"AF {af} {domain}", **row} for row in table]
        for pattern, paf in p.get("unseen_patterns", []):  # Table 7: models trained on Cartesian
            cases = [
                (f"{pattern}-AF{paf}-{i + 1}", s)
                for i, s in enumerate(_mri_scans(test_img, p, paf, seed0=200, pattern=pattern))
            ]
            prun = [r for r in runs if r.method not in ("imjense",) or pattern != "radial"]
            comp = run_comparison(cases, prun, show_progress=show_progress, log=log)
            table = _section(
                rep, f"Unseen pattern: {pattern} AF {paf} (pre-trained on Cartesian AF {af})", comp
            )
            summary += [{"setting": f"{pattern} AF {paf}", **row} for row in table]
    if p.get("real_brain") and shared.available(shared.BRAIN8CH):
        summary += _real_brain_section(rep, p, out, show_progress, log)
    rep.add_table("Summary (mean ± std)", summary, columns=["setting", "method", "psnr", "ssim", "seconds"])
    return rep


def _real_brain_section(rep: Report, p: dict, out: Path, show_progress, log) -> list[dict]:
    """The real 8-coil brain (Poisson 12.7 %, scored against ``img`` in the coil-map support).

    A model is tied to its image grid and coil layout, so a second DisINR (and Meta/STRAINER when asked) is
    pre-trained on simulated 8-coil Poisson-disc acquisitions of T2-like phantoms on the scan's own 180 x 230
    grid, at the scan's acceleration; no image of the real scan is used anywhere.
    """
    rb = p["real_brain"]
    scan = with_espirit_support(shared.brain8ch())
    shape = tuple(scan.kspace.shape[-2:])
    af = float(scan.mask.numel() / scan.mask.sum())
    n_pre = rb.get("n_pretrain", p["n_pretrain"])
    log(f"[real brain8ch, Poisson AF {af:.1f}] pre-training on {n_pre} simulated phantoms at {shape}")
    sim = {**p, "coils": scan.kspace.shape[0], "acs": rb.get("acs", 24)}
    pre = _mri_scans(
        [brain_phantom(shape, seed=s, contrast="t2") for s in range(n_pre)], sim, af, pattern="poisson"
    )
    pp = {**p, **{k: v for k, v in rb.items() if k not in ("n_pretrain", "acs", "methods")}}
    models = {m: _pretrain(m, pre, pp, out, "brain8ch", show_progress) for m in pp["pretrain_methods"]}
    runs = _runs("mri", pp, models, rb.get("methods", p["methods"]))
    comp = run_comparison([("brain8ch", scan)], runs, show_progress=show_progress, log=log)
    table = _section(rep, f"Real 8-coil brain (Poisson AF {af:.1f}), pre-trained on phantoms", comp)
    return [{"setting": "real brain8ch", **row} for row in table]


# --- Table 1 / Fig. 2B: 3D volume fitting ----------------------------------------------------------------
def _volumes(p: dict, log) -> tuple[list, list, str]:
    d, n = p["depth"], p["size"]
    if p.get("real", True) and shared.available(shared.LUNGDX_A0001):
        a = shared.lungdx_slices("A0001", size=n)
        blocks = [a[i : i + d] for i in range(0, len(a) - d + 1, d)]
        pre, test = blocks[: p["n_pretrain"]], blocks[p["n_pretrain"] : p["n_pretrain"] + p["n_test"]]
        if shared.available(shared.LUNGDX_A0002) and p.get("ood", True):
            b = shared.lungdx_slices("A0002", size=n)
            test = [*test, b[:d]]
        return (
            pre,
            test,
            (
                f"Data: real chest CT sub-volumes {n}x{n}x{d} (A0001 blocks for pre-training and "
                "test; one A0002 block, another scanner). HU window [-800, 400] -> [0, 1]."
            ),
        )
    log("  real CT volumes not found: using chest phantom volumes")
    pre = [body_ct_volume((d, n, n), seed=s) for s in range(p["n_pretrain"])]
    test = [body_ct_volume((d, n, n), seed=500 + s) for s in range(p["n_test"])]
    return pre, test, "Data: chest phantom volumes (no real CT found)."


@driver("volume_fitting")
def volume_fitting(p: dict, out: Path, show_progress, log) -> Report:
    pre_v, test_v, note = _volumes(p, log)
    rep = _new_report("3D volume fitting (DisINR Table 1, Fig. 2B)", note)
    pre = [VolumeScan(volume=v) for v in pre_v]
    models = {
        m: _pretrain(
            m,
            pre,
            p,
            out,
            "volume",
            show_progress,
            extra={"coord_batch": p["coord_batch"]} if m != "meta" else None,
        )
        for m in p["pretrain_methods"]
    }
    steps = p["steps"]
    runs = [
        MethodRun(
            "NGP",
            "ngp",
            {
                "steps": steps,
                "batch_size": p["coord_batch"],
                "eval_every": p["eval_every"],
                **p.get("ngp", {}),
                **{k: v for k, v in p.get("arch", {}).items() if k in ("n_levels", "log2_table_size")},
            },
        )
    ]
    if "disinr" in models:
        runs.append(
            MethodRun(
                "DisINR",
                "disinr",
                {
                    "steps": steps,
                    "coord_batch": p["coord_batch"],
                    "eval_every": p["eval_every"],
                    "lr": p.get("adapt_lr", 1e-3),
                },
                model=str(models["disinr"]),
            )
        )
    cases = [(f"volume-{i + 1}", VolumeScan(volume=v)) for i, v in enumerate(test_v)]
    comp = run_comparison(cases, runs, show_progress=show_progress, log=log)
    rows = []
    for r in comp.results:
        h = r.info.get("history", {})
        at = dict(zip(h.get("eval_step", []), h.get("psnr", [])))
        early = max((s for s in at if s <= p["early_step"]), default=None)
        rows.append(
            {
                "case": r.case,
                "method": r.label,
                "psnr": r.metrics["psnr"],
                "ssim": r.metrics["ssim"],
                f"psnr@{p['early_step']}": at.get(early, float("nan")),
                "seconds": r.seconds,
                "trainable_params": r.info.get("n_parameters_trainable", r.info.get("n_parameters")),
            }
        )
    table = aggregate(
        rows, by="method", metrics=("psnr", "ssim", f"psnr@{p['early_step']}", "seconds", "trainable_params")
    )
    rep.add_table(f"Volume fitting: PSNR after {steps} steps and after {p['early_step']}", table, best=BEST)
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
    rep.add_bars(
        "Pre-training time", {Path(kk).stem: v for kk, v in _PRETRAIN_SECONDS.items()}, ylabel="seconds"
    )
    return rep


# --- Table 4: freezing ablation; Table 5: backbones ------------------------------------------------------
@driver("ablation_freezing")
def ablation_freezing(p: dict, out: Path, show_progress, log) -> Report:
    pre_img, test_img, _ood, note = _ct_images(p, log)
    rep = _new_report("Effect of weight freezing (DisINR Table 4)", note)
    views = p["views"][0]
    pre = _ct_scans(pre_img, views)
    models = {m: _pretrain(m, pre, p, out, f"ct{views}", show_progress) for m in ("disinr", "strainer")}
    inr = {"steps": p["inr_steps"], "patience": p["patience"]}
    runs = [
        MethodRun("NGP", "ngp", {**inr, **p.get("ngp", {})}),
        MethodRun("STRAINER (w/o frozen)", "strainer", inr, model=str(models["strainer"])),
        MethodRun(
            "STRAINER (frozen encoder)",
            "strainer",
            {**inr, "freeze_trunk": True},
            model=str(models["strainer"]),
        ),
        MethodRun("DisINR (w/o frozen)", "disinr", {**inr, "freeze": False}, model=str(models["disinr"])),
        MethodRun("DisINR (frozen pair)", "disinr", inr, model=str(models["disinr"])),
    ]
    cases = [(f"in-domain-{i + 1}", s) for i, s in enumerate(_ct_scans(test_img, views))]
    comp = run_comparison(cases, runs, show_progress=show_progress, log=log)
    _section(rep, f"{views} views, in-domain", comp)
    return rep


@driver("backbones")
def backbones(p: dict, out: Path, show_progress, log) -> Report:
    pre_img, test_img, _ood, note = _mri_images(p, log)
    rep = _new_report("Backbones (DisINR Table 5)", note)
    af = p["afs"][0]
    pre = _mri_scans(pre_img, p, af)
    cases = [(f"in-domain-{i + 1}", s) for i, s in enumerate(_mri_scans(test_img, p, af, seed0=100))]
    inr = {"steps": p["inr_steps"], "patience": p["patience"]}
    rows = []
    for bb in p["backbones"]:
        extra = {"backbone": bb, **p.get("backbone_arch", {}).get(bb, {})}
        model = _pretrain("disinr", pre, p, out, f"mri_{bb}", show_progress, extra=extra)
        ngp_over = {**inr, "backbone": bb, **p.get("ngp_backbone", {}).get(bb, {})}
        runs = [
            MethodRun(f"NGP-style ({bb})", "ngp", ngp_over),
            MethodRun(f"DisINR ({bb})", "disinr", inr, model=str(model)),
        ]
        comp = run_comparison(cases, runs, show_progress=show_progress, log=log)
        rows += aggregate(comp.rows(), by="method", metrics=("psnr", "ssim", "seconds"))
    rep.add_table(f"AF {af}, in-domain: scan-specific vs DisINR per backbone", rows, best=BEST)
    return rep


# --- Fig. 7: pre-training set size; Fig. 5: PCA of features ----------------------------------------------
@driver("pretrain_size")
def pretrain_size(p: dict, out: Path, show_progress, log) -> Report:
    pre_img, test_img, _ood, note = _mri_images(p, log)
    rep = _new_report("Pre-training set size (DisINR Fig. 7)", note)
    af = p["afs"][0]
    pre_all = _mri_scans(pre_img, p, af)
    cases = [(f"in-domain-{i + 1}", s) for i, s in enumerate(_mri_scans(test_img, p, af, seed0=100))]
    inr = {"steps": p["inr_steps"], "patience": p["patience"]}
    rows = []
    curves: dict[str, tuple[list, list]] = {}
    for n in p["sizes"]:
        models = {
            m: _pretrain(m, pre_all[:n], p, out, f"mri_n{n}", show_progress) for m in ("disinr", "strainer")
        }
        runs = [
            MethodRun("DisINR", "disinr", inr, model=str(models["disinr"])),
            MethodRun("STRAINER", "strainer", inr, model=str(models["strainer"])),
        ]
        comp = run_comparison(cases, runs, show_progress=show_progress, log=log)
        for row in aggregate(comp.rows(), by="method", metrics=("psnr", "ssim")):
            rows.append({"n_pretrain": n, **row})
            xs, ys = curves.setdefault(row["method"], ([], []))
            xs.append(n)
            ys.append(row["psnr"][0])
    if "imjense" in p.get("methods", []):
        comp = run_comparison(
            cases, [MethodRun("IMJENSE", "imjense", inr)], show_progress=show_progress, log=log
        )
        imj = aggregate(comp.rows(), by="method", metrics=("psnr", "ssim"))[0]
        rows.append({"n_pretrain": "-", **imj})
        curves["IMJENSE"] = (list(p["sizes"]), [imj["psnr"][0]] * len(p["sizes"]))
    rep.add_table(f"AF {af}: PSNR vs number of pre-training subjects", rows, best=BEST)
    rep.add_curves("PSNR vs pre-training set size", curves, xlabel="pre-training subjects")
    return rep


@driver("feature_pca")
def feature_pca_driver(p: dict, out: Path, show_progress, log) -> Report:
    from matplotlib.figure import Figure

    from inrecon.models.population import DisINRNetwork
    from inrecon.recon.population.common import SubjectSet, pretrain_joint
    from inrecon.recon.population.disinr import DisINRPretrainConfig, feature_pca

    pre_img, _t, _o, note = _mri_images(p, log)
    rep = _new_report("Shared vs subject features (DisINR Fig. 5)", note)
    scans = _mri_scans(pre_img, p, p["afs"][0])
    cfg = config_from_dict(DisINRPretrainConfig, {"steps": p["pretrain_steps"], **p.get("arch", {})})
    subjects = SubjectSet(scans)
    torch.manual_seed(0)
    net = DisINRNetwork(2, 2, len(subjects), cfg.arch())
    pretrain_joint(
        net,
        subjects,
        cfg.schedule(),
        shared_params=net.shared_parameters(),
        show_progress=show_progress,
        desc="DisINR pre-train",
    )
    k = min(p.get("n_show", 4), len(subjects))
    fig = Figure(figsize=(3 * k, 9))
    axes = fig.subplots(3, k, squeeze=False)
    for j in range(k):
        shared_rgb, subj_rgb = feature_pca(net, j, subjects.image_shape)
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
