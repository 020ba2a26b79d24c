"""``inrecon demo``: the whole story on built-in phantoms, with nothing to download.

1. Generate a population of brain phantoms (MRI) and chest phantoms (CT) with subject-to-subject variation.
2. Simulate their acquisitions: 1D Cartesian undersampled multi-coil k-space (noise at a set SNR) and sparse-view
   fan-beam sinograms.
3. Pre-train DisINR on part of each population, from the measurements only (and Meta and STRAINER in the full
   profile).
4. Reconstruct unseen subjects with the classical baselines, NGP and DisINR (and IMJENSE, SAX-NeRF, Meta,
   STRAINER in the full profile), every INR stopped by the same reference-free hold-out rule.
5. Print the table and write a report (HTML + PNG figures, Markdown, JSON) with images, error maps, convergence
   curves and timings.

``--quick`` sizes everything to finish in a few minutes on 2 CPU cores; the default profile is meant for a GPU.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from inrecon import __version__
from inrecon.data.atomic import write_json
from inrecon.data.phantoms import body_ct_phantom, brain_phantom
from inrecon.data.sampling import cartesian_1d
from inrecon.errors import InreconError
from inrecon.experiments.drivers.populations import ct_scans, phantom_object_factor
from inrecon.experiments.runner import Comparison, MethodRun, run_comparison
from inrecon.parallel import Runner, available_cores
from inrecon.physics.simulate.mri import simulate_mri

__all__ = ["PROFILES", "DemoProfile", "demo_jobs", "run_demo"]


@dataclass
class DemoProfile:
    mri_shape: tuple[int, int]
    coils: int
    af: int
    acs: int
    snr_db: float
    ct_shape: tuple[int, int]
    views: int
    n_pretrain: int
    n_test: int
    inr_steps: int
    patience: int
    pretrain_steps: int
    subjects_per_step: int
    extra_methods: bool
    hash_levels: int
    log2_table: int
    disinr_width: int
    inr_ct_grid: int | str


_PROFILE_TABLE = {  # field: (quick, full)
    "mri_shape": ((96, 96), (256, 256)),
    "coils": (8, 12),
    "af": (4, 6),
    "acs": (12, 24),
    "snr_db": (30.0, 30.0),
    "ct_shape": ((96, 96), (256, 256)),
    "views": (45, 60),
    "n_pretrain": (6, 20),
    "n_test": (2, 5),
    "inr_steps": (600, 2000),
    "patience": (300, 300),
    "pretrain_steps": (300, 4000),
    "subjects_per_step": (3, 4),
    "extra_methods": (False, True),
    "hash_levels": (12, 16),
    "log2_table": (14, 0),
    # DisINR's encoder and decoder units: the paper's 128 in the full profile; 64 in the quick one gives the same
    # PSNR on the demo's phantoms in half the time (MRI 31.01 -> 31.11, CT 39.91 -> 39.94 dB; benchmarks/RESULTS.md)
    "disinr_width": (64, 128),
    # NGP's and DisINR's CT image grid (data.ct_supersample): the quick profile keeps the scan's own grid for time.
    # The default ("auto": 2x finer for a scan of at most 128^2 pixels, and on a GPU) gives NGP 34.89 instead of
    # 33.4 dB and DisINR 34.48 instead of 33.3 on the quick demo's CT phantoms (TV 35.11), but 494 s instead of
    # ~240 s for the whole quick demo on 2 cores (benchmarks/RESULTS.md, stop 45)
    "inr_ct_grid": (1, "auto"),
}
PROFILES = {
    name: DemoProfile(**{k: v[i] for k, v in _PROFILE_TABLE.items()})
    for i, name in enumerate(("quick", "full"))
}


def _mri_population(p: DemoProfile, seeds, device):
    scans = []
    for s in seeds:
        img = brain_phantom(p.mri_shape, seed=s, contrast="t2")
        mask = cartesian_1d(p.mri_shape, p.af, acs=p.acs)
        scans.append(simulate_mri(img, n_coils=p.coils, mask=mask, snr_db=p.snr_db, seed=s).to(device))
    return scans


def _ct_population(p: DemoProfile, seeds, device):
    """Chest phantoms drawn finer than the grid and projected from there (no inverse crime: a real object has
    detail below any reconstruction grid, see ``populations.ct_scans``)."""
    n = p.ct_shape[0]
    f = phantom_object_factor(n)
    images = [body_ct_phantom((f * n, f * p.ct_shape[1]), seed=s) for s in seeds]
    return [scan.to(device) for scan in ct_scans(images, p.views, size=n)]


def _inr_overrides(p: DemoProfile) -> dict:
    out = {"steps": p.inr_steps, "patience": p.patience, "n_levels": p.hash_levels}
    if p.log2_table:
        out["log2_table_size"] = p.log2_table
    return out


def _pretrain(method: str, scans, p: DemoProfile, out: Path, show_progress) -> Path:
    from inrecon.recon.api import pretrain

    over = {"n_levels": p.hash_levels, "seed": 0}
    if p.log2_table:
        over["log2_table_size"] = p.log2_table
    if method == "disinr":
        over.update({"arch.encoder_width": p.disinr_width, "arch.decoder_width": p.disinr_width})
    if method == "meta":
        over.update(outer_steps=max(20, p.pretrain_steps // 10), inner_steps=5)
    else:
        over.update(steps=p.pretrain_steps, subjects_per_step=p.subjects_per_step)
    path = out / "models" / f"{method}_{scans[0].modality}.safetensors"
    names = [f"phantom{i}" for i in range(len(scans))]
    return pretrain(method, scans, path, over, names=names, show_progress=show_progress)


def _methods(modality: str, p: DemoProfile, models: dict[str, Path]) -> list[MethodRun]:
    inr = _inr_overrides(p)
    runs = (
        [
            MethodRun("zero-filled", "zf"),
            MethodRun("CG-SENSE", "cgsense"),
            MethodRun("L1-wavelet", "l1wavelet"),
            MethodRun("TV", "tv"),
        ]
        if modality == "mri"
        else [MethodRun("FBP", "fbp"), MethodRun("SART", "sart"), MethodRun("TV", "tv")]
    )
    grid = {"data.ct_supersample": p.inr_ct_grid} if modality == "ct" else {}
    runs.append(MethodRun("NGP", "ngp", {**inr, **grid}))
    if p.extra_methods and modality == "mri":
        runs.append(MethodRun("IMJENSE", "imjense", {"steps": p.inr_steps, "patience": p.patience}))
    if p.extra_methods and modality == "ct":
        runs.append(MethodRun("SAX-NeRF", "saxnerf", {"steps": p.inr_steps, "patience": p.patience}))
    stop = {"steps": p.inr_steps, "patience": p.patience}
    if "meta" in models:
        runs.append(MethodRun("Meta", "meta", stop, model=str(models["meta"])))
    if "strainer" in models:
        runs.append(MethodRun("STRAINER", "strainer", stop, model=str(models["strainer"])))
    runs.append(MethodRun("DisINR", "disinr", {**stop, **grid}, model=str(models["disinr"])))
    return runs


def _summary_table(comp: Comparison) -> list[dict]:
    from inrecon.report import aggregate

    return aggregate(comp.rows(), by="method", metrics=("psnr", "ssim", "nrmse", "seconds"))


def _modality(
    modality: str, prof: DemoProfile, seeds, dev, out: Path, rep, show_progress, log, runner: Runner
) -> list[dict]:
    """Simulate, pre-train, reconstruct and report one modality; returns its summary table."""
    log(f"[{modality}] simulating {prof.n_pretrain + prof.n_test} subjects")
    make = _mri_population if modality == "mri" else _ct_population
    pre, test = make(prof, seeds["pretrain"], dev), make(prof, seeds["test"], dev)
    models = {}
    for method in ["disinr"] + (["meta", "strainer"] if prof.extra_methods else []):
        log(f"[{modality}] pre-training {method} on {len(pre)} subjects (measurements only)")
        t0 = time.perf_counter()
        models[method] = _pretrain(method, pre, prof, out, show_progress)
        log(f"[{modality}]   done in {time.perf_counter() - t0:.1f} s")
    cases = [(f"{modality}-subject{i + 1}", s) for i, s in enumerate(test)]
    comp = run_comparison(
        cases, _methods(modality, prof, models), show_progress=show_progress, log=log, runner=runner
    )
    table = _summary_table(comp)
    name = "MRI" if modality == "mri" else "CT"
    rep.add_table(
        f"{name}: mean ± std over {prof.n_test} unseen subjects",
        table,
        columns=["method", "psnr", "ssim", "nrmse", "seconds"],
        best={"psnr": "max", "ssim": "max", "nrmse": "min", "seconds": "min"},
    )
    first = cases[0][0]
    rep.add_image_grid(
        f"{name}: {first}",
        comp.images(first),
        reference=comp.references[first],
        metrics=comp.metrics_for(first),
    )
    curves = comp.curves(first)
    if curves:
        rep.add_curves(f"{name}: PSNR during the final fit ({first})", curves)
    seconds = {r["method"]: r["seconds"] for r in table}
    rep.add_bars(f"{name}: wall time per reconstruction", seconds, ylabel="seconds", logy=True)
    write_json(out / f"results_{modality}.json", {"rows": comp.rows(), "table": table})
    return table


def _what_was_run(prof: DemoProfile) -> str:
    return (
        f"MRI: {prof.n_pretrain} pre-training and {prof.n_test} test brain phantoms, {prof.mri_shape[0]}x"
        f"{prof.mri_shape[1]}, {prof.coils} simulated coils, 1D Cartesian AF {prof.af} with {prof.acs} ACS lines, "
        f"SNR {prof.snr_db:g} dB. CT: the same numbers of chest phantoms, {prof.ct_shape[0]}x{prof.ct_shape[1]}, "
        f"fan beam, {prof.views} views over 360 degrees, projected from phantoms drawn "
        f"{phantom_object_factor(prof.ct_shape[0])}x finer than the grid. DisINR is pre-trained on the "
        "measurements only and adapted to each test subject with its shared encoder-decoder frozen; every INR method stops by the same hold-out "
        "rule (no reference). Classical weights are defaults or chosen by k-space hold-out. DisINR's encoders "
        f"and decoder have {prof.disinr_width} units."
    )


def demo_jobs(device: torch.device) -> int:
    """The demo's reconstructions at once: one on a GPU (one device, one process), else one local worker process
    per core, at most four (the quick demo's four INR fits per modality). A quick demo's INR fit is small (96 x
    96): on the 2-core reference CPU one ran 1.36x slower on one thread than on two, so two at once, one thread
    each, finish the pair 1.47x sooner (benchmarks/RESULTS.md, stop 59)."""
    if device.type != "cpu":
        return 1
    return max(1, min(4, available_cores()))


def run_demo(
    quick: bool = True,
    out_dir: str | Path = "inrecon-demo",
    device: str = "auto",
    show_progress: bool | None = None,
    log=print,
    profile: DemoProfile | None = None,
    jobs: int | None = None,
) -> dict:
    """Run the demo; returns ``{"tables": ..., "report": path}``.

    ``jobs``: reconstructions at once, in local worker processes (:func:`demo_jobs`; ``None``: its choice)."""
    from inrecon.report import Report, collect_environment
    from inrecon.runtime import resolve_device

    prof = profile or PROFILES["quick" if quick else "full"]
    dev = resolve_device(device)
    torch.manual_seed(0)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    seeds = {"pretrain": list(range(prof.n_pretrain)), "test": list(range(1000, 1000 + prof.n_test))}
    rep = Report(
        title="inrecon demo" + (" (quick)" if quick else ""),
        subtitle="Population pre-training from raw measurements, then unseen subjects reconstructed by every method",
        data_note="Data: built-in procedural phantoms (brain MRI, chest CT); no real data used.",
    )
    rep.add_text("What was run", _what_was_run(prof))
    jobs = demo_jobs(dev) if jobs is None else int(jobs)
    if jobs > 1 and dev.type != "cpu":
        raise InreconError(
            f"{jobs} jobs on {dev}", "run the demo on a GPU with one job (worker processes are CPU-only)"
        )
    with Runner(jobs) as runner:
        if runner.backend != "serial":
            log(f"reconstructions {jobs} at once in local processes, {runner.threads} thread(s) each")
        tables = {
            m: _modality(m, prof, seeds, dev, out, rep, show_progress, log, runner) for m in ("mri", "ct")
        }
    rep.add_config("Demo profile", asdict(prof))
    total = round(time.perf_counter() - t_start, 1)
    rep.set_environment(
        collect_environment(seeds=seeds, device=str(dev), inrecon=__version__, total_seconds=total, jobs=jobs)
    )
    html = rep.write(out)
    _print_tables(tables, log)
    log(f"report: {html}  ({time.perf_counter() - t_start:.0f} s in total)")
    return {"tables": tables, "report": str(html)}


def _fmt(v) -> str:
    if isinstance(v, tuple):
        return f"{v[0]:.3f} ± {v[1]:.3f}" if abs(v[0]) < 10 else f"{v[0]:.2f} ± {v[1]:.2f}"
    return str(v)


def _print_tables(tables: dict, log) -> None:
    for modality, table in tables.items():
        log(f"\n{modality.upper()} (mean ± std over test subjects)")
        log(f"{'method':>12s} {'PSNR (dB)':>16s} {'SSIM':>16s} {'NRMSE':>16s} {'seconds':>16s}")
        for row in table:
            log(
                f"{row['method']:>12s} "
                + " ".join(f"{_fmt(row[k]):>16s}" for k in ("psnr", "ssim", "nrmse", "seconds"))
            )
